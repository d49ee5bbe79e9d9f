"""Every error is JSON of one shape, ``{"error": {"code": str, "message": str}}``, never a stack trace.

| status | code | when |
|---|---|---|
| 400 | ``invalid_json`` | the body is not well-formed JSON, or not UTF-8 |
| 401 | ``unauthorized`` | an API key is configured and the request has none, or a wrong one |
| 403 | ``forbidden_host`` / ``forbidden_origin`` | a foreign ``Host`` or ``Origin`` (DNS-rebinding protection) |
| 404 | ``not_found`` / ``collection_not_found`` | unknown document or route; unknown collection |
| 405 | ``method_not_allowed`` | |
| 409 | ``conflict`` | a document id below an existing file, or naming a folder |
| 413 | ``body_too_large`` | the body is over ``ASK_MAX_BODY_BYTES`` |
| 415 | ``unsupported_media_type`` | a JSON endpoint got a body without ``Content-Type: application/json`` |
| 422 | ``invalid_request`` | well-formed but invalid: empty query, ``k`` out of range, a bad document id, … |
| 503 | ``index_unavailable`` / ``index_busy`` / ``store_unavailable`` | no usable index, another writer holds the index lock (nothing was changed), or the database cannot be reached |
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import Conflict, IndexBusy, NotFound, QueryError, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 409: "conflict", 413: "body_too_large", 415: "unsupported_media_type",
    422: "invalid_request", 429: "too_many_requests", 503: "unavailable",
}


class ApiError(Exception):
    """Raised by the app's own code for an error response with a given status and code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


_LOCATIONS = ("body", "query", "path", "header", "cookie")


def _where(loc: tuple[Any, ...]) -> str:
    """The field an error is about: ``("body", "query")`` is the body's field ``query`` (a field may
    share its name with a location), ``("body",)`` the body as a whole."""
    parts = [str(p) for p in (loc[1:] if len(loc) > 1 and loc[0] in _LOCATIONS else loc)]
    return ".".join(parts) or "body"


def validation_message(errors: list[dict[str, Any]]) -> str:
    msgs = []
    for e in errors[:5]:
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        msgs.append(f"{_where(tuple(e.get('loc', ())))}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(msgs) + more


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next((e.get("ctx", {}).get("error") for e in errors if e.get("type") == "json_invalid"), None)
        return error_response(400, "invalid_json", f"the body is not valid JSON ({detail or 'decode error'})")
    body_is_bytes = any(
        tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), bytes | bytearray) for e in errors
    )
    if body_is_bytes:
        return error_response(415, "unsupported_media_type",
                              "send the body as JSON with the header 'Content-Type: application/json'")
    return error_response(422, "invalid_request", validation_message(errors))


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    message = str(exc.detail) if exc.detail else "error"
    if status == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        return error_response(400, "invalid_json", "the body is not valid UTF-8 JSON")
    if status == 400 and message == "There was an error parsing the body":
        return error_response(400, "invalid_json", "the body could not be parsed as JSON")
    if status == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(status, _HTTP_CODES.get(status, f"http_{status}"), message, getattr(exc, "headers", None))


async def _api(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _query(request: Request, exc: QueryError) -> JSONResponse:
    return error_response(422, "invalid_request", str(exc))


async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
    return error_response(404, "not_found", str(exc.args[0] if exc.args else exc))


async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
    return error_response(409, "conflict", str(exc))


async def _store(request: Request, exc: StoreError) -> JSONResponse:
    if isinstance(exc, IndexBusy):
        return error_response(503, "index_busy", str(exc), {"Retry-After": "2"})
    if isinstance(exc, StoreUnavailable):
        return error_response(503, "store_unavailable", str(exc), {"Retry-After": "5"})
    return error_response(503, "index_unavailable", str(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "unexpected server error; the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _api)  # type: ignore[arg-type]
    app.add_exception_handler(QueryError, _query)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, _not_found)  # type: ignore[arg-type]
    app.add_exception_handler(Conflict, _conflict)  # type: ignore[arg-type]
    app.add_exception_handler(StoreError, _store)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
