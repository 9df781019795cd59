"""`kb ingest PATH...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.errors import ExitCode
from cli.options import ConfigOpt, JsonOpt, KbOpt, load
from cli.output import Output
from cli.progress import IngestProgressBar


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
    config: ConfigOpt = None,
    kb: KbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Index folders and files into the knowledge base, keeping it in step with them.

    Example: kb ingest ./docs --exclude 'drafts/*'
    """
    from core.ingest import run_ingest

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
    if strict and report.problems:
        raise typer.Exit(ExitCode.INCOMPLETE)
