"""Search, ask and context: cited passages for a query.

The request models carry the settings' limits (``schemas.request_models``), so this router is
made per app from them; each endpoint is a few lines over the engine, awaited on the app's query
threads.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, which name
# the request models local to ``router``.
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query

from ..wire import cited
from .chat import ask_generated
from .deps import EngineDep, ThreadsDep
from .schemas import (
    QUESTION,
    AskBody,
    ContextBody,
    ContextResponse,
    RequestModels,
    SearchBody,
    SearchResponse,
    error_responses,
    filter_spec,
)

BAD_INPUT = (400, 413, 415, 422)


def router(models: RequestModels) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["search"])
    # Classes made at run time: the type checker reads the bodies as their static bases (``cast``).
    SearchRequest, AskRequest, ContextRequest = models.search, models.ask, models.context

    @r.post("/search", response_model=SearchResponse, responses=error_responses(401, *BAD_INPUT, 503),
            summary="Search: cited passages for a query")
    async def search(body: SearchRequest, engine: EngineDep, threads: ThreadsDep) -> dict[str, Any]:  # type: ignore[valid-type]
        """Best passages first, one per paragraph, each with its highlight sentence (`quote`, `quote_start:quote_end`)."""
        req = cast(SearchBody, body)
        found = await threads(engine.search_cited, req.query, req.k, filter_spec(req))
        return {"query": req.query, "results": [cited(c) for c in found]}

    @r.get("/search", response_model=SearchResponse, responses=error_responses(401, 422, 503),
           summary="Search (GET twin for curl)")
    async def search_get(
        q: Annotated[models.query_text, Query(description="The query.", examples=[QUESTION])],  # type: ignore[name-defined]
        engine: EngineDep, threads: ThreadsDep,
        k: Annotated[models.query_k, Query(examples=[3])] = None,  # type: ignore[name-defined]
        path: Annotated[str | None, Query(description="Filter: path prefix or glob.")] = None,
        type: Annotated[list[str] | None, Query(description="Filter: a file type (repeat for several).")] = None,
        modified_after: Annotated[str | None, Query(description="Filter: ISO 8601 date or time.")] = None,
        modified_before: Annotated[str | None, Query(description="Filter: ISO 8601 date or time.")] = None,
    ) -> dict[str, Any]:
        """Same as `POST /v1/search`, with the query in `q` and the filter's fields as parameters."""
        spec = {name: value for name, value in (("path", path), ("type", type), ("modified_after", modified_after),
                                                ("modified_before", modified_before)) if value is not None}
        return {"query": q, "results": [cited(c) for c in await threads(engine.search_cited, q, k, spec or None)]}

    @r.post("/ask", response_model=models.ask_response, responses=error_responses(401, *BAD_INPUT, 503),
            summary="Ask: an extractive (or generated) answer with citations")
    async def ask(body: AskRequest, engine: EngineDep, threads: ThreadsDep) -> dict[str, Any]:  # type: ignore[valid-type]
        """The sentence that answers, cited first; `answer` is null with a `reason` when no passage answers well.
        With `generate`, the configured model writes the answer (`stream` for server-sent events)."""
        req = cast(AskBody, body)
        if req.generate or req.stream:  # written by the language model, citations checked (.chat)
            return await ask_generated(engine, threads, req.question, req.k, req.stream, filter_spec(req))
        answer = await threads(engine.ask, req.question, req.k, filter_spec(req))
        return {**answer.as_dict(), "citations": [cited(c) for c in answer.citations]}

    @r.post("/context", response_model=ContextResponse, responses=error_responses(401, *BAD_INPUT, 503),
            summary="Context: passages packed for an LLM prompt")
    async def context(body: ContextRequest, engine: EngineDep, threads: ThreadsDep) -> dict[str, Any]:  # type: ignore[valid-type]
        """The best passages, each headed `[n] source ¶paragraph`, packed into at most `max_tokens` tiktoken tokens."""
        req = cast(ContextBody, body)
        packed = await threads(engine.context, req.query, req.max_tokens, filter_spec(req))
        return {**packed.as_dict(), "citations": [cited(c) for c in packed.citations]}

    return r
