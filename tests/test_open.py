"""`kb open N` and source links: the editor gets the file and the line; PDFs go to the viewer."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import ExitCode, app
from cli.goto import editor_args
from cli.render import source_uri
from core.results import Source


def _recorder(folder: Path, name: str) -> tuple[Path, Path]:
    """A tiny program that writes its arguments, one a line, to a file."""
    folder.mkdir(exist_ok=True)
    log = folder / f"{name}.argv"
    script = folder / name
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_open_runs_the_editor_at_the_source_line(
    runner: CliRunner, docs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = docs({"a.md": "# Intro\n\nnothing here\n\n# Ports\n\nAlpha listens on port 8743.\n"})
    assert runner.invoke(app, ["ingest", str(root)]).exit_code == 0
    missing = runner.invoke(app, ["open", "1"])
    assert missing.exit_code == ExitCode.FAILURE
    assert "kb ask" in missing.stderr
    answered = runner.invoke(app, ["ask", "--json", "which port does alpha listen on"])
    source = json.loads(answered.stdout)["sources"][0]
    editor, log = _recorder(tmp_path / "bin", "vim")
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{editor} -n")
    result = runner.invoke(app, ["open", "1"])
    assert result.exit_code == 0, result.stderr
    assert log.read_text().splitlines() == ["-n", f"+{source['line_start']}", source["abs_path"]]
    beyond = runner.invoke(app, ["open", "9"])
    assert beyond.exit_code == ExitCode.USAGE
    assert "no source [9]" in beyond.stderr


def test_pdfs_open_in_the_system_viewer(
    runner: CliRunner, kb_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = runner.invoke(app, ["ask", "--json", "--type", "pdf", "What is covered?"])
    source = json.loads(answered.stdout)["sources"][0]
    viewer, log = _recorder(tmp_path / "bin", "xdg-open")
    monkeypatch.setenv("PATH", f"{viewer.parent}:/usr/bin:/bin")
    monkeypatch.setenv("EDITOR", "vim")
    result = runner.invoke(app, ["open", "1"])
    assert result.exit_code == 0, result.stderr
    assert log.read_text().splitlines() == [source["abs_path"]]


def test_editors_get_the_line_their_way() -> None:
    assert editor_args("vim", "/d/a.md", 7) == ["+7", "/d/a.md"]
    assert editor_args("code --wait", "/d/a.md", 7) == ["--goto", "/d/a.md:7"]
    assert editor_args("/usr/bin/subl -w", "/d/a.md", 7) == ["/d/a.md:7"]


def test_links_carry_the_line_or_page() -> None:
    lines = Source(1, "a.md", "/d/a b.md", 0.5, "t", "c", line_start=12, line_end=20)
    page = Source(2, "r.pdf", "/d/r.pdf", 0.5, "t", "c", page=3)
    assert source_uri(lines) == "file:///d/a%20b.md#L12"
    assert source_uri(page) == "file:///d/r.pdf#page=3"
    assert source_uri(lines, "vscode://file{path}:{line}") == "vscode://file/d/a b.md:12"
    assert source_uri(lines, "bad {template") == "file:///d/a%20b.md#L12"
