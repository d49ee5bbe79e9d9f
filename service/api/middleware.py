"""ASGI middleware: the request body limit and Prometheus request metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
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

    def collect(self) -> Iterator[Metric]:
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
        docs.add_metric([], stats.documents)
        yield docs
        chunks = GaugeMetricFamily("ask_index_chunks", "Chunks (embedded passages) in the live index snapshot")
        chunks.add_metric([], stats.chunks)
        yield chunks
        info = GaugeMetricFamily("ask_index_info", "The live snapshot and model", labels=["snapshot", "model"])
        info.add_metric([stats.version, stats.model], 1)
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


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _hostname(value: str) -> str:
    """``host[:port]`` or ``[v6]:port`` → the lower-case host name."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.partition(":")[0] if value.count(":") == 1 else value


class HostGuard:
    """DNS-rebinding protection for every route (REST, MCP, the page).

    A web page can make a browser send requests to 127.0.0.1 under its own host name (DNS rebinding),
    or from its own origin. On a loopback bind only requests whose ``Host`` is a loopback name (or one
    of ``ASK_ALLOWED_HOSTS``) and whose ``Origin``, when sent, names such a host are served; others get
    403 before anything runs. On any other bind, the check applies when ``ASK_ALLOWED_HOSTS`` is set.
    """

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    @classmethod
    def for_bind(cls, app: ASGIApp, host: str, extra: tuple[str, ...]) -> ASGIApp:
        names = frozenset(h.lower() for h in extra)
        if "*" in names or (_hostname(host) not in LOOPBACK_NAMES and not names):
            return app
        return cls(app, names | LOOPBACK_NAMES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k: v for k, v in scope.get("headers", []) if k in (b"host", b"origin")}
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin")
        if _hostname(host) not in self.allowed:
            await error_response(403, "forbidden_host", f"this service does not answer for host {host!r}; "
                                 "add it to ASK_ALLOWED_HOSTS if it is yours")(scope, receive, send)
            return
        if origin is not None:
            name = origin.decode("latin-1").partition("://")[2]
            if _hostname(name) not in self.allowed:
                await error_response(403, "forbidden_origin",
                                     f"requests from origin {origin.decode('latin-1')!r} are not accepted")(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


# Pages are served with their assets only: no script, style, font or image from another host (ReDoc's
# bundle would otherwise fetch its logo from a CDN), no framing by other sites.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


class SecurityHeaders:
    """``Content-Security-Policy`` on HTML responses, ``nosniff`` on all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                content_type = next((v for k, v in headers if k == b"content-type"), b"")
                headers.append((b"x-content-type-options", b"nosniff"))
                if content_type.startswith(b"text/html"):
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
