"""The `kb` command: one Typer app and the list of its commands.

Command modules import core (and with it llama_index, qdrant_edge, the embedder) inside the command
body only, so `kb --help` stays fast. The exit codes and the error boundary are in `cli.errors`.
"""

from __future__ import annotations

import os
import sys

import typer

from cli import ask, chat, evaluate, ingest, manage
from cli.errors import ExitCode, reports_errors

__all__ = ["ExitCode", "app", "main"]  # ExitCode too: scripts and tests take it from here


app = typer.Typer(
    name="kb",
    help="A private, grounded question-answering assistant over your own documents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

app.command("ingest")(reports_errors(ingest.ingest_command))
app.command("ask")(reports_errors(ask.ask_command))
app.command("chat")(reports_errors(chat.chat_command))
app.command("eval")(reports_errors(evaluate.eval_command))
app.command("sources")(reports_errors(manage.sources_command))
app.command("forget")(reports_errors(manage.forget_command))
app.command("migrate")(reports_errors(manage.migrate_command))
app.command("config")(reports_errors(manage.config_command))


def main() -> None:
    """Entry point of the `kb` console script."""
    try:
        app()
    except BrokenPipeError:
        # `kb ... | head -1`: the reader left; end quietly, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(ExitCode.FAILURE)
