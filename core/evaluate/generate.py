"""`kb eval generate`: a question set written by the LLM from sampled chunks."""

from __future__ import annotations

from core.engine import Engine
from core.errors import ConfigError


def generate_cases(
    engine: Engine, *, count: int, per_chunk: int = 1, seed: int = 0
) -> list[dict[str, object]]:
    """Questions written by the LLM from sampled chunks, in each chunk's language, with its source."""
    import random

    from llama_index.core.llms import ChatMessage

    from core.prompts import generate_messages

    llm = engine.llm
    if llm is None:
        raise ConfigError(
            "`kb eval generate` needs an LLM", hint="configure [llm] provider (see `kb config`)"
        )
    chunks = engine.shard.chunk_payloads()
    if not chunks:
        raise ConfigError("the knowledge base is empty", hint="run `kb ingest PATH` first")
    rng = random.Random(seed)
    picked = rng.sample(chunks, min(count, len(chunks)))
    rows: list[dict[str, object]] = []
    for chunk in picked:
        text, lang = str(chunk.get("text", "")), str(chunk.get("lang", "en"))
        messages = [
            ChatMessage(role=role, content=content)
            for role, content in generate_messages(text, lang, per_chunk)
        ]
        reply = llm.chat(messages).message.content or ""
        for line in reply.splitlines():
            question = line.strip().lstrip("-*0123456789.) ").strip()
            if len(question) > 3:
                rows.append({"question": question, "sources": [str(chunk.get("path", ""))]})
            if sum(1 for r in rows if r["sources"] == [chunk.get("path")]) >= per_chunk:
                break
    return rows
