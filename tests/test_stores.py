"""The Qdrant Edge vector store through LlamaIndex's API: real shards on tmp_path."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from core.text import sparse_document, sparse_query
from stores.edge import EdgeVectorStore
from stores.shard import CollectionMismatch, EdgeShardStore, StoreLocked, StoreMissing
from tests.fakes import HashEmbedding

META = {"embedder": "hash:hash-64", "dim": 64}
EMBED = HashEmbedding()


def _open(
    path: Path, meta: dict[str, object] | None = None, create: bool = True
) -> EdgeVectorStore:
    shard = EdgeShardStore.open(
        path,
        meta=meta or META,
        sparse_doc_fn=sparse_document,
        sparse_query_fn=sparse_query,
        create=create,
    )
    return EdgeVectorStore.over(shard)


def _node(node_id: str, doc: str, text: str, lang: str = "en") -> TextNode:
    return TextNode(
        id_=node_id,
        text=text,
        metadata={"path": doc, "lang": lang},
        embedding=EMBED.get_text_embedding(text),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)},
    )


IDS = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(5)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeVectorStore]:
    s = _open(tmp_path / "kb")
    s.add(
        [
            _node(IDS[0], "a.md", "The refund window is 30 days."),
            _node(IDS[1], "a.md", "Refunds are paid in 10 business days."),
            _node(IDS[2], "b.md", "The server listens on port 8743."),
            _node(IDS[3], "c.md", "部署需要至少 2 GB 内存。", lang="zh"),
        ]
    )
    yield s
    s.client.close()


def _ask(store: EdgeVectorStore, text: str, mode: VectorStoreQueryMode, **kw: object) -> list[str]:
    query = VectorStoreQuery(
        query_embedding=EMBED.get_query_embedding(text),
        query_str=text,
        similarity_top_k=2,
        mode=mode,
        **kw,
    )
    return [n.metadata["path"] for n in store.query(query).nodes]


@pytest.mark.parametrize(
    "mode", [VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.SPARSE, VectorStoreQueryMode.HYBRID]
)
def test_each_mode_finds_the_matching_chunk(
    store: EdgeVectorStore, mode: VectorStoreQueryMode
) -> None:
    assert _ask(store, "which port does the server listen on", mode)[0] == "b.md"
    assert _ask(store, "内存 部署", mode)[0] == "c.md"


def test_metadata_filters(store: EdgeVectorStore) -> None:
    only_zh = MetadataFilters(filters=[MetadataFilter(key="lang", value="zh")])
    assert _ask(store, "refund", VectorStoreQueryMode.DEFAULT, filters=only_zh) == ["c.md"]
    not_a = MetadataFilters(
        filters=[MetadataFilter(key="path", value="a.md", operator=FilterOperator.NE)]
    )
    assert "a.md" not in _ask(store, "refund window", VectorStoreQueryMode.HYBRID, filters=not_a)


def test_query_returns_text_and_metadata(store: EdgeVectorStore) -> None:
    result = store.query(
        VectorStoreQuery(
            query_str="refund window", similarity_top_k=1, mode=VectorStoreQueryMode.SPARSE
        )
    )
    assert result.nodes is not None
    assert result.ids == [IDS[0]]
    assert result.nodes[0].get_content() == "The refund window is 30 days."
    assert result.nodes[0].metadata["doc_id"] == "a.md"


def test_delete_by_document_and_by_node(store: EdgeVectorStore) -> None:
    store.delete("a.md")
    assert store.client.count() == 2
    store.delete_nodes([IDS[2]])
    assert store.client.count() == 1


def test_replace_document_swaps_chunks_and_record(store: EdgeVectorStore) -> None:
    store.replace_document(
        "a.md", [_node(IDS[4], "a.md", "New refund text.")], {"path": "a.md", "chunks": 1}
    )
    assert store.client.count() == 3
    assert [r["chunks"] for r in store.client.records()] == [1]


def test_reopen_keeps_everything_and_checks_settings(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    first = _open(path)
    first.add([_node(IDS[0], "a.md", "kept across reopen")])
    first.client.close()
    again = _open(path, create=False)
    assert again.client.count() == 1
    again.client.close()
    with pytest.raises(CollectionMismatch, match="dim"):
        _open(path, meta={"embedder": "hash:hash-64", "dim": 32})
    with pytest.raises(StoreMissing):
        _open(tmp_path / "nothing", create=False)


def test_second_opener_is_locked_out_without_harming_the_first(store: EdgeVectorStore) -> None:
    with pytest.raises(StoreLocked):
        _open(store.client.path)
    store.add([_node(IDS[4], "d.md", "still writable")])
    store.client.flush()
    assert store.client.count() == 5


def test_interrupted_creation_is_started_over(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    s = _open(path)
    s.client.close()
    (path / "collection.json").unlink()  # as if killed between creating the shard and the record
    again = _open(path)
    assert again.client.count() == 0
    again.client.close()


def test_files_are_private_to_the_owner(tmp_path: Path) -> None:
    s = _open(tmp_path / "kb")
    s.client.close()
    assert (tmp_path / "kb").stat().st_mode & 0o077 == 0
    assert (tmp_path / "kb" / "collection.json").stat().st_mode & 0o077 == 0
    shutil.rmtree(tmp_path / "kb")


def test_a_bad_vector_never_costs_the_stored_version(store: EdgeVectorStore) -> None:
    bad = TextNode(id_=IDS[4], text="x", embedding=[0.1] * 10)
    with pytest.raises(ValueError, match="size 10"):
        store.replace_document("a.md", [bad], {"path": "a.md"})
    assert store.client.count() == 4
