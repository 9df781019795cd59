"""`kb sources`, `kb forget PATH...` and `kb config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.options import ConfigOpt, JsonOpt, KbOpt, load


def sources_command(config: ConfigOpt = None, kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """List the indexed files: path, chunks, when indexed.

    Example: kb sources --json | jq '.files[].path'
    """
    from cli.output import Output
    from core.engine import open_engine
    from core.manage import list_sources

    settings = load(config, kb).settings
    with open_engine(settings, purpose="manage") as engine:
        files = list_sources(engine)
    Output(as_json=as_json).sources(files)


def forget_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files or folders to remove from the index.", metavar="PATH"),
    ],
    config: ConfigOpt = None,
    kb: KbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove files, or everything under folders, from the index (the files stay on disk).

    Example: kb forget docs/old/
    """
    from cli.output import Output
    from core.engine import open_engine
    from core.manage import forget

    settings = load(config, kb).settings
    with open_engine(settings, purpose="manage") as engine:
        report = forget(paths, engine)
    Output(as_json=as_json).forgot(report)


def config_command(config: ConfigOpt = None, kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Print the effective configuration, secrets masked, and where each value came from.

    Example: KB_RETRIEVAL__TOP_K=8 kb config
    """
    from cli.output import Output
    from core.config import effective_items

    loaded = load(config, kb)
    path = str(loaded.config_path) if loaded.config_path else None
    Output(as_json=as_json).config(effective_items(loaded), path)
