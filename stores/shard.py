"""A knowledge base's folder on disk: one Qdrant Edge shard (Qdrant's engine in-process), its record of
how it was built, and the lock that keeps it to one process. Plain Python, no LlamaIndex: the paths
that only plan or look up (an unchanged re-ingest, `kb sources`) stay cheap to start.

Layout: `shard/` (dense vector, BM25-style sparse vector with the IDF modifier, payload),
`collection.json` (embedder, dimension and chunking settings it was built with) and `lock` (one process
at a time: Qdrant Edge itself refuses a second opener, and a refused open must never touch the files
the first process is using).

Besides chunk points, every indexed file has one vector-less record point. A file's chunks and its
record are written in a single update, so a file is either wholly indexed or absent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import qdrant_edge as qe

DENSE = "dense"
SPARSE = "sparse"
SparseFn = Callable[[str], tuple[list[int], list[float]]]
Conditions = dict[str, Any]  # payload key -> value (or list of values: any of them)
_RECORD_NAMESPACE = uuid.UUID("6f1f8f46-2d0c-4c8e-9f53-5b7f0c3e7a10")
_INDEXED_FIELDS = ("kind", "doc_id", "root", "path", "lang", "file_type")
STAGED = "staged"  # payload key marking a large document's points until its version is committed
_STAGED_VALUE = "yes"  # a keyword: Qdrant Edge's Python binding matches no boolean values
_SCROLL_PAGE = 1024
INDEX_AFTER = 20_000  # chunks a segment holds before it is indexed (HNSW); fewer: exact search
SEARCH_EF = 256  # HNSW beam of a search (the default, ef_construct = 100, loses recall at 100 hits)
ROUGH_EF = 16  # HNSW beam of a `rough` search
# Indexed segments search int8 copies of the vectors, then rescore twice the asked number with the
# original vectors: every cosine kb sees is exact (without rescoring Edge returns the int8 estimate,
# 0.90 for 0.95) and recall stays whole. Measured on SciFact's real e5 vectors, 100 nearest: int8
# alone 0.955; rescoring 2x 1.000 on a scanned segment; through the HNSW graph 0.972, and 0.983 with
# a beam of 256 (the default beam is ef_construct, 100, no wider than kb's 100 candidates). A rough
# search (the farthest chunk, to normalise cosines) gets a narrower beam and no oversampling.
_RESCORED = qe.SearchParams(
    hnsw_ef=SEARCH_EF, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=2.0)
)
_ROUGH = qe.SearchParams(hnsw_ef=ROUGH_EF, quantization=qe.QuantizationSearchParams(rescore=True))


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


def record_id(doc_id: str) -> str:
    """The id of a file's record point."""
    return str(uuid.uuid5(_RECORD_NAMESPACE, doc_id))


class OneSearch:
    """`dense_search` and `sparse_search` for both stores: one-search batches of `search_many`."""

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
        """Chunks nearest to `vector` by cosine similarity, best first; `ids` restricts to those."""
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
        """Chunks sharing keywords with `text`, by BM25-style score (IDF kept by the engine)."""
        return self.search_many([Search(limit, None, text, conditions, ids, with_payload)])[0]


class EdgeShardStore(OneSearch):
    """One knowledge base folder, opened by one process at a time."""

    def __init__(
        self,
        path: Path,
        shard: Any,
        lock: int,
        meta: dict[str, Any],
        sparse_doc: SparseFn,
        sparse_query: SparseFn,
    ) -> None:
        self.path = path
        self.meta = meta
        self.dim = int(meta["dim"])
        self._shard: Any = shard
        self._lock: int | None = lock
        self._sparse_doc = sparse_doc
        self._sparse_query = sparse_query
        self._dirty = False
        # Facet counts until the next write: nobody else writes while this process holds the lock.
        self._facets: dict[str, dict[Any, int]] = {}

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        meta: dict[str, Any],
        sparse_doc_fn: SparseFn,
        sparse_query_fn: SparseFn,
        create: bool,
        wait_seconds: float = 0.0,
        index_after: int = INDEX_AFTER,
    ) -> EdgeShardStore:
        """Open (or with `create`, create) the store at `path`; checks `meta` against what it was
        built with. A writer (`create`) applies the current index settings (`index_after`)."""
        if not (path / "collection.json").exists():
            if not create:
                raise StoreMissing(str(path))
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)  # document text lives here: owner only, even in a folder that existed
        lock = _acquire_lock(path / "lock", wait_seconds)
        try:
            meta_path = path / "collection.json"
            shard_path = path / "shard"
            if meta_path.exists():
                built = json.loads(meta_path.read_text(encoding="utf-8"))
                differences = {
                    key: (built.get(key), value)
                    for key, value in meta.items()
                    if built.get(key) != value
                }
                if differences:
                    raise CollectionMismatch(differences)
                meta = built
                config = _edge_config(int(meta["dim"]), index_after) if create else None
                shard = qe.EdgeShard.load(str(shard_path), config)
                if STAGED not in shard.info().payload_schema:
                    # A knowledge base from before staged writes. Every search excludes staged
                    # points, and without the index that check reads each payload from disk (45
                    # vs 1 ms per search on SciFact), so readers add it too: Qdrant Edge writes to
                    # the folder on every open anyway, and this process holds the lock.
                    _index_staged(shard)
            else:
                # A shard without collection.json is a creation that was interrupted: start over.
                shutil.rmtree(shard_path, ignore_errors=True)
                config = _edge_config(int(meta["dim"]), index_after)
                shard = qe.EdgeShard.create(str(shard_path), config)
                for name in _INDEXED_FIELDS:
                    shard.update(
                        qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword)
                    )
                _index_staged(shard)
                shard.flush()
                _write_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True))
        except BaseException:
            _release_lock(lock)
            raise
        return cls(path, shard, lock, meta, sparse_doc_fn, sparse_query_fn)

    @property
    def client(self) -> Any:
        """The underlying `qdrant_edge.EdgeShard`."""
        return self._shard

    # -- writing --------------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[ChunkPoint]) -> None:
        """Insert or overwrite chunks."""
        points = [self._point(chunk) for chunk in chunks]
        if points:
            self._write(qe.UpdateOperation.upsert_points(points))

    def replace_document(
        self, doc_id: str, chunks: Sequence[ChunkPoint], record: dict[str, Any]
    ) -> None:
        """Swap a document's chunks and record for new ones: it is never seen half-written."""
        payload = {**record, "kind": "file", "doc_id": doc_id}
        points = [self._point(chunk) for chunk in chunks]  # built and checked before any delete
        points.append(qe.Point(id=record_id(doc_id), vector={}, payload=payload))
        self.delete_document(doc_id)
        self._write(qe.UpdateOperation.upsert_points(points))

    def stage(self, doc_id: str, chunks: Sequence[ChunkPoint]) -> None:
        """Write part of a large document's new version, invisible until `commit_staged`: a file
        too big to hold in memory is written in windows and still never seen half-written."""
        points = [self._point(chunk, staged=True) for chunk in chunks]
        if points:
            self._write(qe.UpdateOperation.upsert_points(points))

    def commit_staged(self, doc_id: str, record: dict[str, Any]) -> None:
        """Make a document's staged version the visible one, with its record. The old version goes
        first (the file is briefly absent), then the staged points all appear in one update."""
        payload = {**record, "kind": "file", "doc_id": doc_id, STAGED: _STAGED_VALUE}
        self.delete_document(doc_id)
        self._write(
            qe.UpdateOperation.upsert_points(
                [qe.Point(id=record_id(doc_id), vector={}, payload=payload)]
            )
        )
        staged = _filter({"doc_id": doc_id}, staged=True)
        self._write(qe.UpdateOperation.delete_payload_by_filter(staged, [STAGED]))

    def drop_staged(self, doc_id: str | None = None) -> None:
        """Remove staged points never committed (of one document, or all: left by a killed run)."""
        flt = _filter({"doc_id": doc_id} if doc_id else {}, staged=True)
        # Only write when there is something to drop: an unchanged re-ingest stays write-free.
        if self._shard.count(qe.CountRequest(exact=True, filter=flt)):
            self._write(qe.UpdateOperation.delete_points_by_filter(flt))

    def update_record(self, doc_id: str, fields: dict[str, Any]) -> None:
        """Change fields of a document's record (not its chunks)."""
        self._write(qe.UpdateOperation.set_payload([record_id(doc_id)], fields))

    def delete_document(self, doc_id: str) -> None:
        """Remove a document's chunks and its record."""
        self._write(qe.UpdateOperation.delete_points_by_filter(_filter({"doc_id": doc_id})))

    def delete_ids(self, ids: Sequence[str]) -> None:
        """Remove points by id."""
        if ids:
            self._write(qe.UpdateOperation.delete_points(list(ids)))

    def delete_where(self, conditions: Conditions, exclude: Conditions | None = None) -> None:
        """Remove chunks matching `conditions` and not `exclude`."""
        flt = _filter({**conditions, "kind": "chunk"}, exclude)
        self._write(qe.UpdateOperation.delete_points_by_filter(flt))

    def flush(self) -> None:
        """Make every write durable."""
        self._shard.flush()

    def optimize(self) -> bool:
        """Index the segments that grew past `index_after` chunks (an HNSW graph over int8 copies
        of the vectors, the originals left on disk for rescoring) and vacuum deleted points, then
        reopen the shard: the growing in-memory segment's memory is returned, not just reused.
        Blocking; nothing to do (a smaller knowledge base) costs a check and no write. Qdrant's
        optimizer builds new segments beside the old and swaps them in, so a kill mid-way loses
        nothing (tests/test_crash.py)."""
        if not self._shard.optimize():
            return False
        self._shard.flush()
        self._shard.close()
        self._shard = None
        self._shard = qe.EdgeShard.load(str(self.path / "shard"))
        return True

    def close(self) -> None:
        """Flush (after writes), close the shard and release the lock. Safe to call twice."""
        if self._lock is None:
            return
        try:
            if self._shard is not None:
                if self._dirty:
                    self._shard.flush()
                self._shard.close()
        finally:
            self._shard = None
            _release_lock(self._lock)
            self._lock = None

    # -- reading --------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """The payload of every file record."""
        return [r.payload or {} for r in self._scroll(_filter({"kind": "file"}), True)]

    def chunk_payloads(
        self, fields: Sequence[str] = ("path", "text", "lang")
    ) -> list[dict[str, Any]]:
        """The given payload fields of every chunk."""
        flt = _filter({"kind": "chunk"})
        return [r.payload or {} for r in self._scroll(flt, list(fields))]

    def document_vectors(self, doc_id: str) -> dict[str, list[float]]:
        """A document's stored chunk vectors by chunk hash, to reuse without embedding."""
        out: dict[str, list[float]] = {}
        flt = _filter({"doc_id": doc_id, "kind": "chunk"})
        for record in self._scroll(flt, ["chunk_hash"], with_vector=[DENSE]):
            vector = record.vector
            if isinstance(vector, dict) and DENSE in vector:
                out[str((record.payload or {}).get("chunk_hash"))] = list(vector[DENSE])
        return out

    def points(self, kind: str | None = None, *, vectors: bool = False) -> Iterator[StoredPoint]:
        """Every point (of `kind`, "chunk" or "file"), paged; with `vectors`, their vectors too."""
        flt = _filter({"kind": kind} if kind else {})
        for record in self._scroll(flt, True, with_vector=[DENSE, SPARSE] if vectors else False):
            dense = sparse = None
            stored = record.vector if isinstance(record.vector, dict) else {}
            if DENSE in stored:
                dense = list(stored[DENSE])
            if SPARSE in stored:
                sparse = (list(stored[SPARSE].indices), list(stored[SPARSE].values))
            yield StoredPoint(str(record.id), record.payload or {}, dense, sparse)

    def put_points(self, points: Sequence[StoredPoint]) -> None:
        """Write points exactly as given (vectors included): how a knowledge base is copied."""
        if points:
            self._write(qe.UpdateOperation.upsert_points([_edge_point(p) for p in points]))

    def count(self, kind: str = "chunk") -> int:
        """How many chunk (or file) points there are."""
        return int(self._shard.count(qe.CountRequest(exact=True, filter=_filter({"kind": kind}))))

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
            sparse_query = self._sparse_nearest(text)
            if sparse_query is None:
                return []
            request = qe.QueryRequest(
                limit=limit, query=sparse_query, filter=flt, with_payload=True
            )
        else:
            if dense is None:
                raise ValueError("a dense search needs a query vector")
            dense_query = qe.Query.Nearest(list(dense), using=DENSE)
            request = qe.QueryRequest(
                limit=limit, query=dense_query, filter=flt, with_payload=True, params=_RESCORED
            )
        return self._query(request)

    def search_many(self, searches: Sequence[Search]) -> list[list[Hit]]:
        """Several searches in one call, planned by Qdrant Edge as a whole (over unindexed segments
        they share passes; over indexed ones a batch costs about the sum of its searches, measured
        at 200,000 chunks). One result list per search (empty for a keyword search whose text has
        no keyword)."""
        requests: list[Any] = []
        for search in searches:
            if search.vector is not None:
                query = qe.Query.Nearest(list(search.vector), using=DENSE)
            else:
                query = self._sparse_nearest(search.text)
            if query is None:
                requests.append(None)
                continue
            flt = _filter({**(search.conditions or {}), "kind": "chunk"}, ids=search.ids)
            requests.append(
                qe.QueryRequest(
                    limit=search.limit,
                    query=query,
                    filter=flt,
                    with_payload=search.with_payload,
                    params=_dense_params(search),
                )
            )
        asked = [r for r in requests if r is not None]
        answers = iter(self._shard.query_batch(qe.QueryBatchRequest(asked)) if asked else [])
        return [[] if r is None else [_hit(point) for point in next(answers)] for r in requests]

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of the given points, by id (searches run without them: reading a hundred
        payloads costs more than the search that found them)."""
        if not ids:
            return {}
        records = self._shard.retrieve(list(ids), with_payload=True, with_vector=False)
        return {str(r.id): r.payload or {} for r in records}

    def facet(self, key: str, conditions: Conditions | None = None) -> dict[Any, int]:
        """How many chunks carry each value of the indexed payload field `key`."""
        asked = json.dumps([key, conditions], sort_keys=True, default=str)
        if asked not in self._facets:
            flt = _filter({**(conditions or {}), "kind": "chunk"})
            # Counted through the field's index: 10x faster than exact=True at 200,000 chunks (13
            # vs 142 ms, benchmarks/scale.py). Counts may be approximate; every value is listed.
            request = qe.FacetRequest(key=key, limit=1000, exact=False, filter=flt)
            self._facets[asked] = {h.value: int(h.count) for h in self._shard.facet(request).hits}
        return dict(self._facets[asked])

    def neighbours(self, doc_id: str, indices: Sequence[int]) -> list[Hit]:
        """A document's chunks at the given `chunk_index` positions (score 0), in index order."""
        if not indices:
            return []
        flt = _filter({"doc_id": doc_id, "kind": "chunk", "chunk_index": list(indices)})
        hits = [Hit(str(r.id), 0.0, r.payload or {}) for r in self._scroll(flt, True)]
        return sorted(hits, key=lambda hit: int(hit.payload.get("chunk_index", 0)))

    # -- helpers --------------------------------------------------------------------------------

    def _sparse_nearest(self, text: str | None) -> Any:
        if not text:
            return None
        indices, values = self._sparse_query(text)
        if not indices:
            return None
        return qe.Query.Nearest(qe.SparseVector(indices=indices, values=values), using=SPARSE)

    def _query(self, request: Any) -> list[Hit]:
        return [_hit(point) for point in self._shard.query(request)]

    def _write(self, operation: Any) -> None:
        self._dirty = True
        self._facets.clear()
        self._shard.update(operation)

    def _point(self, chunk: ChunkPoint, *, staged: bool = False) -> Any:
        return _edge_point(stored_point(chunk, self.dim, self._sparse_doc, staged=staged))

    def _scroll(self, flt: Any, with_payload: Any, with_vector: Any = False) -> Iterator[Any]:
        offset = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=flt,
                    with_payload=with_payload,
                    with_vector=with_vector,
                )
            )
            yield from records
            if offset is None:
                return


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
        payload[STAGED] = _STAGED_VALUE
    return StoredPoint(
        chunk.id, payload, list(chunk.vector), (indices, values) if indices else None
    )


def _dense_params(search: Search) -> Any:
    if search.vector is None:
        return None
    return _ROUGH if search.rough else _RESCORED


def _hit(point: Any) -> Hit:
    """A scored point of either client as a `Hit`."""
    return Hit(str(point.id), float(point.score), point.payload or {})


def _edge_point(point: StoredPoint) -> Any:
    vector: dict[str, Any] = {}
    if point.dense is not None:
        vector[DENSE] = list(point.dense)
    if point.sparse is not None and point.sparse[0]:
        vector[SPARSE] = qe.SparseVector(indices=point.sparse[0], values=point.sparse[1])
    return qe.Point(id=point.id, vector=vector, payload=point.payload)


def _edge_config(dim: int, index_after: int = INDEX_AFTER) -> Any:
    """Dense cosine vectors and IDF-weighted sparse ones. Segments stay appendable and are searched
    exactly until one holds `index_after` chunks; `optimize()` then builds immutable segments of up
    to 2x that with an HNSW graph, int8 copies of the vectors in RAM and the float originals on disk
    (benchmarks/scale.py: at 200,000 chunks, memory and latency; recall in the README)."""
    vectors_kb = max(1, index_after * dim * 4 // 1024)  # Qdrant sizes segments by vector storage
    return qe.EdgeConfig(
        vectors={
            DENSE: qe.EdgeVectorParams(
                size=dim,
                distance=qe.Distance.Cosine,
                memory=qe.Memory.Cold,
                quantization_config=qe.ScalarQuantizationConfig(
                    qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned
                ),
            )
        },
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=vectors_kb),
        # Segments of at most twice the threshold: merging bigger ones was what made an ingest's
        # memory peak (1.9 GB at 200,000 chunks with 5x; 1.3 GB with 2x).
        optimizers=qe.EdgeOptimizersConfig(
            indexing_threshold=vectors_kb, max_segment_size=2 * vectors_kb
        ),
    )


def _condition(key: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        return qe.FieldCondition(key=key, match=qe.MatchAny(any=list(value)))
    return qe.FieldCondition(key=key, match=qe.MatchValue(value=value))


def _filter(
    conditions: Conditions,
    exclude: Conditions | None = None,
    ids: Sequence[str] | None = None,
    *,
    staged: bool = False,
) -> Any:
    """Points matching `conditions` and not `exclude`; only committed points unless `staged`
    (then only staged ones)."""
    must = [_condition(k, v) for k, v in conditions.items()]
    if ids is not None:
        must.append(qe.HasIdCondition(point_ids=set(ids)))
    must_not = [_condition(k, v) for k, v in (exclude or {}).items()]
    (must if staged else must_not).append(_condition(STAGED, _STAGED_VALUE))
    return qe.Filter(must=must or None, must_not=must_not or None)


def _index_staged(shard: Any) -> None:
    shard.update(qe.UpdateOperation.create_field_index(STAGED, qe.PayloadSchemaType.Keyword))


def _acquire_lock(path: Path, wait_seconds: float) -> int:
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(handle)
                raise StoreLocked(str(path.parent)) from None
            time.sleep(0.1)


@contextlib.contextmanager
def hold_lock(path: Path, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold a knowledge base's lock without opening it (to delete or replace it)."""
    handle = _acquire_lock(path / "lock", wait_seconds)
    try:
        yield
    finally:
        _release_lock(handle)


def _release_lock(handle: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
