"""The failures a user can act on. Each carries a one-line message and an optional hint."""

from __future__ import annotations


class KbError(Exception):
    """A failure the user can act on: shown as one line plus a hint, no traceback."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(KbError):
    """Bad or unknown configuration, or bad command-line input."""


class ProviderError(KbError):
    """An embedding or LLM provider is unavailable, misconfigured or failing."""


class StoreError(KbError):
    """The knowledge base cannot be opened or written."""


class StoreBusy(StoreError):
    """Another kb process holds the knowledge base."""


class StoreMismatch(StoreError):
    """The knowledge base was built with other embedder or chunking settings."""


class NoKnowledgeBase(KbError):
    """No knowledge base exists yet under the selected name."""


class NothingToAnswerFrom(KbError):
    """Retrieval found nothing to answer from."""
