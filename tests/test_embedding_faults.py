"""Network faults of the embedding endpoint, end to end: `kb ingest` and `kb ask` with the `openai`
embedding provider, the real `openai` client and a real OpenAI-compatible server on 127.0.0.1.

Every fault ends in one `error:` line with a hint and exit 3, never a traceback or partial JSON;
retries are bounded by `[embedding] max_retries`; files stored before a failure stay whole.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.app import ExitCode, app
from core.config import load_settings
from core.engine import open_engine
from core.ingest.pipeline import EMBED_WINDOW
from tests.openai_server import FakeOpenAI

BATCH = 8  # [embedding] batch_size: texts per request
REFUND = "How long is the refund window?"
DOCS = {
    "refunds.md": "# Refunds\n\nThe refund window is 30 days from delivery.\n",
    "shipping.md": "# Shipping\n\nParcels leave the warehouse within two working days.\n",
    "support.md": "# Support\n\nWrite to the support desk; it answers within one day.\n",
}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(dim=64).start()
    yield fake
    fake.stop()


@pytest.fixture
def remote(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """`[embedding]` points at the test server: known dim (no probe), fast timeouts, 2 retries."""
    for key, value in {
        "PROVIDER": "openai",
        "BASE_URL": server.base_url,
        "MODEL": "test-embed",
        "DIM": "64",
        "BATCH_SIZE": str(BATCH),
        "TIMEOUT": "0.3",
        "MAX_RETRIES": "2",
    }.items():
        monkeypatch.setenv(f"KB_EMBEDDING__{key}", value)
    return server


def _fail(fake: FakeOpenAI, status: int | None, **knobs: Any) -> None:
    """From now on, answer `status` (quickly retryable: retry-after-ms 1) and turn `knobs`."""
    fake.fail_after = len(fake.requests)
    fake.fail_status = status
    fake.retry_after_ms = "1"
    for name, value in knobs.items():
        setattr(fake, name, value)


def _expect_unavailable(result: Result, message: str, hint: str) -> None:
    """Exit 3, nothing on stdout, one `error:` line naming the problem and a hint; no traceback."""
    assert result.exit_code == ExitCode.UNAVAILABLE, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert any(line.startswith("hint:") and hint in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr


def _indexed() -> dict[str, int]:
    """{path: chunks} of every stored file, after checking each has exactly its recorded chunks."""
    settings = load_settings().settings
    with open_engine(settings, purpose="manage") as engine:
        records = {str(r["path"]): int(r["chunks"]) for r in engine.shard.records()}
        points = Counter(str(p["path"]) for p in engine.shard.chunk_payloads(("path",)))
    assert points == Counter(records), "a file is partly indexed"
    return records


# -------------------------------------------------------------------------- retries, then success


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_failure_within_max_retries_is_retried_and_ingest_succeeds(
    runner: CliRunner,
    remote: FakeOpenAI,
    docs: Callable[[dict[str, str]], Path],
    status: int,
) -> None:
    _fail(remote, status, fail_times=2)
    result = runner.invoke(app, ["ingest", str(docs(DOCS)), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["chunks_embedded"] == 3
    assert len(remote.requests) == 3  # two refused, the third served
    assert all(r["body"] == remote.requests[0]["body"] for r in remote.requests)


# -------------------------------------------------------------------------- bounded, then exit 3


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_rate_limiting_beyond_max_retries_exits_3_after_bounded_tries(
    runner: CliRunner,
    remote: FakeOpenAI,
    docs: Callable[[dict[str, str]], Path],
    monkeypatch: pytest.MonkeyPatch,
    retries: int,
) -> None:
    monkeypatch.setenv("KB_EMBEDDING__MAX_RETRIES", str(retries))
    _fail(remote, 429)
    result = runner.invoke(app, ["ingest", str(docs(DOCS))])
    _expect_unavailable(result, "rate limited (429)", "[embedding].max_retries")
    assert remote.base_url in result.stderr
    assert len(remote.requests) == 1 + retries


def test_a_retry_after_longer_than_the_client_waits_is_not_retried(
    runner: CliRunner, remote: FakeOpenAI, docs: Callable[[dict[str, str]], Path]
) -> None:
    _fail(remote, 429, retry_after="3600", retry_after_ms=None)
    result = runner.invoke(app, ["ingest", str(docs(DOCS))])
    _expect_unavailable(result, "asks to wait 3600 s", "quota")
    assert len(remote.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_then_exit_3(
    runner: CliRunner, remote: FakeOpenAI, docs: Callable[[dict[str, str]], Path], status: int
) -> None:
    _fail(remote, status)
    result = runner.invoke(app, ["ingest", str(docs(DOCS)), "--json"])
    _expect_unavailable(result, f"answered HTTP {status} after 2 retries", "try again later")
    assert len(remote.requests) == 3


def test_a_slow_endpoint_names_the_timeout_and_its_setting(
    runner: CliRunner,
    remote: FakeOpenAI,
    docs: Callable[[dict[str, str]], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KB_EMBEDDING__MAX_RETRIES", "1")
    remote.delay = 0.6
    result = runner.invoke(app, ["ingest", str(docs(DOCS)), "--json"])
    _expect_unavailable(
        result, "did not answer within 0.3 s (after 1 retry)", "[embedding].timeout"
    )
    assert len(remote.requests) == 2


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"cut_body_after": 40}, "closed the connection before its answer was complete"),
        ({"embeddings_body": "<html>Bad gateway</html>"}, "malformed response"),
        ({"embeddings_body": '{"object": "list"}'}, "malformed response"),
        ({"embeddings_body": "[1, 2, 3]"}, "malformed response"),
        ({"embeddings_body": '{"data": [{"index": 0, "embedding": "%%%"}]}'}, "malformed"),
        ({"embeddings_body": '{"data": [{"index": 0, "embedding": [0.1, "x"]}]}'}, "malformed"),
        ({"drop_vectors": 1}, "malformed response: 2 vectors for 3 texts"),
        ({"vector_dim": 63}, "sent vectors of size 63, expected 64"),
    ],
)
def test_a_broken_response_exits_3_without_a_traceback(
    runner: CliRunner,
    remote: FakeOpenAI,
    docs: Callable[[dict[str, str]], Path],
    monkeypatch: pytest.MonkeyPatch,
    knobs: dict[str, Any],
    message: str,
) -> None:
    monkeypatch.setenv("KB_EMBEDDING__MAX_RETRIES", "1")
    for name, value in knobs.items():
        setattr(remote, name, value)
    result = runner.invoke(app, ["ingest", str(docs(DOCS)), "--json"])
    _expect_unavailable(result, message, "")
    assert len(remote.requests) == (2 if "cut_body_after" in knobs else 1)  # only a cut is retried
    assert _indexed() == {}


# -------------------------------------------------------------------------- a failure midway


def _many_docs(docs: Callable[[dict[str, str]], Path]) -> Path:
    """More one-chunk files than one embedding window holds, then a file of several chunks."""
    files = {
        f"notes/n{i:03d}.md": f"# Note {i}\n\nNote number {i} is about topic {i * 7 % 11}.\n"
        for i in range(EMBED_WINDOW + 10)
    }
    long = "\n\n".join(f"Paragraph {i} of the long file says something new." * 12 for i in range(8))
    files["notes/z-long.md"] = f"# Long\n\n{long}\n"
    return docs(files)


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_a_failure_midway_keeps_finished_files_and_a_rerun_embeds_only_the_rest(
    runner: CliRunner,
    remote: FakeOpenAI,
    docs: Callable[[dict[str, str]], Path],
    *,
    as_json: bool,
) -> None:
    root = _many_docs(docs)
    flags = ["--json"] if as_json else []
    # The first window (EMBED_WINDOW chunks) is served and stored; the second is cut off after
    # one more batch, and the endpoint stays down.
    served = EMBED_WINDOW // BATCH + 1
    remote.fail_after, remote.fail_status, remote.retry_after_ms = served, 503, "1"
    failed = runner.invoke(app, ["ingest", str(root), *flags])
    _expect_unavailable(failed, "answered HTTP 503", "try again later")
    first_texts = remote.embedded_texts()[: served * BATCH]
    assert len(remote.requests) == served + 3  # the failing batch: 1 try + 2 retries

    stored = _indexed()
    assert len(stored) == EMBED_WINDOW  # every file of the first window, each whole
    assert all(chunks == 1 for chunks in stored.values())
    listed = runner.invoke(app, ["sources", "--json"])
    assert sorted(f["path"] for f in json.loads(listed.stdout)["files"]) == sorted(stored)

    # The endpoint recovers: the rerun embeds only what no earlier request returned.
    remote.fail_status = None
    before = len(remote.requests)
    done = runner.invoke(app, ["ingest", str(root), *flags])
    assert done.exit_code == 0, done.stderr
    second_texts = remote.embedded_texts()[
        sum(len(r["body"]["input"]) for r in remote.requests[:before]) :
    ]
    stored = _indexed()
    assert len(stored) == EMBED_WINDOW + 11
    assert stored["notes/z-long.md"] > 1
    assert not set(second_texts) & set(first_texts)
    assert len(second_texts) == len(set(second_texts))
    total_chunks = sum(stored.values())
    assert len(first_texts) + len(second_texts) == total_chunks
    if as_json:
        report = json.loads(done.stdout)
        assert report["chunks_embedded"] == len(second_texts)
        assert report["chunks_reused"] == total_chunks - EMBED_WINDOW - len(second_texts)


# -------------------------------------------------------------------------- kb ask


@pytest.mark.parametrize(
    ("knobs", "message", "hint"),
    [
        ({"status": 429}, "rate limited (429)", "[embedding].max_retries"),
        ({"status": 502}, "answered HTTP 502", "try again later"),
        ({"delay": 0.6}, "did not answer within 0.3 s", "[embedding].timeout"),
        ({"cut_body_after": 10}, "closed the connection", "try again"),
        ({"embeddings_body": "{}"}, "malformed response", "[embedding].base_url"),
    ],
)
def test_ask_exits_3_when_the_embedding_endpoint_fails(
    runner: CliRunner,
    remote: FakeOpenAI,
    docs: Callable[[dict[str, str]], Path],
    monkeypatch: pytest.MonkeyPatch,
    knobs: dict[str, Any],
    message: str,
    hint: str,
) -> None:
    assert runner.invoke(app, ["ingest", str(docs(DOCS))]).exit_code == 0
    answered = runner.invoke(app, ["ask", REFUND, "--json"])
    assert answered.exit_code == 0, answered.stderr
    assert json.loads(answered.stdout)["sources"][0]["path"] == "refunds.md"

    monkeypatch.setenv("KB_EMBEDDING__MAX_RETRIES", "1")
    _fail(remote, **{"status": None, **knobs})
    for flags in ([], ["--json"]):
        before = len(remote.requests)
        result = runner.invoke(app, ["ask", REFUND, *flags])
        _expect_unavailable(result, message, hint)
        assert len(remote.requests) - before == (1 if "embeddings_body" in knobs else 2)
