"""The parts a command works with (settings, store, embedder), opened and closed together.

The embedder and the LlamaIndex vector store are built on first use, so commands that only plan or
look up (an unchanged re-ingest, `kb sources`, `kb forget`) never load a model or LlamaIndex.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from core.config import Settings
from core.errors import ConfigError, NoKnowledgeBase, StoreBusy, StoreMismatch
from core.models import known_identity
from core.text import ANALYZER_VERSION, sparse_document, sparse_query
from stores.shard import CollectionMismatch, EdgeShardStore, StoreLocked, StoreMissing, hold_lock

if TYPE_CHECKING:
    from llama_index.core.llms import LLM

    from core.providers import KbEmbedding, Reranker
    from stores.edge import EdgeVectorStore

FORMAT_VERSION = 1
CHUNKER_VERSION = "sections-sentences-v1"  # bump when chunk boundaries or embedded text change
Purpose = Literal["read", "write", "manage"]


@dataclass(frozen=True)
class Engine:
    """An open knowledge base: its settings, folder and shard; the embedder and vector store on demand."""

    settings: Settings
    kb_dir: Path
    shard: EdgeShardStore
    given_embedder: KbEmbedding | None = None
    given_llm: LLM | None = None

    @cached_property
    def llm(self) -> LLM | None:
        """The configured LLM, or None: answers are then extractive."""
        if self.given_llm is not None:
            return self.given_llm
        if self.settings.llm.provider == "none":
            return None  # extractive answers: no LlamaIndex import, no client
        from core.llm import make_llm

        return make_llm(self.settings.llm)

    @cached_property
    def embedder(self) -> KbEmbedding:
        """The embedder the knowledge base was opened with (loaded on first use)."""
        if self.given_embedder is not None:
            return self.given_embedder
        from core.providers import make_embedder

        return make_embedder(self.settings.embedding)

    @cached_property
    def reranker(self) -> Reranker | None:
        """The configured cross-encoder, or None (the default: none ships offline)."""
        if not self.settings.retrieval.reranker:
            return None
        from core.providers import make_reranker

        return make_reranker(self.settings.retrieval.reranker)

    def release(self) -> None:
        """Close the store (and free its lock) early; the models stay usable for answering."""
        self.shard.close()

    def query_vector(self, text: str) -> list[float]:
        """A question's dense vector. The bundled models answer without importing LlamaIndex."""
        if self.given_embedder is None:
            from core import bundled

            vector = bundled.query_vector(self.settings.embedding.provider, text)
            if vector is not None:
                return vector
        return list(self.embedder.get_query_embedding(text))

    @cached_property
    def store(self) -> EdgeVectorStore:
        """The shard behind LlamaIndex's vector-store API."""
        from stores.edge import EdgeVectorStore

        return EdgeVectorStore.over(self.shard)


def collection_meta(
    settings: Settings, identity: tuple[str, int], purpose: Purpose
) -> dict[str, object]:
    """What a knowledge base records about how it was built; a mismatch is refused."""
    fingerprint, dim = identity
    meta: dict[str, object] = {
        "format": FORMAT_VERSION,
        "embedder": fingerprint,
        "dim": dim,
        "analyzer": ANALYZER_VERSION,
    }
    if purpose == "write":
        meta["chunker"] = CHUNKER_VERSION
        meta["chunk_size"] = settings.ingest.chunk_size
        meta["chunk_overlap"] = settings.ingest.chunk_overlap
    return meta


@contextmanager
def open_engine(
    settings: Settings,
    *,
    purpose: Purpose = "read",
    rebuild: bool = False,
    embedder: KbEmbedding | None = None,
    llm: LLM | None = None,
    wait_seconds: float = 0.0,
) -> Iterator[Engine]:
    """Open the selected knowledge base (creating it when writing); always closes it.

    `purpose`: "read" checks the embedder, "write" also the chunking settings and creates the
    knowledge base, "manage" (sources, forget) checks nothing. `embedder` and `llm` replace the
    configured ones (test seams).
    """
    kb_dir = settings.kb_dir()
    meta: dict[str, object] = {}
    if purpose != "manage":
        identity = None if embedder is not None else known_identity(settings.embedding)
        if identity is None:
            if embedder is None:
                from core.providers import make_embedder

                embedder = make_embedder(settings.embedding)  # learns the dimension
            identity = (embedder.fingerprint, embedder.dim)
        meta = collection_meta(settings, identity, purpose)
    if rebuild:
        _remove_store(kb_dir, wait_seconds)
    try:
        shard = EdgeShardStore.open(
            kb_dir,
            meta=meta,
            sparse_doc_fn=sparse_document,
            sparse_query_fn=sparse_query,
            create=purpose == "write",
            wait_seconds=wait_seconds,
        )
    except StoreMissing as err:
        raise NoKnowledgeBase(
            f"no knowledge base '{settings.kb.name}' yet ({kb_dir})",
            hint="run `kb ingest PATH` first",
        ) from err
    except StoreLocked as err:
        raise StoreBusy(
            f"knowledge base '{settings.kb.name}' is busy: another kb process is using it",
            hint="wait for it to finish, then try again",
        ) from err
    except OSError as err:
        raise ConfigError(
            f"cannot use {kb_dir} for knowledge base '{settings.kb.name}': {err.strerror or err}",
            hint="check [kb].home and [store].path",
        ) from err
    except CollectionMismatch as err:
        raise StoreMismatch(
            f"knowledge base '{settings.kb.name}' was built with other settings ({err})",
            hint="rebuild it with `kb ingest --rebuild PATH`, or restore the settings it was built with",
        ) from err
    try:
        yield Engine(settings, kb_dir, shard, embedder, llm)
    finally:
        shard.close()


def _remove_store(kb_dir: Path, wait_seconds: float) -> None:
    """Delete a knowledge base's shard and record (under its lock), keeping the folder."""
    if not (kb_dir / "collection.json").exists():
        return
    try:
        with hold_lock(kb_dir, wait_seconds):
            (kb_dir / "collection.json").unlink()
            shutil.rmtree(kb_dir / "shard", ignore_errors=True)
    except StoreLocked as err:
        raise StoreBusy(
            "knowledge base is busy: another kb process is using it", hint="try again later"
        ) from err
