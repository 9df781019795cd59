"""Crash safety: `kb ingest` killed with SIGKILL at random moments never leaves a file half-indexed,
and re-running it ends in exactly the knowledge base a clean ingest builds.

Real processes, real Qdrant Edge on disk, the real embedding cache; only the embedder is the hash
double (tests/crash_ingest.py), so the many runs stay quick.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge as qe

from core.config import load_settings
from core.engine import open_engine
from core.ingest.pipeline import CHUNK_NAMESPACE
from stores.shard import EdgeShardStore
from tests.kbcopy import copy_kb

REPO = Path(__file__).resolve().parents[1]
KILLS = 22


def _env(home: Path, delay: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "OPENAI_"))}
    env.update(
        KB_KB__HOME=str(home),
        KB_EMBEDDING__PROVIDER="local",  # the hash embedder stands in at local's size (384)
        KB_EMBEDDING__BATCH_SIZE="4",
        KB_STORE__INDEX_AFTER="100",  # the store indexes (HNSW) every 200 chunks and at the end
        CRASH_TEST_EMBED_DELAY=str(delay),
        PYTHONPATH=str(REPO),
    )
    return env


def _ingest(docs: Path, home: Path, kb: str = "default", delay: float = 0.0) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.crash_ingest", "ingest", str(docs), "--kb", kb, "--json"],
        env=_env(home, delay),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr


def _killed_ingest(
    docs: Path, home: Path, trace: Path, writes: int, jitter: float, delay: float
) -> bool:
    """Start an ingest and SIGKILL it `jitter` seconds after its `writes`-th store write (with 0,
    `jitter` seconds after it starts); False if it finished first."""
    trace.write_bytes(b"")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_ingest", "ingest", str(docs), "--json"],
        env={**_env(home, delay), "CRASH_TEST_TRACE": str(trace)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while writes and trace.stat().st_size < writes and process.poll() is None:
            time.sleep(0.002)
        time.sleep(jitter)
        finished = process.poll() is not None
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    return not finished


def _snapshot(home: Path, kb: str = "default") -> dict[str, Any]:
    """Files and chunks as stored, after checking that no file is partly indexed."""
    settings = load_settings(environ={}, overrides={"kb": {"home": str(home), "name": kb}}).settings
    if not (settings.kb_dir() / "collection.json").exists():
        return {"files": {}, "chunks": {}, "count": 0, "staged": 0}
    with open_engine(settings, purpose="manage") as engine:
        records = {str(p.payload["doc_id"]): p.payload for p in engine.shard.points("file")}
        chunks = [(p.id, p.payload) for p in engine.shard.points("chunk")]
        assert isinstance(engine.shard, EdgeShardStore)
        every_point = engine.shard.client.count(qe.CountRequest(exact=True))  # staged too
    by_doc: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for chunk_id, payload in chunks:
        by_doc.setdefault(str(payload["doc_id"]), []).append((chunk_id, payload))
    assert set(by_doc) <= set(records), (
        f"chunks without a file record: {set(by_doc) - set(records)}"
    )
    for doc_id, record in records.items():
        stored = by_doc.get(doc_id, [])
        indexes = sorted(int(p["chunk_index"]) for _, p in stored)
        assert indexes == list(range(int(record["chunks"]))), f"{doc_id} is partly indexed"
        for chunk_id, payload in stored:
            assert payload["file_hash"] == record["file_hash"], f"{doc_id} mixes two versions"
            expected = _chunk_id(doc_id, str(record["file_hash"]), int(payload["chunk_index"]))
            assert chunk_id == expected
    return {
        "files": {
            str(r["path"]): (r["file_hash"], r["chunks"], r["root"]) for r in records.values()
        },
        "chunks": {
            chunk_id: (p["path"], p["chunk_index"], p["text"], p["chunk_hash"])
            for chunk_id, p in chunks
        },
        "count": len(chunks),
        "staged": every_point - len(chunks) - len(records),  # a killed large file's hidden windows
    }


def _finish_and_compare_with_a_clean_ingest(
    docs: Path, home: Path, delay: float = 0.0
) -> dict[str, Any]:
    """Re-run the killed ingest to the end, then check it equals a clean ingest of the same folder."""
    _ingest(docs, home, delay=delay)
    after_kills = _snapshot(home)
    _ingest(docs, home, kb="clean")
    clean = _snapshot(home, "clean")
    assert after_kills["files"] == clean["files"]
    assert after_kills["chunks"] == clean["chunks"]
    assert after_kills["count"] == clean["count"] == len(clean["chunks"])
    assert after_kills["staged"] == clean["staged"] == 0
    return clean


def _chunk_id(doc_id: str, file_hash: str, index: int) -> str:
    import uuid

    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\n{file_hash}\n{index}"))


def _write_folder(root: Path, rng: random.Random) -> None:
    words = [f"w{i}" for i in range(400)] + ["知识", "检索", "向量", "文档", "回答", "问题"]
    for i in range(300):
        folder = root / f"part-{i % 6}"
        folder.mkdir(parents=True, exist_ok=True)
        sections = rng.choice([1, 1, 1, 2, 4])  # mostly one chunk, some files of several
        body = "\n\n".join(
            f"## Section {s}\n\n"
            + " ".join(f"{' '.join(rng.choices(words, k=rng.randint(6, 14)))}." for _ in range(30))
            for s in range(sections)
        )
        (folder / f"note-{i}.md").write_text(f"# Note {i}\n\n{body}\n", encoding="utf-8")


def _mutate(root: Path, rng: random.Random, round_: int) -> None:
    """Change, rename, move, delete and add files, as between two real ingests."""
    files = sorted(root.rglob("*.*"))
    rng.shuffle(files)
    for path in files[:40]:
        path.write_text(path.read_text(encoding="utf-8") + f"\nAdded in round {round_}.\n")
    for path in files[40:60]:
        path.rename(path.with_name(f"r{round_}-{path.name}"))
    for path in files[60:70]:
        path.rename(root / "part-0" / f"m{round_}-{path.parent.name}-{path.name}")
    for path in files[70:80]:
        path.unlink()
    new = root / f"new-{round_}"
    new.mkdir()
    for i in range(100):
        text = " ".join(f"Added file {i} of round {round_}, sentence {j}." for j in range(40 + i))
        (new / f"added-{i}.txt").write_text(text, encoding="utf-8")


def test_sigkill_at_random_moments_never_loses_or_duplicates_anything(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    docs = tmp_path / "docs"
    _write_folder(docs, rng)
    home = tmp_path / "home"
    trace = tmp_path / "writes"
    delay = 0.002  # per batch of 4 chunks: the store writes come between embedding batches

    # Round 1 builds the knowledge base, later rounds follow changes to the folder (edits, renames,
    # moves, deletions, new files). Each kill lands after a random number of store writes plus a
    # random few milliseconds (inside a write, between writes, while embedding), or during start-up.
    # A run that finishes before its kill ends the round.
    killed = 0
    for round_ in range(6):
        if round_:
            _mutate(docs, rng, round_)
        most_writes = 60 if round_ == 0 else 40
        while killed < KILLS:
            writes = rng.choice([0, *range(1, most_writes)])
            jitter = rng.uniform(0.2, 2.5) if writes == 0 else rng.uniform(0, 0.02)
            finished = not _killed_ingest(docs, home, trace, writes, jitter, delay)
            _snapshot(home)  # every state a kill leaves: each file whole or absent
            if finished:
                break
            killed += 1
    assert killed == KILLS
    assert round_ > 0, "the kills never reached a change to the folder"

    clean = _finish_and_compare_with_a_clean_ingest(docs, home, delay)
    assert len(clean["files"]) == len(list(docs.rglob("*.*")))


def test_a_kill_while_the_store_indexes_loses_nothing(tmp_path: Path) -> None:
    """Qdrant Edge's optimizer rewrites segments (HNSW graph, int8 copies, merges): kills landing
    while it runs leave every file whole or absent, and the next ingest ends where a clean one does."""
    rng = random.Random(20261125)
    docs = tmp_path / "docs"
    _write_folder(docs, rng)
    home = tmp_path / "home"
    marks = tmp_path / "indexing"
    during = finished = 0
    for _ in range(30):
        marks.write_bytes(b"")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_ingest", "ingest", str(docs), "--json"],
            env={**_env(home, 0.0), "CRASH_TEST_INDEX_TRACE": str(marks)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not marks.read_bytes() and process.poll() is None:
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.03))
            state = marks.read_bytes()
        finally:
            process.send_signal(signal.SIGKILL)
            returncode = process.wait()
        if returncode == 0:
            finished += 1
            break
        during += state.count(b"(") > state.count(b")")  # killed inside optimize()
        _snapshot(home)
        if during >= 5:
            break
    assert during >= 3, "too few kills landed while the store was indexing"

    _finish_and_compare_with_a_clean_ingest(docs, home)
    assert list(home.glob("default/shard/segments/*/vector_index-dense/graph.bin"))  # HNSW built


class _Killed(BaseException):
    """Stands for the process dying: nothing in kb catches a BaseException."""


def test_a_crash_at_every_store_write_leaves_each_file_whole_or_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic complement of the random kills: an ingest that changes, adds, renames and
    deletes files (large ones through staged windows) is stopped after each of its store writes in
    turn; every state is checked, and finishing the run gives what a clean ingest gives."""
    import core.ingest.pipeline
    from core.ingest import run_ingest
    from tests.fakes import HashEmbedding

    monkeypatch.setattr(core.ingest.pipeline, "LARGE_FILE_CHUNKS", 3)
    monkeypatch.setattr(core.ingest.pipeline, "LARGE_WINDOW", 2)
    sections = "\n\n".join(
        f"## Part {j}\n\nText of part {j} about topic {j * 3}." for j in range(7)
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("big-a.md", "big-b.md", "big-c.md"):
        (docs / name).write_text(f"# {name}\n\n{sections}\n", encoding="utf-8")
    for name in ("small-a.md", "small-b.md", "small-c.md"):
        (docs / name).write_text(f"# {name}\n\nA short note.\n", encoding="utf-8")
    base = tmp_path / "base"
    settings = load_settings(environ={}, overrides={"kb": {"home": str(base)}}).settings
    run_ingest(settings, [docs], embedder=HashEmbedding(dim=384))

    (docs / "big-a.md").write_text(f"# big-a.md\n\n{sections}\n\n## More\n\nNew text.\n")
    (docs / "small-a.md").write_text("# small-a.md\n\nA changed note.\n", encoding="utf-8")
    (docs / "big-b.md").rename(docs / "big-b-renamed.md")
    (docs / "small-b.md").unlink()
    (docs / "big-new.md").write_text(f"# big-new.md\n\n{sections.replace('Text', 'Words')}\n")
    clean_home = tmp_path / "clean"
    clean = load_settings(environ={}, overrides={"kb": {"home": str(clean_home)}}).settings
    run_ingest(clean, [docs], embedder=HashEmbedding(dim=384))
    expected = _snapshot(clean_home)

    original = EdgeShardStore._write
    for kill_at in range(1, 200):
        home = tmp_path / f"kill-{kill_at}"
        copy_kb(base, home)
        settings = load_settings(environ={}, overrides={"kb": {"home": str(home)}}).settings
        writes = 0

        def dying_write(self: EdgeShardStore, operation: Any, stop: int = kill_at) -> None:
            nonlocal writes
            writes += 1
            if writes == stop:
                raise _Killed
            original(self, operation)

        monkeypatch.setattr(EdgeShardStore, "_write", dying_write)
        try:
            run_ingest(settings, [docs], embedder=HashEmbedding(dim=384))
            finished = True
        except _Killed:
            finished = False
        monkeypatch.setattr(EdgeShardStore, "_write", original)
        _snapshot(home)  # each file whole or absent
        if kill_at % 4 == 0 or finished:  # finishing from every state would double the time
            run_ingest(settings, [docs], embedder=HashEmbedding(dim=384))
            after = _snapshot(home)
            assert after["files"] == expected["files"], kill_at
            assert after["chunks"] == expected["chunks"], kill_at
            assert after["staged"] == 0
        shutil.rmtree(home)
        if finished:
            break
    assert 10 < kill_at < 199, "the run had too few or too many writes to stop it at each"
