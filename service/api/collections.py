"""Collections: ``GET /v1/collections`` lists them; every search, document and health route is also
served for one collection under ``/v1/collections/{collection}/…`` (``app.py`` mounts the same
routers there; ``deps`` picks the collection's engine, 404 ``collection_not_found`` for an unknown one)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.routing import APIRoute

from .deps import EngineDep
from .schemas import CollectionList, error_responses

PREFIX = "/v1/collections/{collection}"

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.get("", response_model=CollectionList, responses=error_responses(401),
            summary="List the collections")
def list_collections(engine: EngineDep) -> dict[str, Any]:
    """The default collection (today's routes) first, then those of `ASK_COLLECTIONS`, with their counts."""
    return {"collections": [c.as_dict() for c in engine.collections()]}


def rebased(router: APIRouter, old_prefix: str) -> APIRouter:
    """``router``'s routes again with ``old_prefix`` of their paths replaced by ``PREFIX``: each route
    keeps a full path of its own (the metrics label requests by it), tagged ``collections``."""
    out = APIRouter()
    for route in router.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith(old_prefix):
            raise ValueError(f"cannot serve {route!r} per collection")
        out.add_api_route(
            PREFIX + route.path.removeprefix(old_prefix), route.endpoint, methods=sorted(route.methods or ()),
            response_model=route.response_model, status_code=route.status_code, tags=[*route.tags, "collections"],
            dependencies=list(route.dependencies), summary=route.summary and f"{route.summary} (one collection)",
            description=route.description, responses=route.responses, openapi_extra=route.openapi_extra,
            name=f"collection_{route.name}", response_class=route.response_class,
            include_in_schema=route.include_in_schema)
    return out


def collection_param(
    collection: Annotated[str, PathParam(description="A collection's name (`GET /v1/collections` lists them).",
                                         examples=["default"])],
) -> None:
    """Declares the collection path parameter of the routes under ``PREFIX`` (the engine dependency
    reads it; an unknown name is 404 ``collection_not_found``)."""
