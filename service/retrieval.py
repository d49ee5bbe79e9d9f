"""Dense and lexical search over one snapshot, fusion, and collapse to paragraphs.

``k`` counts paragraphs the user sees: chunks of the same paragraph (overlapping windows of a long
paragraph) are collapsed to the best one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import vectors as vector_index
from .store import Snapshot


@dataclass(frozen=True, slots=True)
class Passage:
    chunk_id: int
    source: str
    title: str
    paragraph: int
    text: str
    char_start: int
    char_end: int
    score: float  # the fused score that ranks results
    dense: float  # cosine similarity of the query and the chunk
    lexical: float  # BM25 score (0 when no query term matches)


def rrf(rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None) -> dict[int, float]:
    """Reciprocal rank fusion: sum of weight / (k + rank) over the rankings an item appears in."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            fused[int(item)] = fused.get(int(item), 0.0) + w / (k + rank)
    return fused


def _minmax(scores: np.ndarray) -> np.ndarray:
    if len(scores) == 0:
        return scores
    lo, hi = float(scores.min()), float(scores.max())
    return np.ones_like(scores) if hi - lo < 1e-12 else (scores - lo) / (hi - lo)


def weighted(
    dense: tuple[Sequence[int], np.ndarray], lexical: tuple[Sequence[int], np.ndarray], dense_weight: float
) -> dict[int, float]:
    """Normalised weighted fusion: min-max scale each list to [0, 1], then a weighted sum."""
    fused: dict[int, float] = {}
    for (ids, scores), w in ((dense, dense_weight), (lexical, 1.0 - dense_weight)):
        for item, s in zip(ids, _minmax(np.asarray(scores, dtype=np.float64)), strict=True):
            fused[int(item)] = fused.get(int(item), 0.0) + w * float(s)
    return fused


def ranked(fused: dict[int, float]) -> list[int]:
    """Items by descending score; ties broken by the smaller id, so the order is deterministic."""
    return sorted(fused, key=lambda i: (-fused[i], i))


def collapse(order: Sequence[int], chunk_doc: np.ndarray, chunk_paragraph: np.ndarray, k: int) -> list[int]:
    """Keep the first (best) chunk of each (document, paragraph), up to ``k`` of them."""
    seen: set[tuple[int, int]] = set()
    out: list[int] = []
    for cid in order:
        key = (int(chunk_doc[cid]), int(chunk_paragraph[cid]))
        if key in seen:
            continue
        seen.add(key)
        out.append(int(cid))
        if len(out) == k:
            break
    return out


class Retriever:
    def __init__(self, snapshot: Snapshot, fusion: str = "rrf", candidates: int = 100, rrf_k: int = 60,
                 dense_weight: float = 0.5) -> None:
        self.snapshot = snapshot
        self.fusion = fusion
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        self._matrix = np.load(snapshot.path / "vectors.npy", mmap_mode="r")

    def dense_scores(self, query_vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, np.float32)
        return np.asarray(self._matrix[np.asarray(ids, dtype=np.int64)] @ query_vector, dtype=np.float32)

    def search(self, query: str, query_vector: np.ndarray, k: int, fusion: str | None = None) -> list[Passage]:
        snap = self.snapshot
        if snap.size == 0:
            return []
        fusion = fusion or self.fusion
        n = min(self.candidates, snap.size)
        d_ids: np.ndarray = np.zeros(0, np.int64)
        d_scores: np.ndarray = np.zeros(0, np.float32)
        l_ids: np.ndarray = np.zeros(0, np.int64)
        l_scores: np.ndarray = np.zeros(0, np.float32)
        if fusion != "bm25":
            ids, scores = vector_index.search(snap.vectors, query_vector[None, :], n)
            keep = ids[0] >= 0
            d_ids, d_scores = ids[0][keep], scores[0][keep]
        if fusion != "dense":
            l_ids, l_scores = snap.lexical.search(query, n)
        if fusion == "dense":
            fused = {int(i): float(s) for i, s in zip(d_ids, d_scores, strict=True)}
        elif fusion == "bm25":
            fused = {int(i): float(s) for i, s in zip(l_ids, l_scores, strict=True)}
        elif fusion == "weighted":
            fused = weighted((d_ids, d_scores), (l_ids, l_scores), self.dense_weight)
        else:
            fused = rrf([d_ids, l_ids], self.rrf_k)
        top = collapse(ranked(fused), snap.chunk_doc, snap.chunk_paragraph, k)
        lexical = {int(i): float(s) for i, s in zip(l_ids, l_scores, strict=True)}
        dense = dict(zip(top, self.dense_scores(query_vector, top).tolist(), strict=True))
        rows = {r.id: r for r in snap.chunk_rows(top)}
        return [
            Passage(
                chunk_id=cid, source=rows[cid].source, title=rows[cid].title, paragraph=rows[cid].paragraph,
                text=rows[cid].text, char_start=rows[cid].char_start, char_end=rows[cid].char_end,
                score=fused[cid], dense=dense[cid], lexical=lexical.get(cid, 0.0),
            )
            for cid in top
            if cid in rows
        ]
