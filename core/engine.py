"""The parts a command works with (settings, embedder, store), opened and closed together."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.config import Settings
from core.errors import ConfigError, NoKnowledgeBase, StoreBusy, StoreMismatch
from core.providers import KbEmbedding, make_embedder
from core.text import ANALYZER_VERSION, sparse_document, sparse_query
from stores.edge import CollectionMismatch, EdgeVectorStore, StoreLocked, StoreMissing, hold_lock

FORMAT_VERSION = 1
CHUNKER_VERSION = "sections-sentences-v1"  # bump when chunk boundaries or embedded text change
Purpose = Literal["read", "write", "manage"]


@dataclass(frozen=True)
class Engine:
    """An open knowledge base: its settings, folder, store and (unless managing) embedder."""

    settings: Settings
    kb_dir: Path
    store: EdgeVectorStore
    embedder: KbEmbedding | None


def collection_meta(
    settings: Settings, embedder: KbEmbedding, purpose: Purpose
) -> dict[str, object]:
    """What a knowledge base records about how it was built; a mismatch is refused."""
    meta: dict[str, object] = {
        "format": FORMAT_VERSION,
        "embedder": embedder.fingerprint,
        "dim": embedder.dim,
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
    wait_seconds: float = 0.0,
) -> Iterator[Engine]:
    """Open the selected knowledge base (creating it when writing); always closes the store.

    `purpose`: "read" checks the embedder, "write" also the chunking settings and creates the store,
    "manage" (sources, forget) needs no embedder. `embedder` replaces the configured one (a test seam).
    """
    kb_dir = settings.kb_dir()
    model: KbEmbedding | None = None
    meta: dict[str, object] = {}
    if purpose != "manage":
        model = embedder or make_embedder(settings.embedding)
        meta = collection_meta(settings, model, purpose)
    if rebuild:
        _remove_store(kb_dir, wait_seconds)
    try:
        store = EdgeVectorStore.open(
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
        yield Engine(settings, kb_dir, store, model)
    finally:
        store.close()


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
