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
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from stores.contract import (
    Conditions,
    Search,
    SparseFn,
    Store,
    StoreMissing,
    StoreUnavailable,
)
from stores.points import (
    DENSE,
    INDEXED_FIELDS,
    RECORD_NAMESPACE,
    ROUGH_EF,
    SEARCH_EF,
    SPARSE,
    STAGED,
    PointStore,
    check_meta,
)

_META_ID = str(uuid.uuid5(RECORD_NAMESPACE, "kb collection meta"))
_WRITE_BATCH = 256
Nearest = tuple[Any, str]  # a query vector and the name of the vector it searches


class QdrantStore(PointStore):
    """One knowledge base as one collection of a Qdrant server (or qdrant-client's local mode)."""

    _OWN_POINTS: ClassVar[Conditions | None] = {"kind": "meta"}

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        meta: dict[str, Any],
        sparse_doc: SparseFn,
        sparse_query: SparseFn,
    ) -> None:
        super().__init__(meta, sparse_doc, sparse_query)
        self.collection = collection
        self._client: QdrantClient | None = client

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
            check_meta(built, meta)
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

    # -- qdrant-client's primitives -------------------------------------------------------------

    def _call(self, request: Any) -> Any:
        return _guard(lambda: request(self.client), f"collection {self.collection}")

    def _client_point(
        self, point_id: str, vector: dict[str, Any], payload: dict[str, Any]
    ) -> models.PointStruct:
        return models.PointStruct(id=point_id, vector=vector, payload=payload)

    def _sparse_vector(self, indices: list[int], values: list[float]) -> models.SparseVector:
        return models.SparseVector(indices=indices, values=values)

    def _condition(self, key: str, value: Any) -> models.FieldCondition:
        if isinstance(value, list | tuple):
            return models.FieldCondition(key=key, match=models.MatchAny(any=list(value)))
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))

    def _has_id(self, ids: Sequence[str]) -> models.HasIdCondition:
        return models.HasIdCondition(has_id=list(ids))

    def _combine(self, must: list[Any], must_not: list[Any]) -> models.Filter:
        return models.Filter(must=must or None, must_not=must_not or None)

    def _upsert(self, points: Sequence[Any], *, whole: bool = False) -> None:
        """In requests of `_WRITE_BATCH` points, or (`whole`) one: a reader never sees half a file."""
        batch = len(points) if whole else _WRITE_BATCH
        for start in range(0, len(points), max(batch, 1)):
            part = list(points[start : start + batch])
            self._call(lambda c, part=part: c.upsert(self.collection, points=part, wait=True))

    def _delete(self, flt: Any) -> None:
        self._call(lambda c: c.delete(self.collection, points_selector=flt, wait=True))

    def _delete_ids(self, ids: list[str]) -> None:
        self._delete(models.PointIdsList(points=list(ids)))

    def _set_payload(self, ids: list[str], fields: dict[str, Any]) -> None:
        self._call(lambda c: c.set_payload(self.collection, payload=fields, points=ids, wait=True))

    def _delete_payload(self, flt: Any, keys: list[str]) -> None:
        self._call(lambda c: c.delete_payload(self.collection, keys=keys, points=flt, wait=True))

    def _page(
        self, flt: Any, with_payload: Any, with_vectors: Any, offset: Any, limit: int
    ) -> tuple[Iterable[Any], Any]:
        page: tuple[Iterable[Any], Any] = self._call(
            lambda c: c.scroll(
                self.collection,
                scroll_filter=flt,
                limit=limit,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
            )
        )
        return page

    def _count(self, flt: Any) -> int:
        result = self._call(lambda c: c.count(self.collection, count_filter=flt, exact=True))
        return int(result.count)

    def _retrieve(self, ids: list[str]) -> Iterable[Any]:
        records: Iterable[Any] = self._call(
            lambda c: c.retrieve(self.collection, ids=ids, with_payload=True)
        )
        return records

    def _facet(self, key: str, flt: Any) -> dict[Any, int]:
        response = self._call(
            lambda c: c.facet(self.collection, key=key, facet_filter=flt, limit=1000, exact=False)
        )
        return {hit.value: int(hit.count) for hit in response.hits}

    def _dense_nearest(self, vector: Sequence[float]) -> Nearest:
        return list(vector), DENSE

    def _sparse_nearest_of(self, vector: models.SparseVector) -> Nearest:
        return vector, SPARSE

    def _params(self, search: Search | None) -> models.SearchParams | None:
        if search is None:
            return None  # a single `search()` leaves the beam to the server
        return models.SearchParams(hnsw_ef=ROUGH_EF if search.rough else SEARCH_EF)

    def _request(
        self,
        query: Nearest,
        flt: Any,
        limit: int,
        *,
        with_payload: bool = True,
        params: Any = None,
    ) -> dict[str, Any]:
        vector, using = query
        return {
            "query": vector,
            "using": using,
            "filter": flt,
            "limit": limit,
            "with_payload": with_payload,
            "params": params,
        }

    def _query(self, request: dict[str, Any]) -> Iterable[Any]:
        response = self._call(
            lambda c: c.query_points(
                self.collection,
                query=request["query"],
                using=request.get("using"),
                prefetch=request.get("prefetch"),
                query_filter=request["filter"],
                limit=request["limit"],
                with_payload=request["with_payload"],
                search_params=request.get("params"),
            )
        )
        points: Iterable[Any] = response.points
        return points

    def _query_batch(self, requests: list[Any]) -> list[Iterable[Any]]:
        asked = [models.QueryRequest(**request) for request in requests]
        responses = self._call(lambda c: c.query_batch_points(self.collection, requests=asked))
        return [response.points for response in responses]


_: type[Store] = QdrantStore  # mypy checks the backend against the declared contract


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
    for name in (*INDEXED_FIELDS, STAGED):
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
