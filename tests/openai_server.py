"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests: real sockets, real protocol.

Serves `POST /v1/embeddings` (deterministic hashed vectors) and `POST /v1/chat/completions`
(scripted replies, as JSON or as a chunked server-sent-event stream), and records every request,
so tests can check the model name, the messages and the auth header the real `openai` client sent.
Knobs inject the failures real servers have: error statuses, slowness, cut streams, bad bodies.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes import HashEmbedding

STREAM_PIECE = 6  # characters per streamed chunk, so every reply arrives in several deltas


@dataclass
class FakeOpenAI:
    """Behaviour knobs, the scripted chat replies and the log of requests."""

    api_key: str | None = None  # when set, other keys get 401
    fail_status: int | None = None  # answer requests with this status...
    fail_times: int | None = None  # ...the first N of them, then behave (None: always)
    fail_after: int = 0  # answer this many requests normally before the failures begin
    retry_after: str | None = None  # Retry-After header sent with failures
    retry_after_ms: str | None = None  # retry-after-ms header (OpenAI's own) sent with failures
    delay: float = 0.0  # seconds to wait before answering
    cut_stream_after: int | None = None  # send N chunks of a stream, then drop the connection
    malformed: str | None = None  # chat: answer 200 with this body (in a stream: as the event data)
    embeddings_body: str | None = None  # embeddings: answer 200 with this body
    cut_body_after: int | None = None  # embeddings: send this many bytes of the body, then hang up
    drop_vectors: int = 0  # embeddings: send this many vectors fewer than texts
    vector_dim: int | None = None  # embeddings: send vectors of this size instead of `dim`
    default_reply: str = "This is the fake server's default answer."
    dim: int = 64
    # GET /v1/models lists these; None: the server has no model list (404)
    models: list[str] | None = field(default_factory=lambda: ["fake-chat"])
    replies: list[tuple[str, str | None]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def reply(self, text: str, reasoning: str | None = None) -> FakeOpenAI:
        """Queue the next chat answer; `reasoning` is sent as `reasoning_content` (DeepSeek-R1 style)."""
        self.replies.append((text, reasoning))
        return self

    def _failing(self) -> bool:
        if not self.fail_status:
            return False
        seen = len(self.requests) - self.fail_after
        return seen > 0 and (self.fail_times is None or seen <= self.fail_times)

    def embedded_texts(self) -> list[str]:
        """Every text sent to /v1/embeddings, in order (failed requests included)."""
        return [
            text
            for r in self.requests
            if r["path"] == "/v1/embeddings"
            for text in (
                r["body"]["input"] if isinstance(r["body"]["input"], list) else [r["body"]["input"]]
            )
        ]

    def start(self) -> FakeOpenAI:
        state = self
        embedder = HashEmbedding(dim=self.dim)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and chunked streams like real servers

            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                state.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": None}
                )
                if state._failing():
                    assert state.fail_status is not None
                    return self._reply(state.fail_status, {"error": {"message": "injected"}})
                if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
                    return self._reply(401, {"error": {"message": "invalid api key"}})
                if self.path != "/v1/models" or state.models is None:
                    return self._reply(404, {"error": {"message": "not found"}})
                data = [{"id": m, "object": "model", "owned_by": "kb-tests"} for m in state.models]
                return self._reply(200, {"object": "list", "data": data})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                state.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                try:
                    self._answer(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True

            def _answer(self, body: dict[str, Any]) -> None:
                time.sleep(state.delay)
                if state._failing():
                    headers = {"Retry-After": state.retry_after} if state.retry_after else {}
                    if state.retry_after_ms:
                        headers["retry-after-ms"] = state.retry_after_ms
                    assert state.fail_status is not None
                    return self._reply(
                        state.fail_status, {"error": {"message": "injected failure"}}, headers
                    )
                if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
                    return self._reply(401, {"error": {"message": "invalid api key"}})
                if self.path == "/v1/embeddings":
                    return self._embeddings(body)
                if self.path == "/v1/chat/completions":
                    return self._chat(body)
                return self._reply(404, {"error": {"message": "not found"}})

            def _embeddings(self, body: dict[str, Any]) -> None:
                if state.embeddings_body is not None:
                    return self._send(200, state.embeddings_body.encode(), "application/json")
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                size = state.vector_dim if state.vector_dim is not None else state.dim
                data = [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": embedder.get_text_embedding(t)[:size]
                        + [0.0] * max(0, size - state.dim),
                    }
                    for i, t in enumerate(texts[: len(texts) - state.drop_vectors])
                ]
                usage = {"prompt_tokens": 1, "total_tokens": 1}
                payload = {"object": "list", "data": data, "model": body["model"], "usage": usage}
                if state.cut_body_after is None:
                    return self._reply(200, payload)
                raw = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw[: state.cut_body_after])
                self.wfile.flush()
                self.close_connection = True

            def _chat(self, body: dict[str, Any]) -> None:
                text, reasoning = (
                    state.replies.pop(0) if state.replies else (state.default_reply, None)
                )
                base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body["model"]}
                if body.get("stream"):
                    # OpenAI's usage chunk, when asked for: words stand in for tokens
                    usage = (
                        {
                            "prompt_tokens": sum(
                                len(str(m.get("content", "")).split()) for m in body["messages"]
                            ),
                            "completion_tokens": len(text.split()),
                        }
                        if (body.get("stream_options") or {}).get("include_usage")
                        else None
                    )
                    return self._stream(base, text, reasoning, usage)
                if state.malformed is not None:
                    return self._send(200, state.malformed.encode(), "application/json")
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if reasoning is not None:
                    message["reasoning_content"] = reasoning
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                self._reply(
                    200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
                )

            def _stream(
                self,
                base: dict[str, Any],
                text: str,
                reasoning: str | None,
                usage: dict[str, int] | None = None,
            ) -> None:
                def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
                    choice = {"index": 0, "delta": delta, "finish_reason": finish}
                    return json.dumps(
                        {**base, "object": "chat.completion.chunk", "choices": [choice]}
                    )

                pieces = [
                    *(chunk({"reasoning_content": p}) for p in _split(reasoning or "")),
                    *(chunk({"content": p}) for p in _split(text)),
                ]
                events = [chunk({"role": "assistant", "content": ""}), *pieces]
                if state.malformed is not None:
                    events = [state.malformed]
                cut = state.cut_stream_after
                if cut is not None:
                    events = events[: cut + 1]  # the role chunk, then `cut` answer chunks
                else:
                    events += [chunk({}, finish="stop")]
                    if usage is not None:
                        usage["total_tokens"] = sum(usage.values())
                        events.append(json.dumps({**base, "choices": [], "usage": usage}))
                    events.append("[DONE]")
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in events:
                    data = f"data: {event}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                if cut is not None:  # no final chunk, no [DONE], no end of the chunked body
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")

            def _reply(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                self._send(status, json.dumps(payload).encode(), "application/json", headers)

            def _send(
                self,
                status: int,
                raw: bytes,
                content_type: str,
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        # A short poll interval: stop() waits for the serving loop to notice (0.5 s by default).
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _split(text: str) -> list[str]:
    return [text[i : i + STREAM_PIECE] for i in range(0, len(text), STREAM_PIECE)]


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-reply (timeouts, Ctrl-C, cut streams) are what the tests inject."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return
