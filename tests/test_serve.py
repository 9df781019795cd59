"""`kb serve --mcp`: a real server subprocess, driven by the MCP SDK's own stdio client.

The knowledge base is built with the real bundled embedder; the server opens it per call, so an
ingest run between two calls is seen by the next one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from typer.testing import CliRunner

from cli.app import ExitCode, app

REPO = Path(__file__).resolve().parents[1]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "OPENAI_"))}
    env.update(KB_KB__HOME=str(home), PYTHONPATH=str(REPO))
    return env


def _params(home: Path, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "cli", "serve", "--mcp", *args],
        env=_env(home),
        cwd=Path.cwd(),
    )


def _ingest(home: Path, root: Path) -> None:
    """`kb ingest` in its own process, as a user would run it beside the server."""
    subprocess.run(
        [sys.executable, "-m", "cli", "ingest", str(root)],
        env=_env(home),
        check=True,
        capture_output=True,
    )


def _payload(result: Any) -> dict[str, Any]:
    """A tool's structured result; its text content is the same JSON."""
    assert not result.is_error, result.content
    text = json.loads(result.content[0].text)
    assert result.structured_content == text
    return dict(text)


def test_tools_answer_from_a_knowledge_base_that_changes_between_calls(
    docs: Any, isolated: Path, tmp_path: Path
) -> None:
    root = docs({"alpha.md": "# Alpha\nThe alpha service listens on port 8743.\n"})
    _ingest(isolated, root)
    errlog = (tmp_path / "server-stderr.txt").open("w+")

    async def session() -> None:
        async with (
            stdio_client(_params(isolated), errlog=errlog) as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"search", "ask", "sources"}
            assert "query" in tools["search"].input_schema["properties"]

            listed = _payload(await client.call_tool("sources", {}))
            assert [f["path"] for f in listed["files"]] == ["alpha.md"]

            found = _payload(await client.call_tool("search", {"query": "alpha port", "top_k": 3}))
            top = found["sources"][0]
            assert top["path"] == "alpha.md"
            assert top["line_start"] == 1
            assert top["score"] > 0
            assert "search_s" in found["timings"]

            answered = _payload(await client.call_tool("ask", {"question": "Which port?"}))
            assert answered["found"] is True
            assert "8743" in answered["answer"]
            assert answered["citations"] == [1]

            refused = _payload(
                await client.call_tool("ask", {"question": "Wie backe ich Sauerteigbrot?"})
            )
            assert refused["found"] is False
            assert refused["kind"] == "refused"

            # An ingest between calls (the server holds no lock between them) is seen at once.
            (root / "beta.md").write_text("# Beta\nBeta refunds take 10 days.\n", encoding="utf-8")
            _ingest(isolated, root)
            listed = _payload(await client.call_tool("sources", {}))
            assert [f["path"] for f in listed["files"]] == ["alpha.md", "beta.md"]

            missing = await client.call_tool("sources", {"kb": "nosuch"})
            assert missing.is_error
            assert "no knowledge base 'nosuch'" in missing.content[0].text
            assert "kb ingest" in missing.content[0].text  # the hint comes along

    anyio.run(session)
    errlog.seek(0)
    assert "Traceback" not in errlog.read()


def test_serve_needs_a_protocol_flag(runner: CliRunner) -> None:
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == ExitCode.USAGE
    assert "kb serve --mcp" in result.stderr
