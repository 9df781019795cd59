"""The factories `core.engine` calls: `make_embedder()` (the row of `core.embedders.SPECS` that
`[embedding] provider` names) and `make_reranker()` (a fastembed cross-encoder).

The embedders themselves live in `core.embedders`, one module per family.
"""

from __future__ import annotations

from core.config import EmbeddingSettings
from core.embedders import SPECS
from core.embedders.base import KbEmbedding
from core.errors import ConfigError, ProviderError

__all__ = ["Reranker", "make_embedder", "make_reranker"]


def make_embedder(cfg: EmbeddingSettings) -> KbEmbedding:
    """The embedder `[embedding]` asks for."""
    return SPECS[cfg.provider].make(cfg)


class Reranker:
    """A fastembed cross-encoder: scores (question, passage) pairs; downloaded on first use."""

    def __init__(self, model_name: str) -> None:
        try:
            from fastembed.rerank.cross_encoder import TextCrossEncoder
        except ImportError as err:  # a missing optional package is a setup error, not an outage
            raise ConfigError(
                "a reranker needs the fastembed package",
                hint="pip install 'kb[fastembed]', or set [retrieval] reranker = \"\"",
            ) from err
        try:
            self._model = TextCrossEncoder(model_name=model_name)
        except (
            Exception
        ) as err:  # fastembed raises bare exceptions for unknown/undownloadable models
            raise ProviderError(
                f"cannot load reranker {model_name!r}: {err}",
                hint="check [retrieval].reranker and that its hub is reachable once",
            ) from err
        self.model_name = model_name

    def rerank(self, question: str, passages: list[str]) -> list[float]:
        """One relevance score per passage, higher is better."""
        return [float(score) for score in self._model.rerank(question, passages)]


def make_reranker(model_name: str) -> Reranker:
    """The cross-encoder `[retrieval] reranker` names."""
    return Reranker(model_name)
