"""The embedded default store: Qdrant Edge (Qdrant's engine in-process) behind LlamaIndex's vector-store API.

One folder holds one knowledge base: `shard/` (the Edge shard: a dense vector, a BM25-style sparse vector
with the IDF modifier, and payload), `collection.json` (the embedder, dimension and chunking settings it
was built with) and `lock` (one process at a time: Qdrant Edge itself refuses a second opener, and a
refused open must never touch the files the first process is using).

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
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from pydantic import PrivateAttr

DENSE = "dense"
SPARSE = "sparse"
SparseFn = Callable[[str], tuple[list[int], list[float]]]
_RECORD_NAMESPACE = uuid.UUID("6f1f8f46-2d0c-4c8e-9f53-5b7f0c3e7a10")
_INDEXED_FIELDS = ("kind", "doc_id", "root", "path", "lang", "file_type")
_SCROLL_PAGE = 1024


class StoreLocked(Exception):
    """Another process has the knowledge base open."""


class StoreMissing(Exception):
    """No knowledge base exists at the path."""


class CollectionMismatch(Exception):
    """The knowledge base was built with other settings; `differences` names them."""

    def __init__(self, differences: dict[str, tuple[Any, Any]]) -> None:
        self.differences = differences
        detail = ", ".join(
            f"{k}: built with {old!r}, now {new!r}" for k, (old, new) in differences.items()
        )
        super().__init__(detail)


def record_id(doc_id: str) -> str:
    """The id of a file's record point."""
    return str(uuid.uuid5(_RECORD_NAMESPACE, doc_id))


class EdgeVectorStore(BasePydanticVectorStore):
    """Qdrant Edge as a LlamaIndex vector store: dense, sparse and hybrid queries, fused in the engine."""

    stores_text: bool = True
    is_embedding_query: bool = True
    path: str
    dim: int
    rrf_k: int = 60

    _shard: Any = PrivateAttr()
    _dirty: bool = PrivateAttr(default=False)
    _lock: Any = PrivateAttr()
    _sparse_doc: SparseFn = PrivateAttr()
    _sparse_query: SparseFn = PrivateAttr()

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
    ) -> EdgeVectorStore:
        """Open (or with `create`, create) the store at `path`; checks `meta` against what it was built with."""
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
                shard = qe.EdgeShard.load(str(shard_path))
            else:
                # A shard without collection.json is a creation that was interrupted: start over.
                shutil.rmtree(shard_path, ignore_errors=True)
                shard = qe.EdgeShard.create(str(shard_path), _edge_config(int(meta["dim"])))
                for field in _INDEXED_FIELDS:
                    shard.update(
                        qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
                    )
                shard.flush()
                _write_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True))
        except BaseException:
            _release_lock(lock)
            raise
        store = cls(path=str(path), dim=int(meta["dim"]))
        store._shard = shard
        store._lock = lock
        store._sparse_doc = sparse_doc_fn
        store._sparse_query = sparse_query_fn
        return store

    @property
    def client(self) -> Any:
        """The underlying `qdrant_edge.EdgeShard`."""
        return self._shard

    # -- writing --------------------------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert embedded nodes (LlamaIndex API)."""
        points = [self._point(node) for node in nodes]
        if points:
            self._write(qe.UpdateOperation.upsert_points(points))
        return [node.node_id for node in nodes]

    def replace_document(
        self, doc_id: str, nodes: Sequence[BaseNode], record: dict[str, Any]
    ) -> None:
        """Swap a document's chunks and record for new ones: it is never seen half-written."""
        payload = {**record, "kind": "file", "doc_id": doc_id}
        points = [
            self._point(node) for node in nodes
        ]  # built (and checked) before anything is deleted
        points.append(qe.Point(id=record_id(doc_id), vector={}, payload=payload))
        self.delete(doc_id)
        self._write(qe.UpdateOperation.upsert_points(points))

    def update_record(self, doc_id: str, fields: dict[str, Any]) -> None:
        """Change fields of a document's record (not its chunks)."""
        self._write(qe.UpdateOperation.set_payload([record_id(doc_id)], fields))

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Remove a document's chunks and its record (LlamaIndex API)."""
        self._write(qe.UpdateOperation.delete_points_by_filter(_match("doc_id", ref_doc_id)))

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Remove chunks by id (LlamaIndex API)."""
        if node_ids:
            self._write(qe.UpdateOperation.delete_points(list(node_ids)))
        if filters is not None:
            self._write(qe.UpdateOperation.delete_points_by_filter(_filter(filters)))

    def flush(self) -> None:
        """Make every write durable."""
        self._shard.flush()

    def _write(self, operation: Any) -> None:
        self._dirty = True
        self._shard.update(operation)

    def close(self) -> None:
        """Flush, close the shard and release the lock. Safe to call twice."""
        shard = getattr(self, "_shard", None)
        if shard is not None:
            try:
                if self._dirty:
                    shard.flush()
                shard.close()
            finally:
                self._shard = None
                _release_lock(self._lock)

    # -- reading --------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """The payload of every file record."""
        return [record.payload or {} for record in self._scroll(_match("kind", "file"), True)]

    def document_vectors(self, doc_id: str) -> dict[str, tuple[list[float], dict[str, Any]]]:
        """A document's chunks as {chunk_hash: (dense vector, payload)}, to reuse without embedding."""
        out: dict[str, tuple[list[float], dict[str, Any]]] = {}
        flt = qe.Filter(must=[_condition("doc_id", doc_id), _condition("kind", "chunk")])
        for record in self._scroll(flt, True, with_vector=[DENSE]):
            payload = record.payload or {}
            vector = record.vector
            if isinstance(vector, dict) and DENSE in vector:
                out[str(payload.get("chunk_hash"))] = (list(vector[DENSE]), payload)
        return out

    def count(self, kind: str = "chunk") -> int:
        """How many chunk (or file) points there are."""
        return int(self._shard.count(qe.CountRequest(exact=True, filter=_match("kind", kind))))

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Dense (DEFAULT), SPARSE or HYBRID (reciprocal-rank fusion in the engine) search over chunks."""
        limit = query.similarity_top_k
        flt = qe.Filter(must=[_condition("kind", "chunk")])
        if query.filters is not None:
            flt = qe.Filter(must=[_condition("kind", "chunk"), _filter(query.filters)])
        dense = None
        if query.query_embedding is not None:
            dense = qe.Query.Nearest(list(query.query_embedding), using=DENSE)
        sparse = None
        if query.query_str:
            indices, values = self._sparse_query(query.query_str)
            if indices:
                sparse = qe.Query.Nearest(
                    qe.SparseVector(indices=indices, values=values), using=SPARSE
                )
        mode = query.mode
        if mode == VectorStoreQueryMode.SPARSE:
            if sparse is None:
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
            request = qe.QueryRequest(limit=limit, query=sparse, filter=flt, with_payload=True)
        elif mode == VectorStoreQueryMode.HYBRID and sparse is not None and dense is not None:
            depth = max(limit, query.sparse_top_k or 0, query.hybrid_top_k or 0, 50)
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(limit=depth, query=dense, filter=flt),
                    qe.Prefetch(limit=depth, query=sparse, filter=flt),
                ],
                query=qe.Fusion.Rrf(k=self.rrf_k),  # type: ignore[arg-type]  # the stub misses Rrf
                filter=flt,
                with_payload=True,
            )
        else:
            if dense is None:
                raise ValueError("a dense query needs query_embedding")
            request = qe.QueryRequest(limit=limit, query=dense, filter=flt, with_payload=True)
        hits = self._shard.query(request)
        nodes = [_node(str(hit.id), hit.payload or {}) for hit in hits]
        return VectorStoreQueryResult(
            nodes=list(nodes),
            similarities=[float(h.score) for h in hits],
            ids=[str(h.id) for h in hits],
        )

    # -- helpers --------------------------------------------------------------------------------

    def _point(self, node: BaseNode) -> Any:
        embedding = node.get_embedding()
        if len(embedding) != self.dim:
            raise ValueError(f"vector of size {len(embedding)} for a store of size {self.dim}")
        indices, values = self._sparse_doc(node.get_content(metadata_mode=MetadataMode.EMBED))
        vector: dict[str, Any] = {DENSE: list(embedding)}
        if indices:
            vector[SPARSE] = qe.SparseVector(indices=indices, values=values)
        payload = {
            **node.metadata,
            "kind": "chunk",
            "doc_id": node.ref_doc_id or node.node_id,
            "text": node.get_content(metadata_mode=MetadataMode.NONE),
        }
        return qe.Point(id=node.node_id, vector=vector, payload=payload)

    def _scroll(self, flt: Any, with_payload: bool, with_vector: Any = False) -> Iterator[Any]:
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


def _edge_config(dim: int) -> Any:
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )


def _node(point_id: str, payload: dict[str, Any]) -> TextNode:
    metadata = {k: v for k, v in payload.items() if k not in {"text", "kind"}}
    return TextNode(id_=point_id, text=str(payload.get("text", "")), metadata=metadata)


def _condition(key: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        return qe.FieldCondition(key=key, match=qe.MatchAny(any=list(value)))
    return qe.FieldCondition(key=key, match=qe.MatchValue(value=value))


def _match(key: str, value: Any) -> Any:
    return qe.Filter(must=[_condition(key, value)])


def _filter(filters: MetadataFilters) -> Any:
    conditions: list[Any] = []
    negated: list[Any] = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            conditions.append(_filter(item))
            continue
        assert isinstance(item, MetadataFilter)
        if item.operator in (FilterOperator.EQ, FilterOperator.IN):
            conditions.append(_condition(item.key, item.value))
        elif item.operator in (FilterOperator.NE, FilterOperator.NIN):
            negated.append(_condition(item.key, item.value))
        else:
            raise ValueError(f"filter operator {item.operator} is not supported")
    if str(filters.condition).lower().endswith("or"):
        return qe.Filter(should=conditions, must_not=negated or None)
    return qe.Filter(must=conditions or None, must_not=negated or None)


def _acquire_lock(path: Path, wait_seconds: float) -> Any:
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


def _release_lock(handle: Any) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
