"""What travels between an ingest serving reads and the readers (`stores.remote`): frames of a
4-byte length and plain JSON (never pickle: a socket's bytes are not trusted), hits as
[id, score, payload], a Search as its fields."""

from __future__ import annotations

import dataclasses
import json
import socket
import struct
from typing import Any

from stores.contract import Hit, Search

FRAME_LIMIT = 1 << 30


class Gone(Exception):
    """The connection ended: the serving process closed the store or died."""


# -- frames ----------------------------------------------------------------------------------------


def send_frame(sock: socket.socket, message: Any) -> None:
    data = json.dumps(message, separators=(",", ":")).encode("utf-8")
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv_frame(sock: socket.socket, limit: int = FRAME_LIMIT) -> Any:
    header = _exactly(sock, 4)
    (size,) = struct.unpack(">I", header)
    if size > limit:
        raise ValueError(f"a frame of {size} bytes (at most {limit})")
    return json.loads(_exactly(sock, size).decode("utf-8"))


def _exactly(sock: socket.socket, size: int) -> bytes:
    parts: list[bytes] = []
    while size:
        part = sock.recv(min(size, 1 << 20))
        if not part:
            raise Gone("connection closed")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


# -- what travels: Hits as [id, score, payload], a Search as its fields ---------------------------


def hit_rows(hits: list[Hit]) -> list[list[Any]]:
    return [[h.id, h.score, h.payload] for h in hits]


def rows_to_hits(rows: list[list[Any]]) -> list[Hit]:
    return [Hit(str(i), float(s), p) for i, s, p in rows]


def search_from_row(row: dict[str, Any]) -> Search:
    fields = {f.name for f in dataclasses.fields(Search)}
    return Search(**{k: v for k, v in row.items() if k in fields})


def search_to_row(search: Search) -> dict[str, Any]:
    row = dataclasses.asdict(search)
    for key in ("vector", "ids"):
        if row[key] is not None:
            row[key] = list(row[key])
    return row
