"""Reading a knowledge base that another local process is writing: the writer serves the read half of
`stores.contract.Store` over a Unix-domain socket, and `RemoteStore` forwards a reader's calls to it.

Qdrant Edge lets one process open a shard (its WAL is locked), so a long `kb ingest` would otherwise
make every question wait. The ingest runs a `ReadServer` beside its writes: a background thread
that answers read calls on the same open shard, one call at a time with the writes (`guard`, the
store's lock), so a reader sees each file whole or absent, exactly as a direct reader would.

Rendezvous: `serve.json` in the knowledge base's folder (0600, the folder is 0700) names the socket
(`serve.sock` beside it, or in a private temporary folder when that path is too long for a socket)
and a random key. A client proves it can read that file by sending the key first; the server
compares it in constant time and hangs up on a wrong one. Frames are a 4-byte big-endian length and
UTF-8 JSON, never pickle, and only the read methods listed in `_READS` can be called, plus the
calls the writer's caller adds (`ReadServer.start(..., calls=...)`, e.g. embedding a question with
the model the ingest has loaded): those run outside `guard`, and the greeting names them, so a
reader knows what an older writer does not offer (`RemoteStore.call` raises `NotServed`). A killed
writer leaves `serve.json` and the socket behind: connecting then fails (nobody listens) and the
reader opens the shard itself, whose lock the kernel released; the next writer replaces both.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from stores.contract import (
    ChunkPoint,
    Conditions,
    Hit,
    Search,
    Store,
    StoredPoint,
    StoreLocked,
)
from stores.points import OneSearch, check_meta
from stores.wire import (
    Gone,
    hit_rows,
    recv_frame,
    rows_to_hits,
    search_from_row,
    search_to_row,
    send_frame,
)

SERVE_FILE = "serve.json"
SOCKET_NAME = "serve.sock"
PROTOCOL = 1
_MAX_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_HELLO_LIMIT = 4096  # bytes a client may send before it has proven it holds the key
_HELLO_SECONDS = 5.0
_TEMP_PREFIX = "kb-serve-"


class RemoteError(Exception):
    """The serving process failed a call (its message is the server's)."""


class NotServed(Exception):
    """The writer does not offer this call (an older writer), or no longer serves this reader."""


Call = Callable[[dict[str, Any]], Any]  # an extra call: decoded arguments -> a JSON-able result


# The calls a reader may make: name -> (run it on the store with the decoded arguments).
_READS: dict[str, Callable[[Store, dict[str, Any]], Any]] = {
    "records": lambda s, a: s.records(),
    "chunk_payloads": lambda s, a: s.chunk_payloads(tuple(a["fields"])),
    "document_vectors": lambda s, a: s.document_vectors(str(a["doc_id"])),
    "count": lambda s, a: s.count(str(a["kind"])),
    "search": lambda s, a: hit_rows(s.search(**a)),
    "search_many": lambda s, a: [
        hit_rows(h) for h in s.search_many([search_from_row(r) for r in a["searches"]])
    ],
    "payloads": lambda s, a: s.payloads([str(i) for i in a["ids"]]),
    "facet": lambda s, a: [[k, n] for k, n in s.facet(str(a["key"]), a["conditions"]).items()],
    "neighbours": lambda s, a: hit_rows(s.neighbours(str(a["doc_id"]), list(a["indices"]))),
}


# -- the writer's side ----------------------------------------------------------------------------


class ReadServer:
    """Serves the read calls of other local processes on `store`, in background threads, each call
    under `guard` (the lock the writer's own calls take); and the extra `calls`, outside it (they
    must not touch the store, and may run beside the writer's own work)."""

    def __init__(
        self, store: Store, guard: Any, kb_dir: Path, calls: Mapping[str, Call] | None = None
    ) -> None:
        self.store = store
        self.guard = guard
        self.kb_dir = kb_dir
        self.calls = dict(calls or {})
        if clash := set(self.calls) & set(_READS):
            raise ValueError(f"extra calls named like store reads: {sorted(clash)}")
        self.key = secrets.token_hex(32)
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._temp_dir: Path | None = None
        _remove_stale(kb_dir)  # the caller holds the knowledge base's lock
        self.address = self._address()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(self.address)
            os.chmod(self.address, 0o600)
            self._listener.listen(16)
            self._listener.settimeout(0.2)  # how often the accept loop looks at `_stop`
            info = {"socket": self.address, "key": self.key, "pid": os.getpid(), "v": PROTOCOL}
            _write_private(kb_dir / SERVE_FILE, json.dumps(info))
        except BaseException:
            self._listener.close()
            self._remove_files()
            raise
        self._accepting = threading.Thread(target=self._accept, name="kb-read-server", daemon=True)
        self._accepting.start()

    @classmethod
    def start(
        cls, store: Store, guard: Any, kb_dir: Path, calls: Mapping[str, Call] | None = None
    ) -> ReadServer:
        """Serve `store` (and `calls`: name -> function of the call's arguments) from now on
        (until `close`)."""
        return cls(store, guard, kb_dir, calls)

    def close(self) -> None:
        """Stop serving: no new connection, open ones are hung up on (their readers then open the
        shard themselves once its lock is free), and the rendezvous files go."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._remove_files()  # first: a new reader no longer finds the socket
        self._accepting.join()
        self._listener.close()
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=10)

    def _address(self) -> str:
        path = str(self.kb_dir / SOCKET_NAME)
        if len(path.encode()) <= _MAX_PATH:
            return path
        self._temp_dir = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))  # 0700
        return str(self._temp_dir / SOCKET_NAME)

    def _remove_files(self) -> None:
        with contextlib.suppress(OSError):
            served = json.loads((self.kb_dir / SERVE_FILE).read_text(encoding="utf-8"))
            if served.get("key") == self.key:
                (self.kb_dir / SERVE_FILE).unlink()
        with contextlib.suppress(OSError):
            os.unlink(self.address)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="kb-read-conn", daemon=True
            )
            with self._conns_lock:
                self._conns.add(conn)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(_HELLO_SECONDS)
            hello = recv_frame(conn, _HELLO_LIMIT)
            key = hello.get("key") if isinstance(hello, dict) else None
            if not isinstance(key, str) or not hmac.compare_digest(key, self.key):
                send_frame(conn, {"error": "bad key"})
                return
            greeting = {"meta": self.store.meta, "v": PROTOCOL, "calls": sorted(self.calls)}
            send_frame(conn, {"ok": greeting})
            conn.settimeout(None)
            while not self._stop.is_set():
                request = recv_frame(conn)
                send_frame(conn, self._answer(request))
        except (Gone, OSError, ValueError):
            return  # the reader left, broke the protocol, or we are closing
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            conn.close()

    def _answer(self, request: Any) -> dict[str, Any]:
        method = request.get("method") if isinstance(request, dict) else None
        extra = self.calls.get(method) if isinstance(method, str) else None
        if extra is not None:
            try:  # not under `guard`: the writer goes on writing meanwhile
                return {"ok": extra(dict(request.get("args") or {}))}
            except Exception as err:
                return {"error": f"{type(err).__name__}: {err}"}
        run = _READS.get(method) if isinstance(method, str) else None
        if run is None:
            return {"error": f"not a read call: {method!r}"}
        try:
            with self.guard:
                if self._stop.is_set():
                    raise Gone("closing")
                return {"ok": run(self.store, dict(request.get("args") or {}))}
        except Gone:
            raise
        except Exception as err:  # the reader gets the failure; the writer goes on
            return {"error": f"{type(err).__name__}: {err}"}


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _remove_stale(kb_dir: Path) -> None:
    """What a killed writer left: its rendezvous file and socket (and the socket's temp folder)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        served = json.loads((kb_dir / SERVE_FILE).read_text(encoding="utf-8"))
        address = Path(str(served["socket"]))
        if address.parent == kb_dir:
            address.unlink(missing_ok=True)
        elif address.parent.name.startswith(_TEMP_PREFIX) and address.parent.parent == Path(
            tempfile.gettempdir()
        ):
            shutil.rmtree(address.parent, ignore_errors=True)
    with contextlib.suppress(OSError):
        (kb_dir / SERVE_FILE).unlink()
    with contextlib.suppress(OSError):
        (kb_dir / SOCKET_NAME).unlink()


# -- the reader's side ----------------------------------------------------------------------------


class RemoteStore(OneSearch):
    """The read half of `Store`, forwarded to the process that is writing the knowledge base.

    Writes refuse (`StoreLocked`: the knowledge base has a writer). When the writer finishes (or
    dies) mid-session, the next call opens the store again through `reopen` (directly once the
    lock is free) and is answered there: every read call is safe to repeat.
    """

    def __init__(
        self,
        sock: socket.socket,
        meta: dict[str, Any],
        reopen: Callable[[], Store] | None = None,
        calls: Sequence[str] = (),
    ) -> None:
        self.meta = meta
        self.dim = int(meta["dim"])
        self.calls = frozenset(calls)  # the extra calls the writer offers (see `call`)
        self._sock: socket.socket | None = sock
        self._reopen = reopen
        self._direct: Store | None = None
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        kb_dir: Path,
        meta: dict[str, Any],
        reopen: Callable[[], Store] | None = None,
        timeout: float = _HELLO_SECONDS,
    ) -> RemoteStore:
        """Connect to the writer serving `kb_dir` and check `meta` against what the knowledge base
        was built with. Raises `StoreLocked` when nobody serves it (or refuses this reader)."""
        try:
            served = json.loads((kb_dir / SERVE_FILE).read_text(encoding="utf-8"))
            address, key = str(served["socket"]), str(served["key"])
        except (OSError, ValueError, KeyError, TypeError):
            raise StoreLocked(str(kb_dir)) from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            send_frame(sock, {"key": key, "v": PROTOCOL})
            reply = recv_frame(sock)
            sock.settimeout(None)
        except (OSError, ValueError, Gone):
            sock.close()
            raise StoreLocked(str(kb_dir)) from None
        if not isinstance(reply, dict) or "ok" not in reply:
            sock.close()
            raise StoreLocked(f"{kb_dir}: the writer refused to serve ({reply.get('error')})")
        built = dict(reply["ok"]["meta"])
        offered = reply["ok"].get("calls")  # absent from an older writer's greeting
        calls = [c for c in offered if isinstance(c, str)] if isinstance(offered, list) else []
        try:
            check_meta(built, meta)
        except BaseException:
            sock.close()
            raise
        return cls(sock, built, reopen, calls)

    @property
    def client(self) -> Any:
        """The socket to the writer (or, after it finished, the store opened directly)."""
        return self._sock if self._direct is None else self._direct.client

    def close(self) -> None:
        """Hang up (or close the store opened after the writer finished). Safe to call twice."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._direct is not None:
                self._direct.close()
                self._direct = None

    # -- forwarding -----------------------------------------------------------------------------

    def call(self, name: str, args: dict[str, Any]) -> Any:
        """One of the extra calls the writer offers (`ReadServer.start(..., calls=...)`). Raises
        `NotServed` when it offers no such call (an older writer) or stopped serving, and
        `RemoteError` when the call failed there."""
        with self._lock:
            if name not in self.calls or self._direct is not None or self._sock is None:
                raise NotServed(name)
            answered, result = self._round_trip(name, args)
            if not answered:
                raise NotServed(name)
            return result

    def _round_trip(self, method: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """(True, the result) from the writer, or (False, None) when it hung up (under `_lock`)."""
        assert self._sock is not None
        try:
            send_frame(self._sock, {"method": method, "args": args})
            reply = recv_frame(self._sock)
        except (Gone, OSError):
            self._sock.close()
            self._sock = None
            return False, None
        if "error" in reply:
            raise RemoteError(str(reply["error"]))
        return True, reply["ok"]

    def _ask(self, method: str, args: dict[str, Any], direct: Callable[[Store], Any]) -> Any:
        with self._lock:
            if self._direct is None and self._sock is not None:
                answered, result = self._round_trip(method, args)
                if answered:
                    return result
            if self._direct is None:
                if self._reopen is None:
                    raise StoreLocked("the process writing the knowledge base stopped serving it")
                self._direct = self._reopen()
            return direct(self._direct)

    def records(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._ask("records", {}, lambda s: s.records())
        return result

    def chunk_payloads(
        self, fields: Sequence[str] = ("path", "text", "lang")
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._ask(
            "chunk_payloads", {"fields": list(fields)}, lambda s: s.chunk_payloads(fields)
        )
        return result

    def document_vectors(self, doc_id: str) -> dict[str, list[float]]:
        result: dict[str, list[float]] = self._ask(
            "document_vectors", {"doc_id": doc_id}, lambda s: s.document_vectors(doc_id)
        )
        return result

    def points(self, kind: str | None = None, *, vectors: bool = False) -> Iterator[StoredPoint]:
        """Copying a knowledge base needs it to itself."""
        raise StoreLocked("a knowledge base being written cannot be copied")

    def count(self, kind: str = "chunk") -> int:
        return int(self._ask("count", {"kind": kind}, lambda s: s.count(kind)))

    def search(
        self,
        *,
        limit: int,
        mode: str,
        dense: Sequence[float] | None = None,
        text: str | None = None,
        conditions: Conditions | None = None,
        exclude: Conditions | None = None,
    ) -> list[Hit]:
        args: dict[str, Any] = {
            "limit": limit,
            "mode": mode,
            "dense": None if dense is None else list(dense),
            "text": text,
            "conditions": conditions,
            "exclude": exclude,
        }
        hits = self._ask("search", args, lambda s: hit_rows(s.search(**args)))
        return rows_to_hits(hits)

    def search_many(self, searches: Sequence[Search]) -> list[list[Hit]]:
        rows = self._ask(
            "search_many",
            {"searches": [search_to_row(s) for s in searches]},
            lambda s: [hit_rows(h) for h in s.search_many(searches)],
        )
        return [rows_to_hits(r) for r in rows]

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        result: dict[str, dict[str, Any]] = self._ask(
            "payloads", {"ids": list(ids)}, lambda s: s.payloads(ids)
        )
        return result

    def facet(self, key: str, conditions: Conditions | None = None) -> dict[Any, int]:
        rows = self._ask(
            "facet",
            {"key": key, "conditions": conditions},
            lambda s: [[k, n] for k, n in s.facet(key, conditions).items()],
        )
        return {k: int(n) for k, n in rows}

    def neighbours(self, doc_id: str, indices: Sequence[int]) -> list[Hit]:
        hits = self._ask(
            "neighbours",
            {"doc_id": doc_id, "indices": list(indices)},
            lambda s: hit_rows(s.neighbours(doc_id, indices)),
        )
        return rows_to_hits(hits)

    # -- writing: the knowledge base has a writer already ----------------------------------------

    def _refuse(self) -> None:
        raise StoreLocked("the knowledge base is being written by another process")

    def upsert(self, chunks: Sequence[ChunkPoint]) -> None:
        self._refuse()

    def replace_document(
        self, doc_id: str, chunks: Sequence[ChunkPoint], record: dict[str, Any]
    ) -> None:
        self._refuse()

    def stage(self, doc_id: str, chunks: Sequence[ChunkPoint]) -> None:
        self._refuse()

    def commit_staged(self, doc_id: str, record: dict[str, Any]) -> None:
        self._refuse()

    def drop_staged(self, doc_id: str | None = None) -> None:
        self._refuse()

    def update_record(self, doc_id: str, fields: dict[str, Any]) -> None:
        self._refuse()

    def delete_document(self, doc_id: str) -> None:
        self._refuse()

    def delete_ids(self, ids: Sequence[str]) -> None:
        self._refuse()

    def delete_where(self, conditions: Conditions, exclude: Conditions | None = None) -> None:
        self._refuse()

    def put_points(self, points: Sequence[StoredPoint]) -> None:
        self._refuse()

    def optimize(self) -> bool:
        return False  # indexing is the writer's job

    def flush(self) -> None:
        return None  # nothing written here


_: type[Store] = RemoteStore  # mypy checks the reader against the declared contract
