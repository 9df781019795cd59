"""Deterministic test doubles through public seams (never patches of library internals)."""

from __future__ import annotations

import hashlib
import math

from core.providers import KbEmbedding
from core.text import tokenize


class HashEmbedding(KbEmbedding):
    """Bag of hashed keyword tokens, L2-normalised: similar text really is similar. Counts its calls."""

    model_name: str = "hash-64"
    dim: int = 64
    calls: int = 0
    texts_embedded: int = 0

    @classmethod
    def class_name(cls) -> str:
        return "hash"

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for token in tokenize(text):
            digest = hashlib.blake2b(token.encode(), digest_size=4).digest()
            vec[int.from_bytes(digest, "little") % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        self.texts_embedded += len(texts)
        return [self._vector(t) for t in texts]
