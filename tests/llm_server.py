"""A small OpenAI-compatible chat server with scripted replies, served on a loopback port for the tests.

Each chat request takes the next ``Reply`` from the script (the last one repeats), so a test says
what the "model" answers and how: its text, streamed or whole, an error status, a reply that is
not JSON, a delay before answering, or a stream that stalls. Every request is recorded (path,
headers, JSON body) so tests can check what this service sends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = ""
    status: int = 200
    delay: float = 0.0  # seconds before the response starts
    stall_after: int | None = None  # streaming: pieces sent before the server goes silent
    raw: bytes | None = None  # a body sent as is (200, application/json), e.g. not JSON at all


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


class ScriptedLLM:
    """``with ScriptedLLM([Reply("… [1]")]) as llm:`` serves on ``llm.url`` (``…/v1``) until the block ends."""

    model = "scripted-model"

    def __init__(self, script: list[Reply] | None = None) -> None:
        self.script = list(script or [Reply("No idea.")])
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # wakes any handler that is stalling
        self._server.shutdown()
        self._server.server_close()

    def set_script(self, *replies: Reply) -> None:
        with self._lock:
            self.script = list(replies)
            self.requests.clear()

    @property
    def chat_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next(self) -> Reply:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                llm.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, None))
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": llm.model, "object": "model", "created": 0, "owned_by": "tests"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                llm.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if not self.path.endswith("/chat/completions"):
                    self._json(404, {"error": {"message": "not found"}})
                    return
                reply = llm._next()
                if reply.delay and llm._stop.wait(reply.delay):
                    return
                if reply.raw is not None:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.raw)))
                    self.end_headers()
                    self.wfile.write(reply.raw)
                    return
                if reply.status != 200:
                    self._json(reply.status, {"error": {"message": f"scripted failure {reply.status}",
                                                        "type": "server_error"}})
                    return
                if body.get("stream"):
                    self._stream(reply, body)
                else:
                    self._json(200, {
                        "id": "cmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

            def _stream(self, reply: Reply, body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def send(data: str) -> None:
                    raw = data.encode()
                    self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                    self.wfile.flush()

                for i, piece in enumerate(_pieces(reply.text)):
                    if reply.stall_after is not None and i >= reply.stall_after:
                        llm._stop.wait(3600)
                        return
                    chunk = {"id": "cmpl-test", "object": "chat.completion.chunk", "created": 0,
                             "model": body.get("model"),
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    send(f"data: {json.dumps(chunk)}\n\n")
                send("data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

        return Handler


def _pieces(text: str) -> Iterator[str]:
    """The text in word-sized pieces, as a model streams it."""
    word = ""
    for ch in text:
        word += ch
        if ch == " ":
            yield word
            word = ""
    if word:
        yield word
