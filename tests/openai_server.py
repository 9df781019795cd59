"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests: real sockets, real protocol.

Serves `POST /v1/embeddings` (deterministic hashed vectors) and records every request, so tests can
check the model name, the auth header and the batch sizes the real `openai` client sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes import HashEmbedding


@dataclass
class FakeOpenAI:
    """Behaviour knobs and the log of requests."""

    api_key: str | None = None  # when set, other keys get 401
    fail_status: int | None = None  # answer every request with this status
    dim: int = 64
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> FakeOpenAI:
        state = self
        embedder = HashEmbedding(dim=self.dim)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                state.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                if state.fail_status:
                    return self._reply(
                        state.fail_status, {"error": {"message": "injected failure"}}
                    )
                if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
                    return self._reply(401, {"error": {"message": "invalid api key"}})
                if self.path != "/v1/embeddings":
                    return self._reply(404, {"error": {"message": "not found"}})
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = [
                    {"object": "embedding", "index": i, "embedding": embedder.get_text_embedding(t)}
                    for i, t in enumerate(texts)
                ]
                usage = {"prompt_tokens": 1, "total_tokens": 1}
                return self._reply(
                    200, {"object": "list", "data": data, "model": body["model"], "usage": usage}
                )

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
