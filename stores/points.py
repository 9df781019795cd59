"""A knowledge base as Qdrant points, whichever client holds them: the logic both backends share.

`PointStore` implements every method of `stores.contract.Store` (documented there) over a handful of
primitives each backend writes for its own client: build a point, a filter condition, a query
request; write, delete, scroll, count, query. What a point, a payload and a filter mean (chunks and
file records, staging, neighbours, the built-with check) is decided here once.

Payload layout: every chunk has `kind` "chunk" and its `doc_id`; every indexed file has one
vector-less record point (`kind` "file", id `record_id(doc_id)`); a large document's points carry
`STAGED` until its version is committed.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

from stores.contract import (
    COUNTED,
    ChunkPoint,
    CollectionMismatch,
    Conditions,
    Hit,
    Search,
    SparseFn,
    StoredPoint,
)

DENSE = "dense"
SPARSE = "sparse"
RECORD_NAMESPACE = uuid.UUID("6f1f8f46-2d0c-4c8e-9f53-5b7f0c3e7a10")
INDEXED_FIELDS = ("kind", "doc_id", "root", "path", "lang", "file_type")
STAGED = "staged"  # payload key marking a large document's points until its version is committed
STAGED_VALUE = "yes"  # a keyword: Qdrant Edge's Python binding matches no boolean values
SCROLL_PAGE = 1024
SEARCH_EF = 256  # HNSW beam of a search (the default, ef_construct = 100, loses recall at 100 hits)
ROUGH_EF = 16  # HNSW beam of a `rough` search


def record_id(doc_id: str) -> str:
    """The id of a file's record point."""
    return str(uuid.uuid5(RECORD_NAMESPACE, doc_id))


def check_meta(built: dict[str, Any], meta: dict[str, Any]) -> None:
    """Refuse a knowledge base built with other settings than `meta` (keys `meta` lacks pass)."""
    differences = {
        key: (built.get(key), value) for key, value in meta.items() if built.get(key) != value
    }
    if differences:
        raise CollectionMismatch(differences)


def stored_point(
    chunk: ChunkPoint, dim: int, sparse_doc: SparseFn, *, staged: bool = False
) -> StoredPoint:
    """A chunk as both stores write it: its size checked, its keyword vector made, its payload
    marked as a chunk of its document (and as staged, for a large document's hidden version)."""
    if len(chunk.vector) != dim:
        raise ValueError(f"vector of size {len(chunk.vector)} for a store of size {dim}")
    indices, values = sparse_doc(chunk.sparse_text)
    payload = {**chunk.payload, "kind": "chunk", "doc_id": chunk.doc_id}
    if staged:
        payload[STAGED] = STAGED_VALUE
    return StoredPoint(
        chunk.id, payload, list(chunk.vector), (indices, values) if indices else None
    )


def to_hit(point: Any) -> Hit:
    """A scored point of either client as a `Hit`."""
    return Hit(str(point.id), float(point.score), point.payload or {})


def _hits(points: Iterable[Any], count_only: bool) -> list[Hit]:
    """Scored points as `Hit`s; for a count, as many `COUNTED`, without reading a point (Qdrant
    Edge builds a `uuid.UUID` for each id read: most of the cost of a question's term counts)."""
    if count_only:
        return [COUNTED] * sum(1 for _ in points)
    return [to_hit(p) for p in points]


class OneSearch:
    """`dense_search` and `sparse_search` as one-search batches of `search_many`, for every store
    that answers searches (both backends, and a reader served by a writing process)."""

    def search_many(self, searches: Sequence[Search]) -> list[list[Hit]]:
        raise NotImplementedError

    def dense_search(
        self,
        vector: Sequence[float],
        *,
        limit: int,
        conditions: Conditions | None = None,
        ids: Sequence[str] | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        return self.search_many([Search(limit, vector, None, conditions, ids, with_payload)])[0]

    def sparse_search(
        self,
        text: str,
        *,
        limit: int,
        conditions: Conditions | None = None,
        ids: Sequence[str] | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        return self.search_many([Search(limit, None, text, conditions, ids, with_payload)])[0]


class PointStore(OneSearch, abc.ABC):
    """The shared half of both backends; the abstract methods are the client's half."""

    # Points of the store's own, not the knowledge base's, that `points()` leaves out.
    _OWN_POINTS: ClassVar[Conditions | None] = None

    def __init__(self, meta: dict[str, Any], sparse_doc: SparseFn, sparse_query: SparseFn) -> None:
        self.meta = meta
        self.dim = int(meta["dim"])
        self._sparse_doc = sparse_doc
        self._sparse_query = sparse_query

    # -- writing --------------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[ChunkPoint]) -> None:
        self._upsert([self._point(chunk) for chunk in chunks])

    def replace_document(
        self, doc_id: str, chunks: Sequence[ChunkPoint], record: dict[str, Any]
    ) -> None:
        payload = {**record, "kind": "file", "doc_id": doc_id}
        points = [self._point(chunk) for chunk in chunks]  # built and checked before any delete
        points.append(self._native(StoredPoint(record_id(doc_id), payload)))
        self.delete_document(doc_id)
        self._upsert(points, whole=True)

    def stage(self, doc_id: str, chunks: Sequence[ChunkPoint]) -> None:
        self._upsert([self._point(chunk, staged=True) for chunk in chunks])

    def commit_staged(self, doc_id: str, record: dict[str, Any]) -> None:
        payload = {**record, "kind": "file", "doc_id": doc_id, STAGED: STAGED_VALUE}
        self.delete_document(doc_id)
        self._upsert([self._native(StoredPoint(record_id(doc_id), payload))])
        self._delete_payload(self._filter({"doc_id": doc_id}, staged=True), [STAGED])

    def drop_staged(self, doc_id: str | None = None) -> None:
        self._drop(self._filter({"doc_id": doc_id} if doc_id else {}, staged=True))

    def update_record(self, doc_id: str, fields: dict[str, Any]) -> None:
        self._set_payload([record_id(doc_id)], fields)

    def delete_document(self, doc_id: str) -> None:
        self._delete(self._filter({"doc_id": doc_id}))

    def delete_ids(self, ids: Sequence[str]) -> None:
        if ids:
            self._delete_ids(list(ids))

    def delete_where(self, conditions: Conditions, exclude: Conditions | None = None) -> None:
        self._delete(self._filter({**conditions, "kind": "chunk"}, exclude))

    def put_points(self, points: Sequence[StoredPoint]) -> None:
        self._upsert([self._native(point) for point in points])

    # -- reading --------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        return [r.payload or {} for r in self._scroll(self._filter({"kind": "file"}), True)]

    def chunk_payloads(
        self, fields: Sequence[str] = ("path", "text", "lang")
    ) -> list[dict[str, Any]]:
        flt = self._filter({"kind": "chunk"})
        return [r.payload or {} for r in self._scroll(flt, list(fields))]

    def document_vectors(self, doc_id: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        flt = self._filter({"doc_id": doc_id, "kind": "chunk"})
        for record in self._scroll(flt, ["chunk_hash"], [DENSE]):
            vector = record.vector
            if isinstance(vector, dict) and DENSE in vector:
                out[str((record.payload or {}).get("chunk_hash"))] = list(vector[DENSE])
        return out

    def points(self, kind: str | None = None, *, vectors: bool = False) -> Iterator[StoredPoint]:
        flt = self._filter({"kind": kind}) if kind else self._filter({}, self._OWN_POINTS)
        for record in self._scroll(flt, True, [DENSE, SPARSE] if vectors else False):
            stored = record.vector if isinstance(record.vector, dict) else {}
            dense = stored.get(DENSE)
            sparse = stored.get(SPARSE)
            yield StoredPoint(
                str(record.id),
                record.payload or {},
                None if dense is None else list(dense),
                None if sparse is None else (list(sparse.indices), list(sparse.values)),
            )

    def count(self, kind: str = "chunk") -> int:
        return self._count(self._filter({"kind": kind}))

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
        flt = self._filter({**(conditions or {}), "kind": "chunk"}, exclude)
        if mode == "sparse":
            sparse = self._sparse_nearest(text)
            return [] if sparse is None else self._hits(self._request(sparse, flt, limit))
        if dense is None:
            raise ValueError("a dense search needs a query vector")
        nearest = self._dense_nearest(dense)
        return self._hits(self._request(nearest, flt, limit, params=self._params(None)))

    def search_many(self, searches: Sequence[Search]) -> list[list[Hit]]:
        requests: list[Any] = []
        for search in searches:
            if search.vector is not None:
                query, params = self._dense_nearest(search.vector), self._params(search)
            else:
                query, params = self._sparse_nearest(search.text), None
            if query is None:
                requests.append(None)
                continue
            flt = self._filter({**(search.conditions or {}), "kind": "chunk"}, ids=search.ids)
            requests.append(
                self._request(
                    query, flt, search.limit, with_payload=search.with_payload, params=params
                )
            )
        asked = [r for r in requests if r is not None]
        answers = iter(self._query_batch(asked) if asked else [])
        return [
            [] if r is None else _hits(next(answers), search.count_only)
            for r, search in zip(requests, searches, strict=True)
        ]

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        return {str(r.id): r.payload or {} for r in self._retrieve(list(ids))}

    def facet(self, key: str, conditions: Conditions | None = None) -> dict[Any, int]:
        return self._facet(key, self._filter({**(conditions or {}), "kind": "chunk"}))

    def neighbours(self, doc_id: str, indices: Sequence[int]) -> list[Hit]:
        if not indices:
            return []
        flt = self._filter({"doc_id": doc_id, "kind": "chunk", "chunk_index": list(indices)})
        hits = [Hit(str(r.id), 0.0, r.payload or {}) for r in self._scroll(flt, True)]
        return sorted(hits, key=lambda hit: int(hit.payload.get("chunk_index", 0)))

    # -- shared helpers -------------------------------------------------------------------------

    def _point(self, chunk: ChunkPoint, *, staged: bool = False) -> Any:
        return self._native(stored_point(chunk, self.dim, self._sparse_doc, staged=staged))

    def _sparse_nearest(self, text: str | None) -> Any:
        """A keyword query for `text`, or None when it has no keyword."""
        if not text:
            return None
        indices, values = self._sparse_query(text)
        return self._sparse_nearest_of(self._sparse_vector(indices, values)) if indices else None

    def _filter(
        self,
        conditions: Conditions,
        exclude: Conditions | None = None,
        ids: Sequence[str] | None = None,
        *,
        staged: bool = False,
    ) -> Any:
        """Points matching `conditions` and not `exclude`; only committed points unless `staged`
        (then only staged ones)."""
        must = [self._condition(k, v) for k, v in conditions.items()]
        if ids is not None:
            must.append(self._has_id(ids))
        must_not = [self._condition(k, v) for k, v in (exclude or {}).items()]
        (must if staged else must_not).append(self._condition(STAGED, STAGED_VALUE))
        return self._combine(must, must_not)

    def _native(self, point: StoredPoint) -> Any:
        """`point` as the client's point (vectors left out when absent)."""
        vector: dict[str, Any] = {}
        if point.dense is not None:
            vector[DENSE] = list(point.dense)
        if point.sparse is not None and point.sparse[0]:
            vector[SPARSE] = self._sparse_vector(list(point.sparse[0]), list(point.sparse[1]))
        return self._client_point(point.id, vector, point.payload)

    def _scroll(self, flt: Any, with_payload: Any, with_vectors: Any = False) -> Iterator[Any]:
        """Every point matching a filter, paged (each has `id`, `payload`, `vector`)."""
        offset = None
        while True:
            records, offset = self._page(flt, with_payload, with_vectors, offset, SCROLL_PAGE)
            yield from records
            if offset is None:
                return

    def _hits(self, request: Any) -> list[Hit]:
        return [to_hit(point) for point in self._query(request)]

    def _drop(self, flt: Any) -> None:
        """Delete the points matching `flt` (staged ones never committed)."""
        self._delete(flt)

    # -- the client's primitives ----------------------------------------------------------------

    @abc.abstractmethod
    def _client_point(self, point_id: str, vector: dict[str, Any], payload: dict[str, Any]) -> Any:
        """A client point with named vectors (dense: a list of floats)."""

    @abc.abstractmethod
    def _sparse_vector(self, indices: list[int], values: list[float]) -> Any:
        """A client sparse vector."""

    @abc.abstractmethod
    def _condition(self, key: str, value: Any) -> Any:
        """Payload `key` equals `value` (a list or tuple: any of its values)."""

    @abc.abstractmethod
    def _has_id(self, ids: Sequence[str]) -> Any:
        """The point is one of `ids`."""

    @abc.abstractmethod
    def _combine(self, must: list[Any], must_not: list[Any]) -> Any:
        """A filter of all `must` and none of `must_not` (either may be empty)."""

    @abc.abstractmethod
    def _upsert(self, points: Sequence[Any], *, whole: bool = False) -> None:
        """Write client points (none: no request); `whole`: in one request."""

    @abc.abstractmethod
    def _delete(self, flt: Any) -> None:
        """Delete the points matching a filter."""

    @abc.abstractmethod
    def _delete_ids(self, ids: list[str]) -> None:
        """Delete points by id."""

    @abc.abstractmethod
    def _set_payload(self, ids: list[str], fields: dict[str, Any]) -> None:
        """Set payload `fields` on the points `ids`."""

    @abc.abstractmethod
    def _delete_payload(self, flt: Any, keys: list[str]) -> None:
        """Remove payload `keys` from the points matching a filter."""

    @abc.abstractmethod
    def _page(
        self, flt: Any, with_payload: Any, with_vectors: Any, offset: Any, limit: int
    ) -> tuple[Iterable[Any], Any]:
        """Up to `limit` points matching a filter from `offset` on, and the next offset (None
        after the last page)."""

    @abc.abstractmethod
    def _count(self, flt: Any) -> int:
        """How many points match a filter (exactly)."""

    @abc.abstractmethod
    def _retrieve(self, ids: list[str]) -> Iterable[Any]:
        """The points `ids` with their payloads (each has `id` and `payload`)."""

    @abc.abstractmethod
    def _facet(self, key: str, flt: Any) -> dict[Any, int]:
        """How many points matching a filter carry each value of `key`."""

    @abc.abstractmethod
    def _dense_nearest(self, vector: Sequence[float]) -> Any:
        """A query for the chunks nearest to a dense vector."""

    @abc.abstractmethod
    def _sparse_nearest_of(self, vector: Any) -> Any:
        """A query for the chunks nearest to a (non-empty) client sparse vector."""

    @abc.abstractmethod
    def _params(self, search: Search | None) -> Any:
        """The search parameters of a dense query: of `search` in a batch, or (None) of `search()`."""

    @abc.abstractmethod
    def _request(
        self, query: Any, flt: Any, limit: int, *, with_payload: bool = True, params: Any = None
    ) -> Any:
        """A request for one query."""

    @abc.abstractmethod
    def _query(self, request: Any) -> Iterable[Any]:
        """Run one request: its scored points (each has `id`, `score`, `payload`)."""

    @abc.abstractmethod
    def _query_batch(self, requests: list[Any]) -> list[Iterable[Any]]:
        """Run several requests in one call; the scored points of each."""
