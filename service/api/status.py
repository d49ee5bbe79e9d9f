"""Service status: ``/health`` (open without a key) and Prometheus ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..engine import StoreError
from .deps import EngineDep
from .errors import error_response
from .schemas import ErrorResponse, Health, error_responses

health_router = APIRouter(tags=["service"])
metrics_router = APIRouter(tags=["service"])


@health_router.get("/health", response_model=Health, summary="Health and index stats",
                   responses={503: {"model": ErrorResponse, "description": "No usable index."}})
def health(engine: EngineDep) -> Any:
    """Open without an API key. 200 with the index's counts, 503 when there is no usable index."""
    try:
        s = engine.stats()
    except StoreError as exc:
        return error_response(503, "index_unavailable", str(exc))
    return {"status": "ok", "documents": s.documents, "chunks": s.chunks, "model": s.model, "snapshot": s.version,
            "store": s.store}


@metrics_router.get("/metrics", response_class=Response, summary="Prometheus metrics",
                    responses={200: {"content": {CONTENT_TYPE_LATEST: {"example": "ask_index_documents 5.0\n"}}},
                               **error_responses(401)})
def prometheus(request: Request) -> Response:
    """Requests and latency per route (`ask_http_requests_total`, `ask_http_request_duration_seconds`),
    and the index (`ask_index_documents`, `ask_index_chunks`, `ask_index_up`)."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
