"""`kb ingest --watch`: a real process, real file events (create, edit, rename, delete), checked
through `kb sources --json` between passes, then Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from typer.testing import CliRunner

from cli.app import ExitCode, app

REPO = Path(__file__).resolve().parents[1]
PATIENCE = 90.0  # seconds to wait for a pass on a loaded machine; never asserted on


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """The stream's lines, read on a thread, so the test can wait with a deadline."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _next(lines: queue.Queue[str], what: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + PATIENCE
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if what(line):
            return line
    raise AssertionError("the watcher did not report in time")


def _indexed(runner: CliRunner) -> dict[str, int]:
    result = runner.invoke(app, ["sources", "--json"])
    assert result.exit_code == 0, result.stderr
    return {f["path"]: f["chunks"] for f in json.loads(result.stdout)["files"]}


def test_watch_follows_creates_edits_renames_and_deletes(
    runner: CliRunner, docs: Any, isolated: Path
) -> None:
    root = docs({"a.md": "# A\nAlpha listens on port 8743.\n", "skip.tmp": "never indexed\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "OPENAI_"))}
    env.update(KB_KB__HOME=str(isolated), PYTHONPATH=str(REPO))
    command = ["ingest", str(root), "--watch", "--json", "--exclude", "*.tmp"]
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        out, err = _lines(process.stdout), _lines(process.stderr)
        first = json.loads(_next(out, lambda _: True))
        assert first["added"] == ["a.md"]
        _next(err, lambda line: line.startswith("watching"))
        assert _indexed(runner) == {"a.md": 1}

        def passes_until(done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            return json.loads(_next(out, lambda line: done(json.loads(line))))

        (root / "b.md").write_text("# B\nRefunds take 10 days.\n", encoding="utf-8")
        passes_until(lambda r: "b.md" in r["added"])
        assert _indexed(runner) == {"a.md": 1, "b.md": 1}

        (root / "a.md").write_text("# A\nAlpha moved to port 9000.\n\nMore text.\n")
        passes_until(lambda r: "a.md" in r["changed"])
        found = runner.invoke(app, ["ask", "--retrieve-only", "--json", "alpha port"])
        assert "9000" in json.loads(found.stdout)["sources"][0]["text"]

        (root / "b.md").rename(root / "c.md")
        report = passes_until(lambda r: bool(r["renamed"] or r["deleted"]))
        assert report["renamed"] == [{"old": "b.md", "new": "c.md"}]
        assert report["chunks_embedded"] == 0  # a rename reuses the stored vectors
        assert _indexed(runner) == {"a.md": 1, "c.md": 1}

        (root / "c.md").unlink()
        (root / "other.tmp").write_text("excluded, as in the first pass\n")
        passes_until(lambda r: r["deleted"] == ["c.md"])
        assert _indexed(runner) == {"a.md": 1}
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=PATIENCE)
    assert code == ExitCode.INTERRUPTED
    assert _indexed(runner) == {"a.md": 1}
    again = runner.invoke(app, ["ingest", str(root), "--exclude", "*.tmp", "--json"])
    assert json.loads(again.stdout)["unchanged"] == 1  # consistent: nothing left to do


def test_watch_and_dry_run_cannot_be_combined(runner: CliRunner, docs: Any) -> None:
    result = runner.invoke(app, ["ingest", str(docs({"a.md": "x\n"})), "--watch", "--dry-run"])
    assert result.exit_code == ExitCode.USAGE
