"""`kb ingest PATH...`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.errors import ExitCode
from cli.options import ConfigOpt, JsonOpt, KbOpt, load
from cli.output import Output
from cli.progress import IngestProgressBar

if TYPE_CHECKING:
    from core.config import Settings
    from core.results import IngestReport


def ingest_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Folders or files to index.", show_default=False, metavar="PATH"),
    ],
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include", help="Only files matching this glob (repeatable).", metavar="GLOB"
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", help="Skip files matching this glob (repeatable).", metavar="GLOB"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; write nothing.")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Delete the knowledge base and index from scratch.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 5 when any file could not be indexed.")
    ] = False,
    hidden: Annotated[
        bool, typer.Option("--hidden", help="Also read hidden files and folders.")
    ] = False,
    no_gitignore: Annotated[
        bool, typer.Option("--no-gitignore", help="Also read paths that .gitignore files exclude.")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="After indexing, keep the index in step as files change (Ctrl-C stops)."
        ),
    ] = False,
    config: ConfigOpt = None,
    kb: KbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Index folders and files into the knowledge base, keeping it in step with them.

    With --watch, each batch of file changes runs an incremental pass, one line (or JSON object)
    each; the knowledge base is free for `kb ask` between passes.

    Example: kb ingest ./docs --exclude 'drafts/*'
    """
    from core.errors import ConfigError
    from core.ingest import run_ingest

    if watch and dry_run:
        raise ConfigError("--watch and --dry-run cannot be combined", hint="drop one of them")

    ingest_flags = {
        "include": tuple(include) if include else None,
        "exclude": tuple(exclude) if exclude else None,
        "hidden": True if hidden else None,
        "gitignore": False if no_gitignore else None,
    }
    settings = load(config, kb, fresh=rebuild, ingest=ingest_flags).settings
    out = Output(as_json=as_json)
    with IngestProgressBar(out) as on_progress:
        report = run_ingest(
            settings, paths, dry_run=dry_run, rebuild=rebuild, on_progress=on_progress
        )
    out.ingest_report(report)
    if watch:
        _watch(out, settings, paths)
    if strict and report.problems:
        raise typer.Exit(ExitCode.INCOMPLETE)


def _watch(out: Output, settings: Settings, paths: list[Path]) -> None:
    """Passes until Ctrl-C: one line per pass that changed something or met a problem."""
    from datetime import datetime

    from core.ingest.watch import watch_ingest

    def on_pass(report: IngestReport) -> None:
        if not (report.added or report.changed or report.renamed or report.deleted) and not (
            report.problems
        ):
            return
        for problem in report.problems:
            out.warn(f"{problem.path}: {problem.reason}")
        if out.as_json:
            out.json(asdict(report))
            return
        moved = "".join(f"; renamed {r.old} -> {r.new}" for r in report.renamed)
        out.write(
            f"{datetime.now():%H:%M:%S} added {len(report.added)}, changed {len(report.changed)}, "
            f"renamed {len(report.renamed)}, deleted {len(report.deleted)}; "
            f"{report.chunks_total} chunks; problems {len(report.problems)}{moved}"
        )

    def on_ready(roots: tuple[Path, ...]) -> None:
        out.note(f"watching {len(roots)} path(s) for changes; Ctrl-C to stop")

    watch_ingest(settings, paths, on_pass=on_pass, on_ready=on_ready)
