"""Both stores through LlamaIndex's API, one contract: the embedded Qdrant Edge shard and a Qdrant
server's collection through qdrant-client (here in its local mode, the same client API; set
KB_TEST_QDRANT_URL=http://localhost:6333 to run these against a real server too). Real data on tmp_path."""

from __future__ import annotations

import hashlib
import os
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
from stores.qdrant import _META_ID, QdrantStore, drop_collection
from stores.shard import CollectionMismatch, EdgeShardStore, StoreLocked, StoreMissing
from stores.vector_store import KbVectorStore
from tests.fakes import HashEmbedding

META = {"embedder": "hash:hash-64", "dim": 64}
EMBED = HashEmbedding()


BACKENDS = ["edge", "qdrant"]
SERVER_URL = os.environ.get("KB_TEST_QDRANT_URL", "")
_COLLECTIONS: list[str] = []


def _open(
    path: Path, meta: dict[str, object] | None = None, create: bool = True, backend: str = "edge"
) -> KbVectorStore:
    if backend == "qdrant":
        collection = f"kbtest_{hashlib.blake2b(str(path).encode(), digest_size=8).hexdigest()}"
        _COLLECTIONS.append(collection)
        return KbVectorStore.over(
            QdrantStore.open(
                SERVER_URL or f"file://{path}",
                collection,
                meta=meta or META,
                sparse_doc_fn=sparse_document,
                sparse_query_fn=sparse_query,
                create=create,
            )
        )
    shard = EdgeShardStore.open(
        path,
        meta=meta or META,
        sparse_doc_fn=sparse_document,
        sparse_query_fn=sparse_query,
        create=create,
    )
    return KbVectorStore.over(shard)


def _node(node_id: str, doc: str, text: str, lang: str = "en") -> TextNode:
    return TextNode(
        id_=node_id,
        text=text,
        metadata={"path": doc, "lang": lang},
        embedding=EMBED.get_text_embedding(text),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)},
    )


IDS = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(5)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield request.param
    while SERVER_URL and _COLLECTIONS:  # a real server outlives the test: clean up
        drop_collection(SERVER_URL, _COLLECTIONS.pop())


@pytest.fixture
def store(tmp_path: Path, backend: str) -> Iterator[KbVectorStore]:
    s = _open(tmp_path / "kb", backend=backend)
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


def _ask(store: KbVectorStore, text: str, mode: VectorStoreQueryMode, **kw: object) -> list[str]:
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
    store: KbVectorStore, mode: VectorStoreQueryMode
) -> None:
    assert _ask(store, "which port does the server listen on", mode)[0] == "b.md"
    assert _ask(store, "内存 部署", mode)[0] == "c.md"


def test_metadata_filters(store: KbVectorStore) -> None:
    only_zh = MetadataFilters(filters=[MetadataFilter(key="lang", value="zh")])
    assert _ask(store, "refund", VectorStoreQueryMode.DEFAULT, filters=only_zh) == ["c.md"]
    not_a = MetadataFilters(
        filters=[MetadataFilter(key="path", value="a.md", operator=FilterOperator.NE)]
    )
    assert "a.md" not in _ask(store, "refund window", VectorStoreQueryMode.HYBRID, filters=not_a)


def test_query_returns_text_and_metadata(store: KbVectorStore) -> None:
    result = store.query(
        VectorStoreQuery(
            query_str="refund window", similarity_top_k=1, mode=VectorStoreQueryMode.SPARSE
        )
    )
    assert result.nodes is not None
    assert result.ids == [IDS[0]]
    assert result.nodes[0].get_content() == "The refund window is 30 days."
    assert result.nodes[0].metadata["doc_id"] == "a.md"


def test_delete_by_document_and_by_node(store: KbVectorStore) -> None:
    store.delete("a.md")
    assert store.client.count() == 2
    store.delete_nodes([IDS[2]])
    assert store.client.count() == 1


def test_replace_document_swaps_chunks_and_record(store: KbVectorStore) -> None:
    store.replace_document(
        "a.md", [_node(IDS[4], "a.md", "New refund text.")], {"path": "a.md", "chunks": 1}
    )
    assert store.client.count() == 3
    assert [r["chunks"] for r in store.client.records()] == [1]


def test_reopen_keeps_everything_and_checks_settings(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "kb"
    first = _open(path, backend=backend)
    first.add([_node(IDS[0], "a.md", "kept across reopen")])
    first.client.close()
    again = _open(path, create=False, backend=backend)
    assert again.client.count() == 1
    again.client.close()
    with pytest.raises(CollectionMismatch, match="dim"):
        _open(path, meta={"embedder": "hash:hash-64", "dim": 32}, backend=backend)
    with pytest.raises(StoreMissing):
        _open(tmp_path / "nothing" / "kb", create=False, backend=backend)


def test_points_copy_between_backends_without_embedding(
    store: KbVectorStore, tmp_path: Path
) -> None:
    other = "qdrant" if isinstance(store.client, EdgeShardStore) else "edge"
    copy = _open(tmp_path / "copy" / "kb", backend=other)
    copy.client.put_points(list(store.client.points(vectors=True)))
    assert copy.client.count() == store.client.count() == 4
    for mode in VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.SPARSE:
        for text in "which port does the server listen on", "内存 部署", "refund":
            assert _ask(copy, text, mode)[0] == _ask(store, text, mode)[0]  # ties may differ
    copy.client.close()


def test_second_opener_is_locked_out_without_harming_the_first(tmp_path: Path) -> None:
    store = _open(tmp_path / "kb")
    store.add([_node(IDS[i], "a.md", f"text {i}") for i in range(4)])
    with pytest.raises(StoreLocked):
        _open(store.client.path)
    store.add([_node(IDS[4], "d.md", "still writable")])
    store.client.flush()
    assert store.client.count() == 5
    store.client.close()


def test_interrupted_server_creation_is_finished_by_the_next_writer(tmp_path: Path) -> None:
    from qdrant_client import models

    url = f"file://{tmp_path / 'server'}"
    s = QdrantStore.open(
        url,
        "kb_x",
        meta=META,
        sparse_doc_fn=sparse_document,
        sparse_query_fn=sparse_query,
        create=True,
    )
    s.client.delete("kb_x", points_selector=models.PointIdsList(points=[_META_ID]), wait=True)
    s.close()  # as if killed after creating the collection, before recording how it was built
    with pytest.raises(StoreMissing):
        QdrantStore.open(
            url,
            "kb_x",
            meta=META,
            sparse_doc_fn=sparse_document,
            sparse_query_fn=sparse_query,
            create=False,
        )
    again = QdrantStore.open(
        url,
        "kb_x",
        meta=META,
        sparse_doc_fn=sparse_document,
        sparse_query_fn=sparse_query,
        create=True,
    )
    assert again.meta == META
    again.close()


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


def test_a_bad_vector_never_costs_the_stored_version(store: KbVectorStore) -> None:
    bad = TextNode(id_=IDS[4], text="x", embedding=[0.1] * 10)
    with pytest.raises(ValueError, match="size 10"):
        store.replace_document("a.md", [bad], {"path": "a.md"})
    assert store.client.count() == 4
