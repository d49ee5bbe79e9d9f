"""What the routers depend on, taken from the app they are mounted in (``app.state``).

The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its threadpool, a hop
that a search should not pay for reading an attribute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from ..config import Settings
from ..engine import CollectionNotFound, Engine
from .errors import ApiError

T = TypeVar("T")


class QueryThreads:
    """Threads for the engine's query calls, awaited from ``async`` endpoints.

    A plain ``def`` endpoint reaches Starlette's threadpool through AnyIO (a capacity limiter, a
    cancel scope and its worker queue); ``loop.run_in_executor`` on a pool of our own is a lighter
    hop, about 0.2 ms less per query on 2 cores. There are enough threads for every concurrent query
    to wait in the engine's micro-batcher (``service.batching``) while one batch runs.
    """

    def __init__(self, threads: int = 40) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ask-query")

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _engine(request: Request) -> Engine:
    """The default collection's engine, or the one a ``/v1/collections/{collection}/…`` route names."""
    engine: Engine = request.app.state.engine
    name = request.path_params.get("collection")
    if name is None:
        return engine
    try:
        return engine.collection(name)
    except CollectionNotFound as exc:
        raise ApiError(404, "collection_not_found", str(exc)) from None


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _threads(request: Request) -> QueryThreads:
    threads: QueryThreads = request.app.state.query_threads
    return threads


EngineDep = Annotated[Engine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]
ThreadsDep = Annotated[QueryThreads, Depends(_threads)]
