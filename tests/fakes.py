"""Deterministic test doubles through public seams (never patches of library internals)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from pydantic import PrivateAttr

from core.embedders.base import KbEmbedding
from core.text import tokenize


class HashEmbedding(KbEmbedding):
    """Bag of hashed keyword tokens, L2-normalised: similar text really is similar. Counts its calls."""

    model_name: str = "hash-64"
    dim: int = 64
    calls: int = 0
    texts_embedded: int = 0

    @classmethod
    def class_name(cls) -> str:
        return "hash"

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for token in tokenize(text):
            digest = hashlib.blake2b(token.encode(), digest_size=4).digest()
            vec[int.from_bytes(digest, "little") % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        self.texts_embedded += len(texts)
        return [self._vector(t) for t in texts]


class ScriptedLLM(CustomLLM):
    """Answers with the replies it was given, in order; records every message list it received.

    Streams word by word. `enqueue(text, reasoning=...)` also scripts a reasoning model's thoughts,
    surfaced like `OpenAICompatibleLLM` does (`reasoning` / `reasoning_delta` in additional_kwargs).
    """

    default_reply: str = "(no scripted reply)"
    model_name: str = "scripted"
    _replies: list[tuple[str, str]] = PrivateAttr(default_factory=list)
    _received: list[list[ChatMessage]] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "scripted"

    def enqueue(self, text: str, reasoning: str = "") -> ScriptedLLM:
        self._replies.append((text, reasoning))
        return self

    @property
    def received(self) -> list[list[ChatMessage]]:
        """Every call's messages, oldest first."""
        return self._received

    @property
    def last_prompt(self) -> str:
        """The text of the last call's messages, joined: handy for `in` assertions."""
        assert self._received, "the LLM was never called"
        return "\n".join(m.content or "" for m in self._received[-1])

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_chat_model=True, model_name=self.model_name, num_output=256)

    def _next(self, messages: Sequence[ChatMessage]) -> tuple[str, str]:
        self._received.append(list(messages))
        return self._replies.pop(0) if self._replies else (self.default_reply, "")

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text, reasoning = self._next(messages)
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
            additional_kwargs={"reasoning": reasoning} if reasoning else {},
        )

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        text, reasoning = self._next(messages)

        def gen() -> ChatResponseGen:
            if reasoning:
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=""),
                    delta="",
                    additional_kwargs={"reasoning_delta": reasoning},
                )
            so_far = ""
            for word in re.findall(r"\S+\s*|\s+", text):
                so_far += word
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far), delta=word
                )

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        chat = self.chat([ChatMessage(role=MessageRole.USER, content=prompt)])
        return CompletionResponse(
            text=chat.message.content or "", additional_kwargs=chat.additional_kwargs
        )

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        chats = self.stream_chat([ChatMessage(role=MessageRole.USER, content=prompt)])
        return (
            CompletionResponse(
                text=c.message.content or "", delta=c.delta, additional_kwargs=c.additional_kwargs
            )
            for c in chats
        )
