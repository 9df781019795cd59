"""What a knowledge base's store is, declared once: the points that go in, the hits and points that
come out, the failures it raises, and `Store`, the methods both backends offer (the embedded
`stores.shard.EdgeShardStore` and the server's `stores.qdrant.QdrantStore`). Core types against
`Store`; mypy checks each backend against it. No client and no logic here: importing this module
loads neither Qdrant library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

SparseFn = Callable[[str], tuple[list[int], list[float]]]
Conditions = dict[str, Any]  # payload key -> value (or list of values: any of them)


class StoreLocked(Exception):
    """Another process has the knowledge base open."""


class StoreMissing(Exception):
    """No knowledge base exists at the path."""


class StoreUnavailable(Exception):
    """A store server could not be reached or refused a request (the server backend only)."""


class CollectionMismatch(Exception):
    """The knowledge base was built with other settings; `differences` names them."""

    def __init__(self, differences: dict[str, tuple[Any, Any]]) -> None:
        self.differences = differences
        detail = ", ".join(
            f"{k}: built with {old!r}, now {new!r}" for k, (old, new) in differences.items()
        )
        super().__init__(detail)


@dataclass(frozen=True)
class ChunkPoint:
    """A chunk to store: its id, dense vector, the text its keyword vector is made from, payload."""

    id: str
    doc_id: str
    vector: Sequence[float]
    sparse_text: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredPoint:
    """A point as stored: chunk or file record, with its vectors when asked for (to copy a store)."""

    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None
    sparse: tuple[list[int], list[float]] | None = None


@dataclass(frozen=True)
class Hit:
    """A search result: chunk id, score and payload."""

    id: str
    score: float
    payload: dict[str, Any]


COUNTED = Hit("", 0.0, {})  # every hit of a `count_only` search (read-only: shared)


@dataclass(frozen=True)
class Search:
    """One search of a batch over chunks: by dense `vector` (cosine) or keyword `text` (BM25-style),
    restricted by payload `conditions` and, when given, to `ids`."""

    limit: int
    vector: Sequence[float] | None = None
    text: str | None = None
    conditions: Conditions | None = None
    ids: Sequence[str] | None = None
    with_payload: bool = True
    rough: bool = False  # an approximate answer will do: indexed segments search a narrower beam
    # Only how many hits there are matters: each comes back as `COUNTED` (no id, score or payload).
    count_only: bool = False


class Store(Protocol):
    """One open knowledge base: chunk points (dense and sparse vectors, payload) and one vector-less
    record point per indexed file. A file's chunks and record are written so that a reader never
    sees half a file. Searches see committed chunks only (never staged ones, never records)."""

    meta: dict[str, Any]  # how the knowledge base was built: embedder, dim, chunking settings
    dim: int

    @property
    def client(self) -> Any:
        """The underlying client (a `qdrant_edge.EdgeShard` or a `QdrantClient`)."""

    # -- writing --------------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[ChunkPoint]) -> None:
        """Insert or overwrite chunks."""

    def replace_document(
        self, doc_id: str, chunks: Sequence[ChunkPoint], record: dict[str, Any]
    ) -> None:
        """Swap a document's chunks and record for new ones: it is never seen half-written."""

    def stage(self, doc_id: str, chunks: Sequence[ChunkPoint]) -> None:
        """Write part of a large document's new version, invisible until `commit_staged`: a file
        too big to hold in memory is written in windows and still never seen half-written."""

    def commit_staged(self, doc_id: str, record: dict[str, Any]) -> None:
        """Make a document's staged version the visible one, with its record. The old version goes
        first (the file is briefly absent), then the staged points all appear in one update."""

    def drop_staged(self, doc_id: str | None = None) -> None:
        """Remove staged points never committed (of one document, or all: left by a killed run)."""

    def update_record(self, doc_id: str, fields: dict[str, Any]) -> None:
        """Change fields of a document's record (not its chunks)."""

    def delete_document(self, doc_id: str) -> None:
        """Remove a document's chunks and its record."""

    def delete_ids(self, ids: Sequence[str]) -> None:
        """Remove points by id."""

    def delete_where(self, conditions: Conditions, exclude: Conditions | None = None) -> None:
        """Remove chunks matching `conditions` and not `exclude`."""

    def put_points(self, points: Sequence[StoredPoint]) -> None:
        """Write points exactly as given (vectors included): how a knowledge base is copied."""

    def optimize(self) -> bool:
        """Index what has grown enough to index; whether anything was done."""

    def flush(self) -> None:
        """Make every write durable."""

    def close(self) -> None:
        """Flush, release the store (and its lock or connection). Safe to call twice."""

    # -- reading --------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """The payload of every file record."""

    def chunk_payloads(
        self, fields: Sequence[str] = ("path", "text", "lang")
    ) -> list[dict[str, Any]]:
        """The given payload fields of every chunk."""

    def document_vectors(self, doc_id: str) -> dict[str, list[float]]:
        """A document's stored chunk vectors by chunk hash, to reuse without embedding."""

    def points(self, kind: str | None = None, *, vectors: bool = False) -> Iterator[StoredPoint]:
        """Every point (of `kind`, "chunk" or "file"), paged; with `vectors`, their vectors too."""

    def count(self, kind: str = "chunk") -> int:
        """How many chunk (or file) points there are."""

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
        """One `dense` or `sparse` search over chunks (kb's hybrid ranking is `core.retrieve`)."""

    def search_many(self, searches: Sequence[Search]) -> list[list[Hit]]:
        """Several searches in one call; one result list per search (empty for a keyword search
        whose text has no keyword)."""

    def dense_search(
        self,
        vector: Sequence[float],
        *,
        limit: int,
        conditions: Conditions | None = None,
        ids: Sequence[str] | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        """Chunks nearest to `vector` by cosine similarity, best first; `ids` restricts to those."""

    def sparse_search(
        self,
        text: str,
        *,
        limit: int,
        conditions: Conditions | None = None,
        ids: Sequence[str] | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        """Chunks sharing keywords with `text`, by BM25-style score (IDF kept by the engine)."""

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of the given points, by id (searches run without them: reading a hundred
        payloads costs more than the search that found them)."""

    def facet(self, key: str, conditions: Conditions | None = None) -> dict[Any, int]:
        """How many chunks carry each value of the indexed payload field `key`."""

    def neighbours(self, doc_id: str, indices: Sequence[int]) -> list[Hit]:
        """A document's chunks at the given `chunk_index` positions (score 0), in index order."""
