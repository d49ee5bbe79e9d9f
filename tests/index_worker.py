"""Runs an index sync in a child process so a test can SIGKILL it at chosen points.

Usage: python -m tests.index_worker CORPUS INDEX
Env:   KILL_AT=<name>:<n>  kill this process at the n-th call of a write step
       (rename, replace, write_meta, np_save, fsync_tree, cache_put; inside merges: merge_write, merge_switch,
       extend_hnsw, with ASK_HNSW_THRESHOLD low enough for graphs)
Prints "committed <snapshot> <documents>" after each commit, "done" at the end.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

from service import embed_cache, indexer, vectors
from service.config import Settings
from service.indexer import Indexer
from service.store import local as store
from service.store import merging, segments
from tests.conftest import FakeEmbedder


def _arm(kill_at: str) -> None:
    name, _, n = kill_at.partition(":")
    remaining = {"n": int(n)}

    def wrap(fn):
        def inner(*args, **kwargs):
            remaining["n"] -= 1
            if remaining["n"] == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)

        return inner

    if name == "rename":
        store.os.rename = wrap(os.rename)
    elif name == "replace":
        store.os.replace = wrap(os.replace)
    elif name == "write_meta":
        segments.write_meta = wrap(segments.write_meta)
    elif name == "np_save":
        store.np.save = wrap(np.save)
    elif name == "fsync_tree":
        segments.fsync_tree = wrap(segments.fsync_tree)
        store.fsync_tree = wrap(store.fsync_tree)
    elif name == "merge_write":
        merging.write_segment = wrap(merging.write_segment)
    elif name == "extend_hnsw":  # a merge past the HNSW threshold, adding a tail to the graph
        vectors.extend_hnsw = wrap(vectors.extend_hnsw)
    elif name == "merge_switch":
        merging._switch = wrap(merging._switch)
    elif name == "cache_put":
        embed_cache.EmbeddingCache.put_many = wrap(embed_cache.EmbeddingCache.put_many)
    else:
        raise SystemExit(f"unknown kill point {name}")


def main() -> None:
    corpus, index = Path(sys.argv[1]), Path(sys.argv[2])
    if os.environ.get("KILL_AT"):
        _arm(os.environ["KILL_AT"])
    settings = Settings(corpus=corpus, index=index, cache_dir=index.parent / "cache",
                        checkpoint_seconds=float(os.environ.get("CHECKPOINT_SECONDS", "0.03")), embed_batch_size=8,
                        segments_per_tier=3)  # many merges, so there are merges to kill

    def committed(name: str, documents: int) -> None:
        print(f"committed {name} {documents}", flush=True)

    indexer.FLUSH_TEXTS = 16  # many small flushes, so there are many commits to kill
    worker = Indexer(settings, embedder=FakeEmbedder(), progress=False, on_commit=committed)
    worker.sync(corpus)
    worker.store.settle()  # as `index` does: the merges its commits started finish before it exits
    print("done", flush=True)


if __name__ == "__main__":
    main()
