"""A knowledge base behind LlamaIndex's vector-store API: a thin adapter over either store, the
embedded `EdgeShardStore` (Qdrant Edge, Qdrant's engine in-process) or a Qdrant server's collection
(`QdrantStore`). Ingest writes through it.

Its `query` runs one search, as LlamaIndex's query modes define them: DEFAULT by the query
embedding (cosine), SPARSE by the query text's keyword vector (BM25-style). It does no hybrid
fusion of its own: kb ranks by fusing both scores in `core.retrieve`, which `kb ask` uses and which
`core.llamaindex.KbRetriever` puts behind LlamaIndex's retriever API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from pydantic import PrivateAttr

from stores.contract import ChunkPoint, Conditions, Store

_MODES = {VectorStoreQueryMode.DEFAULT: "dense", VectorStoreQueryMode.SPARSE: "sparse"}


class KbVectorStore(BasePydanticVectorStore):
    """A knowledge base's store (embedded or server) as a LlamaIndex vector store."""

    stores_text: bool = True
    is_embedding_query: bool = True

    _shard: Store = PrivateAttr()

    @classmethod
    def over(cls, shard: Store) -> KbVectorStore:
        """The LlamaIndex face of an open shard."""
        store = cls()
        store._shard = shard
        return store

    @property
    def client(self) -> Any:
        """The store underneath."""
        return self._shard

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert embedded nodes."""
        self._shard.upsert([chunk_point(node) for node in nodes])
        return [node.node_id for node in nodes]

    def replace_document(
        self, doc_id: str, nodes: Sequence[BaseNode], record: dict[str, Any]
    ) -> None:
        """Swap a document's chunks and record for new ones in one visible step."""
        self._shard.replace_document(doc_id, [chunk_point(node) for node in nodes], record)

    def stage(self, doc_id: str, nodes: Sequence[BaseNode]) -> None:
        """Write part of a large document's new version, invisible until `commit_staged`."""
        self._shard.stage(doc_id, [chunk_point(node) for node in nodes])

    def commit_staged(self, doc_id: str, record: dict[str, Any]) -> None:
        """Make a document's staged version, with its record, the visible one."""
        self._shard.commit_staged(doc_id, record)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Remove a document's chunks and its record."""
        self._shard.delete_document(ref_doc_id)

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Remove chunks by id or by metadata filter."""
        if node_ids:
            self._shard.delete_ids(node_ids)
        if filters is not None:
            self._shard.delete_where(*_conditions(filters))

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """One dense (DEFAULT) or keyword (SPARSE) search over chunks."""
        if query.mode == VectorStoreQueryMode.HYBRID:
            raise ValueError(
                "hybrid queries are not fused here: retrieve through core.llamaindex.KbRetriever"
            )
        if query.mode not in _MODES:
            raise ValueError(f"query mode {query.mode} is not supported")
        conditions, exclude = _conditions(query.filters) if query.filters else ({}, {})
        hits = self._shard.search(
            limit=query.similarity_top_k,
            mode=_MODES[query.mode],
            dense=query.query_embedding,
            text=query.query_str,
            conditions=conditions,
            exclude=exclude,
        )
        nodes = [_node(hit.id, hit.payload) for hit in hits]
        return VectorStoreQueryResult(
            nodes=list(nodes),
            similarities=[hit.score for hit in hits],
            ids=[hit.id for hit in hits],
        )


def chunk_point(node: BaseNode) -> ChunkPoint:
    """A LlamaIndex node as a point: the keyword vector is made from what the dense one embeds."""
    return ChunkPoint(
        id=node.node_id,
        doc_id=node.ref_doc_id or node.node_id,
        vector=node.get_embedding(),
        sparse_text=node.get_content(metadata_mode=MetadataMode.EMBED),
        payload={**node.metadata, "text": node.get_content(metadata_mode=MetadataMode.NONE)},
    )


def _node(point_id: str, payload: dict[str, Any]) -> TextNode:
    metadata = {k: v for k, v in payload.items() if k not in {"text", "kind"}}
    return TextNode(id_=point_id, text=str(payload.get("text", "")), metadata=metadata)


def _conditions(filters: MetadataFilters) -> tuple[Conditions, Conditions]:
    """AND-ed equality filters as (must match, must not match)."""
    if filters.condition not in (None, FilterCondition.AND):
        raise ValueError("only AND-ed metadata filters are supported")
    must: Conditions = {}
    must_not: Conditions = {}
    for item in filters.filters:
        if not isinstance(item, MetadataFilter):
            raise ValueError("nested metadata filters are not supported")
        if item.operator in (FilterOperator.EQ, FilterOperator.IN):
            must[item.key] = item.value
        elif item.operator in (FilterOperator.NE, FilterOperator.NIN):
            must_not[item.key] = item.value
        else:
            raise ValueError(f"filter operator {item.operator} is not supported")
    return must, must_not
