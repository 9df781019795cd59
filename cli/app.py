"""The `kb` command: one Typer app, the error boundary and the exit-code table.

Command modules import core (and with it llama_index, qdrant_edge, the embedder) inside the command
body only, so `kb --help` stays fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec

import typer

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
    INTERRUPTED = 130  # Ctrl-C


def exit_code_for(err: Exception) -> ExitCode:
    """The exit code of a KbError subclass."""
    from core import errors

    table: list[tuple[type[Exception], ExitCode]] = [
        (errors.ConfigError, ExitCode.USAGE),
        (errors.StoreMismatch, ExitCode.USAGE),
        (errors.ProviderError, ExitCode.UNAVAILABLE),
        (errors.StoreBusy, ExitCode.UNAVAILABLE),
        (errors.NoKnowledgeBase, ExitCode.NO_KNOWLEDGE_BASE),
        (errors.NothingToAnswerFrom, ExitCode.NO_KNOWLEDGE_BASE),
    ]
    for kind, code in table:
        if isinstance(err, kind):
            return code
    return ExitCode.FAILURE


def reports_errors(command: Callable[P, None]) -> Callable[P, None]:
    """The one error boundary, applied to every command so tests see the codes users see."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        from core.errors import KbError

        try:
            command(*args, **kwargs)
        except KbError as err:
            from cli.output import print_error

            print_error(err)
            raise typer.Exit(exit_code_for(err)) from None
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None

    return wrapper


app = typer.Typer(
    name="kb",
    help="A private, grounded question-answering assistant over your own documents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


def _register() -> None:
    from cli import ask, chat, evaluate, ingest, manage

    app.command("ingest")(reports_errors(ingest.ingest_command))
    app.command("ask")(reports_errors(ask.ask_command))
    app.command("chat")(reports_errors(chat.chat_command))
    app.command("eval")(reports_errors(evaluate.eval_command))
    app.command("sources")(reports_errors(manage.sources_command))
    app.command("forget")(reports_errors(manage.forget_command))
    app.command("migrate")(reports_errors(manage.migrate_command))
    app.command("config")(reports_errors(manage.config_command))


_register()


def main() -> None:
    """Entry point of the `kb` console script."""
    try:
        app()
    except BrokenPipeError:
        # `kb ... | head -1`: the reader left; end quietly, like other Unix tools.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(ExitCode.FAILURE)
