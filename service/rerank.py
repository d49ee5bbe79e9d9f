"""Optional cross-encoder reranking of the fused results.

Off by default: no cross-encoder ships on PyPI. Name a sentence-transformers ``CrossEncoder`` model
in ``ASK_RERANKER`` (a local folder, or a hub id that is already in the Hugging Face cache; with
``ASK_OFFLINE=false`` a hub id is downloaded) and the retriever rescores its best
``ASK_RERANK_DEPTH`` paragraphs with it, reading the question and each passage (headed by its
document title) together, and returns them in the cross-encoder's order. The model is loaded on
the first query that needs it (torch is imported then, not before), once per process.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .embedding import ModelError, resolve_model_dir

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

    from .retrieval import Passage

log = logging.getLogger(__name__)


def resolve_reranker_dir(name: str, offline: bool = True) -> Path:
    """A local folder for a cross-encoder: a folder, or a hub id (from the local cache when offline)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if offline:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(name, local_files_only=True))
        except Exception as exc:  # any hub error means "not available offline"
            raise ModelError(
                f"reranker {name!r} is neither a local folder nor in the local model cache, and offline mode "
                "is on (set ASK_OFFLINE=false to allow downloading it, or point ASK_RERANKER at a folder)"
            ) from exc
    return resolve_model_dir(name, offline=False)


def passage_text(p: Passage) -> str:
    """What the cross-encoder reads for a passage: its document title, then the passage."""
    return f"{p.title}\n{p.text}" if p.title and p.paragraph != 1 else p.text


class Reranker:
    def __init__(self, model: str, offline: bool = True, batch_size: int = 16) -> None:
        self.name = model
        self.offline = offline
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @cached_property
    def model(self) -> CrossEncoder:  # imported lazily (slow import)
        from sentence_transformers import CrossEncoder
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        path = resolve_reranker_dir(self.name, self.offline)
        log.info("loading the reranker %s", path)
        return CrossEncoder(str(path), device="cpu", local_files_only=True)

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One relevance score per text (higher is better)."""
        if not texts:
            return np.zeros(0, np.float32)
        import torch

        with self._lock, torch.inference_mode():
            out = self.model.predict(
                [(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)[:, -1]

    def rerank(self, query: str, passages: Sequence[Passage], k: int | None = None) -> list[Passage]:
        """``passages`` in the cross-encoder's order (ties keep their order), scored by it."""
        scores = self.scores(query, [passage_text(p) for p in passages])
        order = sorted(range(len(passages)), key=lambda i: (-float(scores[i]), i))
        out = [dataclasses.replace(passages[i], score=float(scores[i])) for i in order]
        return out if k is None else out[:k]


@lru_cache(maxsize=4)
def load_reranker(model: str, offline: bool = True) -> Reranker:
    """One reranker per model and process (the model itself loads on first use)."""
    return Reranker(model, offline)
