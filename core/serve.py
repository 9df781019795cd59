"""What a long-running server (`kb serve --mcp`) asks of a knowledge base, one call at a time.

Each call opens the knowledge base and closes it before returning, so `kb ingest` can run between
calls and every call sees what is indexed now. The store is released before an answer is generated,
as `kb ask` does, so a slow LLM never keeps an ingest waiting.
"""

from __future__ import annotations

from core.answer import answer
from core.config import Settings
from core.engine import open_engine
from core.manage import list_sources
from core.results import Answer, SourceFile
from core.retrieve import Retrieval, RetrievalQuery, retrieve

__all__ = ["ask", "search", "sources"]


def search(settings: Settings, query: RetrievalQuery) -> Retrieval:
    """The ranked chunks for a query (`kb ask --retrieve-only`)."""
    with open_engine(settings, purpose="read") as engine:
        return retrieve(query, engine)


def ask(settings: Settings, query: RetrievalQuery) -> Answer:
    """An answer with checked citations, or a refusal (`kb ask`)."""
    with open_engine(settings, purpose="read") as engine:
        retrieval = retrieve(query, engine)
        engine.release()
        return answer(retrieval, engine)


def sources(settings: Settings) -> list[SourceFile]:
    """The indexed files (`kb sources`)."""
    with open_engine(settings, purpose="manage") as engine:
        return list_sources(engine)
