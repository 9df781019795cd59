"""`kb sources`, `kb forget PATH...`, `kb migrate --to URL` and `kb config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.options import ConfigOpt, JsonOpt, KbOpt, load
from cli.output import Output


def sources_command(config: ConfigOpt = None, kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """List the indexed files: path, chunks, when indexed.

    Example: kb sources --json | jq '.files[].path'
    """
    from core.engine import open_engine
    from core.manage import list_sources

    settings = load(config, kb).settings
    with open_engine(settings, purpose="browse") as engine:
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
    from core.engine import open_engine
    from core.manage import forget

    settings = load(config, kb).settings
    with open_engine(settings, purpose="manage") as engine:
        report = forget(paths, engine)
    Output(as_json=as_json).forgot(report)


def migrate_command(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Qdrant server URL, e.g. http://localhost:6333 (default: [store].url).",
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    collection: Annotated[
        str | None,
        typer.Option(
            "--collection",
            help="Collection to create (default: [store].collection, else kb_NAME).",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards",
            help="Shards of the new collection (default: [store].shards).",
            min=1,
            metavar="N",
        ),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            "--replicas",
            help="Copies of each shard (default: [store].replicas).",
            min=1,
            metavar="N",
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a collection that already holds files.")
    ] = False,
    config: ConfigOpt = None,
    kb: KbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy the embedded knowledge base to a Qdrant server, vectors included (nothing is re-embedded).

    The API key comes from KB_STORE__API_KEY. Afterwards set [store] backend = "qdrant" and url.

    Example: kb migrate --to http://localhost:6333 --shards 2
    """
    from core.manage import migrate

    store = {"shards": shards, "replicas": replicas}
    settings = load(config, kb, store=store).settings
    report = migrate(
        settings, to or settings.store.url, collection=collection or "", replace=replace
    )
    Output(as_json=as_json).migrated(report)


def config_command(config: ConfigOpt = None, kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Print the settings files looked for, the effective configuration (secrets masked) and where
    each value came from.

    Example: KB_RETRIEVAL__TOP_K=8 kb config
    """
    from core.config import effective_items

    loaded = load(config, kb)
    path = str(loaded.config_path) if loaded.config_path else None
    files = [(f.role, str(f.path), f.found) for f in loaded.files]
    Output(as_json=as_json).config(effective_items(loaded), path, files)
