"""`openai`: any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, DashScope, Zhipu,
...), through the `openai` package; its failures are translated in `core.openai_endpoint`."""

from __future__ import annotations

import math
from typing import Any, NoReturn

from pydantic import PrivateAttr

from core.config import EmbeddingSettings
from core.embedders import OPENAI_URL, SPECS, openai_fingerprint
from core.embedders.base import KbEmbedding
from core.errors import ConfigError, ProviderError
from core.openai_endpoint import Endpoint, openai_client, retries, translate


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
        endpoint = Endpoint(
            kind="embedding",
            section="embedding",
            url=self.base_url,
            model=self.model_name,
            timeout=self.timeout,
            tries=retries(self.max_retries),
            secret=self._api_key,
            key_hint="set KB_EMBEDDING__API_KEY in .env",
            timeout_hint="is the server overloaded? raise [embedding].timeout, "
            "or lower [embedding].batch_size",
            rate_hint="wait a minute and try again, or raise [embedding].max_retries "
            "or lower [embedding].batch_size",
        )
        translate(err, endpoint, self._malformed_body)

    def _malformed_body(self, err: Exception) -> NoReturn:
        self._malformed("its body is not an embeddings response", err)


def make(cfg: EmbeddingSettings) -> OpenAICompatibleEmbedding:
    """The configured endpoint; without `dim`, it is asked for one vector to learn the size."""
    if not cfg.base_url and not cfg.api_key:
        raise ConfigError(
            "[embedding] provider = 'openai' needs a base_url or an API key",
            hint="set [embedding].base_url, or KB_EMBEDDING__API_KEY for api.openai.com",
        )
    remote = OpenAICompatibleEmbedding(
        model_name=cfg.model or SPECS["openai"].model,
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
