"""Both stores through LlamaIndex's API, one contract: the embedded Qdrant Edge shard and a Qdrant
server's collection through qdrant-client (here in its local mode, the same client API; set
KB_TEST_QDRANT_URL=http://localhost:6333 to run these against a real server too). Real data on tmp_path."""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import qdrant_edge as qe
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from core.text import sparse_document, sparse_query
from stores.contract import (
    COUNTED,
    ChunkPoint,
    CollectionMismatch,
    Hit,
    Search,
    StoreLocked,
    StoreMissing,
)
from stores.points import STAGED
from stores.qdrant import _META_ID, QdrantStore, drop_collection
from stores.shard import EdgeShardStore
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


@pytest.mark.parametrize("mode", [VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.SPARSE])
def test_each_mode_finds_the_matching_chunk(
    store: KbVectorStore, mode: VectorStoreQueryMode
) -> None:
    assert _ask(store, "which port does the server listen on", mode)[0] == "b.md"
    assert _ask(store, "内存 部署", mode)[0] == "c.md"


def test_hybrid_queries_are_left_to_kbs_retriever(store: KbVectorStore) -> None:
    """kb has one hybrid ranking (core.retrieve); the adapter does not fuse a second way."""
    with pytest.raises(ValueError, match="KbRetriever"):
        _ask(store, "refund window", VectorStoreQueryMode.HYBRID)


def test_metadata_filters(store: KbVectorStore) -> None:
    only_zh = MetadataFilters(filters=[MetadataFilter(key="lang", value="zh")])
    assert _ask(store, "refund", VectorStoreQueryMode.DEFAULT, filters=only_zh) == ["c.md"]
    not_a = MetadataFilters(
        filters=[MetadataFilter(key="path", value="a.md", operator=FilterOperator.NE)]
    )
    for mode in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.SPARSE):
        found = _ask(store, "refund window of the server", mode, filters=not_a)
        assert "b.md" in found
        assert "a.md" not in found


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

    def server(create: bool) -> QdrantStore:
        return QdrantStore.open(
            url,
            "kb_x",
            meta=META,
            sparse_doc_fn=sparse_document,
            sparse_query_fn=sparse_query,
            create=create,
        )

    s = server(create=True)
    s.client.delete("kb_x", points_selector=models.PointIdsList(points=[_META_ID]), wait=True)
    s.close()  # as if killed after creating the collection, before recording how it was built
    with pytest.raises(StoreMissing):
        server(create=False)
    again = server(create=True)
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


def test_a_batch_of_searches_answers_each_as_if_asked_alone(store: KbVectorStore) -> None:
    shard = store.client
    vector = EMBED.get_query_embedding("refund window")
    batch = [
        Search(3, vector),
        Search(2, text="refund days"),
        Search(3, text="the"),  # no keyword left once stop words go: no hits, no request
        Search(5, vector, conditions={"lang": "zh"}, with_payload=False),
        Search(5, [-x for x in vector], ids=[IDS[0], IDS[2]]),
    ]
    alone = [
        shard.dense_search(vector, limit=3),
        shard.sparse_search("refund days", limit=2),
        [],
        shard.dense_search(vector, limit=5, conditions={"lang": "zh"}, with_payload=False),
        shard.dense_search([-x for x in vector], limit=5, ids=[IDS[0], IDS[2]]),
    ]
    answers = shard.search_many(batch)
    assert [[(h.id, round(h.score, 5)) for h in a] for a in answers] == [
        [(h.id, round(h.score, 5)) for h in a] for a in alone
    ]
    assert [h.id for h in answers[3]] == [IDS[3]]
    assert {h.id for h in answers[4]} == {IDS[0], IDS[2]}
    assert shard.search_many([]) == []


def test_a_count_only_search_gives_the_number_of_hits_without_ids(store: KbVectorStore) -> None:
    """Retrieval counts the chunks holding each question keyword; their ids are never read."""
    shard = store.client
    full, counted = shard.search_many(
        [Search(5, text="refund days"), Search(5, text="refund days", count_only=True)]
    )
    assert len(full) == len(counted) == 2
    assert counted == [COUNTED, COUNTED]
    assert COUNTED.id == ""
    assert COUNTED.payload == {}


def test_keyword_counts_follow_writes(store: KbVectorStore) -> None:
    """A keyword's count is asked again by later questions (the Edge store keeps it): it changes
    with every write, and a count asked twice in one batch is answered twice."""
    shard = store.client
    count = Search(10, text="refund", count_only=True)
    first = shard.search_many([count])[0]
    assert len(first) == 2
    again, same = shard.search_many([count, count])
    assert again == same == first
    store.add([_node(IDS[4], "d.md", "A refund needs the receipt.")])
    assert len(shard.search_many([count])[0]) == 3
    store.delete("a.md")
    assert len(shard.search_many([count])[0]) == 1


def test_language_and_chunk_counts_follow_writes(store: KbVectorStore) -> None:
    shard = store.client
    assert shard.facet("lang") == {"en": 3, "zh": 1}
    assert shard.count() == 4
    assert shard.count("file") == 0
    store.add([_node(IDS[4], "d.md", "東京の天気は晴れです。", lang="ja")])
    assert shard.facet("lang") == {"en": 3, "zh": 1, "ja": 1}
    assert shard.facet("lang", {"path": "d.md"}) == {"ja": 1}
    assert shard.count() == 5
    store.delete("d.md")
    assert shard.facet("lang") == {"en": 3, "zh": 1}
    assert shard.count() == 4


def test_a_grown_store_is_indexed_and_answers_as_before(tmp_path: Path) -> None:
    """Past `index_after` chunks, optimize() builds an HNSW segment over int8 copies of the vectors:
    the nearest chunks stay the same (here, on a few hundred, the graph search is as good as exact),
    keyword search and filters still work, and the index survives a reopen."""
    rng = random.Random(7)

    def unit() -> list[float]:  # spread-out vectors: no two chunks tie for a place
        v = [rng.gauss(0, 1) for _ in range(64)]
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    words = [f"term{i}" for i in range(60)]
    chunks = [
        ChunkPoint(
            id=str(uuid.UUID(int=i + 1)),
            doc_id=f"doc{i // 10}.md",
            vector=unit(),
            sparse_text=f"{words[i % 60]} {words[(i * 7) % 60]} chunk {i}",
            payload={"lang": "zh" if i % 3 == 0 else "en", "path": f"doc{i // 10}.md"},
        )
        for i in range(400)
    ]
    path = tmp_path / "kb"

    def edge(index_after: int = 100, create: bool = True) -> EdgeShardStore:
        return EdgeShardStore.open(
            path,
            meta=META,
            sparse_doc_fn=sparse_document,
            sparse_query_fn=sparse_query,
            create=create,
            index_after=index_after,
        )

    queries = [unit() for _ in range(12)]
    vectors = {c.id: c.vector for c in chunks}
    english = {c.id for c in chunks if c.payload["lang"] == "en"}

    def answers(shard: EdgeShardStore) -> list[list[Hit]]:
        return shard.search_many(
            [Search(5, q) for q in queries]
            + [Search(5, q, conditions={"lang": "en"}) for q in queries]
            + [Search(50, text="term7 term13")]  # every chunk with either word
        )

    def check(found: list[list[Hit]], exact: list[list[Hit]]) -> None:
        # Dense: the graph over int8 copies finds (nearly) the exact nearest chunks, and every
        # score is the exact cosine (rescored with the original vectors), not an int8 estimate.
        overlap = 0
        for query, hits, truth in zip(queries * 2, found[:24], exact[:24], strict=True):
            assert len(hits) == 5
            for hit in hits:
                cosine = sum(a * b for a, b in zip(query, vectors[hit.id], strict=True))
                assert hit.score == pytest.approx(cosine, abs=1e-5)
            overlap += len({h.id for h in hits} & {h.id for h in truth})
        assert all(h.id in english for hits in found[12:24] for h in hits)
        assert overlap >= 0.9 * 24 * 5
        assert {(h.id, round(h.score, 5)) for h in found[24]} == {
            (h.id, round(h.score, 5)) for h in exact[24]
        }

    shard = edge()
    shard.upsert(chunks)
    exact = answers(shard)
    assert not list(path.glob("shard/segments/*/vector_index-dense/graph.bin"))
    assert shard.optimize() is True
    assert list(path.glob("shard/segments/*/vector_index-dense/graph.bin"))
    check(answers(shard), exact)
    assert shard.optimize() is False  # nothing left to do
    assert shard.count() == 400
    shard.close()
    reopened = edge(create=False)
    check(answers(reopened), exact)
    assert reopened.facet("lang") == {"en": 266, "zh": 134}
    reopened.close()


def test_an_older_store_gets_the_staged_index_even_when_opened_to_read(tmp_path: Path) -> None:
    """Every search excludes staged points; without a keyword index on the flag that check reads
    each candidate's payload from disk (45 ms instead of 1 ms per search on SciFact)."""
    shard = _open(tmp_path / "kb").client
    shard.client.update(qe.UpdateOperation.delete_field_index(STAGED))  # as before staged writes
    assert STAGED not in shard.client.info().payload_schema
    shard.close()
    reader = _open(tmp_path / "kb", create=False).client
    assert STAGED in reader.client.info().payload_schema
    reader.close()
