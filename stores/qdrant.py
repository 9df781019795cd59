"""A knowledge base in a Qdrant server or cluster, through qdrant-client: the scale-out path.

The same contract as the embedded `EdgeShardStore` (the same points, payloads, vectors and queries),
so ingest, retrieval and `kb sources` run unchanged on either. One collection per knowledge base,
created with the configured shards and replication factor, keyword payload indexes on the fields
kb filters by, a dense vector (cosine) and a BM25-style sparse vector with the server's IDF modifier.

How the knowledge base was built (embedder, dimension, chunking) is kept in a vector-less meta point
of the collection, so every client of the server refuses a mismatch the way the embedded store does.
A collection without it is one whose creation was interrupted: a writer finishes creating it.

A server has no file lock: it serves readers and writers at once. Each write waits until the server
has applied it; a file's chunks and record go in one request, so a reader never sees half a file (on
a single shard; across shards each shard applies its part on its own).
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from stores.shard import (
    _INDEXED_FIELDS,
    _SCROLL_PAGE,
    _STAGED_VALUE,
    DENSE,
    ROUGH_EF,
    SEARCH_EF,
    SPARSE,
    STAGED,
    ChunkPoint,
    CollectionMismatch,
    Conditions,
    Hit,
    OneSearch,
    Search,
    SparseFn,
    StoredPoint,
    StoreMissing,
    StoreUnavailable,
    _hit,
    record_id,
    stored_point,
)

_META_ID = str(uuid.uuid5(uuid.UUID("6f1f8f46-2d0c-4c8e-9f53-5b7f0c3e7a10"), "kb collection meta"))
_WRITE_BATCH = 256


class QdrantStore(OneSearch):
    """One knowledge base as one collection of a Qdrant server (or qdrant-client's local mode)."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        meta: dict[str, Any],
        sparse_doc: SparseFn,
        sparse_query: SparseFn,
    ) -> None:
        self.collection = collection
        self.meta = meta
        self.dim = int(meta["dim"])
        self._client: QdrantClient | None = client
        self._sparse_doc = sparse_doc
        self._sparse_query = sparse_query

    @classmethod
    def open(
        cls,
        url: str,
        collection: str,
        *,
        meta: dict[str, Any],
        sparse_doc_fn: SparseFn,
        sparse_query_fn: SparseFn,
        create: bool,
        api_key: str | None = None,
        timeout: float = 30.0,
        shards: int = 1,
        replicas: int = 1,
    ) -> QdrantStore:
        """Connect to `url` (`file:///DIR`: qdrant-client's local mode) and open the collection.

        With `create`, a missing collection is created; `meta` is checked against what the
        collection was built with (an empty `meta` checks nothing)."""
        client = connect(url, api_key=api_key, timeout=timeout)
        try:
            built = _guard(lambda: _read_meta(client, collection), f"collection {collection}")
            if built is None:
                if not create:
                    raise StoreMissing(f"{url} collection {collection}")
                _guard(
                    lambda: _create(client, collection, meta, shards, replicas),
                    f"collection {collection}",
                )
                built = dict(meta)
            differences = {
                key: (built.get(key), value)
                for key, value in meta.items()
                if built.get(key) != value
            }
            if differences:
                raise CollectionMismatch(differences)
        except BaseException:
            client.close()
            raise
        return cls(client, collection, built, sparse_doc_fn, sparse_query_fn)

    @property
    def client(self) -> QdrantClient:
        """The underlying `QdrantClient`."""
        if self._client is None:
            raise RuntimeError("the store is closed")
        return self._client

    # -- writing --------------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[ChunkPoint]) -> None:
        """Insert or overwrite chunks."""
        self._upsert([self._point(chunk) for chunk in chunks])

    def replace_document(
        self, doc_id: str, chunks: Sequence[ChunkPoint], record: dict[str, Any]
    ) -> None:
        """Swap a document's chunks and record for new ones: the new version arrives in one request."""
        payload = {**record, "kind": "file", "doc_id": doc_id}
        points = [self._point(chunk) for chunk in chunks]  # built and checked before any delete
        points.append(models.PointStruct(id=record_id(doc_id), vector={}, payload=payload))
        self.delete_document(doc_id)
        self._upsert(points, batch=len(points))

    def stage(self, doc_id: str, chunks: Sequence[ChunkPoint]) -> None:
        """Write part of a large document's new version, invisible until `commit_staged`."""
        self._upsert([self._point(chunk, staged=True) for chunk in chunks])

    def commit_staged(self, doc_id: str, record: dict[str, Any]) -> None:
        """Make a document's staged version the visible one, with its record (old version first)."""
        payload = {**record, "kind": "file", "doc_id": doc_id, STAGED: _STAGED_VALUE}
        self.delete_document(doc_id)
        self._upsert([models.PointStruct(id=record_id(doc_id), vector={}, payload=payload)])
        staged = _filter({"doc_id": doc_id}, staged=True)
        self._call(
            lambda c: c.delete_payload(self.collection, keys=[STAGED], points=staged, wait=True)
        )

    def drop_staged(self, doc_id: str | None = None) -> None:
        """Remove staged points never committed (of one document, or all: left by a killed run)."""
        self._delete(_filter({"doc_id": doc_id} if doc_id else {}, staged=True))

    def update_record(self, doc_id: str, fields: dict[str, Any]) -> None:
        """Change fields of a document's record (not its chunks)."""
        self._call(
            lambda c: c.set_payload(
                self.collection, payload=fields, points=[record_id(doc_id)], wait=True
            )
        )

    def delete_document(self, doc_id: str) -> None:
        """Remove a document's chunks and its record."""
        self._delete(_filter({"doc_id": doc_id}))

    def delete_ids(self, ids: Sequence[str]) -> None:
        """Remove points by id."""
        if ids:
            self._delete(models.PointIdsList(points=list(ids)))

    def delete_where(self, conditions: Conditions, exclude: Conditions | None = None) -> None:
        """Remove chunks matching `conditions` and not `exclude`."""
        self._delete(_filter({**conditions, "kind": "chunk"}, exclude))

    def put_points(self, points: Sequence[StoredPoint]) -> None:
        """Write points exactly as given (vectors included): how a knowledge base is copied."""
        self._upsert([_server_point(point) for point in points])

    def optimize(self) -> bool:
        """Nothing to do: the server indexes and merges segments on its own."""
        return False

    def flush(self) -> None:
        """Nothing to do: every write has been applied by the server when it returns."""

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    # -- reading --------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """The payload of every file record."""
        return [p.payload for p in self.points("file")]

    def chunk_payloads(
        self, fields: Sequence[str] = ("path", "text", "lang")
    ) -> list[dict[str, Any]]:
        """The given payload fields of every chunk."""
        return [r.payload or {} for r in self._scroll(_filter({"kind": "chunk"}), list(fields))]

    def document_vectors(self, doc_id: str) -> dict[str, list[float]]:
        """A document's stored chunk vectors by chunk hash, to reuse without embedding."""
        out: dict[str, list[float]] = {}
        flt = _filter({"doc_id": doc_id, "kind": "chunk"})
        for record in self._scroll(flt, ["chunk_hash"], with_vectors=[DENSE]):
            vector = record.vector
            if isinstance(vector, dict) and DENSE in vector:
                out[str((record.payload or {}).get("chunk_hash"))] = list(vector[DENSE])
        return out

    def points(self, kind: str | None = None, *, vectors: bool = False) -> Iterator[StoredPoint]:
        """Every point (of `kind`, "chunk" or "file"), paged; with `vectors`, their vectors too."""
        flt = _filter({"kind": kind}) if kind else _filter({}, {"kind": "meta"})
        for record in self._scroll(flt, True, with_vectors=[DENSE, SPARSE] if vectors else False):
            stored = record.vector if isinstance(record.vector, dict) else {}
            dense = stored.get(DENSE)
            sparse = stored.get(SPARSE)
            yield StoredPoint(
                str(record.id),
                record.payload or {},
                list(dense) if isinstance(dense, list) else None,
                (list(sparse.indices), list(sparse.values))
                if isinstance(sparse, models.SparseVector)
                else None,
            )

    def count(self, kind: str = "chunk") -> int:
        """How many chunk (or file) points there are."""
        result = self._call(
            lambda c: c.count(self.collection, count_filter=_filter({"kind": kind}), exact=True)
        )
        return int(result.count)

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
        flt = _filter({**(conditions or {}), "kind": "chunk"}, exclude)
        if mode == "sparse":
            sparse = self._sparse_vector(text)
            if sparse is None:
                return []
            return self._query(query=sparse, using=SPARSE, flt=flt, limit=limit)
        if dense is None:
            raise ValueError("a dense search needs a query vector")
        return self._query(query=list(dense), using=DENSE, flt=flt, limit=limit)

    def search_many(self, searches: Sequence[Search]) -> list[list[Hit]]:
        """Several searches in one request to the server; one result list per search (empty for
        a keyword search whose text has no keyword)."""
        requests: list[models.QueryRequest | None] = []
        for search in searches:
            query: Any
            if search.vector is not None:
                query, using = list(search.vector), DENSE
            else:
                query, using = self._sparse_vector(search.text), SPARSE
            if query is None:
                requests.append(None)
                continue
            flt = _filter({**(search.conditions or {}), "kind": "chunk"}, ids=search.ids)
            beam = ROUGH_EF if search.rough else SEARCH_EF
            params = models.SearchParams(hnsw_ef=beam) if search.vector is not None else None
            requests.append(
                models.QueryRequest(
                    query=query,
                    using=using,
                    filter=flt,
                    limit=search.limit,
                    with_payload=search.with_payload,
                    params=params,
                )
            )
        asked = [r for r in requests if r is not None]
        responses = iter(
            self._call(lambda c: c.query_batch_points(self.collection, requests=asked))
            if asked
            else []
        )
        return [
            [] if r is None else [_hit(point) for point in next(responses).points] for r in requests
        ]

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of the given points, by id."""
        if not ids:
            return {}
        records = self._call(
            lambda c: c.retrieve(self.collection, ids=list(ids), with_payload=True)
        )
        return {str(r.id): r.payload or {} for r in records}

    def facet(self, key: str, conditions: Conditions | None = None) -> dict[Any, int]:
        """How many chunks carry each value of the indexed payload field `key`."""
        flt = _filter({**(conditions or {}), "kind": "chunk"})
        response = self._call(
            lambda c: c.facet(self.collection, key=key, facet_filter=flt, limit=1000, exact=False)
        )
        return {hit.value: int(hit.count) for hit in response.hits}

    def neighbours(self, doc_id: str, indices: Sequence[int]) -> list[Hit]:
        """A document's chunks at the given `chunk_index` positions (score 0), in index order."""
        if not indices:
            return []
        flt = _filter({"doc_id": doc_id, "kind": "chunk", "chunk_index": list(indices)})
        hits = [Hit(str(r.id), 0.0, r.payload or {}) for r in self._scroll(flt, True)]
        return sorted(hits, key=lambda hit: int(hit.payload.get("chunk_index", 0)))

    # -- helpers --------------------------------------------------------------------------------

    def _call(self, request: Any) -> Any:
        return _guard(lambda: request(self.client), f"collection {self.collection}")

    def _sparse_vector(self, text: str | None) -> models.SparseVector | None:
        if not text:
            return None
        indices, values = self._sparse_query(text)
        return models.SparseVector(indices=indices, values=values) if indices else None

    def _point(self, chunk: ChunkPoint, *, staged: bool = False) -> models.PointStruct:
        return _server_point(stored_point(chunk, self.dim, self._sparse_doc, staged=staged))

    def _upsert(self, points: Sequence[models.PointStruct], batch: int = _WRITE_BATCH) -> None:
        for start in range(0, len(points), max(batch, 1)):
            part = list(points[start : start + batch])
            self._call(lambda c, part=part: c.upsert(self.collection, points=part, wait=True))

    def _delete(self, selector: Any) -> None:
        self._call(lambda c: c.delete(self.collection, points_selector=selector, wait=True))

    def _query(
        self,
        *,
        query: Any,
        flt: models.Filter,
        limit: int,
        using: str | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        response = self._call(
            lambda c: c.query_points(
                self.collection,
                query=query,
                using=using,
                query_filter=flt,
                limit=limit,
                with_payload=with_payload,
            )
        )
        return [_hit(point) for point in response.points]

    def _scroll(self, flt: Any, with_payload: Any, with_vectors: Any = False) -> Iterator[Any]:
        offset = None
        while True:
            records, offset = self._call(
                lambda c, offset=offset: c.scroll(
                    self.collection,
                    scroll_filter=flt,
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=with_payload,
                    with_vectors=with_vectors,
                )
            )
            yield from records
            if offset is None:
                return


def connect(url: str, *, api_key: str | None = None, timeout: float = 30.0) -> QdrantClient:
    """A client for a server URL, or for qdrant-client's local mode at `file:///DIR`."""
    if url.startswith("file://"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode warns that payload indexes do nothing
            return QdrantClient(path=url.removeprefix("file://"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a key over plain http: the README says to use https
        return QdrantClient(
            url=url, api_key=api_key, timeout=int(max(timeout, 1)), check_compatibility=False
        )


def drop_collection(
    url: str, collection: str, timeout: float = 30.0, api_key: str | None = None
) -> None:
    """Delete a knowledge base's collection (for a rebuild or a replacing copy)."""
    client = connect(url, api_key=api_key, timeout=timeout)
    try:
        _guard(lambda: client.delete_collection(collection), f"collection {collection}")
    finally:
        client.close()


def _guard(request: Any, where: str) -> Any:
    """Run a request; connection failures and server errors become `StoreUnavailable`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return request()
    except UnexpectedResponse as err:
        detail = err.content.decode("utf-8", "replace")[:200] if err.content else err.reason_phrase
        raise StoreUnavailable(f"{where}: HTTP {err.status_code} {detail}") from err
    except (ResponseHandlingException, ConnectionError, TimeoutError) as err:
        raise StoreUnavailable(f"{where}: {err}") from err


def _read_meta(client: QdrantClient, collection: str) -> dict[str, Any] | None:
    if not client.collection_exists(collection):
        return None
    found = client.retrieve(collection, ids=[_META_ID], with_payload=True)
    if not found:
        return None  # created but never finished: the next writer finishes it
    payload = dict(found[0].payload or {})
    payload.pop("kind", None)
    return payload


def _create(
    client: QdrantClient, collection: str, meta: dict[str, Any], shards: int, replicas: int
) -> None:
    if not client.collection_exists(collection):
        client.create_collection(
            collection,
            vectors_config={
                DENSE: models.VectorParams(size=int(meta["dim"]), distance=models.Distance.COSINE)
            },
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            shard_number=shards,
            replication_factor=replicas,
        )
    for name in (*_INDEXED_FIELDS, STAGED):
        client.create_payload_index(
            collection, name, field_schema=models.PayloadSchemaType.KEYWORD, wait=True
        )
    client.create_payload_index(
        collection, "chunk_index", field_schema=models.PayloadSchemaType.INTEGER, wait=True
    )
    client.upsert(
        collection,
        points=[models.PointStruct(id=_META_ID, vector={}, payload={**meta, "kind": "meta"})],
        wait=True,
    )


def _server_point(point: StoredPoint) -> models.PointStruct:
    vector: dict[str, Any] = {}
    if point.dense is not None:
        vector[DENSE] = list(point.dense)
    if point.sparse is not None and point.sparse[0]:
        vector[SPARSE] = models.SparseVector(
            indices=list(point.sparse[0]), values=list(point.sparse[1])
        )
    return models.PointStruct(id=point.id, vector=vector, payload=point.payload)


def _condition(key: str, value: Any) -> models.FieldCondition:
    if isinstance(value, list | tuple):
        return models.FieldCondition(key=key, match=models.MatchAny(any=list(value)))
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _filter(
    conditions: Conditions,
    exclude: Conditions | None = None,
    ids: Sequence[str] | None = None,
    *,
    staged: bool = False,
) -> models.Filter:
    """Points matching `conditions` and not `exclude`; only committed points unless `staged`
    (then only staged ones)."""
    must: list[Any] = [_condition(k, v) for k, v in conditions.items()]
    if ids is not None:
        must.append(models.HasIdCondition(has_id=list(ids)))
    must_not: list[Any] = [_condition(k, v) for k, v in (exclude or {}).items()]
    (must if staged else must_not).append(_condition(STAGED, _STAGED_VALUE))
    return models.Filter(must=must or None, must_not=must_not or None)
