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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .batching import MicroBatcher
from .layout import paragraph_ids
from .layout import paragraph_windows as _paragraph_windows
from .lexical import analyze, analyze_query
from .vectors import ExactIndex

if TYPE_CHECKING:
    from .config import Settings
    from .embedding import Embedder
    from .rerank import Reranker
    from .store.base import IndexView, VectorSearch

__all__ = ["FUSIONS", "DenseQueries", "Passage", "Ranking", "Retriever", "by_paragraph", "first_per_group", "fuse",
           "paragraph_ids", "rrf", "weighted", "_paragraph_windows"]

FUSIONS = ("rrf", "weighted", "dense", "bm25")
HEADLINE_LOOKAHEAD = 10  # paragraphs past the cut searched for a headline's body paragraph
DECISIVE_RANK = 5  # decisiveness compares the best score with the one at this rank (0-based)


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


@dataclass(frozen=True, slots=True)
class Ranking:
    """Items best first with their scores (aligned arrays); equal scores rank the smaller id first."""

    ids: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Ranking:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float64))

    @classmethod
    def combine(cls, ids: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray) -> Ranking:
        """Sum the values given to each id, then rank."""
        if not len(ids):
            return cls.empty()
        unique, inverse = np.unique(np.asarray(ids, np.int64), return_inverse=True)
        sums = np.bincount(inverse.reshape(-1), weights=np.asarray(values, np.float64), minlength=len(unique))
        order = np.lexsort((unique, -sums))
        return cls(unique[order], sums[order])

    def __len__(self) -> int:
        return len(self.ids)

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.ids.tolist(), self.scores.tolist(), strict=True))


Side = tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]  # (ids, scores), best first


def rrf(rankings: Sequence[Sequence[int] | np.ndarray], k: int = 60, weights: Sequence[float] | None = None) -> Ranking:
    """Reciprocal rank fusion: sum of weight / (k + rank) over the rankings an item appears in."""
    weights = weights or [1.0] * len(rankings)
    ids = [np.asarray(r, np.int64).reshape(-1) for r in rankings]
    values = [w / (k + np.arange(1, len(r) + 1, dtype=np.float64)) for r, w in zip(ids, weights, strict=True)]
    if not ids:
        return Ranking.empty()
    return Ranking.combine(np.concatenate(ids), np.concatenate(values))


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


def weighted(dense: Side, lexical: Side, dense_weight: float, adaptive: bool = True) -> Ranking:
    """Normalised weighted fusion: min-max scale each ranking to [0, 1], then a weighted sum.

    With ``adaptive`` each side's weight is also scaled by its :func:`decisiveness` for this query
    (the two weights are then renormalised to sum to one). Rankings must be best first.
    """
    sides = [(np.asarray(ids, np.int64).reshape(-1), np.asarray(scores, np.float64).reshape(-1))
             for ids, scores in (dense, lexical)]
    weights = [dense_weight, 1.0 - dense_weight]
    if adaptive:
        raw = [w * decisiveness(scores) for w, (_ids, scores) in zip(weights, sides, strict=True)]
        total = sum(raw)
        if total > 1e-12:
            weights = [w / total for w in raw]
    return Ranking.combine(np.concatenate([ids for ids, _ in sides]),
                           np.concatenate([w * _minmax(scores) for w, (_ids, scores) in zip(weights, sides, strict=True)]))


def first_per_group(ids: np.ndarray, groups: Any) -> np.ndarray:
    """Positions of the first item of each group, in ranking order (``ids`` best first); ``groups[ids]``
    gives each id's group (an array indexed by id, or a layout's ``paragraphs``)."""
    if not len(ids):
        return np.zeros(0, np.int64)
    return np.sort(np.unique(groups[ids], return_index=True)[1])


def by_paragraph(ids: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                 para: Any) -> tuple[np.ndarray, np.ndarray]:
    """A chunk ranking (best first) as a paragraph ranking: each paragraph at its best chunk."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    first = first_per_group(ids, para)
    return para[ids[first]], np.asarray(scores, np.float64).reshape(-1)[first]


def fuse(fusion: str, dense: Side, lexical: Side, rrf_k: int = 60, dense_weight: float = 0.5,
         adaptive: bool = True) -> Ranking:
    """The items of two rankings (each best first) ranked under one fusion (``adaptive``: weighted
    fusion scales each side by its decisiveness; off, it is a plain weighted sum)."""
    if fusion == "dense":
        return Ranking.combine(*dense)
    if fusion == "bm25":
        return Ranking.combine(*lexical)
    if fusion == "weighted":
        return weighted(dense, lexical, dense_weight, adaptive)
    if fusion == "rrf":
        return rrf([dense[0], lexical[0]], rrf_k)
    raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")


Dense = tuple[np.ndarray, np.ndarray]  # (chunk ids, cosine scores), best first


def is_headline(p: Passage) -> bool:
    """Paragraph 1 standing as its document's title (the title glued to every chunk of the file)."""
    return p.paragraph == 1 and bool(p.title) and p.text.strip() == p.title.strip()


def headlines_yield(passages: Sequence[Passage], query: str) -> list[Passage]:
    """A headline ranked above a body paragraph of its own article hands its rank to the best of them
    and follows it: the headline's words are in every chunk of the article (the title is glued to
    each), so the body paragraph matched the question as well and says more than the headline (on
    the Reuters news set a headline at rank 1 took the place of the answering paragraph for 20 of
    210 questions). Only a body paragraph that holds a question term of its own qualifies (not a
    "Source link" line that matched through the glued title alone). Scores keep their order;
    documents keep their ranks."""
    terms = set(analyze_query(query))
    out: list[Passage] = []
    taken: set[int] = set()
    for i, p in enumerate(passages):
        if i in taken:
            continue
        taken.add(i)
        if is_headline(p):
            j = next((j for j in range(i + 1, len(passages)) if j not in taken and passages[j].source == p.source
                      and terms & set(analyze(passages[j].text))), None)
            if j is not None:
                taken.add(j)
                out.append(passages[j])
        out.append(p)
    return [replace(p, score=q.score) for p, q in zip(out, passages, strict=True)]


def _no_candidates() -> Dense:
    return np.zeros(0, np.int64), np.zeros(0, np.float32)


def _dense_row(ids: np.ndarray, scores: np.ndarray) -> Dense:
    """One query's row of a vector search, without the -1 slots HNSW pads with when it finds fewer."""
    keep = ids >= 0
    return ids[keep].astype(np.int64), scores[keep]


class DenseQueries:
    """Query vectors and their dense candidates, concurrent requests coalesced (``service.batching``).

    Embedding a query and searching the vectors are batched as one step: the requests that arrive
    while a batch runs share one encoder run and one matrix product for the exact search (which
    reads every vector once per batch instead of once per query). Batching the two steps
    separately would start the search of each batch with whichever query reached it first, alone.
    With an embedder that can search (``OnnxEmbedder.search``) an exact index is searched in the
    same onnxruntime run that embeds the batch.
    """

    def __init__(self, embedder: Embedder, max_batch: int = 64) -> None:
        self.embedder = embedder
        self._batcher: MicroBatcher[tuple[str, VectorSearch, int], tuple[np.ndarray, Dense]] = MicroBatcher(
            self._run, max_batch
        )

    def __call__(self, query: str, index: VectorSearch, n: int) -> tuple[np.ndarray, Dense]:
        """The query's vector and its ``n`` best chunks in ``index`` (none when ``n`` is 0)."""
        return self._batcher((query, index, n))

    def _run(self, items: list[tuple[str, VectorSearch, int]]) -> list[tuple[np.ndarray, Dense]]:
        groups: dict[int, list[int]] = {}  # requests may hold different snapshots' indexes
        for i, (_query, index, _n) in enumerate(items):
            groups.setdefault(id(index), []).append(i)
        out: list[tuple[np.ndarray, Dense]] = [None] * len(items)  # type: ignore[list-item]
        search = getattr(self.embedder, "search", None)  # OnnxEmbedder: embed and search in one run
        for members in groups.values():
            index = items[members[0]][1]
            texts = [items[i][0] for i in members]
            n = max(items[i][2] for i in members)
            if n > 0 and search is not None and isinstance(index, ExactIndex):  # one ONNX run for both
                vectors, ids, scores = search(texts, index.matrix, n)
            else:
                vectors = self.embedder.embed(texts)
                ids, scores = index.search(vectors, n) if n > 0 else (None, None)
            for row, i in enumerate(members):
                k = items[i][2]
                dense = _dense_row(ids[row, :k], scores[row, :k]) if k > 0 else _no_candidates()
                out[i] = (vectors[row], dense)
        return out


class Retriever:
    """Dense and lexical candidates from an index view, fused at the paragraph level."""

    def __init__(self, view: IndexView, fusion: str = "rrf", candidates: int = 100, rrf_k: int = 60,
                 dense_weight: float = 0.5, reranker: Reranker | None = None, rerank_depth: int = 20,
                 adaptive: bool = True, lexical_extras: Sequence[str] = (), headlines_yield: bool = True,
                 ) -> None:
        self.view = view
        self.fusion = fusion
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self.adaptive = adaptive  # weighted fusion adapts its weights per query (off: the naive hybrid)
        # Query-level BM25 additions (``service.expansion``): "rm3" (feedback terms), "proximity".
        self.lexical_extras = tuple(lexical_extras)
        self.headlines_yield = headlines_yield  # see :func:`headlines_yield`

    @classmethod
    def from_settings(cls, view: IndexView, settings: Settings) -> Retriever:
        """The retriever the settings describe (fusion, candidates, reranker)."""
        reranker = None
        if settings.reranker:
            from .rerank import load_reranker

            reranker = load_reranker(settings.reranker, settings.offline)
        return cls(view, settings.fusion, settings.candidates, settings.rrf_k, settings.dense_weight,
                   reranker, settings.rerank_depth, headlines_yield=settings.headlines_yield)

    def dense_candidates(self, fusion: str | None = None) -> int:
        """How many dense candidates a search under ``fusion`` uses (0: it needs none)."""
        return 0 if (fusion or self.fusion) == "bm25" else min(self.candidates, self.view.size)

    def candidates_for(self, query: str, query_vector: np.ndarray, fusion: str, dense: Dense | None = None
                       ) -> tuple[Dense, Dense]:
        """The (chunk ids, scores) lists, best first, of the dense and the lexical retriever.

        ``dense`` is the dense list when the caller searched the vectors already (``DenseQueries``).
        """
        view = self.view
        n = min(self.candidates, view.size)
        lexical = _no_candidates()
        if fusion == "bm25":
            dense = _no_candidates()
        elif dense is None:
            ids, scores = view.vectors.search(query_vector[None, :], n)
            dense = _dense_row(ids[0], scores[0])
        if fusion != "dense":
            lexical = self._lexical(query, n)
        return dense, lexical

    def _lexical(self, query: str, n: int) -> Dense:
        extras = self.lexical_extras
        if not extras:
            return self.view.lexical.search(query, n)
        from .expansion import proximity_rescore, rm3_query

        lexical = self.view.lexical.search(rm3_query(self.view, query) if "rm3" in extras else query, n)
        for extra in extras:  # "proximity" or "proximity:<boost>"
            name, _, boost = extra.partition(":")
            if name == "proximity":
                lexical = proximity_rescore(self.view, query, lexical, float(boost or 0.25))
        return lexical

    def search(self, query: str, query_vector: np.ndarray, k: int, fusion: str | None = None,
               rerank: bool = True, dense: Dense | None = None) -> list[Passage]:
        """The best ``k`` paragraphs for the query, each as its best-matching chunk (``dense``: the
        query's dense candidates, when already searched)."""
        view = self.view
        if view.size == 0 or k <= 0:
            return []
        fusion = fusion or self.fusion
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
        dense, lexical = self.candidates_for(query, query_vector, fusion, dense)
        layout = view.layout(np.concatenate([dense[0], lexical[0]]))
        para = layout.paragraphs
        lexical_paragraphs = by_paragraph(*lexical, para)
        fused = fuse(fusion, by_paragraph(*dense, para), lexical_paragraphs, self.rrf_k, self.dense_weight,
                     self.adaptive)
        reranker = self.reranker if rerank else None
        depth = max(k, self.rerank_depth) if reranker is not None else k
        # A headline's body paragraphs may rank below the cut: look a little further for them.
        fetch = depth + HEADLINE_LOOKAHEAD if self.headlines_yield else depth
        top_paragraphs = fused.ids[:fetch].tolist()
        # The best chunk of a paragraph: the best chunk-level fused score; then the window holding it.
        chunk_fused = fuse(fusion, dense, lexical, self.rrf_k, self.dense_weight, self.adaptive)
        firsts = chunk_fused.ids[first_per_group(chunk_fused.ids, para)]
        best_of = dict(zip(para[firsts].tolist(), firsts.tolist(), strict=True))
        top = layout.windows_holding([best_of[p] for p in top_paragraphs], chunk_fused.as_dict)
        lexical_best = dict(zip(lexical_paragraphs[0].tolist(), lexical_paragraphs[1].tolist(), strict=True))
        cosine = view.similarity(query_vector, top).tolist()
        rows = {r.id: r for r in view.chunk_rows(top)}
        passages = [
            Passage(
                chunk_id=cid, source=rows[cid].source, title=rows[cid].title, paragraph=rows[cid].paragraph,
                text=rows[cid].text, char_start=rows[cid].char_start, char_end=rows[cid].char_end,
                score=float(score), dense=cos, lexical=float(lexical_best.get(p, 0.0)),
            )
            for p, cid, score, cos in zip(top_paragraphs, top, fused.scores[: len(top)].tolist(), cosine, strict=True)
            if cid in rows
        ]
        if self.headlines_yield:
            passages = headlines_yield(passages, query)[:depth]
        if reranker is not None and passages:
            return reranker.rerank(query, passages, k)
        return passages
