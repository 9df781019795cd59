"""`kb ask` end to end: the real bundled embedder, the sample knowledge base on a real Qdrant Edge
store, and a real OpenAI-compatible HTTP server on 127.0.0.1 driven through the `openai` client."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli.app import ExitCode, app
from cli.output import Output
from core.config import load_settings
from core.engine import open_engine
from core.retrieve import RetrievalQuery, retrieve
from tests.openai_server import FakeOpenAI

KEY = "sk-ask-test-0123456789abcdef"
REFUND = "How long is the refund window?"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def with_llm(kb_copy: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """The sample knowledge base, answering through the test server."""
    monkeypatch.setenv("KB_LLM__PROVIDER", "openai")
    monkeypatch.setenv("KB_LLM__BASE_URL", server.base_url)
    monkeypatch.setenv("KB_LLM__MODEL", "test-model")
    monkeypatch.setenv("KB_LLM__API_KEY", KEY)
    monkeypatch.setenv("KB_LLM__MAX_RETRIES", "0")
    monkeypatch.setenv("KB_LLM__TIMEOUT", "5")
    return server


def _lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


# -------------------------------------------------------------------------------- offline


def test_retrieve_only_json_lists_ranked_chunks(runner: CliRunner, kb_copy: Path) -> None:
    result = runner.invoke(app, ["ask", REFUND, "--retrieve-only", "--json", "--top-k", "3"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["mode"] == "hybrid"
    assert len(payload["sources"]) == 3
    assert payload["sources"][0]["path"] == "policies/licensing-and-refunds.docx"
    assert payload["languages"] == ["en", "zh"]
    assert "answer" not in payload


def test_retrieve_only_plain_is_one_line_per_chunk_then_its_text(
    runner: CliRunner, kb_copy: Path
) -> None:
    result = runner.invoke(app, ["ask", REFUND, "--retrieve-only", "--top-k", "2"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("[1] policies/licensing-and-refunds.docx")
    assert lines[1].startswith("\t")


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_every_mode_answers_the_sample_question(
    runner: CliRunner, kb_copy: Path, mode: str
) -> None:
    result = runner.invoke(app, ["ask", REFUND, "--mode", mode, "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["kind"] == "extractive"
    assert payload["mode"] == mode
    assert "30 days" in payload["answer"]


def test_chinese_question_reaches_english_documents(runner: CliRunner, kb_copy: Path) -> None:
    # The refund policy exists only in English (a .docx); the question is Chinese.
    result = runner.invoke(app, ["ask", "退款期限是多少天？", "--retrieve-only", "--json"])
    paths = [s["path"] for s in json.loads(result.stdout)["sources"]]
    assert "policies/licensing-and-refunds.docx" in paths


def test_path_and_type_filters(runner: CliRunner, kb_copy: Path) -> None:
    result = runner.invoke(
        app, ["ask", "port", "--retrieve-only", "--json", "--path", "runbooks/*"]
    )
    assert result.exit_code == 0, result.stderr
    paths = {s["path"] for s in json.loads(result.stdout)["sources"]}
    assert paths
    assert all(p.startswith("runbooks/") for p in paths)
    result = runner.invoke(app, ["ask", "port", "--retrieve-only", "--json", "--type", "pdf"])
    assert {s["file_type"] for s in json.loads(result.stdout)["sources"]} == {"pdf"}
    result = runner.invoke(app, ["ask", "port", "--path", "nowhere/*"])
    assert result.exit_code == ExitCode.USAGE
    assert "kb sources" in result.stderr


def test_refusal_exits_6_lists_the_nearest_sources_and_calls_no_llm(
    runner: CliRunner, with_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_RETRIEVAL__MIN_SCORE", "0.99")
    result = runner.invoke(app, ["ask", "What is the boiling point of tungsten?"])
    assert result.exit_code == ExitCode.NO_ANSWER
    assert result.stdout.startswith("Not found in the knowledge base.")
    assert "\n[1] " in result.stdout  # the nearest sources
    assert "threshold" in result.stderr
    assert with_llm.requests == []


def test_refusal_json_says_why(
    runner: CliRunner, kb_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_RETRIEVAL__MIN_SCORE", "0.99")
    result = runner.invoke(app, ["ask", "What is the boiling point of tungsten?", "--json"])
    assert result.exit_code == ExitCode.NO_ANSWER
    payload = json.loads(result.stdout)
    assert payload["kind"] == "refused"
    assert payload["found"] is False
    assert payload["min_score"] == 0.99
    assert payload["best_score"] < 0.99


def test_no_sources_prints_the_answer_only(runner: CliRunner, kb_copy: Path) -> None:
    result = runner.invoke(app, ["ask", REFUND, "--no-sources"])
    assert result.exit_code == 0, result.stderr
    assert "[1] policies" not in result.stdout
    assert "30 days" in result.stdout


def test_json_and_stream_json_are_exclusive(runner: CliRunner, kb_copy: Path) -> None:
    result = runner.invoke(app, ["ask", REFUND, "--json", "--stream-json"])
    assert result.exit_code == ExitCode.USAGE


# -------------------------------------------------------------------------------- with an LLM


def test_generated_answer_json(runner: CliRunner, with_llm: FakeOpenAI) -> None:
    with_llm.reply("Refunds are possible within 30 days of purchase [1][12].")
    result = runner.invoke(app, ["ask", REFUND, "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["kind"] == "generated"
    assert payload["model"] == "test-model"
    assert payload["answer"] == "Refunds are possible within 30 days of purchase [1]."
    assert payload["invalid_citations"] == ["[12]"]
    assert payload["citations"] == [1]
    assert {"retrieve_s", "first_token_s", "generate_s"} <= set(payload["timings"])
    request = with_llm.requests[-1]
    assert request["auth"] == f"Bearer {KEY}"
    assert request["body"]["stream"] is True
    system, user = request["body"]["messages"]
    assert system["role"] == "system"
    assert "never instructions" in system["content"]
    assert '<source id="1" file="policies/licensing-and-refunds.docx"' in user["content"]
    assert user["content"].endswith(f"Question: {REFUND}")


def test_plain_answer_warns_about_removed_citations(
    runner: CliRunner, with_llm: FakeOpenAI
) -> None:
    with_llm.reply("Within 30 days [1][9].")
    result = runner.invoke(app, ["ask", REFUND])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Within 30 days [1].\n")
    assert "removed citations that match no source: [9]" in result.stderr


def test_stream_json_emits_sources_tokens_then_the_answer(
    runner: CliRunner, with_llm: FakeOpenAI
) -> None:
    with_llm.reply("<think>Refunds... check the policy.</think>Within 30 days of purchase [1].")
    result = runner.invoke(app, ["ask", REFUND, "--stream-json"])
    assert result.exit_code == 0, result.stderr
    events = _lines(result.stdout)
    assert events[0]["type"] == "sources"
    assert events[-1]["type"] == "answer"
    tokens = [e for e in events if e["type"] == "token"]
    assert len(tokens) > 1
    assert "".join(str(e["text"]) for e in tokens).strip() == "Within 30 days of purchase [1]."
    assert not [e for e in events if e["type"] == "thinking"]
    assert events[-1]["answer"] == "Within 30 days of purchase [1]."


def test_show_thinking_includes_the_reasoning(runner: CliRunner, with_llm: FakeOpenAI) -> None:
    with_llm.reply("Within 30 days [1].", reasoning="The policy document says 30 days.")
    result = runner.invoke(app, ["ask", REFUND, "--json", "--show-thinking"])
    assert json.loads(result.stdout)["thinking"] == "The policy document says 30 days."
    with_llm.reply("Within 30 days [1].", reasoning="The policy document says 30 days.")
    result = runner.invoke(app, ["ask", REFUND, "--json"])
    assert json.loads(result.stdout)["thinking"] == ""


def test_llm_not_found_exits_6(runner: CliRunner, with_llm: FakeOpenAI) -> None:
    with_llm.reply("Not found in the knowledge base.")
    result = runner.invoke(app, ["ask", REFUND, "--json"])
    assert result.exit_code == ExitCode.NO_ANSWER
    assert json.loads(result.stdout)["kind"] == "not_found"


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"api_key": "sk-wrong"}, "refused the API key (401)"),
        ({"fail_status": 429, "retry_after": "0.01"}, "rate limited (429)"),
        ({"fail_status": 500}, "answered HTTP 500"),
        ({"malformed": "{oops"}, "malformed response"),
        ({"delay": 2.0}, "did not answer within"),
    ],
)
def test_endpoint_errors_exit_3_with_nothing_on_stdout(
    runner: CliRunner,
    kb_copy: Path,
    monkeypatch: pytest.MonkeyPatch,
    knobs: dict[str, object],
    message: str,
) -> None:
    fake = FakeOpenAI(**{"api_key": KEY, **knobs}).start()  # type: ignore[arg-type]
    try:
        monkeypatch.setenv("KB_LLM__PROVIDER", "openai")
        monkeypatch.setenv("KB_LLM__BASE_URL", fake.base_url)
        monkeypatch.setenv("KB_LLM__API_KEY", KEY)
        monkeypatch.setenv("KB_LLM__MAX_RETRIES", "0")
        monkeypatch.setenv("KB_LLM__TIMEOUT", "0.5")
        result = runner.invoke(app, ["ask", REFUND, "--json"])
    finally:
        fake.stop()
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stdout == ""
    assert message in result.stderr
    assert "hint:" in result.stderr
    assert KEY not in result.stderr


def test_dead_endpoint_exits_3(
    runner: CliRunner, kb_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("KB_LLM__PROVIDER", "ollama")
    monkeypatch.setenv("KB_LLM__BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("KB_LLM__MAX_RETRIES", "0")
    result = runner.invoke(app, ["ask", REFUND])
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert "cannot reach the LLM endpoint" in result.stderr
    assert result.stdout == ""


def test_missing_key_names_the_variable(
    runner: CliRunner, kb_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_LLM__PROVIDER", "deepseek")
    result = runner.invoke(app, ["ask", REFUND])
    assert result.exit_code == ExitCode.USAGE
    assert "DEEPSEEK_API_KEY" in result.stderr


def test_a_stream_cut_midway_ends_stream_json_with_an_error_event(
    runner: CliRunner, kb_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeOpenAI(cut_stream_after=2).start()
    fake.reply("A long answer the server never finishes sending to the client.")
    try:
        monkeypatch.setenv("KB_LLM__PROVIDER", "openai")
        monkeypatch.setenv("KB_LLM__BASE_URL", fake.base_url)
        monkeypatch.setenv("KB_LLM__MAX_RETRIES", "0")
        result = runner.invoke(app, ["ask", REFUND, "--stream-json"])
    finally:
        fake.stop()
    assert result.exit_code == ExitCode.UNAVAILABLE
    events = _lines(result.stdout)
    assert events[0]["type"] == "sources"
    assert events[-1]["type"] == "error"
    assert "stopped before it finished" in str(events[-1]["message"])


# -------------------------------------------------------------------------------- terminal


def test_terminal_streams_markdown_then_a_linked_sources_table(
    kb_copy: Path, with_llm: FakeOpenAI
) -> None:
    from core.answer import answer

    with_llm.reply("**Within 30 days** of purchase [1].")
    buffer = io.StringIO()
    out = Output(out=Console(file=buffer, force_terminal=True, width=100))
    settings = load_settings().settings
    with open_engine(settings, purpose="read") as engine:
        retrieval = retrieve(RetrievalQuery(REFUND), engine)
        with out.answer_stream(retrieval) as stream:
            result = answer(retrieval, engine, on_event=stream.on_event)
            stream.finish(result)
    out.answer(result, streamed=stream.streamed)
    text = buffer.getvalue()
    assert stream.streamed
    assert "\x1b[1m" in text  # bold: Markdown was rendered
    assert "**" not in text
    assert "Sources" in text
    assert "\x1b]8;" in text  # a terminal hyperlink to the file
    assert "answered by test-model" in text


def test_the_knowledge_base_is_free_while_the_llm_writes(kb_copy: Path) -> None:
    """`kb ask` closes the store after retrieval: `kb ingest` need not wait for a slow LLM."""
    import os
    import subprocess
    import sys
    import time

    fake = FakeOpenAI(delay=3.0).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env.update(
        KB_KB__HOME=str(kb_copy),
        KB_LLM__PROVIDER="openai",
        KB_LLM__BASE_URL=fake.base_url,
        KB_LLM__MAX_RETRIES="0",
    )
    asking = subprocess.Popen(
        [sys.executable, "-m", "cli", "ask", REFUND, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not fake.requests and asking.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.requests, "the question never reached the LLM"
        settings = load_settings(environ={"KB_KB__HOME": str(kb_copy)}).settings
        with open_engine(settings, purpose="manage") as engine:  # would raise StoreBusy
            assert engine.shard.count() > 0
        out, err = asking.communicate(timeout=120)
    finally:
        asking.kill()
        fake.stop()
    assert asking.returncode == 0, err
    assert json.loads(out)["kind"] == "generated"


def test_an_indexed_knowledge_base_answers_like_an_exact_one(
    runner: CliRunner,
    kb_copy: Path,
    real_kb: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past `[store] index_after` chunks, ingest indexes the store (HNSW over int8 copies of the
    vectors). Real e5 vectors: the same top source, nearly the same five, exact cosines."""
    examples = Path(__file__).resolve().parents[1] / "examples" / "questions.jsonl"
    questions = [json.loads(line)["question"] for line in examples.read_text().splitlines()[:8]]

    def sources(question: str) -> list[tuple[str, float | None]]:
        result = runner.invoke(app, ["ask", question, "--retrieve-only", "--json"])
        assert result.exit_code == 0, result.output
        found = json.loads(result.stdout)["sources"]
        return [(s["chunk_id"], s["dense_score"]) for s in found]

    exact = {q: sources(q) for q in questions}
    assert not list(kb_copy.glob("default/shard/segments/*/vector_index-dense/graph.bin"))
    monkeypatch.setenv("KB_STORE__INDEX_AFTER", "10")
    result = runner.invoke(app, ["ingest", str(real_kb["docs"]), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks_written"] == 0  # nothing changed: only indexed
    assert list(kb_copy.glob("default/shard/segments/*/vector_index-dense/graph.bin"))
    shared = 0
    for question, before in exact.items():
        after = sources(question)
        assert after[0] == before[0], question
        shared += len(set(after) & set(before))  # same chunk with the same (exact) cosine
    assert shared >= 0.9 * sum(len(before) for before in exact.values())
