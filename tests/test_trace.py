"""`--trace`: per-stage timings and an LLM's token counts, on stderr and in --json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from tests.openai_server import FakeOpenAI

REFUND = "How long is the refund window?"


@pytest.fixture
def with_llm(kb_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    monkeypatch.setenv("KB_LLM__PROVIDER", "openai")
    monkeypatch.setenv("KB_LLM__BASE_URL", server.base_url)
    monkeypatch.setenv("KB_LLM__MODEL", "test-model")
    monkeypatch.setenv("KB_LLM__MAX_RETRIES", "0")
    yield server
    server.stop()


def test_ask_trace_reports_each_stage_and_the_tokens(
    runner: CliRunner, with_llm: FakeOpenAI
) -> None:
    with_llm.reply("Refunds are possible within 30 days [1].")
    result = runner.invoke(app, ["ask", REFUND, "--trace", "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    stages = {"load_s", "embed_s", "stage_search_s", "stage_fusion_s", "stage_collapse_s"}
    assert stages | {"first_token_s", "generate_s"} <= set(payload["timings"])
    assert all(v >= 0 for v in payload["timings"].values())
    body = with_llm.requests[-1]["body"]
    assert body["stream_options"] == {"include_usage": True}
    words = sum(len(m["content"].split()) for m in body["messages"])
    assert payload["usage"] == {"prompt_tokens": words, "completion_tokens": 7}
    trace = [line for line in result.stderr.splitlines() if line.startswith("trace:")]
    assert len(trace) == 1
    for label in ("load", "embed question", "search", "fusion", "collapse", "first token"):
        assert f"{label} " in trace[0]
    assert f"tokens {words} in, 7 out" in trace[0]


def test_without_trace_stderr_stays_quiet(runner: CliRunner, kb_copy: Path) -> None:
    result = runner.invoke(app, ["ask", REFUND, "--retrieve-only"])
    assert result.exit_code == 0
    assert "trace:" not in result.stderr
    traced = runner.invoke(app, ["ask", REFUND, "--retrieve-only", "--trace", "--json"])
    assert "load_s" in json.loads(traced.stdout)["timings"]
    assert traced.stderr.startswith("trace: load ")


def test_chat_trace_reports_each_turn_with_its_tokens(
    runner: CliRunner, with_llm: FakeOpenAI
) -> None:
    with_llm.reply("Refunds are possible within 30 days [1].")
    with_llm.reply("Thirty days from the date of purchase [1].")
    result = runner.invoke(app, ["chat", "--trace", "--json"], input=f"{REFUND}\nAnd after that?\n")
    assert result.exit_code == 0, result.stderr
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(turns) == 2
    assert all({"embed_s", "stage_search_s"} <= set(t["timings"]) for t in turns)
    trace = [line for line in result.stderr.splitlines() if line.startswith("trace:")]
    assert len(trace) == 2
    assert all("search " in line and " in, " in line for line in trace)


def test_eval_trace_reports_stage_percentiles(
    runner: CliRunner, kb_copy: Path, tmp_path: Path
) -> None:
    questions = tmp_path / "qa.jsonl"
    questions.write_text(
        json.dumps({"question": REFUND, "answers": ["30 days"]})
        + "\n"
        + json.dumps({"question": "删除的笔记会在回收站保留多久？", "answers": ["60 天"]})
        + "\n"
    )
    result = runner.invoke(app, ["eval", str(questions), "--trace", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"embed_s", "stage_search_s", "stage_collapse_s"} <= set(report["stages"])
    assert all(v["p50"] >= 0 for v in report["stages"].values())
    trace = [line for line in result.stderr.splitlines() if line.startswith("trace (p50):")]
    assert len(trace) == 1
    assert "embed question " in trace[0]
    assert "trace" not in runner.invoke(app, ["eval", str(questions)]).stderr
