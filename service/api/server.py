"""``python -m service serve``: load the index and the query encoder once, then run uvicorn."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Settings

if TYPE_CHECKING:
    from ..indexer import IndexReport

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serve(settings: Settings, watch: Callable[[IndexReport], None] | None = None) -> int:
    """``watch``: also keep every collection's index in step with its corpus folder, calling this after
    each sync."""
    import uvicorn

    from ..engine import Engine, StoreError
    from .app import create_app

    engine = Engine(settings)
    try:
        engine.load()
    except StoreError as exc:
        # Serve anyway: /health answers 503 and the engine picks the index up once it is built.
        print(f"warning: {exc}\n(the service starts; /health answers 503 until an index exists: "
              f"python -m service index --corpus DIR --index {settings.index})", file=sys.stderr)
    if settings.host not in LOOPBACK and settings.api_key is None:
        print(f"warning: listening on {settings.host} without an API key (set ASK_API_KEY)", file=sys.stderr)
    app = create_app(settings, engine)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    watchers = []
    if watch is not None:
        from ..watch import FolderWatcher

        watchers = FolderWatcher.for_collections(engine, on_report=watch)
        for watcher in watchers:
            watcher.start()
    watching = {1: ", watching the corpus folder"}.get(len(watchers), f", watching {len(watchers)} corpus folders")
    print(f"serving on http://{shown}:{settings.port}/  (API docs /docs, MCP /mcp)" + (watching if watchers else ""),
          file=sys.stderr, flush=True)
    previous = None
    if watchers and threading.current_thread() is threading.main_thread():
        # uvicorn re-raises SIGTERM once it has shut down; answered by the default handler, that would end
        # the process before the watcher has finished its commit. This handler lets ``run`` return instead.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", proxy_headers=False)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for watcher in watchers:
            watcher.request_stop()  # all at once: each finishes the commit in progress
        stopped = [watcher.stop() for watcher in watchers]  # every one (no short cut)
        if not all(stopped):
            print("warning: a sync was still running at shutdown; the next one resumes it", file=sys.stderr)
    return 0
