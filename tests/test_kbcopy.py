"""The tests' knowledge-base copy keeps the store's files byte for byte, holes left unwritten."""

from __future__ import annotations

from pathlib import Path

from tests.kbcopy import copy_kb


def test_a_sparse_file_is_copied_byte_for_byte_without_its_holes(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    sparse = source / "page_0.dat"
    with sparse.open("wb") as out:
        out.write(b"head")
        out.seek(8 << 20)
        out.write(b"middle")
        out.truncate(32 << 20)  # a hole at the end, as the store preallocates
    (source / "small.json").write_text('{"a": 1}', encoding="utf-8")
    target = copy_kb(source, tmp_path / "target")
    copied = target / "page_0.dat"
    assert copied.read_bytes() == sparse.read_bytes()
    assert (target / "small.json").read_text(encoding="utf-8") == '{"a": 1}'
    assert copied.stat().st_size == 32 << 20
    assert copied.stat().st_blocks * 512 <= sparse.stat().st_blocks * 512 + (1 << 20)


def test_the_sample_knowledge_base_copy_is_small_and_whole(
    real_kb: dict[str, Path], tmp_path: Path
) -> None:
    target = copy_kb(real_kb["home"], tmp_path / "home")
    files = [p for p in real_kb["home"].rglob("*") if p.is_file()]
    assert files
    for path in files:
        twin = target / path.relative_to(real_kb["home"])
        assert twin.read_bytes() == path.read_bytes(), path
    on_disk = sum(p.stat().st_blocks * 512 for p in target.rglob("*") if p.is_file())
    assert on_disk < 32 << 20  # shutil.copytree wrote ~214 MB
