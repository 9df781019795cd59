"""`kb serve --mcp`: the knowledge base as a Model Context Protocol server over stdio.

A view like the other commands: each tool loads the settings, calls one function of `core.serve`
(which opens the knowledge base for that call only) and returns the same JSON object the matching
command prints with `--json`. stdout carries the protocol alone: the SDK points file descriptor 1
at stderr while it serves, and logging goes to stderr.

The `mcp` SDK is an optional extra (`pip install 'kb[mcp]'`): it brings a web stack (starlette,
uvicorn, cryptography) that nothing else in kb needs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.options import ConfigOpt, KbOpt, load

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from core.config import Settings
    from core.retrieve import RetrievalQuery

INSTRUCTIONS = (
    "Search and question a private knowledge base of the user's documents. `search` returns "
    "ranked chunks with path, page or lines and score; `ask` answers with [n] citations of the "
    "sources it returns, or refuses (found=false) when nothing relevant is indexed; `sources` "
    "lists the indexed files. Pass `kb` to use another named knowledge base."
)


def serve_command(
    mcp: Annotated[
        bool, typer.Option("--mcp", help="Speak the Model Context Protocol on stdin/stdout.")
    ] = False,
    config: ConfigOpt = None,
    kb: KbOpt = None,
) -> None:
    """Serve the knowledge base to coding agents and editors (MCP over stdio).

    Tools: search, ask, sources; each opens the knowledge base for that call only, so `kb ingest`
    can run meanwhile. Needs the optional SDK: pip install 'kb[mcp]'.

    Example: kb serve --mcp --kb notes
    """
    import logging

    from core.errors import ConfigError

    if not mcp:
        raise ConfigError("kb serve needs a protocol", hint="kb serve --mcp")
    load(config, kb)  # bad settings fail now, with exit 2, not at the first call
    server = build_server(config, kb)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    server.run("stdio")


def build_server(config: Path | None, default_kb: str | None) -> MCPServer:
    """The MCP server and its three tools, for the knowledge base `default_kb` (or the configured one)."""
    from core.errors import ConfigError

    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as err:
        raise ConfigError(
            "kb serve --mcp needs the Model Context Protocol SDK (the `mcp` package)",
            hint="pip install 'kb[mcp]'",
        ) from err
    from cli.payloads import answer_payload, retrieval_payload, sources_payload
    from core import serve
    from core.errors import KbError

    server = MCPServer(name="kb", instructions=INSTRUCTIONS, log_level="WARNING")

    def settings_for(kb: str | None, retrieval: dict[str, Any] | None = None) -> Settings:
        return load(config, kb or default_kb, retrieval=retrieval or {}).settings

    def wanted(
        settings: Settings,
        question: str,
        top_k: int | None,
        path: list[str] | None,
        file_type: list[str] | None,
    ) -> RetrievalQuery:
        """The query a tool's arguments describe, under the knowledge base's settings."""
        from core.retrieve import RetrievalQuery

        return RetrievalQuery.from_settings(
            settings,
            question,
            top_k=top_k,
            paths=tuple(path or ()),
            file_types=tuple(file_type or ()),
        )

    def failed(err: KbError) -> ToolError:
        return ToolError(f"{err}" + (f" (hint: {err.hint})" if err.hint else ""))

    @server.tool()
    def search(
        query: str,
        top_k: int | None = None,
        mode: str | None = None,
        path: list[str] | None = None,
        file_type: list[str] | None = None,
        kb: str | None = None,
    ) -> dict[str, Any]:
        """Ranked chunks of the knowledge base for a query: path, page or lines, score, text.

        mode: hybrid (default), dense or sparse. path: globs over indexed paths.
        file_type: e.g. markdown, pdf. kb: another named knowledge base.
        """
        try:
            settings = settings_for(kb, {"mode": mode})
            found = serve.search(settings, wanted(settings, query, top_k, path, file_type))
        except KbError as err:
            raise failed(err) from err
        return retrieval_payload(found)

    @server.tool()
    def ask(
        question: str,
        top_k: int | None = None,
        path: list[str] | None = None,
        file_type: list[str] | None = None,
        kb: str | None = None,
    ) -> dict[str, Any]:
        """Answer a question from the knowledge base, citing sources as [1], [2], ...

        `found` is false when the knowledge base does not cover the question (kind "refused":
        no answer was generated; the nearest sources are still listed).
        """
        try:
            settings = settings_for(kb)
            result = serve.ask(settings, wanted(settings, question, top_k, path, file_type))
        except KbError as err:
            raise failed(err) from err
        return answer_payload(result)

    @server.tool()
    def sources(kb: str | None = None) -> dict[str, Any]:
        """The files indexed in the knowledge base: path, type, language, chunks, when indexed."""
        try:
            files = serve.sources(settings_for(kb))
        except KbError as err:
            raise failed(err) from err
        return sources_payload(files)

    return server
