"""Where an index lives: the seam (``base``) and its stores (``local`` snapshots, ``postgres``).

``from service import store`` gives the seam's types and errors, and the local store's functions
that tools and tests use directly (``open_snapshot``, ``writer_lock``, …).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import (
    ChunkRecord,
    ChunkRow,
    DocRecord,
    IndexBusy,
    IndexCorrupt,
    IndexIncompatible,
    IndexMissing,
    IndexWriteFailed,
    StoreError,
    StoreUnavailable,
)
from .local import (
    CURRENT,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    Snapshot,
    commit_manifest,
    current_name,
    open_snapshot,
    read_manifest,
    verify_files,
    write_error,
    writer_lock,
)

if TYPE_CHECKING:
    from ..config import Settings
    from .base import Store
    from .local import LexicalText


def open_store(settings: Settings, index_dir: Path | None = None, *, model_sha256: str | None = None,
               full_check: bool = True, lexical_text: LexicalText | None = None, read: bool = False) -> Store:
    """The store the settings name: ``ASK_STORE`` (a ``postgresql://`` URL; ``read``: the replica
    of ``ASK_STORE_READ`` when set), else the local snapshots in ``index_dir`` (default ``ASK_INDEX``).
    A collection (``settings.collection``) has its own schema in the database."""
    url = settings.store_read if read and settings.store_read else settings.store
    if url:
        from .postgres import PostgresStore

        return PostgresStore(url, model_sha256=model_sha256, pool_size=settings.store_pool_size,
                             namespace=settings.collection if settings.collection != "default" else None)
    from .local import LocalStore

    return LocalStore(Path(index_dir or settings.index), model_sha256, full_check, settings.hnsw_threshold,
                      lexical_text, settings.segments_per_tier, graph_tail_share=settings.graph_tail_share)


__all__ = [
    "CURRENT", "FORMAT_VERSION", "READABLE_VERSIONS", "ChunkRecord", "ChunkRow", "DocRecord", "IndexBusy",
    "IndexCorrupt", "IndexIncompatible", "IndexMissing", "IndexWriteFailed", "Snapshot", "StoreError",
    "StoreUnavailable", "current_name", "open_snapshot", "read_manifest", "verify_files", "write_error",
    "commit_manifest", "writer_lock", "open_store",
]
