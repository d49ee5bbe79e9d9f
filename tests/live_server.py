"""Run the real app under uvicorn on a loopback port in a background thread (for API, MCP, browser tests)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from service.config import Settings


class LiveServer:
    """``with LiveServer(app) as url:`` serves ``app`` on ``127.0.0.1:<free port>`` until the block ends."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # a free port, without a race
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:  # set once the lifespan start-up has completed
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def private_index(seed_index: Path, dest: Path) -> Settings:
    """A private copy of the seed corpus and index that a test may change, pointed at its own corpus.

    The manifest records the corpus folder, so the copy is re-synced to its new place (no model
    work: every file is unchanged); writes then go to the copy, never to the shared seed index.
    """
    from service.indexer import Indexer

    shutil.copytree(seed_index, dest)
    settings = Settings(corpus=dest / "seeds", index=dest / "index", cache_dir=dest / "cache")
    report = Indexer(settings, progress=False).sync(dest / "seeds")
    assert report.chunks_embedded == 0 and report.corpus == str((dest / "seeds").resolve())
    return settings
