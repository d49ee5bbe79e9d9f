"""The FastAPI application: REST under ``/v1``, ``/health``, ``/metrics``, MCP at ``/mcp``, the page at ``/``.

Handlers are a few lines over ``Engine``. Blocking engine work never runs on the event loop: queries
(search, ask, context) go to the app's own query threads (``QueryThreads``), the rest to Starlette's
threadpool (plain ``def`` endpoints, or ``run_in_threadpool``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Route

from .. import store
from ..config import Settings, get_settings
from ..engine import Engine
from . import errors
from .auth import ApiKeyAuth, RequireKey, dependency
from .errors import ApiError, error_response
from .middleware import BodyLimit, Metrics
from .schemas import (
    QUESTION,
    SOURCE,
    AskRequest,
    AskResponse,
    ContextRequest,
    ContextResponse,
    Document,
    DocumentDeleted,
    DocumentList,
    DocumentWritten,
    ErrorResponse,
    Health,
    SearchRequest,
    SearchResponse,
    error_responses,
)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

DESCRIPTION = """\
Semantic search and extractive question answering over a folder of articles, every passage cited
to its **source file and paragraph** (`seeds/003_517cb5bd72187ee7.txt ¶4`).

* Errors are always `{"error": {"code": "...", "message": "..."}}`: 400 malformed JSON or non-UTF-8
  body, 401 missing/wrong API key, 404 unknown document, 413 body over the limit, 415 body not sent as
  JSON, 422 invalid values (empty or whitespace query, `k` out of range, bad document id), 503 no index.
* When an API key is configured, send it as `Authorization: Bearer KEY` or `X-API-Key: KEY`
  (everything but `/health` needs it).
* MCP (streamable HTTP) is served at `/mcp`; the search page at `/`.
"""

TAGS = [
    {"name": "search", "description": "Find, answer and pack cited passages."},
    {"name": "documents", "description": "The indexed documents: list, read with numbered paragraphs, add, replace, delete."},
    {"name": "service", "description": "Health and metrics."},
]

_BAD_INPUT = (400, 413, 415, 422)
PATH_DOC = "Document id: the citation source, e.g. `" + SOURCE + "`."


def _clean_document_path(path: str) -> str:
    """Document ids are normalised paths: no empty segments or trailing slash (the engine checks the rest)."""
    if not path:
        raise ApiError(422, "invalid_request", "a document id is required: /v1/documents/seeds/article.txt")
    if "//" in path or path.endswith("/"):
        raise ApiError(422, "invalid_request", f"document id {path!r} has an empty path segment")
    return path


def _mcp_routes(engine: Engine, settings: Settings, auth: ApiKeyAuth) -> tuple[list[Route], Any]:
    """The MCP streamable-HTTP endpoint as routes of this app at exactly ``/mcp``, and its session manager."""
    from ..mcp import build_server

    server = build_server(engine)
    # host: the SDK turns on DNS-rebinding protection (Host/Origin allow-list) for loopback binds.
    sub = server.streamable_http_app(streamable_http_path="/mcp", host=settings.host,
                                     max_request_body_size=settings.max_body_bytes)
    routes = []
    for route in sub.routes:
        if isinstance(route, Route) and route.path == "/mcp":
            route = Route("/mcp", endpoint=RequireKey(route.endpoint, auth), name="mcp")
        routes.append(route)
    return routes, server.session_manager


class QueryThreads:
    """Threads for the engine's query calls, awaited from ``async`` endpoints.

    A plain ``def`` endpoint reaches Starlette's threadpool through AnyIO (a capacity limiter, a
    cancel scope and its worker queue); ``loop.run_in_executor`` on a pool of our own is a lighter
    hop, about 0.2 ms less per query on 2 cores. There are enough threads for every concurrent query
    to wait in the engine's micro-batcher (``service.batching``) while one batch runs.
    """

    def __init__(self, threads: int = 40) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ask-query")

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or Engine(settings)
    auth = ApiKeyAuth(settings.api_key)
    metrics = Metrics(engine)
    mcp_routes, session_manager = _mcp_routes(engine, settings, auth)
    query = QueryThreads()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with session_manager.run():
                yield
        finally:
            query.close()

    # Docs pages (Swagger UI, ReDoc) with their scripts served locally: the service works offline.
    app = FastAPIOffline(
        title="ask", version="0.1.0", summary="Cited answers from your own articles.", description=DESCRIPTION,
        openapi_tags=TAGS, lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.settings = settings
    errors.install(app)
    protected = [Depends(dependency(auth))] if auth.enabled else []
    v1 = APIRouter(prefix="/v1", dependencies=protected)

    # -- search ---------------------------------------------------------------------------------------
    @v1.post("/search", tags=["search"], response_model=SearchResponse,
             responses=error_responses(401, *_BAD_INPUT, 503), summary="Search: cited passages for a query")
    async def search(body: SearchRequest) -> dict[str, Any]:
        """Best passages first, one per paragraph, each with its highlight sentence (`quote`, `quote_start:quote_end`)."""
        return {"query": body.query, "results": [c.as_dict() for c in await query(engine.search_cited, body.query, body.k)]}

    @v1.get("/search", tags=["search"], response_model=SearchResponse,
            responses=error_responses(401, 422, 503), summary="Search (GET twin for curl)")
    async def search_get(
        q: Annotated[str, Query(description="The query.", examples=[QUESTION])],
        k: Annotated[int | None, Query(ge=1, description="Paragraphs to return (1 to ASK_MAX_K).", examples=[3])] = None,
    ) -> dict[str, Any]:
        """Same as `POST /v1/search`, with the query in `q`."""
        return {"query": q, "results": [c.as_dict() for c in await query(engine.search_cited, q, k)]}

    @v1.post("/ask", tags=["search"], response_model=AskResponse,
             responses=error_responses(401, *_BAD_INPUT, 503), summary="Ask: an extractive answer with citations")
    async def ask(body: AskRequest) -> dict[str, Any]:
        """The sentence that answers, cited first; `answer` is null with a `reason` when no passage answers well."""
        return (await query(engine.ask, body.question, body.k)).as_dict()

    @v1.post("/context", tags=["search"], response_model=ContextResponse,
             responses=error_responses(401, *_BAD_INPUT, 503), summary="Context: passages packed for an LLM prompt")
    async def context(body: ContextRequest) -> dict[str, Any]:
        """The best passages, each headed `[n] source ¶paragraph`, packed into at most `max_tokens` tiktoken tokens."""
        return (await query(engine.context, body.query, body.max_tokens)).as_dict()

    # -- documents ------------------------------------------------------------------------------------
    @v1.get("/documents", tags=["documents"], response_model=DocumentList,
            responses=error_responses(401, 503), summary="List the indexed documents")
    def list_documents() -> dict[str, Any]:
        return {"documents": engine.documents()}

    @v1.get("/documents/{path:path}", tags=["documents"], response_model=Document,
            responses=error_responses(401, 404, 422, 503), summary="Read a document with numbered paragraphs")
    def get_document(path: Annotated[str, _path_param(PATH_DOC)]) -> dict[str, Any]:
        """The decoded text and its paragraphs, numbered as citations number them (`¶N` is `paragraphs[N-1]`)."""
        return engine.document(_clean_document_path(path))

    @v1.put(
        "/documents/{path:path}", tags=["documents"], response_model=DocumentWritten,
        responses={201: {"model": DocumentWritten, "description": "Created."}, **error_responses(401, 413, 422, 503)},
        summary="Add or replace a document",
        openapi_extra={"requestBody": {"required": True, "description": "The file's bytes (any encoding; HTML is reduced to text).",
                                       "content": {"text/plain": {"schema": {"type": "string"},
                                                                  "example": "Meeting notes\n\nWe agreed to ship on Friday.\n"},
                                                   "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def put_document(path: Annotated[str, _path_param(PATH_DOC)], request: Request, response: Response) -> Any:
        """Writes the file into the corpus folder and re-indexes it, durably and atomically: searches running
        meanwhile see the old or the new state. 201 when created, 200 when replaced."""
        path = _clean_document_path(path)
        data = await request.body()
        result = await run_in_threadpool(engine.put_document, path, data)
        response.status_code = 201 if result["created"] else 200
        return result

    @v1.delete("/documents/{path:path}", tags=["documents"], response_model=DocumentDeleted,
               responses=error_responses(401, 404, 422, 503), summary="Delete a document")
    def delete_document(path: Annotated[str, _path_param(PATH_DOC)]) -> dict[str, Any]:
        """Removes the file from the corpus folder and from the index."""
        return engine.delete_document(_clean_document_path(path))

    app.include_router(v1)

    # -- service ---------------------------------------------------------------------------------------
    @app.get("/health", tags=["service"], response_model=Health,
             responses={503: {"model": ErrorResponse, "description": "No usable index."}}, summary="Health and index stats")
    def health() -> Any:
        """Open without an API key. 200 with the index's counts, 503 when there is no usable index."""
        try:
            s = engine.stats()
        except store.StoreError as exc:
            return error_response(503, "index_unavailable", str(exc))
        return {"status": "ok", "documents": s["documents"], "chunks": s["chunks"], "model": s["model"],
                "snapshot": s["snapshot"]}

    @app.get("/metrics", tags=["service"], response_class=Response, summary="Prometheus metrics",
             dependencies=protected if settings.protect_metrics else [],
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"example": "ask_index_documents 5.0\n"}}},
                        **error_responses(401)})
    def prometheus() -> Response:
        """Requests and latency per route (`ask_http_requests_total`, `ask_http_request_duration_seconds`),
        and the index (`ask_index_documents`, `ask_index_chunks`, `ask_index_up`)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- the search page (static; it holds no data, so it needs no key) ------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    # -- MCP over streamable HTTP at exactly /mcp -------------------------------------------------------
    app.router.routes.extend(mcp_routes)

    _document_limits(app, settings)

    # Outermost last: metrics see every response, including the body limit's 413.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    return app


def _document_limits(app: FastAPI, settings: Settings) -> None:
    """Show the limits that are settings (enforced by the engine) in this app's OpenAPI schema."""
    generate = app.openapi

    def text(prop: dict[str, Any]) -> None:
        # not blank, no NUL (the engine refuses both)
        prop.update(minLength=1, maxLength=settings.max_query_chars, pattern=r"^[^\u0000]*[^\s\u0000][^\u0000]*$")

    def integer(prop: dict[str, Any], maximum: int) -> None:
        for alt in prop.get("anyOf", [prop]):
            if alt.get("type") == "integer":
                alt["maximum"] = maximum

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI after the first call; the updates below are idempotent
        models = schema["components"]["schemas"]
        for model, field in (("SearchRequest", "query"), ("AskRequest", "question"), ("ContextRequest", "query")):
            text(models[model]["properties"][field])
        for model in ("SearchRequest", "AskRequest"):
            integer(models[model]["properties"]["k"], settings.max_k)
        integer(models["ContextRequest"]["properties"]["max_tokens"], settings.max_context_tokens)
        for param in schema["paths"]["/v1/search"]["get"]["parameters"]:
            if param["name"] == "q":
                text(param["schema"])
            elif param["name"] == "k":
                integer(param["schema"], settings.max_k)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _path_param(description: str) -> Any:
    from fastapi import Path as PathParam

    return PathParam(description=description, examples=[SOURCE])


class _MetricsMiddleware:
    def __init__(self, app: Any, metrics: Metrics) -> None:
        self._app = metrics.middleware(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

