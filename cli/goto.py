"""`kb open N`: open source [N] of the last answer where it starts (not `open.py`: don't shadow
the builtin)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.options import ConfigOpt, KbOpt, load

# How editors take a line: most accept `+LINE FILE`; these want something else.
_GOTO_FLAG = {"code", "code-insiders", "codium", "cursor", "windsurf"}  # --goto FILE:LINE
_COLON = {"subl", "zed", "gedit", "kate", "mate"}  # FILE:LINE


def open_command(
    n: Annotated[int, typer.Argument(help="The source's number, as cited: [N].", min=1)],
    config: ConfigOpt = None,
    kb: KbOpt = None,
) -> None:
    """Open source N of the last answer: in $VISUAL or $EDITOR at its line, PDFs in the viewer.

    Example: kb open 2
    """
    from core.errors import ConfigError
    from core.last_answer import last_source

    place = last_source(load(config, kb).settings, n)
    path = Path(place.abs_path)
    if not path.is_file():
        raise ConfigError(
            f"{place.abs_path} is gone", hint="run `kb ingest` to bring the index in step"
        )
    import shlex
    import subprocess

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if place.file_type == "pdf" or place.page or not editor:
        command = [_viewer(), str(path)]
    else:
        command = [*shlex.split(editor), *editor_args(editor, str(path), place.line or 1)]
    try:
        subprocess.run(command, check=False)
    except OSError as err:
        raise ConfigError(
            f"cannot run {command[0]}: {err.strerror or err}", hint="set EDITOR to your editor"
        ) from err


def editor_args(editor: str, path: str, line: int) -> list[str]:
    """The arguments that open `path` at `line` in `editor` (its command line, as in $EDITOR)."""
    import shlex

    name = Path(shlex.split(editor)[0]).name if editor.strip() else ""
    if name in _GOTO_FLAG:
        return ["--goto", f"{path}:{line}"]
    if name in _COLON:
        return [f"{path}:{line}"]
    return [f"+{line}", path]


def _viewer() -> str:
    """The system's opener: `open` on macOS, `xdg-open` elsewhere."""
    if sys.platform == "darwin":
        return "open"
    import shutil

    return shutil.which("xdg-open") or "xdg-open"
