"""The `kb` command: one Typer app and the list of its commands.

Command modules import core (and with it llama_index, qdrant_edge, the embedder) inside the command
body only, so `kb --help` stays fast. The exit codes and the error boundary are in `cli.errors`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from cli import ask, chat, doctor, evaluate, goto, ingest, manage, serve
from cli.errors import ExitCode, reports_errors
from cli.groups import DefaultCommand, DefaultCommandGroup
from cli.output import silence_stdout

if TYPE_CHECKING:
    from typer._click import Context  # typer vendors click; the type is not re-exported

__all__ = ["ExitCode", "app", "main"]  # ExitCode too: scripts and tests take it from here


class _KbGroup(TyperGroup):
    """`kb --help` lists the commands in the order registered below (Typer would list `eval`, a group,
    after all plain commands). A command missing from ORDER fails here, loudly."""

    ORDER = (
        "ingest",
        "ask",
        "chat",
        "open",
        "eval",
        "sources",
        "forget",
        "migrate",
        "serve",
        "config",
        "doctor",
    )

    def list_commands(self, ctx: Context) -> list[str]:
        return sorted(super().list_commands(ctx), key=self.ORDER.index)


app = typer.Typer(
    name="kb",
    cls=_KbGroup,
    help="A private, grounded question-answering assistant over your own documents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

# `kb eval FILE` and `kb eval --beir DIR` run the hidden default; `compare` and `generate` are its siblings.
eval_app = typer.Typer(cls=DefaultCommandGroup, add_completion=False, rich_markup_mode=None)
eval_app.command(DefaultCommandGroup.DEFAULT, cls=DefaultCommand, hidden=True)(
    reports_errors(evaluate.eval_command)
)
eval_app.command("compare")(reports_errors(evaluate.compare_command))
eval_app.command("generate")(reports_errors(evaluate.generate_command))

app.command("ingest")(reports_errors(ingest.ingest_command))
app.command("ask")(reports_errors(ask.ask_command))
app.command("chat")(reports_errors(chat.chat_command))
app.command("open")(reports_errors(goto.open_command))
app.add_typer(eval_app, name="eval")
app.command("sources")(reports_errors(manage.sources_command))
app.command("forget")(reports_errors(manage.forget_command))
app.command("migrate")(reports_errors(manage.migrate_command))
app.command("serve")(reports_errors(serve.serve_command))
app.command("config")(reports_errors(manage.config_command))
app.command("doctor")(reports_errors(doctor.doctor_command))


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"kb {version('kb')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print kb's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """A private, grounded question-answering assistant over your own documents."""


def main() -> None:
    """Entry point of the `kb` console script."""
    try:
        app()
    except BrokenPipeError:
        # `kb ... | head -1`: the reader left while something wrote past `Output`; end quietly.
        silence_stdout()
        sys.exit(ExitCode.FAILURE)
    except SystemExit:
        # The command's own exit code (6 for a refusal) stands even when the reader left before
        # the last flush: that flush must not turn it into a failure.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
        raise
