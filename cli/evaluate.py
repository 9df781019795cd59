"""`kb eval QUESTIONS.jsonl`, `kb eval --beir DIR`, and the sub-commands `kb eval compare A B`,
`kb eval generate` (`cli.groups` sends a first word that is neither to `eval_command`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.errors import ExitCode
from cli.options import ConfigOpt, JsonOpt, KbOpt, ModeOpt, TraceOpt, load
from cli.output import Output
from cli.progress import IngestProgressBar, QuestionProgress
from cli.render import trace_line

if TYPE_CHECKING:
    from core.config import Settings
    from core.evaluate.cases import EvalCase
    from core.results import EvalReport, InputProblem


def eval_command(
    questions: Annotated[
        Path | None,
        typer.Argument(
            help="The question set (JSONL); or use --beir.",
            show_default=False,
            metavar="QUESTIONS.jsonl",
        ),
    ] = None,
    beir: Annotated[
        Path | None,
        typer.Option(
            "--beir",
            help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/): ingest its corpus into its "
            "own knowledge base (beir-NAME, reused) and score it.",
            metavar="DIR",
        ),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="Which qrels/SPLIT.tsv of a BEIR folder.")
    ] = "test",
    mode: ModeOpt = None,
    k: Annotated[int, typer.Option("--k", help="Documents scored per question.", min=1)] = 10,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only the first N questions.", metavar="N", min=1)
    ] = None,
    no_answers: Annotated[
        bool, typer.Option("--retrieval-only", help="Score retrieval only; write no answers.")
    ] = False,
    judge: Annotated[
        bool,
        typer.Option("--judge", help="Also let the LLM grade faithfulness and relevancy."),
    ] = False,
    bad: Annotated[
        int, typer.Option("--bad-cases", help="List the N worst questions.", metavar="N", min=0)
    ] = 5,
    save: Annotated[
        str | None, typer.Option("--save", help="Keep this run under NAME.", metavar="NAME")
    ] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under",
            help="Exit 7 when METRIC falls below VALUE, e.g. ndcg@10=0.7 (repeatable).",
            metavar="METRIC=VALUE",
        ),
    ] = None,
    config: ConfigOpt = None,
    kb: KbOpt = None,
    as_json: JsonOpt = False,
    trace: TraceOpt = False,
) -> None:
    """Measure retrieval and answer quality on a question set; list the bad cases.

    QUESTIONS.jsonl lines: {"question", "answer" | "answers", "sources": [paths or ids]}.

    Example: kb eval qa.jsonl --save baseline --fail-under hit@10=0.9
    """
    from core.errors import ConfigError

    out = Output(as_json=as_json)
    overrides = {"mode": mode}
    if (beir is None) == (questions is None):
        raise ConfigError(
            "give one question set, or --beir DIR",
            hint="kb eval QUESTIONS.jsonl | kb eval --beir DIR",
        )
    floors = _floors(fail_under or [])
    if floors:  # a floor on a metric the run cannot have fails now, not after the whole run
        from core.evaluate.run import check_floors

        check_floors(floors, k, answers=not no_answers, judge=judge)
    if beir is not None:
        name = kb or f"beir-{beir.resolve().name}"
        settings = load(config, name, retrieval=overrides).settings
        cases, problems = _beir(settings, beir, split, out)
    else:
        from core.evaluate.cases import load_cases

        assert questions is not None  # one of the two, checked above
        settings = load(config, kb, retrieval=overrides).settings
        cases, problems = load_cases(questions)
    for problem in problems:
        out.warn(f"line {problem.line}: {problem.reason} (skipped)")
    if limit is not None:
        cases = cases[:limit]
    if not cases:
        raise ConfigError("no questions to evaluate", hint='each JSONL line needs a "question"')
    report = _run(
        settings, cases, problems, out, k=k, answers=not no_answers, judge=judge, name=save or ""
    )
    for source in report.unknown_sources[:20]:
        out.warn(f"source {source!r} matches no indexed document")
    if save:
        from core.evaluate.runs import save_run

        path = save_run(report, settings)
        out.note(f"saved run '{save}' ({path})")
    if trace:
        out.note(trace_line({stage: v["p50"] for stage, v in report.stages.items()}, label="p50"))
    out.eval_report(report, bad_cases=bad)
    if floors:
        from core.evaluate.run import failing

        misses = failing(report, floors)
        for miss in misses:
            out.warn(f"below --fail-under: {miss}")
        if misses:
            raise typer.Exit(ExitCode.BELOW_THRESHOLD)


def _floors(specs: list[str]) -> dict[str, float]:
    from core.errors import ConfigError

    floors: dict[str, float] = {}
    for spec in specs:
        metric, _, value = spec.partition("=")
        try:
            floor = float(value)
        except ValueError:
            floor = None
        if floor is None or not metric.strip():
            raise ConfigError(
                f"bad --fail-under {spec!r}", hint="METRIC=VALUE, e.g. ndcg@10=0.7 or contains=0.8"
            )
        floors[metric.strip()] = floor
    return floors


def _beir(
    settings: Settings, folder: Path, split: str, out: Output
) -> tuple[list[EvalCase], list[InputProblem]]:
    """Ingest a BEIR corpus into its knowledge base (incremental) and return its cases."""
    from core.evaluate.cases import prepare_beir

    with IngestProgressBar(out) as on_progress:
        beir, cases, report = prepare_beir(settings, folder, split, on_progress)
    out.note(f"BEIR set {beir.name}: {report.files_total} documents, {len(cases)} judged queries")
    if report.added or report.changed:
        out.note(
            f"indexed {len(report.added) + len(report.changed)} documents into '{settings.kb.name}'"
        )
    return cases, []


def _run(
    settings: Settings,
    cases: list[EvalCase],
    problems: list[InputProblem],
    out: Output,
    *,
    k: int,
    answers: bool,
    judge: bool,
    name: str,
) -> EvalReport:
    from core.engine import open_engine
    from core.evaluate import run_eval

    with (
        open_engine(settings, purpose="read") as engine,
        QuestionProgress(out, len(cases)) as tick,
    ):
        return run_eval(
            cases,
            engine,
            mode=settings.retrieval.mode,
            k=k,
            answers=answers,
            judge=judge,
            problems=problems,
            name=name,
            on_progress=tick,
        )


def compare_command(
    run_a: Annotated[
        str,
        typer.Argument(
            help="The earlier run: a --save NAME or its .json file.",
            metavar="RUN_A",
            show_default=False,
        ),
    ],
    run_b: Annotated[
        str,
        typer.Argument(
            help="The later run, compared with RUN_A.", metavar="RUN_B", show_default=False
        ),
    ],
    config: ConfigOpt = None,
    kb: KbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare two saved runs: every metric, and the questions that got better or worse.

    Example: kb eval compare baseline hybrid
    """
    from core.evaluate.runs import compare_runs, load_run

    settings = load(config, kb).settings
    comparison = compare_runs(load_run(run_a, settings), load_run(run_b, settings))
    Output(as_json=as_json).comparison(comparison)


def generate_command(
    count: Annotated[
        int, typer.Option("--count", help="Chunks to write questions from.", min=1)
    ] = 20,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the JSONL here (default: stdout).",
            metavar="FILE",
        ),
    ] = None,
    config: ConfigOpt = None,
    kb: KbOpt = None,
) -> None:
    """Write a question set from the knowledge base: the LLM asks a question of sampled chunks.

    Each line names its chunk's file as the source; review the questions before relying on them.

    Example: kb eval generate --count 50 -o qa.jsonl
    """
    import json

    from core.engine import open_engine
    from core.evaluate.generate import generate_cases

    settings = load(config, kb).settings
    with open_engine(settings, purpose="read") as engine:
        rows = generate_cases(engine, count=count)
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if output is None:
        sys.stdout.write(lines)
        sys.stdout.flush()
    else:
        output.write_text(lines, encoding="utf-8")
        Output().note(f"wrote {len(rows)} questions to {output}")
