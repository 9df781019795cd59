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
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from stores.contract import (
    COUNTED,
    ChunkPoint,
    Conditions,
    Hit,
    Search,
    SparseFn,
    Store,
    StoreLocked,
    StoreMissing,
)
from stores.points import (
    DENSE,
    INDEXED_FIELDS,
    ROUGH_EF,
    SEARCH_EF,
    SPARSE,
    STAGED,
    PointStore,
    check_meta,
)

INDEX_AFTER = 20_000  # chunks a segment holds before it is indexed (HNSW); fewer: exact search
# `count_only` searches' counts kept until the next write (at most this many searches, oldest
# dropped first): a question's keyword counts cost ~2 ms on SciFact, and questions share half their
# keywords (SciFact's 300: 2,675 keywords, 1,334 distinct). ~200 bytes a search: at most ~4 MB.
COUNTS_KEPT = 20_000
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


class EdgeShardStore(PointStore):
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
        super().__init__(meta, sparse_doc, sparse_query)
        self.path = path
        self._shard: Any = shard
        self._lock: int | None = lock
        self._dirty = False
        # Facet counts and point counts until the next write: nobody else writes while this process
        # holds the lock.
        self._facets: dict[str, dict[Any, int]] = {}
        self._counts: dict[str, int] = {}
        self._counted: dict[str, int] = {}  # a count_only search -> how many hits
        # Taken by every call on the shard and held across a file's replacement: other threads
        # (`stores.remote.ReadServer`, serving other processes' questions) read between whole files.
        self.guard = threading.RLock()

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
                check_meta(built, meta)
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
                for name in INDEXED_FIELDS:
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

    def flush(self) -> None:
        """Make every write durable."""
        with self.guard:
            self._shard.flush()

    def optimize(self) -> bool:
        """Index the segments that grew past `index_after` chunks (an HNSW graph over int8 copies
        of the vectors, the originals left on disk for rescoring) and vacuum deleted points, then
        reopen the shard: the growing in-memory segment's memory is returned, not just reused.
        Blocking; nothing to do (a smaller knowledge base) costs a check and no write. Qdrant's
        optimizer builds new segments beside the old and swaps them in, so a kill mid-way loses
        nothing (tests/test_crash.py)."""
        with self.guard:
            if not self._shard.optimize():
                return False
            self._shard.flush()
            self._shard.close()
            self._shard = None
            self._shard = qe.EdgeShard.load(str(self.path / "shard"))
            return True

    def close(self) -> None:
        """Flush (after writes), close the shard and release the lock. Safe to call twice."""
        with self.guard:
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

    def replace_document(
        self, doc_id: str, chunks: Sequence[ChunkPoint], record: dict[str, Any]
    ) -> None:
        """Under `guard` throughout: a reader in another thread sees the old file or the new one."""
        with self.guard:
            super().replace_document(doc_id, chunks, record)

    def commit_staged(self, doc_id: str, record: dict[str, Any]) -> None:
        """Under `guard` throughout: a reader in another thread never sees the file absent."""
        with self.guard:
            super().commit_staged(doc_id, record)

    def facet(self, key: str, conditions: Conditions | None = None) -> dict[Any, int]:
        """Counted through the field's index, and kept until the next write."""
        asked = json.dumps([key, conditions], sort_keys=True, default=str)
        with self.guard:
            if asked not in self._facets:
                self._facets[asked] = super().facet(key, conditions)
            return dict(self._facets[asked])

    def count(self, kind: str = "chunk") -> int:
        """Counted exactly, and kept until the next write (a question asks it every time)."""
        with self.guard:
            if kind not in self._counts:
                self._counts[kind] = super().count(kind)
            return self._counts[kind]

    def search_many(self, searches: Sequence[Search]) -> list[list[Hit]]:
        """`count_only` searches answered from the ones kept since the last write, the rest asked
        in one batch."""
        with self.guard:
            keys = [_count_key(s) if s.count_only else None for s in searches]
            known = [None if key is None else self._counted.get(key) for key in keys]
            todo = [s for s, k in zip(searches, known, strict=True) if k is None]
            asked = iter(super().search_many(todo))
            out: list[list[Hit]] = []
            for key, count in zip(keys, known, strict=True):
                if count is not None:
                    out.append([COUNTED] * count)
                    continue
                hits = next(asked)
                if key is not None:
                    self._keep_count(key, len(hits))
                out.append(hits)
            return out

    def _keep_count(self, key: str, count: int) -> None:
        if len(self._counted) >= COUNTS_KEPT:
            del self._counted[next(iter(self._counted))]  # the oldest
        self._counted[key] = count

    # -- Qdrant Edge's primitives ---------------------------------------------------------------

    def _write(self, operation: Any) -> None:
        with self.guard:
            self._dirty = True
            self._facets.clear()
            self._counts.clear()
            self._counted.clear()
            self._shard.update(operation)

    def _client_point(self, point_id: str, vector: dict[str, Any], payload: dict[str, Any]) -> Any:
        return qe.Point(id=point_id, vector=vector, payload=payload)

    def _sparse_vector(self, indices: list[int], values: list[float]) -> Any:
        return qe.SparseVector(indices=indices, values=values)

    def _condition(self, key: str, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return qe.FieldCondition(key=key, match=qe.MatchAny(any=list(value)))
        return qe.FieldCondition(key=key, match=qe.MatchValue(value=value))

    def _has_id(self, ids: Sequence[str]) -> Any:
        return qe.HasIdCondition(point_ids=set(ids))

    def _combine(self, must: list[Any], must_not: list[Any]) -> Any:
        return qe.Filter(must=must or None, must_not=must_not or None)

    def _upsert(self, points: Sequence[Any], *, whole: bool = False) -> None:
        if points:  # every update is applied whole
            self._write(qe.UpdateOperation.upsert_points(list(points)))

    def _delete(self, flt: Any) -> None:
        self._write(qe.UpdateOperation.delete_points_by_filter(flt))

    def _drop(self, flt: Any) -> None:
        # Only write when there is something to drop: an unchanged re-ingest stays write-free.
        if self._count(flt):
            self._delete(flt)

    def _delete_ids(self, ids: list[str]) -> None:
        self._write(qe.UpdateOperation.delete_points(list(ids)))

    def _set_payload(self, ids: list[str], fields: dict[str, Any]) -> None:
        self._write(qe.UpdateOperation.set_payload(list(ids), fields))

    def _delete_payload(self, flt: Any, keys: list[str]) -> None:
        self._write(qe.UpdateOperation.delete_payload_by_filter(flt, keys))

    def _page(
        self, flt: Any, with_payload: Any, with_vectors: Any, offset: Any, limit: int
    ) -> tuple[Iterable[Any], Any]:
        request = qe.ScrollRequest(
            offset=offset,
            limit=limit,
            filter=flt,
            with_payload=with_payload,
            with_vector=with_vectors,
        )
        with self.guard:
            page: tuple[Iterable[Any], Any] = self._shard.scroll(request)
        return page

    def _count(self, flt: Any) -> int:
        with self.guard:
            return int(self._shard.count(qe.CountRequest(exact=True, filter=flt)))

    def _retrieve(self, ids: list[str]) -> Iterable[Any]:
        with self.guard:
            records: Iterable[Any] = self._shard.retrieve(ids, with_payload=True, with_vector=False)
        return records

    def _facet(self, key: str, flt: Any) -> dict[Any, int]:
        # Counted through the field's index: 10x faster than exact=True at 200,000 chunks (13
        # vs 142 ms, benchmarks/scale.py). Counts may be approximate; every value is listed.
        request = qe.FacetRequest(key=key, limit=1000, exact=False, filter=flt)
        with self.guard:
            return {h.value: int(h.count) for h in self._shard.facet(request).hits}

    def _dense_nearest(self, vector: Sequence[float]) -> Any:
        return qe.Query.Nearest(list(vector), using=DENSE)

    def _sparse_nearest_of(self, vector: Any) -> Any:
        return qe.Query.Nearest(vector, using=SPARSE)

    def _params(self, search: Search | None) -> Any:
        return _ROUGH if search is not None and search.rough else _RESCORED

    def _request(
        self, query: Any, flt: Any, limit: int, *, with_payload: bool = True, params: Any = None
    ) -> Any:
        return qe.QueryRequest(
            limit=limit, query=query, filter=flt, with_payload=with_payload, params=params
        )

    def _query(self, request: Any) -> Iterable[Any]:
        with self.guard:
            points: Iterable[Any] = self._shard.query(request)
        return points

    def _query_batch(self, requests: list[Any]) -> list[Iterable[Any]]:
        """Planned by Qdrant Edge as a whole (over unindexed segments the searches share passes;
        over indexed ones a batch costs about the sum of its searches, measured at 200,000 chunks)."""
        with self.guard:
            answers: list[Iterable[Any]] = self._shard.query_batch(qe.QueryBatchRequest(requests))
        return answers


_: type[Store] = EdgeShardStore  # mypy checks the backend against the declared contract


def _count_key(search: Search) -> str:
    """What a `count_only` search's hits depend on."""
    ids = None if search.ids is None else sorted(search.ids)
    vector = None if search.vector is None else list(search.vector)
    fields = [search.limit, search.text, vector, search.conditions, ids, search.rough]
    return json.dumps(fields, sort_keys=True, default=str)


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
