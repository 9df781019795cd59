"""`[store] backend = "qdrant"`: the scale-out path through qdrant-client, end to end through the CLI.

No Qdrant server binary comes from the package registries, so the server is qdrant-client's local
mode (`file:///DIR`, the same client API). To run these against a real server, start one (README,
"Qdrant server") and set KB_TEST_QDRANT_URL=http://localhost:6333.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

SERVER_URL = os.environ.get("KB_TEST_QDRANT_URL", "")
QUESTIONS = [
    "How long is the refund window?",
    "部署需要多少内存？",
    "Which port does the server listen on?",
]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A server URL, and a collection name no other test uses."""
    url = SERVER_URL or f"file://{tmp_path / 'qdrant'}"
    monkeypatch.setenv("KB_STORE__COLLECTION", f"kbtest_{uuid.uuid4().hex[:12]}")
    return url


def _use_server(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("KB_STORE__BACKEND", "qdrant")
    monkeypatch.setenv("KB_STORE__URL", url)


def _retrieved(runner: CliRunner, question: str) -> list[tuple[str, str]]:
    result = runner.invoke(app, ["ask", question, "--retrieve-only", "--json"])
    assert result.exit_code == 0, result.stderr
    return [(s["path"], s["text"]) for s in json.loads(result.stdout)["sources"]]


def test_migrate_copies_without_embedding_and_answers_the_same(
    runner: CliRunner, kb_copy: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded = {q: _retrieved(runner, q) for q in QUESTIONS}
    sources = json.loads(runner.invoke(app, ["sources", "--json"]).stdout)
    cache = kb_copy / "embedding-cache.sqlite3"
    cache_size = cache.stat().st_size if cache.exists() else 0

    result = runner.invoke(app, ["migrate", "--to", server, "--shards", "2", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files"] == len(sources["files"])
    assert report["chunks"] == sum(f["chunks"] for f in sources["files"])
    assert (cache.stat().st_size if cache.exists() else 0) == cache_size  # nothing embedded

    _use_server(monkeypatch, server)
    assert json.loads(runner.invoke(app, ["sources", "--json"]).stdout) == sources
    for question, expected in embedded.items():
        assert _retrieved(runner, question) == expected
    answer = runner.invoke(app, ["ask", QUESTIONS[0], "--json"])
    assert answer.exit_code == 0, answer.stderr
    assert "30" in json.loads(answer.stdout)["answer"]

    again = runner.invoke(app, ["migrate", "--to", server])
    assert again.exit_code == 1
    assert "already holds" in again.stderr
    assert "--replace" in again.stderr
    replaced = runner.invoke(app, ["migrate", "--to", server, "--replace", "--json"])
    assert replaced.exit_code == 0, replaced.stderr
    assert json.loads(replaced.stdout)["chunks"] == report["chunks"]


def test_ingest_into_a_server_is_incremental_and_manageable(
    runner: CliRunner, docs: object, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_server(monkeypatch, server)
    root = docs(  # type: ignore[operator]
        {
            "refunds.md": "# Refunds\n\nThe refund window is 30 days.\n",
            "deploy.md": "# 部署\n\n部署需要至少 2 GB 内存。\n",
        }
    )
    plan = runner.invoke(app, ["ingest", str(root), "--dry-run", "--json"])
    assert plan.exit_code == 0, plan.stderr
    assert len(json.loads(plan.stdout)["added"]) == 2

    first = json.loads(runner.invoke(app, ["ingest", str(root), "--json"]).stdout)
    assert (len(first["added"]), first["files_total"]) == (2, 2)
    again = json.loads(runner.invoke(app, ["ingest", str(root), "--json"]).stdout)
    assert (again["added"], again["chunks_embedded"], again["unchanged"]) == ([], 0, 2)

    (root / "refunds.md").write_text("# Refunds\n\nThe refund window is 45 days.\n")
    changed = json.loads(runner.invoke(app, ["ingest", str(root), "--json"]).stdout)
    assert changed["changed"] == ["refunds.md"]
    assert "45 days" in _retrieved(runner, "How long is the refund window?")[0][1]

    forgot = runner.invoke(app, ["forget", str(root / "deploy.md"), "--json"])
    assert forgot.exit_code == 0, forgot.stderr
    listed = json.loads(runner.invoke(app, ["sources", "--json"]).stdout)["files"]
    assert [f["path"] for f in listed] == ["refunds.md"]

    rebuilt = json.loads(runner.invoke(app, ["ingest", str(root), "--rebuild", "--json"]).stdout)
    assert (len(rebuilt["added"]), rebuilt["files_total"]) == (2, 2)


def test_server_failures_are_one_line_with_their_exit_codes(
    runner: CliRunner, server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = "qd-PLANTED-0a1b2c3d4e5f6a7b8c9d"
    monkeypatch.setenv("KB_STORE__API_KEY", key)
    _use_server(monkeypatch, server)
    missing = runner.invoke(app, ["ask", "anything?"])
    assert missing.exit_code == 4
    assert "kb migrate" in missing.stderr

    monkeypatch.setenv("KB_STORE__URL", "http://127.0.0.1:9")  # nothing listens there
    down = runner.invoke(app, ["sources", "--json"])
    assert down.exit_code == 3
    assert down.stdout == ""
    assert "Qdrant server at http://127.0.0.1:9" in down.stderr
    assert "Traceback" not in down.stderr
    assert key not in down.stderr

    monkeypatch.setenv("KB_STORE__URL", "")
    unset = runner.invoke(app, ["sources"])
    assert unset.exit_code == 2
    assert "[store].url" in unset.stderr
    config = runner.invoke(app, ["config"])
    assert key not in config.stdout
    assert "qd-…" in config.stdout
    shutil.rmtree(tmp_path / "qdrant", ignore_errors=True)
