"""The LLM provider: the real `openai` client against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from pydantic import SecretStr

from core.config import LlmSettings, load_settings
from core.errors import ConfigError, ProviderError
from core.llm import OpenAICompatibleLLM, make_llm
from tests.fakes import ScriptedLLM
from tests.openai_server import FakeOpenAI

KEY = "sk-test-secret-1234567890"
QUESTION = [
    ChatMessage(role=MessageRole.SYSTEM, content="Answer from the sources."),
    ChatMessage(role=MessageRole.USER, content="How long is the refund window?"),
]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=KEY).start()
    yield fake
    fake.stop()


def _llm(base_url: str, **settings: Any) -> OpenAICompatibleLLM:
    """Through the factory, as `kb ask` builds it; no retries unless a test asks for them."""
    cfg = LlmSettings(
        provider="openai",
        base_url=base_url,
        model="test-model",
        api_key=SecretStr(KEY),
        **{"timeout": 5.0, "max_retries": 0, **settings},
    )
    llm = make_llm(cfg)
    assert isinstance(llm, OpenAICompatibleLLM)
    return llm


def _answer(llm: OpenAICompatibleLLM, *, stream: bool) -> str:
    if stream:
        return "".join(chunk.delta or "" for chunk in llm.stream_chat(QUESTION))
    return llm.chat(QUESTION).message.content or ""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_chat_sends_model_messages_and_key(server: FakeOpenAI) -> None:
    server.reply("The refund window is 30 days [1].")
    response = _llm(server.base_url).chat(QUESTION)
    assert response.message.content == "The refund window is 30 days [1]."
    assert response.additional_kwargs == {}
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "test-model"
    assert request["body"]["messages"] == [
        {"role": "system", "content": "Answer from the sources."},
        {"role": "user", "content": "How long is the refund window?"},
    ]
    assert not request["body"].get("stream")


def test_stream_arrives_in_several_deltas(server: FakeOpenAI) -> None:
    text = "The refund window is 30 days, counted from delivery [1]."
    server.reply(text)
    chunks = list(_llm(server.base_url).stream_chat(QUESTION))
    assert len(chunks) > 1
    assert "".join(c.delta or "" for c in chunks) == text
    assert chunks[-1].message.content == text
    assert server.requests[0]["body"]["stream"] is True


def test_inline_think_tags_stay_part_of_the_content(server: FakeOpenAI) -> None:
    server.reply("<think>refunds.md says 30</think>30 days.")
    assert (
        _answer(_llm(server.base_url), stream=True) == "<think>refunds.md says 30</think>30 days."
    )


def test_reasoning_content_is_kept_apart_from_the_answer(server: FakeOpenAI) -> None:
    llm = _llm(server.base_url)
    server.reply("30 days.", reasoning="The source says thirty days.")
    response = llm.chat(QUESTION)
    assert response.message.content == "30 days."
    assert response.additional_kwargs == {"reasoning": "The source says thirty days."}

    server.reply("30 days.", reasoning="The source says thirty days.")
    chunks = list(llm.stream_chat(QUESTION))
    thoughts = "".join(c.additional_kwargs.get("reasoning_delta", "") for c in chunks)
    assert thoughts == "The source says thirty days."
    assert "".join(c.delta or "" for c in chunks) == "30 days."
    assert all(c.delta == "" for c in chunks if "reasoning_delta" in c.additional_kwargs)


def test_complete_is_a_chat_with_one_user_message(server: FakeOpenAI) -> None:
    llm = _llm(server.base_url)
    server.reply("first").reply("second answer")
    assert llm.complete("say something").text == "first"
    assert list(llm.stream_complete("again"))[-1].text == "second answer"
    assert [r["body"]["messages"] for r in server.requests] == [
        [{"role": "user", "content": "say something"}],
        [{"role": "user", "content": "again"}],
    ]
    assert llm.metadata.is_chat_model
    assert llm.metadata.model_name == "test-model"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("knobs", "message", "hint"),
    [
        ({"api_key": "sk-other"}, "refused the API key (401)", "OPENAI_API_KEY"),
        ({"fail_status": 403}, "refused the API key (403)", "KB_LLM__API_KEY"),
        ({"fail_status": 404}, "has no model 'test-model' (404)", "[llm].model"),
        ({"fail_status": 400}, "answered HTTP 400: injected failure", "[llm].model"),
        ({"malformed": "{not json"}, "malformed response", "[llm].base_url"),
    ],
)
def test_endpoint_failures_are_provider_errors(
    knobs: dict[str, Any], message: str, hint: str, *, stream: bool
) -> None:
    fake = FakeOpenAI(**{"api_key": KEY, **knobs}).start()
    try:
        with pytest.raises(ProviderError, match=re.escape(message)) as caught:
            _answer(_llm(fake.base_url), stream=stream)
    finally:
        fake.stop()
    assert fake.base_url in str(caught.value)
    assert caught.value.hint is not None
    assert hint in caught.value.hint
    assert KEY not in f"{caught.value} {caught.value.hint}"


@pytest.mark.parametrize("body", ['{"object": "chat.completion"}', "[]"])
def test_a_reply_without_choices_is_malformed(body: str) -> None:
    fake = FakeOpenAI(malformed=body).start()
    try:
        with pytest.raises(ProviderError, match="malformed response"):
            _answer(_llm(fake.base_url), stream=False)
    finally:
        fake.stop()


def test_rate_limit_is_retried_then_reported() -> None:
    fake = FakeOpenAI(fail_status=429, retry_after="0.01").start()
    try:
        with pytest.raises(ProviderError, match=r"rate limited \(429\) after 1 retries") as caught:
            _answer(_llm(fake.base_url, max_retries=1), stream=False)
    finally:
        fake.stop()
    assert len(fake.requests) == 2
    assert caught.value.hint is not None
    assert "wait" in caught.value.hint


def test_a_server_error_is_retried_until_it_succeeds() -> None:
    fake = FakeOpenAI(fail_status=500, fail_times=1, retry_after="0.01").start()
    fake.reply("recovered")
    try:
        assert _answer(_llm(fake.base_url, max_retries=1), stream=True) == "recovered"
    finally:
        fake.stop()
    assert len(fake.requests) == 2


def test_unreachable_endpoint_is_a_provider_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(ProviderError, match="cannot reach the LLM endpoint") as caught:
        _answer(_llm(url), stream=True)
    assert url in str(caught.value)
    assert caught.value.hint == "is the server running? see [llm].base_url"


def test_a_slow_endpoint_times_out() -> None:
    fake = FakeOpenAI(delay=1.0).start()
    try:
        with pytest.raises(ProviderError, match=r"did not answer within 0\.3 s"):
            _answer(_llm(fake.base_url, timeout=0.3), stream=False)
    finally:
        fake.stop()


@pytest.mark.parametrize("cut_after", [0, 2])
def test_a_stream_cut_midway_is_an_error_not_a_short_answer(cut_after: int) -> None:
    fake = FakeOpenAI(cut_stream_after=cut_after).start()
    fake.reply("A long answer that the server will never finish sending.")
    received: list[str] = []
    try:
        with pytest.raises(ProviderError, match="stopped before it finished") as caught:
            received.extend(
                chunk.delta or "" for chunk in _llm(fake.base_url).stream_chat(QUESTION)
            )
    finally:
        fake.stop()
    assert len(received) == cut_after
    assert fake.base_url in str(caught.value)


def test_the_key_stays_out_of_repr_and_dumps(server: FakeOpenAI) -> None:
    llm = _llm(server.base_url)
    assert KEY not in repr(llm)
    assert KEY not in llm.model_dump_json()
    assert KEY not in str(llm.to_dict())


def test_none_means_no_llm() -> None:
    assert make_llm(LlmSettings(provider="none")) is None


@pytest.mark.parametrize(
    ("provider", "variable"),
    [
        ("openai", "OPENAI_API_KEY"),
        ("deepseek", "DEEPSEEK_API_KEY"),
        ("qwen", "DASHSCOPE_API_KEY"),
        ("glm", "ZHIPUAI_API_KEY"),
    ],
)
def test_a_hosted_preset_without_a_key_names_its_variable(provider: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=f"no API key for the {provider} LLM") as caught:
        make_llm(LlmSettings(provider=provider))  # type: ignore[arg-type]
    assert caught.value.hint == f"set {variable} (or KB_LLM__API_KEY) in .env"


def test_vllm_needs_a_model_name() -> None:
    with pytest.raises(ConfigError, match="no model") as caught:
        make_llm(LlmSettings(provider="vllm"))
    assert caught.value.hint is not None
    assert "[llm].model" in caught.value.hint


@pytest.mark.parametrize(
    ("provider", "base_url", "model"),
    [
        ("ollama", "http://localhost:11434/v1", "qwen2.5:7b"),
        ("llamacpp", "http://localhost:8080/v1", "local"),
    ],
)
def test_local_presets_need_no_key(provider: str, base_url: str, model: str) -> None:
    llm = make_llm(LlmSettings(provider=provider))  # type: ignore[arg-type]
    assert isinstance(llm, OpenAICompatibleLLM)
    assert (llm.base_url, llm.model) == (base_url, model)


def test_a_preset_key_from_the_environment_reaches_the_llm() -> None:
    loaded = load_settings(
        environ={"KB_LLM__PROVIDER": "deepseek", "DEEPSEEK_API_KEY": KEY}, dotenv_path=None
    )
    llm = make_llm(loaded.settings.llm)
    assert isinstance(llm, OpenAICompatibleLLM)
    assert (llm.base_url, llm.model) == ("https://api.deepseek.com/v1", "deepseek-chat")
    assert llm.key_env == "DEEPSEEK_API_KEY"


def test_openai_with_a_local_base_url_sends_a_placeholder_key() -> None:
    fake = FakeOpenAI().start()
    try:
        llm = make_llm(LlmSettings(provider="openai", base_url=fake.base_url, max_retries=0))
        assert isinstance(llm, OpenAICompatibleLLM)
        assert llm.model == "gpt-4o-mini"
        assert llm.chat(QUESTION).message.content == fake.default_reply
    finally:
        fake.stop()
    assert fake.requests[0]["auth"] == "Bearer not-needed"


def test_scripted_llm_streams_word_by_word_and_records_prompts() -> None:
    llm = ScriptedLLM().enqueue("Thirty days, see [1].", reasoning="thinking")
    chunks = list(llm.stream_chat(QUESTION))
    assert [c.delta for c in chunks] == ["", "Thirty ", "days, ", "see ", "[1]."]
    assert chunks[0].additional_kwargs == {"reasoning_delta": "thinking"}
    assert "refund window" in llm.last_prompt
    assert llm.complete("next").text == llm.default_reply
    assert len(llm.received) == 2
