"""The exit-code table and the one error boundary every command runs inside.

A leaf of the cli package: command modules import it at the top, and it imports no command module
(nor `cli.app`, which imports them all). `core.errors` is plain exception classes, no heavy library.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec

import typer

from cli.output import print_error
from core import errors

P = ParamSpec("P")


class ExitCode(IntEnum):
    """What `kb` exits with; scripts can rely on these."""

    OK = 0
    FAILURE = 1  # an error not listed below
    USAGE = 2  # bad arguments or configuration, or a knowledge base built with other settings
    UNAVAILABLE = 3  # knowledge base busy, or an embedding/LLM endpoint unreachable: retry later
    NO_KNOWLEDGE_BASE = 4  # nothing ingested yet under this name
    INCOMPLETE = 5  # `kb ingest --strict`: some files could not be indexed
    NO_ANSWER = 6  # `kb ask`: nothing relevant in the knowledge base (nearest sources still listed)
    BELOW_THRESHOLD = 7  # `kb eval --fail-under`: a metric fell below its floor
    CHECKS_FAILED = 8  # `kb doctor`: at least one check failed (each prints its fix)
    INTERRUPTED = 130  # Ctrl-C


_CODES: list[tuple[type[Exception], ExitCode]] = [
    (errors.ConfigError, ExitCode.USAGE),
    (errors.StoreMismatch, ExitCode.USAGE),
    (errors.ProviderError, ExitCode.UNAVAILABLE),
    (errors.StoreBusy, ExitCode.UNAVAILABLE),
    (errors.NoKnowledgeBase, ExitCode.NO_KNOWLEDGE_BASE),
    (errors.NothingToAnswerFrom, ExitCode.NO_KNOWLEDGE_BASE),
]


def exit_code_for(err: Exception) -> ExitCode:
    """The exit code of a KbError subclass."""
    for kind, code in _CODES:
        if isinstance(err, kind):
            return code
    return ExitCode.FAILURE


def reports_errors(command: Callable[P, None]) -> Callable[P, None]:
    """The one error boundary, applied to every command so tests see the codes users see."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except errors.KbError as err:
            print_error(err)
            raise typer.Exit(exit_code_for(err)) from None
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None

    return wrapper
