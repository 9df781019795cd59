"""The answer-writing LLM behind LlamaIndex's `LLM`, chosen from `[llm]` by one factory.

`none` (default) means no LLM: `kb ask` answers extractively, offline. Every other provider is an
OpenAI-compatible `/v1/chat/completions` endpoint (OpenAI, DeepSeek, DashScope/Qwen, Zhipu/GLM,
Ollama, vLLM, llama.cpp); `LLM_PRESETS` supplies the usual base_url, model and key variable.
Failures of the endpoint become `ProviderError`s in `core.openai_endpoint`, shared with the embedder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms import LLM, CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from pydantic import PrivateAttr

from core.config import LlmSettings
from core.errors import ConfigError, ProviderError
from core.openai_endpoint import Endpoint, openai_client, translate
from core.presets import LLM_PRESETS, NO_LLM


def make_llm(cfg: LlmSettings) -> LLM | None:
    """The LLM `[llm]` asks for, or None for extractive answers (`provider = "none"`)."""
    if cfg.provider == NO_LLM:
        return None
    preset = LLM_PRESETS[cfg.provider]
    base_url = cfg.base_url or preset.base_url
    model = cfg.model or preset.model
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else ""
    if not model:
        raise ConfigError(
            f"no model set for the {cfg.provider} LLM",
            hint="set [llm].model to the name the server serves",
        )
    if not key and preset.key_env and _same_url(base_url, preset.base_url):
        raise ConfigError(
            f"no API key for the {cfg.provider} LLM",
            hint=f"set {preset.key_env} (or KB_LLM__API_KEY) in .env",
        )
    llm = OpenAICompatibleLLM(
        model=model,
        base_url=base_url,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        timeout=cfg.timeout,
        max_retries=cfg.max_retries,
        key_env=preset.key_env,
    )
    llm.set_api_key(key)
    return llm


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class OpenAICompatibleLLM(CustomLLM):
    """Any OpenAI-compatible `/v1/chat/completions` endpoint, through the `openai` package.

    Streams carry the new text in `.delta` and the text so far in `.message.content`. Reasoning
    models' thoughts (`reasoning_content`) never mix with the answer: they arrive as
    `additional_kwargs["reasoning_delta"]` on stream chunks (with an empty delta) and as
    `additional_kwargs["reasoning"]` on `chat()`.
    """

    model: str
    base_url: str
    temperature: float = 0.1
    max_tokens: int = 1024
    timeout: float = 60.0
    max_retries: int = 2
    context_window: int = 32768
    key_env: str = ""  # the variable that holds the key, named in hints
    _api_key: str = PrivateAttr(default="")
    _client: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "openai_compatible_llm"

    def set_api_key(self, key: str) -> None:
        """Kept out of the pydantic fields, so it is never dumped, logged or shown in a repr."""
        self._api_key = key
        self._client = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_tokens,
            is_chat_model=True,
            model_name=self.model,
        )

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        response = self._create(messages, stream=False)
        choices = getattr(response, "choices", None)
        message = getattr(choices[0], "message", None) if choices else None
        if message is None:
            self._malformed()
        reasoning = _reasoning(message)
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=message.content or ""),
            raw=response,
            additional_kwargs={"reasoning": reasoning} if reasoning else {},
        )

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        # The request is sent now, so an unreachable endpoint or a 401 fails before any output.
        return self._chunks(self._create(messages, stream=True))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        chat = self.chat([ChatMessage(role=MessageRole.USER, content=prompt)])
        return CompletionResponse(
            text=chat.message.content or "",
            raw=chat.raw,
            additional_kwargs=chat.additional_kwargs,
        )

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        chats = self.stream_chat([ChatMessage(role=MessageRole.USER, content=prompt)])

        def gen() -> CompletionResponseGen:
            for chat in chats:
                yield CompletionResponse(
                    text=chat.message.content or "",
                    delta=chat.delta,
                    raw=chat.raw,
                    additional_kwargs=chat.additional_kwargs,
                )

        return gen()

    def _openai(self) -> Any:
        if self._client is None:
            self._client = openai_client(
                self.base_url, self._api_key, self.timeout, self.max_retries
            )
        return self._client

    def _create(self, messages: Sequence[ChatMessage], *, stream: bool) -> Any:
        try:
            return self._openai().chat.completions.create(
                model=self.model,
                messages=[{"role": m.role.value, "content": m.content or ""} for m in messages],
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                stream=stream,
                # the token counts arrive as a last chunk (`kb ask --trace`); servers that do not
                # know the option ignore it
                **({"stream_options": {"include_usage": True}} if stream else {}),
            )
        except Exception as err:
            self._translate(err)

    def _chunks(self, stream: Any) -> ChatResponseGen:
        text = ""
        finished = False
        try:
            for chunk in stream:
                usage = getattr(chunk, "usage", None)
                if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
                    yield ChatResponse(
                        message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                        delta="",
                        raw=chunk,
                        additional_kwargs={"usage": _usage(usage)},
                    )
                for choice in getattr(chunk, "choices", None) or ():  # usage-only chunks have none
                    finished = finished or bool(choice.finish_reason)
                    delta = choice.delta
                    piece = (delta.content or "") if delta is not None else ""
                    reasoning = _reasoning(delta)
                    if not piece and not reasoning:
                        continue
                    text += piece
                    yield ChatResponse(
                        message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                        delta=piece,
                        raw=chunk,
                        additional_kwargs={"reasoning_delta": reasoning} if reasoning else {},
                    )
        except Exception as err:
            import openai

            if isinstance(err, openai.APIConnectionError):  # includes timeouts between chunks
                self._cut_short(err)
            self._translate(err)
        finally:
            stream.close()
        if not finished:
            self._cut_short(None)

    def _cut_short(self, err: Exception | None) -> NoReturn:
        import openai

        if isinstance(err, openai.APITimeoutError):
            hint = f"the server sent nothing for {self.timeout:g} s; raise [llm].timeout for slow models"
        else:
            hint = "the server closed the connection midway; try again, or check the server's log"
        raise ProviderError(
            f"the answer stream from {self.base_url} stopped before it finished", hint=hint
        ) from err

    def _malformed(self, err: Exception | None = None) -> NoReturn:
        raise ProviderError(
            f"the LLM endpoint at {self.base_url} sent a malformed response",
            hint="is [llm].base_url an OpenAI-compatible endpoint (usually ending in /v1)?",
        ) from err

    def _translate(self, err: Exception) -> NoReturn:
        key_hint = (
            f"check {self.key_env} (or KB_LLM__API_KEY) in .env"
            if self.key_env
            else "check KB_LLM__API_KEY in .env"
        )
        endpoint = Endpoint(
            kind="LLM",
            section="llm",
            url=self.base_url,
            model=self.model,
            timeout=self.timeout,
            tries=f"after {self.max_retries} retries",
            secret=self._api_key,
            key_hint=key_hint,
            timeout_hint="is the server overloaded? raise [llm].timeout for slow local models",
            rate_hint="wait a minute and try again, or raise [llm].max_retries",
        )
        translate(err, endpoint, self._malformed)


def _usage(usage: Any) -> dict[str, int]:
    """Prompt and completion tokens of a response's `usage`."""
    return {
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
    }


def _reasoning(part: Any) -> str:
    """A reasoning model's thoughts on a message or delta (`reasoning_content`, or vLLM's `reasoning`)."""
    if part is None:
        return ""
    extra = getattr(part, "model_extra", None) or {}
    for name in ("reasoning_content", "reasoning"):
        value = extra.get(name, getattr(part, name, None))
        if isinstance(value, str) and value:
            return value
    return ""
