"""Incremental ingest on a real Qdrant Edge store (hash embedder: fast and deterministic)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.cache import EmbeddingCache
from core.config import Settings
from core.engine import Engine, open_engine
from core.errors import ConfigError, ProviderError, StoreBusy, StoreMismatch
from core.ingest import ingest
from core.manage import forget, list_sources
from core.results import IngestReport
from stores.shard import EdgeShardStore
from tests.conftest import EXAMPLES
from tests.fakes import HashEmbedding

Docs = Callable[..., Path]

SECTIONS = {
    "guide.md": "# Guide\n\n## Install\nRun the installer. It takes a minute.\n\n"
    "## Configure\nEdit lumen.toml to set the port.\n\n## Upgrade\nStop the service first.\n",
    "notes.txt": "The refund window is 30 days. Refunds are paid within 10 business days.\n",
    "中文.md": "# 部署\n\n部署需要至少 2 GB 内存。建议使用 Ubuntu 22.04。\n",
}


def _chunks_by_file(engine: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    for point in engine.shard.points("chunk"):
        counts[point.payload["path"]] = counts.get(point.payload["path"], 0) + 1
    return counts


def _consistent(engine: Engine) -> dict[str, int]:
    """Every file is complete: its record's chunk count equals the chunks stored for it."""
    stored = _chunks_by_file(engine)
    recorded = {r["path"]: r["chunks"] for r in engine.shard.records()}
    assert stored == recorded
    return recorded


def test_first_ingest_indexes_every_file_with_full_metadata(
    hash_engine: Engine, docs: Docs
) -> None:
    root = docs(SECTIONS)
    report = ingest([root], hash_engine)
    assert sorted(report.added) == sorted(SECTIONS)
    assert report.chunks_embedded == report.chunks_written == report.chunks_total > 0
    assert report.files_total == 3
    _consistent(hash_engine)
    hits = hash_engine.store.query(_query(hash_engine, "port lumen.toml"))
    meta = hits.nodes[0].metadata
    assert meta["path"] == "guide.md"
    assert meta["abs_path"] == str(root / "guide.md")
    assert meta["headings"] == ["Guide", "Configure"]
    assert meta["line_start"] == 6
    assert meta["line_end"] == 7
    text = (root / "guide.md").read_text()
    assert text[meta["start_char"] : meta["end_char"]] == hits.nodes[0].get_content()
    assert meta["lang"] == "en"
    assert meta["file_type"] == "markdown"
    assert len(meta["chunk_hash"]) == 32
    assert len(meta["file_hash"]) == 32
    zh = hash_engine.store.query(_query(hash_engine, "部署 内存", mode="sparse"))
    assert zh.nodes[0].metadata["lang"] == "zh"


def _query(engine: Engine, text: str, mode: str = "dense") -> Any:
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    assert engine.embedder is not None
    modes = {"dense": VectorStoreQueryMode.DEFAULT, "sparse": VectorStoreQueryMode.SPARSE}
    return VectorStoreQuery(
        query_embedding=engine.embedder.get_query_embedding(text),
        query_str=text,
        similarity_top_k=3,
        mode=modes[mode],
    )


@pytest.fixture
def indexed(hash_engine: Engine, docs: Docs) -> tuple[Path, HashEmbedding]:
    """SECTIONS written and ingested once; the folder and the embedder that counts texts."""
    root = docs(SECTIONS)
    ingest([root], hash_engine)
    assert isinstance(hash_engine.embedder, HashEmbedding)
    return root, hash_engine.embedder


def test_second_run_over_unchanged_folder_embeds_nothing(
    hash_engine: Engine, indexed: tuple[Path, HashEmbedding]
) -> None:
    root, embedder = indexed
    before = embedder.texts_embedded
    report = ingest([root], hash_engine)
    assert report.unchanged == 3
    assert (report.added, report.changed, report.deleted) == ((), (), ())
    assert embedder.texts_embedded == before
    # Touching a file without changing it costs a hash, not an embedding.
    os.utime(root / "notes.txt", ns=(1, 1))
    assert ingest([root], hash_engine).unchanged == 3
    assert embedder.texts_embedded == before


def test_changed_file_embeds_only_its_new_text(
    hash_engine: Engine, indexed: tuple[Path, HashEmbedding]
) -> None:
    root, embedder = indexed
    before = embedder.texts_embedded
    guide = root / "guide.md"
    guide.write_text(guide.read_text().replace("Stop the service first.", "Back up, then stop."))
    report = ingest([root], hash_engine)
    assert report.changed == ("guide.md",)
    assert embedder.texts_embedded - before == 1  # only the Upgrade section is new
    assert report.chunks_reused >= 2
    _consistent(hash_engine)
    hits = hash_engine.store.query(_query(hash_engine, "back up stop", mode="sparse"))
    assert "Back up, then stop." in hits.nodes[0].get_content()
    texts = [
        n.get_content()
        for n in hash_engine.store.query(
            _query(hash_engine, "stop service first", mode="sparse")
        ).nodes
    ]
    assert not any("Stop the service first." in t for t in texts)


def test_deleted_file_is_removed(hash_engine: Engine, docs: Docs) -> None:
    root = docs(SECTIONS)
    ingest([root], hash_engine)
    (root / "notes.txt").unlink()
    report = ingest([root], hash_engine)
    assert report.deleted == ("notes.txt",)
    assert "notes.txt" not in _consistent(hash_engine)


def test_renamed_and_moved_files_are_not_re_embedded(
    hash_engine: Engine, indexed: tuple[Path, HashEmbedding]
) -> None:
    root, embedder = indexed
    before = embedder.texts_embedded
    (root / "archive").mkdir()
    shutil.move(root / "guide.md", root / "archive" / "old-guide.md")
    report = ingest([root], hash_engine)
    assert [(r.old, r.new) for r in report.renamed] == [("guide.md", "archive/old-guide.md")]
    assert (report.added, report.deleted) == ((), ())
    assert embedder.texts_embedded == before
    files = _consistent(hash_engine)
    assert "archive/old-guide.md" in files
    assert "guide.md" not in files


def test_deletion_is_scoped_to_the_ingested_root(hash_engine: Engine, docs: Docs) -> None:
    root = docs({**SECTIONS, "sub/a.md": "# A\nAlpha text.\n", "sub/b.md": "# B\nBeta text.\n"})
    ingest([root], hash_engine)
    (root / "notes.txt").unlink()  # outside sub/: must survive `ingest docs/sub`
    (root / "sub" / "b.md").unlink()
    report = ingest([root / "sub"], hash_engine)
    assert report.deleted == ("b.md",)
    assert report.unchanged == 1
    files = _consistent(hash_engine)
    assert "notes.txt" in files
    assert "guide.md" in files


def test_dry_run_writes_nothing(hash_engine: Engine, docs: Docs) -> None:
    root = docs(SECTIONS)
    ingest([root], hash_engine)
    (root / "notes.txt").unlink()
    (root / "new.md").write_text("# New\nFresh text.\n")
    guide = root / "guide.md"
    guide.write_text(guide.read_text() + "\nMore.\n")
    before = _chunks_by_file(hash_engine)
    plan = ingest([root], hash_engine, dry_run=True)
    assert (plan.added, plan.changed, plan.deleted, plan.unchanged) == (
        ("new.md",),
        ("guide.md",),
        ("notes.txt",),
        1,
    )
    assert plan.dry_run
    assert plan.chunks_written == 0
    assert _chunks_by_file(hash_engine) == before


def test_hidden_gitignored_binary_and_filtered_files_are_skipped(
    make_settings: Callable[..., Settings], docs: Docs
) -> None:
    root = docs(
        {
            "keep.md": "# Keep\nKept text.\n",
            ".hidden.md": "# Hidden\n",
            ".git/config.md": "# git internals\n",
            "build/out.md": "# Built\n",
            ".gitignore": "build/\n*.log\n",
            "debug.log": "log line\n",
            "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00",
            "blob.xyz": b"\x00\x01\x02\x03" * 10,
            "drafts/wip.md": "# WIP\n",
            "script.py": "print('hello')\n",
        }
    )
    settings = make_settings(ingest={"exclude": ["drafts/*"]})
    with open_engine(settings, purpose="write", embedder=HashEmbedding()) as engine:
        report = ingest([root], engine)
    assert sorted(report.added) == ["keep.md", "script.py"]
    # The binary .xyz is ignored by name; the png now has a reader (OCR), which finds no image in
    # it and skips it quietly (NotText at read time is not counted as ignored by ingest).
    assert report.ignored == 1
    assert not report.problems
    only_py = make_settings(ingest={"include": ["*.py"]}, kb={"name": "py"})
    with open_engine(only_py, purpose="write", embedder=HashEmbedding()) as engine:
        assert ingest([root], engine).added == ("script.py",)
    everything = make_settings(ingest={"hidden": True, "gitignore": False}, kb={"name": "all"})
    with open_engine(everything, purpose="write", embedder=HashEmbedding()) as engine:
        added = ingest([root], engine).added
    assert {".hidden.md", "build/out.md", "debug.log", ".gitignore"} <= set(added)
    assert ".git/config.md" not in added  # version-control internals never are


def test_bad_files_are_reported_and_never_stop_the_run(hash_engine: Engine, docs: Docs) -> None:
    pdf = (EXAMPLES / "runbooks" / "oncall-runbook.pdf").read_bytes()
    root = docs(
        {
            "good.md": "# Good\nGood text.\n",
            "empty.txt": "",
            "broken.pdf": pdf[: len(pdf) // 3],
            "binary.txt": b"\x00\x01\x02" * 50,
            "runbook.pdf": pdf,
        }
    )
    (root / "dangling.md").symlink_to(root / "missing-target.md")
    report = ingest([root], hash_engine)
    reasons = {p.path: p.reason for p in report.problems}
    assert set(reasons) == {"empty.txt", "broken.pdf", "binary.txt", "dangling.md"}
    assert reasons["empty.txt"] == "empty file"
    assert reasons["dangling.md"] == "broken symbolic link"
    assert "PDF" in reasons["broken.pdf"]
    assert sorted(_consistent(hash_engine)) == ["good.md", "runbook.pdf"]
    pages = {
        n.metadata["page"]
        for n in hash_engine.store.query(_query(hash_engine, "on-call SEV1 handoff")).nodes
    }
    assert pages <= {1, 2}
    assert pages


def test_unreadable_file_keeps_its_indexed_chunks(hash_engine: Engine, docs: Docs) -> None:
    root = docs({"a.md": "# A\nAlpha.\n"})
    ingest([root], hash_engine)
    (root / "a.md").write_bytes(b"")  # now empty: reported, but what is stored is not lost
    report = ingest([root], hash_engine)
    assert [p.path for p in report.problems] == ["a.md"]
    assert _consistent(hash_engine) == {"a.md": 1}


class _FailingEmbedding(HashEmbedding):
    fail_after: int = 1

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        if self.calls >= self.fail_after:
            raise ProviderError("embedding endpoint went away")
        return super()._get_text_embeddings(texts)


def test_a_failure_mid_run_leaves_no_file_partly_indexed(settings: Settings, docs: Docs) -> None:
    files = {
        f"f{i:02}.md": "\n\n".join(f"# Part {j}\nText {i} {j}." for j in range(12))
        for i in range(12)
    }
    root = docs(files)
    embedder = _FailingEmbedding(embed_batch_size=16, fail_after=6)
    with open_engine(settings, purpose="write", embedder=embedder) as engine:
        with pytest.raises(ProviderError):
            ingest([root], engine)
        done = _consistent(engine)
    assert 0 < len(done) < len(files)
    with open_engine(
        settings, purpose="write", embedder=HashEmbedding(embed_batch_size=16)
    ) as engine:
        report = ingest([root], engine)
        assert len(report.added) == len(files) - len(done)
        assert len(_consistent(engine)) == len(files)


def test_missing_path_is_a_usage_error(hash_engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        ingest([tmp_path / "nope"], hash_engine)


def test_single_file_root(hash_engine: Engine, docs: Docs) -> None:
    root = docs(SECTIONS)
    report = ingest([root / "notes.txt"], hash_engine)
    assert report.added == ("notes.txt",)
    report = ingest([root / "notes.txt"], hash_engine)
    assert report.unchanged == 1


def test_other_embedder_or_chunking_is_refused(
    settings: Settings, make_settings: Callable[..., Settings], docs: Docs
) -> None:
    with open_engine(settings, purpose="write", embedder=HashEmbedding()) as engine:
        ingest([docs(SECTIONS)], engine)
    with (
        pytest.raises(StoreMismatch, match="dim"),
        open_engine(settings, embedder=HashEmbedding(dim=32)),
    ):
        pass
    other_chunks = make_settings(ingest={"chunk_size": 256})
    with (
        pytest.raises(StoreMismatch, match="chunk_size"),
        open_engine(other_chunks, purpose="write", embedder=HashEmbedding()),
    ):
        pass
    # Reading does not depend on chunking settings.
    with open_engine(other_chunks, purpose="read", embedder=HashEmbedding()) as engine:
        assert engine.shard.count() > 0
    with open_engine(
        other_chunks, purpose="write", rebuild=True, embedder=HashEmbedding()
    ) as engine:
        assert engine.shard.count() == 0


def test_second_writer_is_refused_as_busy(hash_engine: Engine, settings: Settings) -> None:
    """A second writer is refused at once (readers are served by the writer: tests/test_remote.py)."""
    with (
        pytest.raises(StoreBusy, match="busy"),
        open_engine(settings, purpose="write", embedder=HashEmbedding()),
    ):
        pass
    assert hash_engine.shard.count() == 0  # the first opener still works


def test_embedding_cache_makes_a_rebuild_free(
    settings: Settings, docs: Docs, tmp_path: Path
) -> None:
    root = docs(SECTIONS)
    embedder = HashEmbedding()
    cache = EmbeddingCache(tmp_path / "cache.sqlite3", embedder.fingerprint)
    with open_engine(settings, purpose="write", embedder=embedder) as engine:
        first = ingest([root], engine, cache=cache)
    with open_engine(settings, purpose="write", rebuild=True, embedder=embedder) as engine:
        again = ingest([root], engine, cache=cache)
    cache.close()
    assert first.chunks_embedded > 0
    assert again.chunks_embedded == 0
    assert again.chunks_reused == first.chunks_written


def test_sources_and_forget(hash_engine: Engine, docs: Docs) -> None:
    root = docs({**SECTIONS, "sub/a.md": "# A\nAlpha.\n"})
    ingest([root], hash_engine)
    files = list_sources(hash_engine)
    assert [f.path for f in files] == sorted(f.path for f in files)
    assert {f.path for f in files} == {*SECTIONS, "sub/a.md"}
    assert all(f.chunks > 0 and f.indexed_at for f in files)
    report = forget([root / "sub"], hash_engine)
    assert report.removed == ("sub/a.md",)
    report = forget([root / "notes.txt"], hash_engine)
    assert report.removed == ("notes.txt",)
    assert {f.path for f in list_sources(hash_engine)} == {"guide.md", "中文.md"}
    assert (root / "notes.txt").exists()


def _summary(report: IngestReport) -> tuple[int, int, int]:
    return len(report.added), len(report.changed), report.unchanged


def test_dry_run_before_the_first_ingest_creates_nothing(settings: Settings, docs: Docs) -> None:
    from core.ingest import run_ingest

    root = docs(SECTIONS)
    plan = run_ingest(settings, [root], dry_run=True, embedder=HashEmbedding())
    assert sorted(plan.added) == sorted(SECTIONS)
    assert not settings.kb_dir().exists()


def test_dry_run_and_rebuild_do_not_combine(settings: Settings, docs: Docs) -> None:
    from core.ingest import run_ingest

    with pytest.raises(ConfigError, match="cannot be combined"):
        run_ingest(settings, [docs(SECTIONS)], dry_run=True, rebuild=True, embedder=HashEmbedding())


def test_legacy_encodings_and_code_are_indexed_as_text(hash_engine: Engine, docs: Docs) -> None:
    root = docs(
        {
            "gbk.txt": "备份在每天凌晨三点运行，保留十四天。".encode("gbk") * 2,
            "utf16.txt": "磁盘使用率超过百分之八十五时告警。".encode("utf-16"),
            "bom.md": "\ufeff# 标题\n回收站保留六十天。\n".encode(),
            "guide.rst": "Guide\n=====\n\nThe sync interval is 15 seconds.\n",
            "server.py": "def port() -> int:\n    return 8743\n",
        }
    )
    report = ingest([root], hash_engine)
    assert sorted(report.added) == ["bom.md", "gbk.txt", "guide.rst", "server.py", "utf16.txt"]
    assert not report.problems
    for query, path in [
        ("凌晨 备份", "gbk.txt"),
        ("磁盘 告警", "utf16.txt"),
        ("回收站", "bom.md"),
        ("8743", "server.py"),
    ]:
        hits = hash_engine.store.query(_query(hash_engine, query, mode="sparse"))
        assert hits.nodes[0].metadata["path"] == path, query


def test_a_narrower_filter_never_deletes_what_is_indexed(
    make_settings: Callable[..., Settings], docs: Docs
) -> None:
    root = docs(SECTIONS)
    with open_engine(make_settings(), purpose="write", embedder=HashEmbedding()) as engine:
        ingest([root], engine)
    narrow = make_settings(ingest={"include": ["*.md"]})
    with open_engine(narrow, purpose="write", embedder=HashEmbedding()) as engine:
        report = ingest([root], engine)
        assert report.deleted == ()
        assert "notes.txt" in _consistent(engine)  # filtered out, still on disk: kept
        (root / "notes.txt").unlink()
        assert ingest([root], engine).deleted == ("notes.txt",)  # gone from disk: removed


def test_gitignore_follows_git_precedence(hash_engine: Engine, docs: Docs) -> None:
    root = docs(
        {
            ".gitignore": "*.log\nbuild/\n",
            "sub/.gitignore": "!keep.log\n",
            "sub/keep.log": "kept log line\n",
            "sub/drop.log": "dropped\n",
            "sub/build/gen.md": "# Generated\n",
            "a.md": "# A\n",
        }
    )
    (root / ".git").mkdir()
    assert sorted(ingest([root], hash_engine).added) == ["a.md", "sub/keep.log"]
    # Ingesting the subfolder alone still honours the .gitignore files above it.
    assert ingest([root / "sub"], hash_engine).added == ()


def test_same_bytes_with_a_new_mtime_are_hashed_once(hash_engine: Engine, docs: Docs) -> None:
    root = docs(SECTIONS)
    ingest([root], hash_engine)
    os.utime(root / "notes.txt", ns=(10**18, 10**18))
    assert ingest([root], hash_engine).unchanged == 3
    record = next(r for r in hash_engine.shard.records() if r["path"] == "notes.txt")
    assert record["mtime_ns"] == 10**18


def test_nested_roots_count_once(hash_engine: Engine, docs: Docs) -> None:
    root = docs({**SECTIONS, "sub/empty.md": ""})
    report = ingest([root / "sub", root, root / "sub"], hash_engine)
    assert report.roots == (str(root),)
    assert [p.path for p in report.problems] == ["sub/empty.md"]
    assert {r["root"] for r in hash_engine.shard.records()} == {str(root)}


def test_a_path_that_cannot_be_checked_is_not_taken_as_deleted(tmp_path: Path) -> None:
    from core.ingest.plan import _gone

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "file").write_text("x")
    assert _gone(tmp_path / "missing.md")
    assert _gone(tmp_path / "file" / "below-a-file.md")
    assert not _gone(tmp_path / "loop" / "a.md")  # ELOOP: unknown, so kept
    assert not _gone(tmp_path / "file")


def _points(engine: Engine) -> dict[str, tuple[Any, ...]]:
    return {
        p.id: (
            p.payload["path"],
            p.payload["chunk_index"],
            p.payload["text"],
            p.payload["file_hash"],
        )
        for p in engine.shard.points("chunk")
    }


def test_large_files_are_written_in_windows_with_the_same_result(
    settings: Settings,
    make_settings: Callable[..., Settings],
    docs: Docs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file of more than LARGE_FILE_CHUNKS chunks goes in staged windows: same chunks as at once,
    reused vectors on a change, and a failure midway leaves the old version whole and visible."""
    import qdrant_edge as qe

    import core.ingest.pipeline

    long = "\n\n".join(f"# Part {j}\nText of part {j}, on topic {j * 7}." for j in range(20))
    root = docs({"big.md": long, "small.md": "# Small\nA small file."})
    with open_engine(settings, purpose="write", embedder=HashEmbedding()) as engine:
        ingest([root], engine)
        at_once = _points(engine)
    assert len({path for path, *_ in at_once.values()}) == 2
    monkeypatch.setattr(core.ingest.pipeline, "LARGE_FILE_CHUNKS", 4)
    monkeypatch.setattr(core.ingest.pipeline, "LARGE_WINDOW", 3)
    windowed = make_settings(kb={"name": "windowed"})
    cache = EmbeddingCache(tmp_path / "cache.sqlite3", HashEmbedding().fingerprint)
    with open_engine(windowed, purpose="write", embedder=HashEmbedding()) as engine:
        report = ingest([root], engine, cache=cache)
        assert _points(engine) == at_once
        assert report.chunks_written == len(at_once)
        assert _consistent(engine)["big.md"] == 20

    (root / "big.md").write_text(long.replace("Part 3\n", "Part three\n"), encoding="utf-8")
    failing = _FailingEmbedding(embed_batch_size=1, fail_after=0)
    with open_engine(windowed, purpose="write", embedder=failing) as engine:
        with pytest.raises(ProviderError):
            ingest([root], engine, cache=cache)  # window 1 holds part three: its embedding fails
        assert isinstance(engine.shard, EdgeShardStore)
        assert _points(engine) == at_once  # the old version, whole; nothing staged is visible
        everything = engine.shard.client.count(qe.CountRequest(exact=True))
        assert everything == len(at_once) + 2 + 3  # two records, and window 0 staged, hidden
    with open_engine(windowed, purpose="write", embedder=HashEmbedding()) as engine:
        report = ingest([root], engine, cache=cache)
        assert report.changed == ("big.md",)
        assert report.chunks_embedded == 1  # the other 19 chunks came from the cache
        assert _consistent(engine)["big.md"] == 20
        assert isinstance(engine.shard, EdgeShardStore)
        hits = engine.store.query(_query(engine, "Part three", "sparse"))
        assert hits.nodes is not None
        assert "Part three" in hits.nodes[0].get_content()
        everything = engine.shard.client.count(qe.CountRequest(exact=True))
        assert everything == len(at_once) + 2  # the staged leftovers are gone
    cache.close()


def test_progress_counts_the_planned_chunks_and_ends_exact(hash_engine: Engine, docs: Docs) -> None:
    """Ticks count chunks of the files to write (embedded or reused) against a total that is
    exact once the read-ahead has read every file; the last tick is complete and exact."""
    from core.results import IngestProgress

    files = {f"note-{i}.md": f"# Note {i}\n\n" + "A sentence about ports. " * 60 for i in range(6)}
    ticks: list[IngestProgress] = []
    report = ingest([docs(files)], hash_engine, on_progress=ticks.append)
    embeds = [t for t in ticks if t.phase == "embed"]
    assert embeds
    assert all(0 < t.chunks_done <= t.chunks_total for t in embeds if not t.chunks_estimated)
    assert all(t.chunks_total > 0 and t.chunks_embedded > 0 for t in embeds)
    last = ticks[-1]
    assert not last.chunks_estimated
    assert last.chunks_done == last.chunks_total == report.chunks_written
    assert last.files_done == last.files_total == 6


def test_a_failing_read_ahead_is_raised_in_the_ingest(
    hash_engine: Engine, docs: Docs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the read-ahead thread is not lost in it: the ingest fails with it, and files read
    before it are whole."""
    import core.ingest.pipeline as pipeline

    real_read = pipeline._read

    def read(candidate: Any, digest: Any, engine: Engine, *rest: Any) -> Any:
        if candidate.rel_path == "notes.txt":
            raise RuntimeError("read-ahead bug")
        return real_read(candidate, digest, engine, *rest)

    monkeypatch.setattr(pipeline, "_read", read)
    with pytest.raises(RuntimeError, match="read-ahead bug"):
        ingest([docs(SECTIONS)], hash_engine)
    _consistent(hash_engine)
