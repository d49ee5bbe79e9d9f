"""Embeddings computed during an index run but not yet committed in a snapshot.

Each batch is committed to SQLite as soon as it is embedded, so a run killed halfway resumes
without embedding those chunks again. The cache is keyed by the model's weights hash and the
exact text embedded, and is emptied once a run commits its final snapshot.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _key(model_sha256: str, text: str) -> str:
    return hashlib.sha256(f"{model_sha256}\0{text}".encode()).hexdigest()


class EmbeddingCache:
    def __init__(self, path: Path, model_sha256: str, dim: int) -> None:
        self.path = path
        self.model_sha256 = model_sha256
        self.dim = dim
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError:  # a torn cache is only a cache: start again
            path.unlink(missing_ok=True)
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        return db

    def get_many(self, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Cached vectors by position in ``texts``."""
        keys = [_key(self.model_sha256, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            rows = self._db.execute(
                f"SELECT key, vector FROM embeddings WHERE key IN ({','.join('?' * len(part))})", part
            ).fetchall()
            for key, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape == (self.dim,):
                    found[key] = vec
        return {i: found[k] for i, k in enumerate(keys) if k in found}

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [(_key(self.model_sha256, t), np.asarray(v, np.float32).tobytes()) for t, v in zip(texts, vectors, strict=True)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)", rows)

    def clear(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM embeddings")
        self._db.execute("VACUUM")

    def close(self) -> None:
        self._db.close()
