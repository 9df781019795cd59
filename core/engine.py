"""The parts a command works with (settings, store, embedder), opened and closed together.

The embedder and the LlamaIndex vector store are built on first use, so commands that only plan or
look up (an unchanged re-ingest, `kb sources`, `kb forget`) never load a model or LlamaIndex. A
reader served by an ingest (`stores.remote`) also gets its question's vector from it, when both
have the same embedder: the ingest has the model loaded, so a question loads none.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.config import BUILT_ORIGIN, LoadedSettings, Settings
from core.embedders import SPECS, refusal_thresholds
from core.errors import (
    ConfigError,
    KbError,
    NoKnowledgeBase,
    ProviderError,
    StoreBusy,
    StoreMismatch,
)
from core.presets import NO_LLM
from core.text import ANALYZER_VERSION, sparse_document, sparse_query
from stores.contract import (
    CollectionMismatch,
    Search,
    Store,
    StoreLocked,
    StoreMissing,
    StoreUnavailable,
)
from stores.remote import NotServed, ReadServer, RemoteError, RemoteStore
from stores.shard import EdgeShardStore, hold_lock

if TYPE_CHECKING:
    from llama_index.core.llms import LLM

    from core.answerability import Thresholds
    from core.embedders.base import KbEmbedding
    from core.providers import Reranker
    from stores.vector_store import KbVectorStore

__all__ = ["Engine", "Search", "open_engine"]  # Search: what retrieval batches (from stores)

FORMAT_VERSION = 1
CHUNKER_VERSION = "sections-sentences-v1"  # bump when chunk boundaries or embedded text change
Purpose = Literal["read", "browse", "write", "manage"]
# How long a reader that finds the knowledge base locked keeps looking for the writer's read server
# (an ingest serves it once its shard is open) before it answers "busy" (another lock holder).
SHARED_WAIT = 2.0


@dataclass(frozen=True)
class Engine:
    """An open knowledge base: its settings, folder and shard; the embedder and vector store on demand."""

    settings: Settings
    kb_dir: Path
    shard: Store  # the embedded shard, or a collection of a Qdrant server
    given_embedder: KbEmbedding | None = None
    given_llm: LLM | None = None
    # The embedder the knowledge base's vectors come from, as recorded (its fingerprint); "" when
    # not checked (browse, manage). A reader and its writer share vectors only when it is the same.
    fingerprint: str = ""

    @cached_property
    def llm(self) -> LLM | None:
        """The configured LLM, or None: answers are then extractive."""
        if self.given_llm is not None:
            return self.given_llm
        if self.settings.llm.provider == NO_LLM:
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

    @property
    def refusal(self) -> Thresholds:
        """Where `kb ask` refuses: the thresholds fitted for the embedder this knowledge base
        records (retrieval's relevance and the answer's decision read the same ones)."""
        return refusal_thresholds(str(self.shard.meta.get("embedder", "")))

    def release(self) -> None:
        """Close the store (and free its lock) early; the models stay usable for answering. A
        reader served by an ingest holds no lock: it stays connected, as the ingest may still
        embed for it (the answer's sentences), and hangs up when the engine closes."""
        if not isinstance(self.shard, RemoteStore):
            self.shard.close()

    def query_vector(self, text: str, *, across_languages: bool = True) -> list[float]:
        """A question's dense vector: from the ingest serving this reader when it offers it (no
        model loaded here), else embedded here. The bundled models answer without LlamaIndex.
        `across_languages=False`: only chunks in the question's language are searched, so a
        two-model embedder leaves its cross-language half zero (that model is not run)."""
        served = self._served("query_vector", {"text": text, "across": across_languages})
        if served is not None:
            return [float(x) for x in served]
        if self.given_embedder is None:
            cfg = self.settings.embedding
            encoder = SPECS[cfg.provider].load_encoder(cfg)
            if encoder is not None:
                one_language = getattr(encoder, "query_one_language", None)
                if not across_languages and one_language is not None:
                    return list(one_language(text))
                return encoder.query(text)
        return list(self.embedder.get_query_embedding(text))

    def word_vectors(self, words: Sequence[str]) -> Any:
        """Unit vectors of single words from the bundled USE (`core.embedders.use.word_vectors`),
        whatever embedder the knowledge base has: for comparing a question's words with a source's
        in another language (`core.answerability.translated_coverage`)."""
        from core.embedders import use

        use.configure(self.settings.embedding)  # the models folder USE's cached copy is kept in
        return use.word_vectors(words)

    def passage_vectors(self, texts: list[str]) -> list[list[float]]:
        """Passages' dense vectors, as ingest embeds them (served like `query_vector`; no LlamaIndex
        for the bundled models)."""
        if not texts:
            return []
        served = self._served("passage_vectors", {"texts": texts})
        if served is not None:
            return [[float(x) for x in row] for row in served]
        if self.given_embedder is None:
            cfg = self.settings.embedding
            encoder = SPECS[cfg.provider].load_encoder(cfg)
            if encoder is not None:
                return encoder.passages(texts)
        return [list(v) for v in self.embedder.get_text_embedding_batch(texts)]

    def _served(self, call: str, args: dict[str, Any]) -> Any:
        """What the ingest serving this reader answers to `call` with this reader's embedder, or
        None: not served (a direct reader, an older writer, one that stopped) or refused there
        (another embedder), so the vectors are made here."""
        if not self.fingerprint or not isinstance(self.shard, RemoteStore):
            return None
        try:
            return self.shard.call(call, {**args, "embedder": self.fingerprint})
        except (NotServed, RemoteError):
            return None

    def served_calls(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """The embedding calls a writer offers its readers (`ReadServer.start(..., calls=...)`):
        their question's (or sentences') vectors, made with the model this process has loaded,
        for readers of the same embedder only. They never take the store's lock."""

        def same_embedder(args: dict[str, Any]) -> None:
            if not self.fingerprint or args.get("embedder") != self.fingerprint:
                raise ValueError(f"another embedder than {self.fingerprint or 'none'}")

        def query_vector(args: dict[str, Any]) -> list[float]:
            same_embedder(args)
            return self.query_vector(
                str(args["text"]), across_languages=bool(args.get("across", True))
            )

        def passage_vectors(args: dict[str, Any]) -> list[list[float]]:
            same_embedder(args)
            return self.passage_vectors([str(t) for t in args["texts"]])

        return {"query_vector": query_vector, "passage_vectors": passage_vectors}

    def embedder_runtime(self) -> str:
        """What ran the embedder in this process ("" when it was not loaded)."""
        return self.embedder.runtime if "embedder" in vars(self) else ""

    @cached_property
    def store(self) -> KbVectorStore:
        """The shard behind LlamaIndex's vector-store API."""
        from stores.vector_store import KbVectorStore

        return KbVectorStore.over(self.shard)


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
    knowledge base, "browse" (sources) and "manage" (forget, migrate) check nothing. Readers
    ("read", "browse") of an embedded knowledge base that an ingest is writing are served by it
    (`stores.remote`); the writer serves them until it closes. `embedder` and `llm` replace the
    configured ones (test seams).
    """
    kb_dir = settings.kb_dir()
    meta: dict[str, object] = {}
    if purpose not in ("manage", "browse"):
        spec = SPECS[settings.embedding.provider]
        identity = None if embedder is not None else spec.known_identity(settings.embedding)
        if identity is None:
            if embedder is None:
                from core.providers import make_embedder

                embedder = make_embedder(settings.embedding)  # learns the dimension
            identity = (embedder.fingerprint, embedder.dim)
        meta = collection_meta(settings, identity, purpose)
    if rebuild:
        _remove_store(settings, wait_seconds)
    shard = open_store(
        settings,
        meta,
        create=purpose == "write",
        wait_seconds=wait_seconds,
        shared=purpose in ("read", "browse"),
    )
    server = None
    try:
        engine = Engine(settings, kb_dir, shard, embedder, llm, str(meta.get("embedder", "")))
        if purpose == "write" and isinstance(shard, EdgeShardStore):
            server = ReadServer.start(shard, shard.guard, kb_dir, engine.served_calls())
        yield engine
    except StoreUnavailable as err:
        raise _unavailable(settings, err) from err
    except StoreLocked as err:  # a write through a knowledge base another process is writing
        raise _busy(settings) from err
    finally:
        if server is not None:
            server.close()
        shard.close()


def open_store(
    settings: Settings,
    meta: Mapping[str, object],
    *,
    create: bool,
    wait_seconds: float = 0.0,
    url: str = "",
    collection: str = "",
    shared: bool = False,
) -> Store:
    """The selected knowledge base's store (embedded, or with `url` or `[store] backend = "qdrant"`
    a server's collection); `meta` is checked against what it was built with, or recorded on creation.
    With `shared` (a reader), an embedded knowledge base another process writes is read through
    that process. Store failures become kb errors with hints."""
    server = bool(url) or settings.store.backend == "qdrant"
    where = url or settings.store.url
    try:
        if server:
            from stores.qdrant import QdrantStore

            if not where:
                raise ConfigError(
                    '[store] backend = "qdrant" needs a server url',
                    hint="set [store].url, e.g. http://localhost:6333",
                )
            key = settings.store.api_key
            return QdrantStore.open(
                where,
                collection or collection_name(settings),
                meta=dict(meta),
                sparse_doc_fn=sparse_document,
                sparse_query_fn=sparse_query,
                create=create,
                api_key=key.get_secret_value() if key is not None else None,
                timeout=settings.store.timeout,
                shards=settings.store.shards,
                replicas=settings.store.replicas,
            )
        try:
            return EdgeShardStore.open(
                settings.kb_dir(),
                meta=dict(meta),
                sparse_doc_fn=sparse_document,
                sparse_query_fn=sparse_query,
                create=create,
                wait_seconds=wait_seconds,
                index_after=settings.store.index_after,
            )
        except StoreLocked:
            if not shared or create:
                raise
            return _open_shared(settings, meta, max(wait_seconds, SHARED_WAIT))
    except StoreMissing as err:
        place = (
            f"collection {collection or collection_name(settings)} at {where}"
            if server
            else str(settings.kb_dir())
        )
        raise NoKnowledgeBase(
            f"no knowledge base '{settings.kb.name}' yet ({place})",
            hint="run `kb ingest PATH` first" + (", or `kb migrate --to URL`" if server else ""),
        ) from err
    except StoreLocked as err:
        raise _busy(settings) from err
    except StoreUnavailable as err:
        raise _unavailable(settings, err, where) from err
    except OSError as err:
        raise ConfigError(
            f"cannot use {settings.kb_dir()} for knowledge base '{settings.kb.name}': "
            f"{err.strerror or err}",
            hint="check [kb].home and [store].path",
        ) from err
    except CollectionMismatch as err:
        raise StoreMismatch(
            f"knowledge base '{settings.kb.name}' was built with other settings ({err})",
            hint="rebuild it with `kb ingest --rebuild PATH`, or restore the settings it was built with",
        ) from err


EMBEDDER_KEYS = ("provider", "model", "base_url", "dim")  # what names the vectors a kb holds
CHUNKING_KEYS = ("chunk_size", "chunk_overlap")
_ENDPOINT = re.compile(r"openai:(https?://[^/]+(?:/[^:]*)?):(.+)")


def built_with(settings: Settings) -> dict[str, object] | None:
    """What the selected knowledge base recorded about how it was built, or None when there is no
    knowledge base (or it cannot be read now: opening it later says why). Takes no lock."""
    if settings.store.backend != "qdrant":
        try:
            meta = json.loads((settings.kb_dir() / "collection.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None
    try:
        store = open_store(settings, {}, create=False)
    except KbError:
        return None
    try:
        return dict(store.meta)
    finally:
        store.close()


def recorded_settings(meta: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """The settings a knowledge base's record names: {"embedding": {...}, "ingest": {...}}."""
    fingerprint = str(meta.get("embedder", ""))
    embedding: dict[str, object] = {}
    spec = next((s for s in SPECS.values() if s.fingerprint and s.fingerprint == fingerprint), None)
    endpoint = _ENDPOINT.fullmatch(fingerprint)
    if spec is not None:
        embedding = {"provider": spec.name}
    elif endpoint is not None:
        embedding = {
            "provider": "openai",
            "base_url": endpoint[1],
            "model": endpoint[2],
            "dim": int(str(meta.get("dim", 0))),
        }
    elif fingerprint.startswith("fastembed:"):
        embedding = {"provider": "fastembed", "model": fingerprint.removeprefix("fastembed:")}
    ingest = {key: meta[key] for key in CHUNKING_KEYS if isinstance(meta.get(key), int)}
    return {"embedding": embedding, "ingest": ingest}


def with_recorded(loaded: LoadedSettings) -> LoadedSettings:
    """The settings to open the selected knowledge base with: how it was built (embedder, chunking)
    wherever the user did not choose otherwise. A value the user gave (flag, environment, .env, a
    config file) is kept, so one that contradicts the knowledge base is refused when it is opened."""
    meta = built_with(loaded.settings)
    if not meta:
        return loaded
    settings, origins = loaded.settings, dict(loaded.origins)
    origin = f"{BUILT_ORIGIN} '{settings.kb.name}'"
    updates: dict[str, object] = {}
    for section, recorded in recorded_settings(meta).items():
        current = getattr(settings, section)
        explicit = {k for k in recorded if loaded.explicit(f"{section}.{k}")}
        if section == "embedding" and any(getattr(current, k) != recorded[k] for k in explicit):
            continue  # another embedder chosen: the knowledge base refuses it when opened
        adopted = {
            k: v for k, v in recorded.items() if k not in explicit and getattr(current, k) != v
        }
        if adopted:
            updates[section] = current.model_copy(update=adopted)
            origins.update({f"{section}.{k}": origin for k in adopted})
    if not updates:
        return loaded
    return LoadedSettings(
        settings.model_copy(update=updates), origins, loaded.config_path, loaded.files
    )


def _open_shared(settings: Settings, meta: Mapping[str, object], wait_seconds: float) -> Store:
    """A locked embedded knowledge base, read through the process writing it; or opened directly
    once its lock is free. Raises `StoreLocked` when neither happens within `wait_seconds` (the
    lock holder serves no reads: `kb forget`, `kb migrate`)."""
    kb_dir = settings.kb_dir()

    def reopen() -> Store:  # the writer finished while this reader was connected
        return open_store(settings, meta, create=False, shared=True)

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return RemoteStore.connect(kb_dir, dict(meta), reopen)
        except StoreLocked:
            pass
        try:
            return EdgeShardStore.open(
                kb_dir,
                meta=dict(meta),
                sparse_doc_fn=sparse_document,
                sparse_query_fn=sparse_query,
                create=False,
                index_after=settings.store.index_after,
            )
        except StoreLocked:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def _busy(settings: Settings) -> StoreBusy:
    return StoreBusy(
        f"knowledge base '{settings.kb.name}' is busy: another kb process is using it",
        hint="wait for it to finish, then try again",
    )


def collection_name(settings: Settings) -> str:
    """The server collection of the selected knowledge base: `[store] collection`, else kb_<name>."""
    return settings.store.collection or f"kb_{settings.kb.name}"


def knowledge_base_exists(settings: Settings) -> bool:
    """Whether the selected knowledge base has been created (a server is asked)."""
    if settings.store.backend != "qdrant":
        return (settings.kb_dir() / "collection.json").exists()
    try:
        open_store(settings, {}, create=False).close()
    except NoKnowledgeBase:
        return False
    return True


def _unavailable(settings: Settings, err: StoreUnavailable, url: str = "") -> ProviderError:
    return ProviderError(
        f"Qdrant server at {url or settings.store.url} failed: {err}",
        hint="is the server running? check [store].url and KB_STORE__API_KEY",
    )


def drop_server_collection(settings: Settings, url: str, collection: str) -> None:
    """Delete a knowledge base's collection on a Qdrant server (a rebuild, a replacing copy)."""
    from stores.qdrant import drop_collection

    key = settings.store.api_key
    try:
        drop_collection(
            url, collection, settings.store.timeout, key.get_secret_value() if key else None
        )
    except StoreUnavailable as err:
        raise _unavailable(settings, err, url) from err


def _remove_store(settings: Settings, wait_seconds: float) -> None:
    """Delete a knowledge base's points and record (under its lock), keeping its folder."""
    if settings.store.backend == "qdrant":
        drop_server_collection(settings, settings.store.url, collection_name(settings))
        return
    kb_dir = settings.kb_dir()
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
