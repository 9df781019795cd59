"""`kb chat`: memory, follow-up rewriting, slash commands, saved sessions; scripted through stdin, and
interactive through a real pseudo-terminal. Real embedder and store; the test LLM server where needed."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import app
from core.chat import ChatStore, Turn, looks_like_follow_up, transcript, trim_history
from core.results import Answer, Source
from tests.openai_server import FakeOpenAI

PORT_Q = "What port does the Lumen server listen on by default?"


def _json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


# -------------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("question", "follow_up"),
    [
        ("What about its license?", True),
        ("And on Windows?", True),
        ("那它的许可证呢？", True),
        ("还有别的办法吗", True),
        ("How do I change it?", True),
        ("How long is the refund window for annual subscriptions?", False),
        ("删除的笔记会在回收站保留多久？", False),
    ],
)
def test_follow_up_detection(question: str, follow_up: bool) -> None:
    assert looks_like_follow_up(question) is follow_up


def test_history_is_trimmed_to_the_budget_keeping_the_newest() -> None:
    history = [(f"question {i} " + "word " * 50, "answer " * 50) for i in range(10)]
    kept = trim_history(history, budget=400)
    assert kept == history[-len(kept) :]
    assert 1 <= len(kept) < 10
    assert trim_history(history[:1], budget=1) == history[:1]  # the last turn always fits


def _turn(question: str) -> Turn:
    source = Source(
        1, "a.md", "/a.md", 0.9, "text", "id-1", headings=("A",), line_start=1, line_end=2
    )
    answer = Answer(
        question, "It is 8743 [1].", "hybrid", "extractive", (source,), {}, citations=(1,)
    )
    return Turn(question, f"{question} (context)", answer, "rule")


def test_sessions_persist_turns_across_store_instances(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "chat.sqlite3")
    session = store.open("work", "default", resume=False)
    session.turns.append(_turn("first?"))
    store.save_turn(session, session.turns[-1])
    store.close()

    again = ChatStore(tmp_path / "chat.sqlite3")
    resumed = again.open(None, "default", resume=True)
    assert resumed.name == "work"
    assert [t.question for t in resumed.turns] == ["first?"]
    assert resumed.turns[0].answer.sources[0].headings == ("A",)
    assert next(iter(again.sessions()))[:3] == ("work", "default", 1)
    again.clear(resumed)
    assert again.open("work", "default", resume=False).turns == []
    assert (tmp_path / "chat.sqlite3").stat().st_mode & 0o077 == 0


def test_transcript_is_markdown_with_citations_and_sources() -> None:
    store_session = _turn("What port?")
    from core.chat import ChatSession

    session = ChatSession(1, "s", "default", turns=[store_session])
    text = transcript(session)
    assert "## 1. What port?" in text
    assert "It is 8743 [1]." in text
    assert "- [1] a.md, lines 1-2" in text


# -------------------------------------------------------------------------------- scripted


def test_scripted_chat_answers_each_line_in_order_with_memory(
    runner: CliRunner, kb_copy: Path
) -> None:
    script = f"{PORT_Q}\nHow do I change it?\n"
    result = runner.invoke(app, ["chat", "--json"], input=script)
    assert result.exit_code == 0, result.stderr
    first, second = _json_lines(result.stdout)
    assert "8743" in str(first["answer"])
    assert first["standalone"] == PORT_Q
    assert second["question"] == "How do I change it?"
    assert second["standalone"] == f"How do I change it? ({PORT_Q})"


def test_a_follow_up_naming_its_own_subject_is_answered_about_it(
    runner: CliRunner, kb_copy: Path
) -> None:
    """ "那内存需要多少？" after a question on Nginx is asked with that topic (to find the deployment
    guide), but its answer is the memory line, not the Nginx sentences again. A follow-up leaning on
    a pronoun is answered from its topic's words, as before."""
    nginx = "Nginx 反向代理的 client_max_body_size 应该设置为多少？"
    script = f"{nginx}\n那内存需要多少？\n{PORT_Q}\nHow do I change it?\n"
    result = runner.invoke(app, ["chat", "--json"], input=script)
    assert result.exit_code == 0, result.stderr
    first, memory, port, change = _json_lines(result.stdout)
    assert "50m" in str(first["answer"])
    assert memory["standalone"] == f"那内存需要多少？ ({nginx})"
    assert "2 GB" in str(memory["answer"])
    assert "client_max_body_size" not in str(memory["answer"])
    assert "8743" in str(port["answer"])
    assert "LUMEN_SERVER_PORT" in str(change["answer"])


def test_plain_scripted_chat_and_slash_commands(runner: CliRunner, kb_copy: Path) -> None:
    result = runner.invoke(
        app, ["chat"], input=f"/help\n{PORT_Q}\n/why\n/sources\n/exit\nignored?\n"
    )
    assert result.exit_code == 0, result.stderr
    assert "8743" in result.stdout
    assert "Sources: [1]" in result.stdout
    assert "/retrieve" in result.stderr  # the help
    assert f"asked as: {PORT_Q}" in result.stderr
    assert "ignored?" not in result.stdout


def test_errors_mid_session_keep_it_alive(runner: CliRunner, kb_copy: Path) -> None:
    script = f"/kb missing\n{PORT_Q}\n/kb default\n{PORT_Q}\n"
    result = runner.invoke(app, ["chat", "--json"], input=script)
    assert result.exit_code == 4, result.stderr  # the session went on; the code tells the script
    failed, answered = _json_lines(result.stdout)
    assert "no knowledge base 'missing'" in str(failed["error"])
    assert "8743" in str(answered["answer"])
    assert "kb ingest" in result.stderr


def test_save_writes_the_transcript(runner: CliRunner, kb_copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "talk.md"
    result = runner.invoke(app, ["chat"], input=f"{PORT_Q}\n/save {target}\n")
    assert result.exit_code == 0, result.stderr
    text = target.read_text(encoding="utf-8")
    assert f"## 1. {PORT_Q}" in text
    assert "8743" in text


def test_sessions_resume_across_processes_and_list(runner: CliRunner, kb_copy: Path) -> None:
    runner.invoke(app, ["chat", "--session", "ops"], input=f"{PORT_Q}\n")
    result = runner.invoke(app, ["chat", "--resume", "--json"], input="And how do I change it?\n")
    (turn,) = _json_lines(result.stdout)
    assert str(turn["standalone"]).endswith(f"({PORT_Q})")  # the memory came from the first run
    listed = runner.invoke(app, ["chat", "--list", "--json"])
    (ops,) = json.loads(listed.stdout)["sessions"]
    assert (ops["name"], ops["turns"]) == ("ops", 2)


@pytest.fixture
def llm_env(kb_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    monkeypatch.setenv("KB_LLM__PROVIDER", "openai")
    monkeypatch.setenv("KB_LLM__BASE_URL", fake.base_url)
    monkeypatch.setenv("KB_LLM__MAX_RETRIES", "0")
    yield fake
    fake.stop()


def test_with_an_llm_follow_ups_are_rewritten_by_it(runner: CliRunner, llm_env: FakeOpenAI) -> None:
    llm_env.reply("The server listens on port 8743 [1].")
    llm_env.reply("How do I change the port the Lumen server listens on?")  # the rewrite
    llm_env.reply("Set `port` in the configuration [1].")
    result = runner.invoke(app, ["chat", "--json"], input=f"{PORT_Q}\nHow do I change it?\n")
    assert result.exit_code == 0, result.stderr
    _, second = _json_lines(result.stdout)
    assert second["standalone"] == "How do I change the port the Lumen server listens on?"
    rewrite = llm_env.requests[1]["body"]["messages"]
    assert "stands on its own" in rewrite[0]["content"] or "on its own" in rewrite[0]["content"]
    assert PORT_Q in rewrite[1]["content"]
    assert rewrite[1]["content"].endswith("Last question: How do I change it?")
    answer_prompt = llm_env.requests[2]["body"]["messages"][1]["content"]
    assert answer_prompt.endswith("Question: How do I change the port the Lumen server listens on?")


def test_endpoint_down_mid_session_prints_one_line_and_goes_on(
    runner: CliRunner, llm_env: FakeOpenAI
) -> None:
    llm_env.fail_status = 500
    llm_env.fail_times = 1
    llm_env.reply("Port 8743 [1].")
    result = runner.invoke(app, ["chat"], input=f"{PORT_Q}\n{PORT_Q}\n")
    assert result.exit_code == 3  # a turn failed: the script is told, after the session went on
    assert result.stderr.count("error:") == 1
    assert "Port 8743 [1]." in result.stdout


# -------------------------------------------------------------------------------- terminal


def _spawn_chat(home: Path, cwd: Path, **env: str) -> Any:
    """`kb chat` in a real pseudo-terminal, on the knowledge bases under `home`."""
    import pexpect

    clean = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    clean.update(KB_KB__HOME=str(home), PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", **env)
    return pexpect.spawn(
        sys.executable,
        ["-m", "cli", "chat"],
        env=clean,
        cwd=str(cwd),
        encoding="utf-8",
        timeout=120,
        # A test run started in the background (`pytest &` from a script) ignores SIGINT, and so
        # would the child; a person's terminal does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_interactive_session_in_a_real_terminal(kb_copy: Path, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = _spawn_chat(kb_copy, tmp_path)
    try:
        child.expect("default>")
        child.sendline(PORT_Q)
        child.expect("8743")
        child.expect("default>")
        child.sendline("/why")
        child.expect("asked as:")
        child.expect("default>")
        child.sendintr()  # Ctrl-C at the prompt: a fresh prompt, not an exit
        child.expect("default>")
        # Ctrl-D leaves. A ^D typed while the terminal is between prompts (not yet in raw mode) can
        # be flushed by the prompt library, as a person's early keystroke would be: press it again.
        for _ in range(10):
            child.sendeof()
            if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=3) == 0:
                break
        assert not child.isalive() or child.expect(pexpect.EOF) == 0
    finally:
        child.close()
    assert child.exitstatus == 0
    history = kb_copy / "chat-input-history"
    assert PORT_Q in history.read_text(encoding="utf-8")
    assert history.stat().st_mode & 0o077 == 0  # questions can be private: owner only


def test_ctrl_c_cancels_the_answer_being_written(kb_copy: Path, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    fake = FakeOpenAI(delay=30.0).start()
    child = _spawn_chat(
        kb_copy, tmp_path, KB_LLM__PROVIDER="openai", KB_LLM__BASE_URL=fake.base_url
    )
    try:
        child.expect("default>")
        child.sendline(PORT_Q)
        while not fake.requests:  # the question reached the (slow) LLM
            child.expect([pexpect.TIMEOUT], timeout=0.2)
        child.sendintr()
        child.expect(r"\(cancelled\)")
        child.expect("default>")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        fake.stop()
    assert child.exitstatus == 0
