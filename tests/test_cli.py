"""The `kb` command through Typer's runner: exit codes, stdout vs stderr, JSON shapes.

These use the real bundled embedder and a real Qdrant Edge store; documents are kept tiny.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import ExitCode, app
from core.config import load_settings
from core.engine import open_engine

Docs = Callable[..., Path]
TINY = {
    "a.md": "# Alpha\nThe alpha service listens on port 8743.\n",
    "b.txt": "Refunds take 10 days.\n",
}


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "ask", "chat", "eval", "sources", "forget", "config"):
        assert command in result.stdout


def test_ingest_json_is_one_object_on_stdout(runner: CliRunner, docs: Docs) -> None:
    root = docs(TINY)
    result = runner.invoke(app, ["ingest", str(root), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(report["added"]) == ["a.md", "b.txt"]
    assert report["chunks_embedded"] == 2
    assert report["problems"] == []
    for key in ("kb", "kb_dir", "roots", "changed", "renamed", "deleted", "unchanged", "seconds"):
        assert key in report
    again = json.loads(runner.invoke(app, ["ingest", str(root), "--json"]).stdout)
    assert again["unchanged"] == 2
    assert again["chunks_embedded"] == 0


def test_ingest_plain_summary_and_dry_run_plan(runner: CliRunner, docs: Docs) -> None:
    root = docs(TINY)
    plan = runner.invoke(app, ["ingest", str(root), "--dry-run"])
    assert plan.exit_code == 0, plan.stderr
    assert plan.stdout.splitlines()[:2] == ["add\ta.md", "add\tb.txt"]
    assert plan.stdout.splitlines()[-1].startswith("dry run: added 2")
    sources = runner.invoke(app, ["sources"])
    assert sources.exit_code == ExitCode.NO_KNOWLEDGE_BASE  # the dry run created nothing
    done = runner.invoke(app, ["ingest", str(root)])
    assert done.stdout.startswith("added 2, changed 0")
    assert done.stdout.count("\n") == 1


def test_bad_files_warn_on_stderr_and_strict_exits_5(runner: CliRunner, docs: Docs) -> None:
    root = docs({**TINY, "empty.md": ""})
    result = runner.invoke(app, ["ingest", str(root), "--json", "--strict"])
    assert result.exit_code == ExitCode.INCOMPLETE
    assert "warning: empty.md: empty file" in result.stderr
    report = json.loads(result.stdout)
    assert report["problems"] == [{"path": "empty.md", "reason": "empty file"}]
    assert sorted(report["added"]) == ["a.md", "b.txt"]
    relaxed = runner.invoke(app, ["ingest", str(root)])
    assert relaxed.exit_code == 0


def test_missing_path_is_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(tmp_path / "nope")])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("error: no such file or folder")
    assert "hint:" in result.stderr
    assert result.stdout == ""


def test_bad_configuration_is_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[retrieval]\ntop_k = 'many'\n")
    result = runner.invoke(app, ["config", "--config", str(config)])
    assert result.exit_code == ExitCode.USAGE
    assert "retrieval.top_k" in result.stderr
    assert result.stdout == ""


def test_ask_before_ingest_exits_4_with_hint(runner: CliRunner) -> None:
    result = runner.invoke(app, ["ask", "anything?"])
    assert result.exit_code == ExitCode.NO_KNOWLEDGE_BASE
    assert "kb ingest" in result.stderr
    assert result.stdout == ""


def test_busy_knowledge_base_exits_3(runner: CliRunner, kb_copy: Path) -> None:
    settings = load_settings(environ={"KB_KB__HOME": str(kb_copy)}).settings
    with open_engine(settings, purpose="manage"):
        result = runner.invoke(app, ["ask", "port?"])
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert "busy" in result.stderr


def test_other_chunking_is_refused_with_rebuild_hint(
    runner: CliRunner, kb_copy: Path, real_kb: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_INGEST__CHUNK_SIZE", "256")
    result = runner.invoke(app, ["ingest", str(real_kb["docs"])])
    assert result.exit_code == ExitCode.USAGE
    assert "chunk_size" in result.stderr
    assert "--rebuild" in result.stderr


def test_ask_json_cites_the_right_source(runner: CliRunner, kb_copy: Path) -> None:
    result = runner.invoke(app, ["ask", "How long is the refund window?", "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["question"] == "How long is the refund window?"
    assert "30 days" in payload["answer"]
    assert "[1]" in payload["answer"]
    top = payload["sources"][0]
    assert top["path"] == "policies/licensing-and-refunds.docx"
    assert {"n", "abs_path", "score", "text", "chunk_id", "headings"} <= set(top)


def test_ask_reads_the_question_from_stdin_and_prints_plain_sources(
    runner: CliRunner, kb_copy: Path
) -> None:
    result = runner.invoke(app, ["ask"], input="删除的笔记会在回收站保留多久？\n")
    assert result.exit_code == 0, result.stderr
    answer, _, sources = result.stdout.partition("\n\n")
    assert "60 天" in answer
    assert sources.splitlines()[0].startswith("[1] policies/privacy.html")


def test_ask_empty_question_is_usage_error(runner: CliRunner, kb_copy: Path) -> None:
    result = runner.invoke(app, ["ask"], input="  \n")
    assert result.exit_code == ExitCode.USAGE


def test_sources_and_forget(runner: CliRunner, kb_copy: Path, real_kb: dict[str, Path]) -> None:
    listed = json.loads(runner.invoke(app, ["sources", "--json"]).stdout)
    assert listed["count"] == 9
    assert all(f["chunks"] > 0 for f in listed["files"])
    target = real_kb["docs"] / "policies"
    forgot = runner.invoke(app, ["forget", str(target), "--json"])
    assert forgot.exit_code == 0, forgot.stderr
    assert sorted(json.loads(forgot.stdout)["removed"]) == [
        "policies/licensing-and-refunds.docx",
        "policies/privacy.html",
    ]
    assert json.loads(runner.invoke(app, ["sources", "--json"]).stdout)["count"] == 7
    again = runner.invoke(app, ["forget", str(target)])
    assert again.exit_code == ExitCode.FAILURE
    assert "kb sources" in again.stderr


def test_config_masks_secrets_and_names_origins(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KB_LLM__API_KEY", "sk-PLANTED-secret-9876")
    Path(".env").write_text("KB_RETRIEVAL__TOP_K=7\n")
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.stderr
    assert "PLANTED" not in result.stdout + result.stderr
    rows = {row["key"]: row for row in json.loads(result.stdout)["settings"]}
    assert rows["llm.api_key"]["value"] == "sk-…9876"
    assert rows["llm.api_key"]["from"] == "environment"
    assert rows["retrieval.top_k"] == {
        "key": "retrieval.top_k",
        "value": "7",
        "from": ".env (.env)",
    }
    plain = runner.invoke(app, ["config"])
    assert "retrieval.top_k = 7\t# .env (.env)" in plain.stdout


def test_named_knowledge_bases_are_separate(runner: CliRunner, docs: Docs) -> None:
    root = docs({"a.md": TINY["a.md"]})
    assert runner.invoke(app, ["ingest", str(root), "--kb", "work"]).exit_code == 0
    assert (
        json.loads(runner.invoke(app, ["sources", "--kb", "work", "--json"]).stdout)["count"] == 1
    )
    assert runner.invoke(app, ["sources", "--kb", "other"]).exit_code == ExitCode.NO_KNOWLEDGE_BASE


def test_kb_home_that_is_a_file_is_a_usage_error(
    runner: CliRunner, docs: Docs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("KB_KB__HOME", str(blocker))
    result = runner.invoke(app, ["ingest", str(docs(TINY))])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("error: cannot use")
