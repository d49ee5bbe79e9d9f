"""``python -m service serve``: load the index and the query encoder once, then run uvicorn."""

from __future__ import annotations

import logging
import sys

from ..config import Settings

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serve(settings: Settings) -> int:
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
    print(f"serving on http://{shown}:{settings.port}/  (API docs /docs, MCP /mcp)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", proxy_headers=False)
    return 0
