"""`fastembed`: any fastembed model (ONNX), fetched from its model hub the first time, so it needs
internet once and `pip install 'kb[fastembed]'`."""

from __future__ import annotations

from typing import Any

from pydantic import PrivateAttr

from core.config import EmbeddingSettings
from core.embedders import SPECS
from core.embedders.base import KbEmbedding
from core.errors import ConfigError, ProviderError


class FastEmbedEmbedding(KbEmbedding):
    """A fastembed model; its dimension is learned by `load()`."""

    _model: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "fastembed"

    def _fastembed(self) -> Any:
        if self._model is None:
            try:
                from fastembed import TextEmbedding
            except ImportError as err:  # a missing optional package is a setup error
                raise ConfigError(
                    "the fastembed provider needs the fastembed package",
                    hint="pip install 'kb[fastembed]', or use [embedding] provider = \"local\"",
                ) from err
            try:
                self._model = TextEmbedding(model_name=self.model_name)
            except (
                Exception
            ) as err:  # fastembed raises bare exceptions for unknown/undownloadable models
                raise ProviderError(
                    f"cannot load fastembed model {self.model_name!r}: {err}",
                    hint="check the model name and that its hub is reachable once",
                ) from err
        return self._model

    def load(self) -> None:
        """Load the model now and learn its dimension."""
        self.dim = len(self._get_text_embeddings(["dimension probe"])[0])

    def _get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in next(iter(self._fastembed().query_embed([query])))]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._fastembed().passage_embed(texts)]


def make(cfg: EmbeddingSettings) -> FastEmbedEmbedding:
    """The configured (or default) fastembed model, loaded."""
    fast = FastEmbedEmbedding(
        model_name=cfg.model or SPECS["fastembed"].model, embed_batch_size=cfg.batch_size
    )
    fast.load()
    return fast
