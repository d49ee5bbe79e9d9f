"""Make a live local snapshot look as an older format wrote it, for the tests that check older
indexes still open (and are upgraded by the next ``index`` run)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from service.lexical import LexicalIndex
from service.store.base import ChunkRecord, DocRecord
from service.store.local import LocalStore, current_name, file_record, open_snapshot
from service.store.segments import write_meta


def as_older_format(index_dir: Path, version: int, drop_column: str | None,
                    lexical_text: Callable[[DocRecord, ChunkRecord], str], **chunking: Any) -> Path:
    """Rewrite the live snapshot of ``index_dir`` (segments; once this process's background merges
    are done) as formats 1 to 4 kept it: every file in
    the snapshot folder (exact search) and BM25 weights precomputed by bm25s (from ``lexical_text``, the indexer's
    rule). Then drop ``documents.<drop_column>`` (a column that a later format added), record
    ``version``, update the manifest's chunking record with ``chunking`` (merged one level deep),
    and redo the checksums so the snapshot still verifies. Returns the snapshot's folder."""
    LocalStore(index_dir, lexical_text=lexical_text).settle()
    name = current_name(index_dir)
    assert name is not None
    folder = index_dir / name
    manifest = json.loads((folder / "manifest.json").read_text())
    if "segments" in manifest:
        docs, chunks, vectors = open_snapshot(folder.parent).all_records()
        del manifest["segments"]
        write_meta(folder / "meta.sqlite", docs, chunks)
        np.save(folder / "vectors.npy", vectors)
        LexicalIndex.write([lexical_text(docs[c.doc], c) for c in chunks], folder / "bm25")
        files = ("meta.sqlite", "vectors.npy")
        manifest.update(vector_index="exact", files={f: file_record(folder / f) for f in files})
    meta = folder / "meta.sqlite"
    if drop_column:
        con = sqlite3.connect(meta)
        con.execute(f"ALTER TABLE documents DROP COLUMN {drop_column}")
        con.commit()
        con.close()
    manifest["format_version"] = version
    if version == 1 and manifest["vector_index"] == "exact":
        manifest["vector_index"] = "flat"  # version 1's name for it
    for key, value in chunking.items():
        current = manifest["chunking"].get(key)
        manifest["chunking"][key] = {**current, **value} if isinstance(current, dict) else value
    manifest["files"]["meta.sqlite"] = file_record(meta)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
