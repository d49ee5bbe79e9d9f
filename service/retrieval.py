"""Dense and lexical search over one snapshot, fusion at the paragraph level, and reranking.

``k`` counts paragraphs the user sees. Each retriever's chunk ranking is first collapsed to a
paragraph ranking (a paragraph ranks where its best chunk ranks, with that chunk's score), and
the two paragraph rankings are fused. Fusing paragraphs rather than chunks matters when a long
paragraph is split into overlapping windows: the window that matches the question's words and the
window that matches its meaning may differ, and the paragraph deserves credit from both. The
passage returned for a paragraph is its chunk with the best chunk-level fused score.

Fusions: ``rrf`` (reciprocal rank fusion), ``weighted`` (min-max normalised scores, weighted sum),
``dense`` or ``bm25`` alone. An optional cross-encoder (``service.rerank``) reorders the best
``rerank_depth`` paragraphs.

A paragraph's chunks are windows and, for paragraphs of several sentences, the sentences too (see
``service.chunking``). When the best chunk is a sentence, the passage shown is the window holding
it (the best-scoring one when windows overlap), so a citation always reads as a passage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import vectors as vector_index
from .store import Snapshot

if TYPE_CHECKING:
    from .config import Settings
    from .rerank import Reranker

FUSIONS = ("rrf", "weighted", "dense", "bm25")
DECISIVE_RANK = 5  # decisiveness compares the best score with the one at this rank (0-based)
MAX_PARAGRAPH_CHUNKS = 256  # chunks of one paragraph read to find the window around its best chunk


@dataclass(frozen=True, slots=True)
class Passage:
    chunk_id: int
    source: str
    title: str
    paragraph: int
    text: str
    char_start: int
    char_end: int
    score: float  # the fused score that ranks results (the cross-encoder's score when reranked)
    dense: float  # cosine similarity of the query and this passage (the chunk shown)
    lexical: float  # BM25 score of the paragraph's best chunk (0 when no query term matches)


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


def decisiveness(scores: np.ndarray, k: int = DECISIVE_RANK) -> float:
    """How far a ranking's best result stands out: (s1 - s_k) / (s1 - s_last), in [0, 1].

    A retriever whose top scores are about as good as its tail has little to say about this query
    (dense similarity on a question full of names; BM25 on a question made of common words).
    Rankings of fewer than two results count as fully decisive.
    """
    if len(scores) < 2:
        return 1.0
    spread = float(scores[0] - scores[-1])
    if spread < 1e-12:
        return 0.0
    return float(scores[0] - scores[min(k, len(scores) - 1)]) / spread


def weighted(
    dense: tuple[Sequence[int], np.ndarray], lexical: tuple[Sequence[int], np.ndarray], dense_weight: float,
    adaptive: bool = True,
) -> dict[int, float]:
    """Normalised weighted fusion: min-max scale each ranking to [0, 1], then a weighted sum.

    With ``adaptive`` each side's weight is also scaled by its :func:`decisiveness` for this query
    (the two weights are then renormalised to sum to one). Rankings must be best first.
    """
    sides = [(dense, dense_weight), (lexical, 1.0 - dense_weight)]
    if adaptive:
        raw = [w * decisiveness(np.asarray(scores, dtype=np.float64)) for (_ids, scores), w in sides]
        total = sum(raw)
        if total > 1e-12:
            sides = [(side, w / total) for (side, _w), w in zip(sides, raw, strict=True)]
    fused: dict[int, float] = {}
    for (ids, scores), w in sides:
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


def paragraph_ids(chunk_doc: np.ndarray, chunk_paragraph: np.ndarray) -> np.ndarray:
    """A dense id per (document, paragraph) for every chunk; ids follow (document, paragraph) order."""
    if len(chunk_doc) == 0:
        return np.zeros(0, np.int64)
    key = (np.asarray(chunk_doc, np.int64) << 32) | np.asarray(chunk_paragraph, np.int64)
    return np.unique(key, return_inverse=True)[1].astype(np.int64).reshape(-1)


def by_paragraph(ids: Sequence[int], scores: Sequence[float], para: np.ndarray) -> tuple[list[int], np.ndarray]:
    """A chunk ranking (best first) as a paragraph ranking: each paragraph at its best chunk."""
    seen: set[int] = set()
    out_ids: list[int] = []
    out_scores: list[float] = []
    for cid, s in zip(ids, scores, strict=True):
        p = int(para[int(cid)])
        if p not in seen:
            seen.add(p)
            out_ids.append(p)
            out_scores.append(float(s))
    return out_ids, np.asarray(out_scores, dtype=np.float64)


def fuse(
    fusion: str,
    dense: tuple[Sequence[int], np.ndarray],
    lexical: tuple[Sequence[int], np.ndarray],
    rrf_k: int = 60,
    dense_weight: float = 0.5,
) -> dict[int, float]:
    """Scores of the items of two rankings (each best first) under one fusion."""
    if fusion == "dense":
        return {int(i): float(s) for i, s in zip(*dense, strict=True)}
    if fusion == "bm25":
        return {int(i): float(s) for i, s in zip(*lexical, strict=True)}
    if fusion == "weighted":
        return weighted(dense, lexical, dense_weight)
    if fusion == "rrf":
        return rrf([dense[0], lexical[0]], rrf_k)
    raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")


class Retriever:
    def __init__(self, snapshot: Snapshot, fusion: str = "rrf", candidates: int = 100, rrf_k: int = 60,
                 dense_weight: float = 0.5, reranker: Reranker | None = None, rerank_depth: int = 20) -> None:
        self.snapshot = snapshot
        self.fusion = fusion
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self._matrix = np.load(snapshot.path / "vectors.npy", mmap_mode="r")
        self._para = paragraph_ids(snapshot.chunk_doc, snapshot.chunk_paragraph)
        # The chunks of paragraph p are _by_para[_bounds[p]:_bounds[p + 1]], in chunk (text) order.
        self._by_para = np.argsort(self._para, kind="stable")
        self._bounds = np.searchsorted(self._para[self._by_para], np.arange(int(self._para.max(initial=-1)) + 2))

    @classmethod
    def from_settings(cls, snapshot: Snapshot, settings: Settings) -> Retriever:
        """The retriever the settings describe (fusion, candidates, reranker)."""
        reranker = None
        if settings.reranker:
            from .rerank import load_reranker

            reranker = load_reranker(settings.reranker, settings.offline)
        return cls(snapshot, settings.fusion, settings.candidates, settings.rrf_k, settings.dense_weight,
                   reranker, settings.rerank_depth)

    def dense_scores(self, query_vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, np.float32)
        return np.asarray(self._matrix[np.asarray(ids, dtype=np.int64)] @ query_vector, dtype=np.float32)

    def _windows(self, paragraphs: Sequence[int], best: dict[int, int], chunk_fused: dict[int, float]) -> list[int]:
        """For each paragraph, the window (a chunk no other chunk contains) holding its best chunk."""
        wanted: dict[int, np.ndarray] = {}
        for p in paragraphs:
            ids = self._by_para[self._bounds[p] : self._bounds[p + 1]]
            if len(ids) > MAX_PARAGRAPH_CHUNKS:  # chunks are in text order: look around the best one
                at = int(np.searchsorted(ids, best[p]))
                ids = ids[max(0, at - MAX_PARAGRAPH_CHUNKS // 2) : at + MAX_PARAGRAPH_CHUNKS // 2]
            wanted[p] = ids
        if all(len(ids) == 1 for ids in wanted.values()):
            return [best[p] for p in paragraphs]
        spans = {r.id: (r.char_start, r.char_end) for r in self.snapshot.chunk_rows(
            np.concatenate(list(wanted.values())).tolist())}
        out = []
        for p in paragraphs:
            a, b = spans.get(best[p], (0, 0))
            chunks = sorted((spans[int(c)][0], -spans[int(c)][1], int(c)) for c in wanted[p] if int(c) in spans)
            holding: list[int] = []
            reach = -1
            for start, neg_end, cid in chunks:
                if -neg_end > reach:  # not inside an earlier chunk: a window
                    reach = -neg_end
                    if start <= a and b <= -neg_end:
                        holding.append(cid)
            out.append(min(holding, key=lambda c: (-chunk_fused.get(c, -np.inf), c)) if holding else best[p])
        return out

    def candidates_for(self, query: str, query_vector: np.ndarray, fusion: str, n: int | None = None
                       ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The (chunk ids, scores) lists, best first, of the dense and the lexical retriever."""
        snap = self.snapshot
        n = min(n or self.candidates, snap.size)
        dense = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        lexical = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        if fusion != "bm25":
            ids, scores = vector_index.search(snap.vectors, query_vector[None, :], n)
            keep = ids[0] >= 0
            dense = (ids[0][keep].astype(np.int64), scores[0][keep])
        if fusion != "dense":
            lexical = snap.lexical.search(query, n)
        return dense, lexical

    def search(self, query: str, query_vector: np.ndarray, k: int, fusion: str | None = None,
               rerank: bool = True) -> list[Passage]:
        """The best ``k`` paragraphs for the query, each as its best-matching chunk."""
        snap = self.snapshot
        if snap.size == 0 or k <= 0:
            return []
        fusion = fusion or self.fusion
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
        dense, lexical = self.candidates_for(query, query_vector, fusion)
        para = self._para
        fused = fuse(fusion, by_paragraph(*dense, para), by_paragraph(*lexical, para), self.rrf_k, self.dense_weight)
        reranker = self.reranker if rerank else None
        depth = max(k, self.rerank_depth) if reranker is not None else k
        top_paragraphs = ranked(fused)[:depth]
        # The best chunk of a paragraph: the best chunk-level fused score; then the window holding it.
        chunk_fused = fuse(fusion, dense, lexical, self.rrf_k, self.dense_weight)
        best: dict[int, int] = {}
        for cid in ranked(chunk_fused):
            best.setdefault(int(para[cid]), cid)
        top = self._windows(top_paragraphs, best, chunk_fused)
        lexical_best = dict(zip(*by_paragraph(*lexical, para), strict=True))
        cosine = dict(zip(top, self.dense_scores(query_vector, top).tolist(), strict=True))
        rows = {r.id: r for r in snap.chunk_rows(top)}
        passages = [
            Passage(
                chunk_id=cid, source=rows[cid].source, title=rows[cid].title, paragraph=rows[cid].paragraph,
                text=rows[cid].text, char_start=rows[cid].char_start, char_end=rows[cid].char_end,
                score=fused[p], dense=cosine[cid], lexical=float(lexical_best.get(p, 0.0)),
            )
            for p, cid in zip(top_paragraphs, top, strict=True)
            if cid in rows
        ]
        if reranker is not None and passages:
            return reranker.rerank(query, passages, k)
        return passages
