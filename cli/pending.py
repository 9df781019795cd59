"""Commands whose features have not landed yet: they say so, with what works today, and exit 1."""

from __future__ import annotations


def _not_yet(command: str) -> None:
    from core.errors import KbError

    raise KbError(f"`kb {command}` is not yet available", hint="use `kb ask QUESTION` meanwhile")


def eval_command() -> None:
    """Measure retrieval and answer quality on a question set (not yet available)."""
    _not_yet("eval")
