"""The indexed documents: list, read with numbered paragraphs, add or replace, delete.

Writes run in the threadpool (they embed and commit); the engine serialises them and answers
409/404/422/503 before it touches the corpus when a write cannot go through.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool

from .deps import EngineDep
from .errors import ApiError
from .schemas import (
    NEW_SOURCE,
    SOURCE,
    Document,
    DocumentDeleted,
    DocumentList,
    DocumentWritten,
    error_responses,
)

router = APIRouter(prefix="/v1/documents", tags=["documents"])

ExistingId = Annotated[str, PathParam(description="Document id: the citation source, e.g. `" + SOURCE + "`.",
                                      examples=[SOURCE])]
# Examples of write routes name an id that does not exist: "Try it out" or a schema-driven fuzzer must
# never replace or delete a real document.
NewId = Annotated[str, PathParam(description="Document id: `<corpus folder>/<path>`, e.g. `" + NEW_SOURCE + "`.",
                                 examples=[NEW_SOURCE])]


def _clean(path: str, request: Request) -> str:
    """The id as routed, after refusing percent-encoded separators: ``a%2Fb.txt`` is one segment
    holding a slash (no file can be named so), not another spelling of ``a/b.txt``."""
    if not path:
        raise ApiError(422, "invalid_request", "a document id is required: /v1/documents/seeds/article.txt")
    raw = request.scope.get("raw_path", b"").lower()
    if b"%2f" in raw or b"%5c" in raw:
        raise ApiError(422, "invalid_request", "document ids may not contain encoded separators (%2F, %5C)")
    return path


@router.get("", response_model=DocumentList, responses=error_responses(401, 503), summary="List the indexed documents")
def list_documents(engine: EngineDep) -> dict[str, Any]:
    return {"documents": [d.as_dict() for d in engine.documents()]}


@router.get("/{path:path}", response_model=Document, responses=error_responses(401, 404, 422, 503),
            summary="Read a document with numbered paragraphs")
def get_document(path: ExistingId, request: Request, engine: EngineDep) -> dict[str, Any]:
    """The decoded text and its paragraphs, numbered as citations number them (`¶N` is `paragraphs[N-1]`)."""
    return engine.document(_clean(path, request)).as_dict()


@router.put(
    "/{path:path}", response_model=DocumentWritten,
    responses={201: {"model": DocumentWritten, "description": "Created."}, **error_responses(401, 409, 413, 422, 503)},
    summary="Add or replace a document",
    openapi_extra={"requestBody": {
        "required": True, "description": "The file's bytes (any encoding; HTML is reduced to text).",
        "content": {"text/plain": {"schema": {"type": "string"}, "example": "Meeting notes\n\nWe agreed to ship on Friday.\n"},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def put_document(path: NewId, request: Request, response: Response, engine: EngineDep) -> dict[str, Any]:
    """Writes the file into the corpus folder and re-indexes it, durably and atomically: searches running
    meanwhile see the old or the new state. 201 when created, 200 when replaced (also when unchanged)."""
    path = _clean(path, request)
    data = await request.body()
    written = await run_in_threadpool(engine.put_document, path, data)
    response.status_code = 201 if written.created else 200
    return written.as_dict()


@router.delete("/{path:path}", response_model=DocumentDeleted, responses=error_responses(401, 404, 422, 503),
               summary="Delete a document")
def delete_document(path: NewId, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Removes the file from the corpus folder (and folders it leaves empty) and from the index."""
    return engine.delete_document(_clean(path, request)).as_dict()
