"""`kb ask QUESTION`."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from cli.errors import ExitCode
from cli.options import (
    ConfigOpt,
    JsonOpt,
    KbOpt,
    ModeOpt,
    ShowThinkingOpt,
    TopKOpt,
    TraceOpt,
    load,
)
from cli.output import Output
from cli.render import trace_line
from core.loaders import file_kinds


def ask_command(
    question: Annotated[
        str | None,
        typer.Argument(
            help="The question; read from stdin when omitted.",
            show_default=False,
            metavar="[QUESTION]",
        ),
    ] = None,
    mode: ModeOpt = None,
    top_k: TopKOpt = None,
    paths: Annotated[
        list[str] | None,
        typer.Option(
            "--path",
            help="Only files whose path matches this glob (repeatable), e.g. 'notes/*.md'.",
            metavar="GLOB",
        ),
    ] = None,
    file_types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            help=f"Only files of this type (repeatable): {', '.join(file_kinds())}.",
            metavar="TYPE",
        ),
    ] = None,
    context: Annotated[
        int | None,
        typer.Option(
            "--context",
            help="Add N neighbouring chunks on each side of every hit (default: [retrieval].context).",
            metavar="N",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Chat model to answer with (default: [llm].model).", metavar="NAME"
        ),
    ] = None,
    retrieve_only: Annotated[
        bool, typer.Option("--retrieve-only", help="Print the ranked chunks, no answer.")
    ] = False,
    no_sources: Annotated[
        bool, typer.Option("--no-sources", help="Print the answer only.")
    ] = False,
    show_thinking: ShowThinkingOpt = False,
    trace: TraceOpt = False,
    stream_json: Annotated[
        bool,
        typer.Option(
            "--stream-json",
            help="JSON lines as the answer arrives: sources, tokens, then the answer.",
        ),
    ] = False,
    config: ConfigOpt = None,
    kb: KbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the knowledge base, citing its sources as [1], [2], ...

    Exits 6 when the knowledge base has nothing relevant (the nearest sources are still listed).

    Example: kb ask "How long is the refund window?"
    """
    started = time.perf_counter()
    from dataclasses import replace

    from core.engine import open_engine
    from core.errors import ConfigError, KbError
    from core.retrieve import RetrievalQuery, retrieve

    if as_json and stream_json:
        raise ConfigError("--json and --stream-json cannot be combined", hint="pick one")
    if question is None:
        if sys.stdin.isatty():
            raise ConfigError("no question given", hint='kb ask "QUESTION", or pipe it on stdin')
        question = sys.stdin.read()
    question = question.strip()
    if not question:
        raise ConfigError("the question is empty", hint='kb ask "QUESTION"')
    settings = load(
        config,
        kb,
        retrieval={"mode": mode, "top_k": top_k, "context": context},
        llm={"model": model},
    ).settings
    out = Output(as_json=as_json or stream_json, stream_json=stream_json, link=settings.kb.link)
    query = RetrievalQuery.from_settings(
        settings, question, paths=tuple(paths or ()), file_types=tuple(file_types or ())
    )
    try:
        with open_engine(settings, purpose="read") as engine:
            loaded = round(time.perf_counter() - started, 4)
            retrieval = retrieve(query, engine)
            engine.release()  # answering needs no store: `kb ingest` need not wait for the LLM
            if trace:
                retrieval = replace(retrieval, timings={"load_s": loaded, **retrieval.timings})
            if retrieve_only:
                if trace:
                    out.note(trace_line(retrieval.timings))
                out.retrieved(retrieval, show_sources=not no_sources)
                if not retrieval.sources:
                    raise typer.Exit(ExitCode.NO_ANSWER)
                return
            from core.answer import answer  # not imported for --retrieve-only
            from core.last_answer import save_sources

            with out.answer_stream(retrieval) as stream:
                result = answer(
                    retrieval, engine, on_event=stream.on_event, show_thinking=show_thinking
                )
                stream.finish(result)
    except KbError as err:
        if stream_json:
            out.json({"type": "error", "message": str(err), "hint": err.hint})
        raise
    save_sources(settings, result.sources)  # for `kb open N`
    if trace:
        out.note(trace_line(result.timings, result.usage))
    out.answer(result, show_sources=not no_sources, streamed=stream.streamed)
    if not result.found:
        raise typer.Exit(ExitCode.NO_ANSWER)
