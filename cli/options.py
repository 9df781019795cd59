"""Options shared by commands, spelled once, and the one place commands load settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from core.config import LoadedSettings

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="config.toml to read (default: $KB_CONFIG, else ./config.toml if present).",
        show_default=False,
        metavar="PATH",
    ),
]
KbOpt = Annotated[
    str | None,
    typer.Option(
        "--kb",
        help="Name of the knowledge base to use (default: [kb].name).",
        show_default=False,
        metavar="NAME",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ModeOpt = Annotated[
    str | None,
    typer.Option(
        "--mode", help="hybrid | dense | sparse (default: [retrieval].mode).", metavar="MODE"
    ),
]
TopKOpt = Annotated[
    int | None,
    typer.Option("--top-k", help="Chunks to retrieve (default: [retrieval].top_k).", metavar="N"),
]
TraceOpt = Annotated[
    bool,
    typer.Option(
        "--trace",
        help="Per-stage timings (and an LLM's prompt and completion tokens) on stderr, and in --json.",
    ),
]
ShowThinkingOpt = Annotated[
    bool, typer.Option("--show-thinking", help="Also print a reasoning model's thinking.")
]


def load(
    config: Path | None, kb: str | None, *, fresh: bool = False, **sections: dict[str, Any]
) -> LoadedSettings:
    """Settings for one command: files and environment, then the command's own flags; then, for
    what the user left unset, how the knowledge base was built (unless `fresh`: it is rebuilt)."""
    from cli.output import Output
    from core.config import load_settings
    from core.embedders.e5 import announce_builds
    from core.engine import with_recorded

    overrides: dict[str, dict[str, Any]] = {"kb": {"name": kb}}
    overrides.update(sections)
    # A model built on first use (the bundled e5's ONNX graph) is said in one line on stderr.
    announce_builds(Output().note)
    loaded = load_settings(config, overrides=overrides)
    return loaded if fresh else with_recorded(loaded)
