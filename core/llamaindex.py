"""A knowledge base as LlamaIndex objects, for Python code: a `BaseRetriever` that ranks exactly as
`kb ask` does (it calls `core.retrieve.retrieve`: score fusion, language-balanced dense search,
near-duplicate collapse, the optional reranker), and a `RetrieverQueryEngine` over it that answers
with whatever LlamaIndex LLM the caller passes.

    with open_query_engine(llm, "notes") as engine:
        print(engine.query("How long is the refund window?"))

Nothing here reads or sets LlamaIndex's global `Settings`: the LLM is passed explicitly, the
question is embedded by the knowledge base's own embedder, and each object gets its own callback
manager. `kb ask` does not import this module (it stays free of LlamaIndex).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, get_args

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms import LLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from core.config import Settings, load_settings
from core.engine import Engine, open_engine
from core.results import Source
from core.retrieve import Mode, RetrievalQuery, retrieve

__all__ = ["KbRetriever", "node_source", "open_query_engine", "open_retriever", "source_node"]

# The metadata an LLM sees with each chunk's text (the rest: ids, scores, positions).
_LLM_METADATA = ("path", "page")


class KbRetriever(BaseRetriever):
    """kb's retrieval behind LlamaIndex's retriever API, over an open `Engine`.

    `mode`, `top_k`, `paths`, `file_types` and `context` default to the knowledge base's
    `[retrieval]` settings, as for `kb ask`. A `QueryBundle`'s precomputed embedding is not used:
    the question is embedded (and searched per language) as `kb ask` does it.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        mode: Mode | None = None,
        top_k: int | None = None,
        paths: tuple[str, ...] = (),
        file_types: tuple[str, ...] = (),
        context: int | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if mode is not None and mode not in get_args(Mode):
            raise ValueError(f"mode must be one of {', '.join(get_args(Mode))}, not {mode!r}")
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be at least 1")
        super().__init__(callback_manager=callback_manager or CallbackManager())
        self.engine = engine
        self._mode = mode
        self._top_k = top_k
        self._paths = paths
        self._file_types = file_types
        self._context = context

    def query(self, question: str) -> RetrievalQuery:
        """The `RetrievalQuery` this retriever runs for `question`."""
        return RetrievalQuery.from_settings(
            self.engine.settings,
            question,
            mode=self._mode,
            top_k=self._top_k,
            context=self._context,
            paths=self._paths,
            file_types=self._file_types,
        )

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        retrieval = retrieve(self.query(query_bundle.query_str), self.engine)
        return [source_node(source) for source in retrieval.sources]


def source_node(source: Source) -> NodeWithScore:
    """A retrieved source as a LlamaIndex node: the chunk's text, its id, kb's score, and every
    other `Source` field as metadata (fields that are None are left out)."""
    metadata = {
        key: value
        for key, value in asdict(source).items()
        if key not in ("text", "chunk_id", "score") and value is not None
    }
    metadata["headings"] = list(source.headings)
    node = TextNode(
        id_=source.chunk_id,
        text=source.text,
        metadata=metadata,
        excluded_llm_metadata_keys=[key for key in metadata if key not in _LLM_METADATA],
        excluded_embed_metadata_keys=list(metadata),
    )
    return NodeWithScore(node=node, score=source.score)


def node_source(node: NodeWithScore) -> Source:
    """The `Source` a `KbRetriever` node was made from (what `kb ask --json` lists)."""
    metadata = dict(node.node.metadata)
    metadata["headings"] = tuple(metadata.get("headings", ()))
    return Source(
        text=node.node.get_content(),
        chunk_id=node.node.node_id,
        score=float(node.score or 0.0),
        **metadata,
    )


@contextmanager
def open_retriever(
    kb: str | None = None,
    *,
    config: Path | None = None,
    settings: Settings | None = None,
    mode: Mode | None = None,
    top_k: int | None = None,
    paths: tuple[str, ...] = (),
    file_types: tuple[str, ...] = (),
    context: int | None = None,
) -> Iterator[KbRetriever]:
    """Open the knowledge base `kb` (default: the configured one) for reading, as a LlamaIndex
    retriever; it is closed when the block ends. Settings load as for `kb`: defaults <
    config.toml (or `config`) < .env < KB_* environment; or pass loaded `settings` instead."""
    if settings is None:
        settings = load_settings(config, overrides={"kb": {"name": kb}}).settings
    elif kb is not None or config is not None:
        raise TypeError("pass either settings, or kb and config")
    with open_engine(settings, purpose="read") as engine:
        yield KbRetriever(
            engine,
            mode=mode,
            top_k=top_k,
            paths=paths,
            file_types=file_types,
            context=context,
        )


@contextmanager
def open_query_engine(
    llm: LLM,
    kb: str | None = None,
    *,
    config: Path | None = None,
    settings: Settings | None = None,
    mode: Mode | None = None,
    top_k: int | None = None,
    paths: tuple[str, ...] = (),
    file_types: tuple[str, ...] = (),
    context: int | None = None,
    **synthesizer: Any,
) -> Iterator[RetrieverQueryEngine]:
    """A LlamaIndex query engine over the knowledge base `kb` (see `open_retriever`) that answers
    with `llm`, any LlamaIndex LLM. `synthesizer` goes to `RetrieverQueryEngine.from_args`
    (response_mode, text_qa_template, streaming, ...)."""
    with open_retriever(
        kb,
        config=config,
        settings=settings,
        mode=mode,
        top_k=top_k,
        paths=paths,
        file_types=file_types,
        context=context,
    ) as retriever:
        yield RetrieverQueryEngine.from_args(
            retriever,
            llm=llm,
            callback_manager=retriever.callback_manager,
            **synthesizer,
        )
