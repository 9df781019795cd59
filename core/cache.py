"""An embedding cache keyed by (model, text hash), so the same text is never embedded twice."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def text_hash(text: str) -> str:
    """The cache key of a text: a 128-bit BLAKE2b digest."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class EmbeddingCache:
    """SQLite table of float32 vectors; safe to share between knowledge bases and processes."""

    def __init__(self, path: Path, model: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        path.chmod(0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings ("
            " model TEXT NOT NULL, hash TEXT NOT NULL, vector BLOB NOT NULL,"
            " PRIMARY KEY (model, hash)) WITHOUT ROWID"
        )
        self._model = model

    def get_many(self, hashes: Iterable[str]) -> dict[str, list[float]]:
        """The cached vectors among `hashes`."""
        found: dict[str, list[float]] = {}
        keys = list(dict.fromkeys(hashes))
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                f"SELECT hash, vector FROM embeddings WHERE model = ? AND hash IN ({marks})",
                (self._model, *batch),
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32).tolist()
        return found

    def put_many(self, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        """Store vectors by text hash."""
        self._db.executemany(
            "INSERT OR REPLACE INTO embeddings (model, hash, vector) VALUES (?, ?, ?)",
            [(self._model, key, np.asarray(vec, dtype=np.float32).tobytes()) for key, vec in items],
        )

    def close(self) -> None:
        """Close the database."""
        self._db.close()
