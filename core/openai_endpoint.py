"""Talking to an OpenAI-compatible endpoint, for the LLM and the embedder alike: the `openai` client
kb uses, and the one place its exceptions become `ProviderError`s (one line naming the endpoint, and
a hint naming the setting to change)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from core.errors import ProviderError

NO_KEY = "not-needed"  # what local servers get: the openai client insists on some key
CONNECT_TIMEOUT = 3.0  # seconds; a dead endpoint fails fast even with a long read timeout
MAX_RETRY_AFTER = 120.0  # seconds; the openai client does not wait for a longer Retry-After


def openai_client(base_url: str, api_key: str, timeout: float, max_retries: int) -> Any:
    """The `openai` client kb talks to an endpoint with: the client's own retries and backoff
    (`max_retries`), `timeout` per request, and a short connect timeout so a dead host fails fast."""
    import openai

    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key or NO_KEY,
        max_retries=max_retries,
        timeout=openai.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
    )


@dataclass(frozen=True)
class Endpoint:
    """What an error message says about the endpoint that failed, and which settings its hints name."""

    kind: str  # "LLM" or "embedding", as in "the LLM endpoint at ..."
    section: str  # the settings section its hints name: "llm" or "embedding"
    url: str
    model: str
    timeout: float
    tries: str  # how the client retried, e.g. "after 2 retries"
    secret: str  # never shown, even when a server echoes it
    key_hint: str  # what to do about a refused key
    timeout_hint: str  # what to do about a slow server
    rate_hint: str  # what to do about a rate limit


def retries(n: int) -> str:
    """How often the client retried before giving up."""
    return f"after {n} {'retry' if n == 1 else 'retries'}" if n else "with retries off"


def translate(err: Exception, at: Endpoint, malformed: Callable[[Exception], NoReturn]) -> NoReturn:
    """Raise the `ProviderError` for an `openai` exception. A malformed response goes to
    `malformed(err)` (the caller says what it expected); anything else is re-raised as it is (a bug).
    Order matters: subclasses first."""
    import openai

    where = f"the {at.kind} endpoint at {at.url}"
    causes = _causes(err)
    if isinstance(err, openai.APITimeoutError) and "ConnectTimeout" not in causes:
        raise ProviderError(
            f"{where} did not answer within {at.timeout:g} s ({at.tries})", hint=at.timeout_hint
        ) from err
    if isinstance(err, openai.APIConnectionError):
        if causes & {"RemoteProtocolError", "ReadError"}:
            raise ProviderError(
                f"{where} closed the connection before its answer was complete ({at.tries})",
                hint="try again, or check the server's log",
            ) from err
        waited = (
            f" (no connection within {min(CONNECT_TIMEOUT, at.timeout):g} s)"
            if "ConnectTimeout" in causes
            else ""
        )
        raise ProviderError(
            f"cannot reach the {at.kind} endpoint at {at.url}{waited}",
            hint=f"is the server running? see [{at.section}].base_url",
        ) from err
    if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
        raise ProviderError(
            f"{where} refused the API key ({err.status_code})", hint=at.key_hint
        ) from err
    if isinstance(err, openai.NotFoundError):
        raise ProviderError(
            f"{where} has no model {at.model!r} (404)",
            hint=f"check [{at.section}].model, and that [{at.section}].base_url ends in /v1",
        ) from err
    if isinstance(err, openai.RateLimitError):
        wait = _retry_after(err.response)
        if wait is not None and wait > MAX_RETRY_AFTER:  # the client does not wait that long
            raise ProviderError(
                f"{where} rate limited (429) and asks to wait {wait:g} s",
                hint="try again later: your quota may be used up",
            ) from err
        raise ProviderError(f"{where} rate limited (429) {at.tries}", hint=at.rate_hint) from err
    if isinstance(err, openai.APIStatusError):
        detail = scrub(server_message(err.body), at.secret)
        status = err.status_code
        raise ProviderError(
            f"{where} answered HTTP {status}"
            + (f" {at.tries}" if status >= 500 else "")
            + (f": {detail}" if detail else ""),
            hint="the server is failing; try again later, or check its log"
            if status >= 500
            else f"check [{at.section}].model = {at.model!r} and the server's log",
        ) from err
    if isinstance(err, openai.APIResponseValidationError | json.JSONDecodeError):
        malformed(err)
    if isinstance(err, openai.APIError):
        raise ProviderError(
            f"{where} failed: {scrub(err.message, at.secret)}",
            hint="try again, or check the server's log",
        ) from err
    raise err


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


def scrub(text: str, secret: str) -> str:
    """One line, short, and never the key (a server may echo what it was sent)."""
    line = " ".join(text.split())[:200]
    return line.replace(secret, "***") if secret else line


def server_message(body: object) -> str:
    """The `error.message` of an OpenAI-style error body, if there is one."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    if isinstance(body, str):
        return body
    return ""
