"""The FastAPI application: REST under ``/v1``, ``/health``, ``/metrics``, MCP at ``/mcp``, the page at ``/``.

``create_app`` only assembles: the routers live in their own modules (``search``, ``documents``,
``status``) over the engine that the app carries (``deps``), the request models carry the settings'
limits (``schemas.request_models``), and the guards wrap the whole app:

    metrics → host guard (DNS rebinding) → key gate → security headers → body limit → routes

Blocking engine work never runs on the event loop: queries go to the app's own query threads
(``QueryThreads``), writes and reads of documents to Starlette's threadpool.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route

from ..config import Settings, get_settings
from ..engine import Engine
from . import chat, collections, documents, errors, search, status
from .auth import ApiKeyAuth, KeyGate, openapi_security
from .deps import QueryThreads
from .middleware import BodyLimit, HostGuard, Metrics, SecurityHeaders
from .schemas import request_models

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

DESCRIPTION = """\
Semantic search and extractive question answering over a folder of articles, every passage cited
to its **source file and paragraph** (`seeds/003_517cb5bd72187ee7.txt ¶4`).

* Errors are always `{"error": {"code": "...", "message": "..."}}`: 400 malformed JSON or non-UTF-8
  body, 401 missing/wrong API key, 403 foreign Host/Origin, 404 unknown document, 409 document id
  below an existing file, 413 body over the limit, 415 body not sent as JSON, 422 invalid values
  (empty or whitespace query, `k` out of range, bad document id), 503 no index or another writer busy
  (nothing was changed).
* When an API key is configured, send it as `Authorization: Bearer KEY` or `X-API-Key: KEY`
  (everything but `/health` and the search page's static files needs it).
* MCP (streamable HTTP) is served at `/mcp`; the search page at `/`.
"""

TAGS = [
    {"name": "search", "description": "Find, answer and pack cited passages."},
    {"name": "chat", "description": "OpenAI-compatible chat completions for chat front-ends, with citations."},
    {"name": "documents", "description": "The indexed documents: list, read with numbered paragraphs, add, replace, delete."},
    {"name": "collections", "description": "Named indexes, each with its own corpus: every route above, per collection."},
    {"name": "service", "description": "Health and metrics."},
]

PUBLIC_PATHS = frozenset({"/health", "/"})
PUBLIC_PREFIXES = ("/static/",)


def _mcp_routes(engine: Engine, settings: Settings) -> tuple[list[Any], Any]:
    """The MCP streamable-HTTP endpoint as routes of this app at exactly ``/mcp``, and its session manager.

    The SDK's own Host/Origin check is off: ``HostGuard`` applies the same rule to every route.
    """
    from ..mcp import build_server

    server = build_server(engine)
    sub = server.streamable_http_app(
        streamable_http_path="/mcp", host=settings.host, max_request_body_size=settings.max_body_bytes,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    routes = [Route("/mcp", endpoint=r.endpoint, name="mcp") if isinstance(r, Route) and r.path == "/mcp" else r
              for r in sub.routes]
    return routes, server.session_manager


def _page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or Engine(settings)
    auth = ApiKeyAuth(settings.api_key)
    mcp_routes, session_manager = _mcp_routes(engine, settings)
    threads = QueryThreads()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with session_manager.run():
                yield
        finally:
            threads.close()

    # Docs pages (Swagger UI, ReDoc) with their scripts served locally: the service works offline.
    app = FastAPIOffline(
        title="ask", version="0.1.0", summary="Cited answers from your own articles.", description=DESCRIPTION,
        openapi_tags=TAGS, lifespan=lifespan,
    )
    app.state.engine, app.state.settings, app.state.query_threads = engine, settings, threads
    app.state.metrics = metrics = Metrics(engine)
    errors.install(app)

    keyed = [Depends(openapi_security(auth))] if auth.enabled else []
    search_router = search.router(request_models(settings))
    app.include_router(search_router, dependencies=keyed)
    app.include_router(chat.chat_router(), dependencies=keyed)
    app.include_router(documents.router, dependencies=keyed)
    app.include_router(collections.router, dependencies=keyed)
    # The same routes for each collection (the key gate covers them: only /health itself is public).
    in_collection = [Depends(collections.collection_param), *keyed]
    for router, prefix in ((search_router, "/v1"), (documents.router, "/v1"), (status.health_router, "")):
        app.include_router(collections.rebased(router, prefix), dependencies=in_collection)
    app.include_router(status.health_router)
    app.include_router(status.metrics_router, dependencies=keyed if settings.protect_metrics else [])
    app.add_api_route("/", _page, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    app.router.routes.extend(mcp_routes)

    public = PUBLIC_PATHS if settings.protect_metrics else PUBLIC_PATHS | {"/metrics"}
    # Added innermost first: metrics see every response, the guards' refusals included.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(KeyGate, auth=auth, public=public, public_prefixes=PUBLIC_PREFIXES)
    app.add_middleware(_HostGuard, host=settings.host, extra=settings.allowed_hosts)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    return app


class _HostGuard:
    def __init__(self, app: Any, host: str, extra: tuple[str, ...]) -> None:
        self._app = HostGuard.for_bind(app, host, extra)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)


class _MetricsMiddleware:
    def __init__(self, app: Any, metrics: Metrics) -> None:
        self._app = metrics.middleware(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)
