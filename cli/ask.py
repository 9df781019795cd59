"""`kb ask QUESTION`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.options import ConfigOpt, JsonOpt, KbOpt, load


def ask_command(
    question: Annotated[
        str | None,
        typer.Argument(
            help="The question; read from stdin when omitted.",
            show_default=False,
            metavar="[QUESTION]",
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode", help="hybrid | dense | sparse (default: [retrieval].mode).", metavar="MODE"
        ),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k", help="Chunks to retrieve (default: [retrieval].top_k).", metavar="N"
        ),
    ] = None,
    no_sources: Annotated[
        bool, typer.Option("--no-sources", help="Print the answer only.")
    ] = False,
    config: ConfigOpt = None,
    kb: KbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the knowledge base, citing its sources as [1], [2], ...

    Example: kb ask "How long is the refund window?"
    """
    from cli.output import Output
    from core.answer import ask
    from core.engine import open_engine
    from core.errors import ConfigError

    if question is None:
        if sys.stdin.isatty():
            raise ConfigError("no question given", hint='kb ask "QUESTION", or pipe it on stdin')
        question = sys.stdin.read()
    question = question.strip()
    if not question:
        raise ConfigError("the question is empty", hint='kb ask "QUESTION"')
    settings = load(config, kb, retrieval={"mode": mode, "top_k": top_k}).settings
    with open_engine(settings, purpose="read") as engine:
        answer = ask(question, engine, mode=settings.retrieval.mode, top_k=settings.retrieval.top_k)
    Output(as_json=as_json).answer(answer, show_sources=not no_sources)
