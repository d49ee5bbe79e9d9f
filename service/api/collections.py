"""Collections: ``GET /v1/collections`` lists them; every search, document and health route is also
served for one collection under ``/v1/collections/{collection}/…`` (``app.py`` mounts the same
routers there; ``deps`` picks the collection's engine, 404 ``collection_not_found`` for an unknown one)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from .deps import EngineDep
from .schemas import CollectionList, error_responses

PREFIX = "/v1/collections/{collection}"

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.get("", response_model=CollectionList, responses=error_responses(401),
            summary="List the collections")
def list_collections(engine: EngineDep) -> dict[str, Any]:
    """The default collection (today's routes) first, then those of `ASK_COLLECTIONS`, with their counts."""
    return {"collections": [c.as_dict() for c in engine.collections()]}


def collection_param(
    collection: Annotated[str, PathParam(description="A collection's name (`GET /v1/collections` lists them).",
                                         examples=["default"])],
) -> None:
    """Declares the collection path parameter of the routes under ``PREFIX`` (the engine dependency
    reads it; an unknown name is 404 ``collection_not_found``)."""
