"""ASGI middleware: the request body limit and Prometheus request metrics."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response


class BodyLimit:
    """Answer 413 to a request whose body is over ``max_bytes``.

    The body is read from the stream and counted (a missing or false ``Content-Length`` does not
    get past it); a declared ``Content-Length`` over the limit is refused before reading anything.
    Bodies under the limit are buffered and replayed to the application as one message.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "body_too_large", f"the request body is over the {self.max_bytes}-byte limit (ASK_MAX_BODY_BYTES)",
            {"Connection": "close"},
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path or "/"
    return "unmatched"  # unknown paths share one label: no unbounded label values


class IndexCollector:
    """Gauges read from the live index at scrape time."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        up = GaugeMetricFamily("ask_index_up", "1 when the index is open and readable, else 0")
        try:
            stats = self.engine.stats()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the index does
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        docs = GaugeMetricFamily("ask_index_documents", "Documents in the live index snapshot")
        docs.add_metric([], stats["documents"])
        yield docs
        chunks = GaugeMetricFamily("ask_index_chunks", "Chunks (embedded passages) in the live index snapshot")
        chunks.add_metric([], stats["chunks"])
        yield chunks
        info = GaugeMetricFamily("ask_index_info", "The live snapshot and model", labels=["snapshot", "model"])
        info.add_metric([stats["snapshot"], stats["model"]], 1)
        yield info


class Metrics:
    """Request counts and latencies per route template, in a registry of this app's own."""

    def __init__(self, engine: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ask_http_requests", "HTTP requests by method, route template and status",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "ask_http_request_duration_seconds", "HTTP request latency by method and route template",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.registry.register(IndexCollector(engine))

    def middleware(self, app: ASGIApp) -> ASGIApp:
        metrics = self

        async def record(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = 500
            start = time.perf_counter()

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                route = _route_label(scope)
                method = scope.get("method", "GET")
                metrics.requests.labels(method, route, str(status)).inc()
                metrics.latency.labels(method, route).observe(time.perf_counter() - start)

        return record
