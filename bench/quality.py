"""Retrieval and answer quality, measured through the service's own pipeline.

    python -m bench.quality            # everything (make bench-quality)
    python -m bench.quality --quick    # a subset, for a fast look
    python -m bench.quality --stores local,postgresql               # also the PostgreSQL store
    python -m bench.quality --stores local,postgresql --only-stores  # only the store comparison

Each data set is written as a folder of article files (``bench/datasets.py``), indexed with the
project's own :class:`service.indexer.Indexer`, and queried with the same query encoder (ONNX) and
:class:`service.retrieval.Retriever` the engine uses. BM25 alone, dense alone and both fusions run
over one index in one run, so the rows of the table are comparable.

* SciFact: nDCG@10 and recall@100 over documents (a document ranks where its best paragraph ranks).
  nDCG@10 comes from the default settings; recall@100 from a deeper search (more candidates).
* SQuAD: hit@1 / hit@5, a hit being the question's own article file and paragraph number; again
  with the articles written without their title line ("untitled": paragraph 1 is body text).
* Every retrieval figure beside BM25 alone, dense alone and the naive hybrid (equal weights on
  min-max normalised scores, no per-query adaptation).
* Seeds: the seed articles' question sets from tests/test_seed_questions.py (answered, cited,
  off-topic refused). Context: how often ``/v1/context`` at 50-500 tokens holds a gold answer span.
* Reuters (``bench/reuters.py``): 70 news articles with headlines and 210 questions written for them by
  hand, plus 30 they do not cover; never used for tuning. Paragraph hit@1 / hit@5, and per fusion the
  answered rate, the answer sentence's gold-span share and the abstain rate, each with a 95% interval.
* Answers: on a sample of SQuAD questions, how often the engine answers (and whether the answer
  sentence holds a gold answer), and how often it abstains on questions whose article is not in
  the index (the other half of SQuAD) and on SciFact claims asked of the SQuAD index.

* Stores (``--stores local,postgresql``): SciFact and SQuAD again over the PostgreSQL + pgvector
  store, filled with the very documents, chunks and vectors of the local index (nothing is embedded
  again; a server is started on loopback for the run, ``tests/pg.py``), searched by the same
  retriever with the same query vectors: what the store changes (HNSW instead of exact vectors,
  BM25 in SQL). The fill is timed. Results go to ``bench/results/stores.json`` (key ``quality``).

Embeddings are cached under ``bench/.cache/`` (keyed by model weights and exact text), and indexes
there are keyed by the chunking settings and the source of the modules that shape them, so a
re-run or a fusion experiment does no model work.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service import lexical, store
from service.answer import build_answer, score_sentences
from service.config import PROJECT_ROOT, Settings
from service.embed_cache import EmbeddingCache
from service.embedding import ModelInfo, OnnxEmbedder, TorchEmbedder, model_info, onnx_path_for
from service.retrieval import Retriever
from service.store.base import DocumentUpsert, IndexMeta, IndexView

from . import datasets
from .metrics import hit_at_k, mean, ndcg_at_k, recall_at_k, unique

CACHE = PROJECT_ROOT / "bench" / ".cache"
RESULTS = PROJECT_ROOT / "bench" / "results"
FUSIONS = ("bm25", "dense", "naive", "rrf", "weighted")
# "naive": the plain hybrid one would write first, equal weights on min-max normalised BM25 and dense
# scores with no per-query adaptation (the baseline the defaults must beat on sets nobody tuned on).
STORES = ("local", "postgresql")
# The benchmark's PostgreSQL server (tests/pg.py starts it on 127.0.0.1; its own defaults favour test
# speed). Sized for an index of SciFact's size (~0.6 GiB of tables and indexes) on a 2-core machine:
# everything fits in shared_buffers, as the local store's memory-mapped files fit in the page cache.
PG_SETTINGS: dict[str, str] = {
    "shared_buffers": "1GB",  # tables + HNSW + postings of the SciFact index stay in memory
    "effective_cache_size": "4GB",
    "work_mem": "32MB",  # the BM25 aggregate of a query sorts in memory
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",  # no forced checkpoints while the index is filled in one transaction
    "checkpoint_timeout": "30min",
    "fsync": "on",  # commits are durable, as the local store's snapshots are (tests/pg.py turns it off)
    "synchronous_commit": "on",
}
# Source files whose code decides what an index holds: a change to any of them means a new index.
_INDEX_SOURCES = ("corpus.py", "chunking.py", "blocks.py", "indexer.py", "lexical.py", "titles.py")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- embeddings, cached on disk ---------------------------------------------------------------------
def vector_cache_path(info: ModelInfo, bf16: str) -> Path:
    """The on-disk cache of ingest embeddings, one per model and precision (shared by the benchmarks)."""
    precision = "bf16" if TorchEmbedder(info, bf16).use_bf16 else "fp32"
    return CACHE / f"vectors-{info.sha256[:12]}-{precision}.sqlite"


class CachedTorchEmbedder(TorchEmbedder):
    """The ingest embedder, with every vector kept on disk: a rebuilt index costs no model work."""

    def __init__(self, info: ModelInfo, bf16: str, batch_size: int, cache: EmbeddingCache) -> None:
        super().__init__(info, bf16, batch_size)
        self.cache = cache
        self.computed = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.info.dim), np.float32)
        found = self.cache.get_many(texts)
        for i, v in found.items():
            out[i] = v
        missing = [i for i in range(len(texts)) if i not in found]
        if missing:
            vecs = super().embed([texts[i] for i in missing])
            self.cache.put_many([texts[i] for i in missing], vecs)
            out[missing] = vecs
            self.computed += len(missing)
        return out


class CachedEmbedder:
    """Any embedder (here the ONNX query encoder), with vectors kept on disk by exact text."""

    def __init__(self, inner: Any, cache: EmbeddingCache, batch: int = 64) -> None:
        self.inner = inner
        self.info = inner.info
        self.cache = cache
        self.batch = batch

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.info.dim), np.float32)
        found = self.cache.get_many(texts)
        for i, v in found.items():
            out[i] = v
        missing = [i for i in range(len(texts)) if i not in found]
        for j in range(0, len(missing), self.batch):
            part = missing[j : j + self.batch]
            vecs = self.inner.embed([texts[i] for i in part])
            self.cache.put_many([texts[i] for i in part], vecs)
            out[part] = vecs
        return out


# -- indexes ------------------------------------------------------------------------------------------
@dataclass
class Bench:
    settings: Settings
    info: ModelInfo
    ingest: CachedTorchEmbedder
    query: CachedEmbedder | None = None
    lexical_extras: tuple[str, ...] = ()  # query-level BM25 additions under test (service.expansion)

    @classmethod
    def create(cls, settings: Settings) -> Bench:
        info = model_info(settings.model, settings.offline)
        CACHE.mkdir(parents=True, exist_ok=True)
        cache = EmbeddingCache(vector_cache_path(info, settings.bf16), info.sha256, info.dim)
        return cls(settings, info, CachedTorchEmbedder(info, settings.bf16, settings.embed_batch_size, cache))

    def index_key(self, name: str) -> str:
        s = self.settings
        h = hashlib.sha256()
        h.update(json.dumps({
            "model": self.info.sha256, "chunk_tokens": s.chunk_tokens, "overlap": s.chunk_overlap_sentences,
            "title_tokens": s.title_tokens, "embed_title": s.embed_title, "precision": self.ingest.use_bf16,
            "context_terms": s.context_terms,
            "sentence_chunks": s.sentence_chunks, "passage_encoder": s.passage_encoder,
            "sentence_vectors": s.sentence_vectors, **({"block_tokens": s.block_tokens} if s.block_tokens else {}),
            "hnsw_threshold": s.hnsw_threshold,
        }, sort_keys=True).encode())
        for f in _INDEX_SOURCES:
            path = PROJECT_ROOT / "service" / f
            if path.exists():  # an older checkout (a baseline run) may lack a newer module
                h.update(path.read_bytes())
        return f"{name}-{h.hexdigest()[:12]}"

    def index(self, name: str, corpus: Path) -> Path:
        """An index of ``corpus`` built by the service's own indexer (reused when nothing changed)."""
        from service.indexer import Indexer

        index_dir = CACHE / "index" / self.index_key(name)
        before = self.ingest.computed
        started = time.monotonic()
        # The torch encoder through the vector cache; the ONNX passage encoders as the service runs
        # them (the index is the one `index` builds; no cache: pooled vectors depend on the window).
        embedder = self.ingest if self.settings.passage_encoder == "torch" else None
        report = Indexer(self.settings, index_dir, embedder=embedder, progress=sys.stderr.isatty()).sync(corpus)
        if report.snapshot:
            log(f"[{name}] {report.summary()} ({self.ingest.computed - before} vectors computed from the cache's "
                f"misses, {time.monotonic() - started:.0f}s, load average {os.getloadavg()[0]:.2f})")
        if self.query is None:
            onnx = onnx_path_for(index_dir, self.info)
            qcache = EmbeddingCache(CACHE / f"queries-{self.info.sha256[:12]}-onnx.sqlite",
                                    self.info.sha256 + ":onnx", self.info.dim)
            self.query = CachedEmbedder(OnnxEmbedder(self.info, onnx), qcache)
        return index_dir

    def open(self, index_dir: Path) -> IndexView:
        """The local index's live snapshot, as the engine opens it."""
        return store.open_snapshot(index_dir, self.info.sha256)

    def retriever(self, where: Path | IndexView, **overrides: Any) -> Retriever:
        """The retriever the engine builds for these settings over an index folder or any store's view
        (``overrides`` change settings)."""
        view = self.open(where) if isinstance(where, Path) else where
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        r = Retriever.from_settings(view, settings)
        r.lexical_extras = r.lexical_extras or self.lexical_extras
        return r

    def searcher(self, where: Path | IndexView, fusion: str, **overrides: Any) -> tuple[Retriever, str]:
        """A retriever and the fusion to pass it for one of ``FUSIONS`` (``naive``: weighted fusion at
        equal weights, not adapted per query; BM25 alone, dense alone and naive without the default's
        headline rule or any ``lexical_extras``)."""
        if fusion in ("rrf", "weighted"):
            return self.retriever(where, **overrides), fusion
        # The baselines stay plain: no headline rule (ASK_HEADLINES_YIELD) or other query-level extras.
        if fusion != "naive":
            r = self.retriever(where, **{"headlines_yield": False, **overrides})
            r.lexical_extras = ()
            return r, fusion
        r = self.retriever(where, **{"dense_weight": 0.5, "headlines_yield": False, **overrides})
        r.adaptive = False
        r.lexical_extras = ()
        return r, "weighted"

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        assert self.query is not None
        return self.query.embed(list(texts))


# -- evaluations --------------------------------------------------------------------------------------
def ci95(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> list[float]:
    """Bootstrap 95% interval of a mean over queries (how much the figure depends on the sample)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return [float(v.mean()) if len(v) else 0.0] * 2
    means = v[np.random.default_rng(seed).integers(0, len(v), (resamples, len(v)))].mean(axis=1)
    return [round(float(x), 4) for x in np.percentile(means, [2.5, 97.5])]


def doc_id(source: str) -> str:
    return Path(source).stem


Ranked = dict[str, list[list[Any]]]  # fusion -> per query, what the search returned (for store agreement)


def eval_scifact(bench: Bench, n_queries: int | None, fusions: Sequence[str], view: IndexView | None = None,
                 ranked: Ranked | None = None, label: str = "scifact") -> dict[str, Any]:
    """``view``: search this store's view instead of the local index's (built or reused either way);
    ``ranked``: filled with each query's cited paragraphs (top 20, then the deep search's)."""
    data = datasets.scifact()
    queries = data.queries[:n_queries] if n_queries else data.queries
    index_dir = bench.index("scifact", data.corpus)
    vecs = bench.vectors([q.text for q in queries])
    view = view or bench.open(index_dir)
    out: dict[str, Any] = {"queries": len(queries), "documents": len(list(data.corpus.iterdir())),
                           "index": index_dir.name, "chunks": view.size,
                           "vector_index": view.stats().vector_index}
    for fusion in fusions:
        started = time.monotonic()
        shallow, how = bench.searcher(view, fusion)
        deep, _ = bench.searcher(view, fusion, candidates=max(1000, bench.settings.candidates))
        ndcg, recall, cited = [], [], []
        for q, v in zip(queries, vecs, strict=True):
            # Documents have two paragraphs (title, abstract): 2x paragraphs give enough documents.
            shallow_hits = [(p.source, p.paragraph) for p in shallow.search(q.text, v, 20, fusion=how)]
            top = unique(doc_id(s) for s, _ in shallow_hits)
            ndcg.append(ndcg_at_k(top, data.qrels[q.id], 10))
            deep_hits = [(p.source, p.paragraph) for p in deep.search(q.text, v, 250, fusion=how)]
            many = unique(doc_id(s) for s, _ in deep_hits)
            recall.append(recall_at_k(many, data.qrels[q.id], 100))
            cited.append([shallow_hits, deep_hits])
        if ranked is not None:
            ranked[fusion] = cited
        out[fusion] = {"ndcg@10": round(mean(ndcg), 4), "recall@100": round(mean(recall), 4),
                       "ndcg@10_ci95": ci95(ndcg),
                       "ms_per_query": round(1000 * (time.monotonic() - started) / max(1, len(queries)) / 2, 2)}
        log(f"[{label}] {fusion:9s} nDCG@10 {mean(ndcg):.4f}  recall@100 {mean(recall):.4f}")
    return out


def eval_squad(bench: Bench, n_questions: int | None, fusions: Sequence[str], view: IndexView | None = None,
               ranked: Ranked | None = None, label: str = "squad", titled: bool = True) -> dict[str, Any]:
    """``titled=False``: the articles without their title line (``datasets.squad``)."""
    folder = "squad" if titled else "squad-untitled"
    data = datasets.squad(folder=folder, titled=titled)
    questions = sample(data.questions, n_questions)
    index_dir = bench.index(folder, data.corpus)
    vecs = bench.vectors([q.text for q in questions])
    view = view or bench.open(index_dir)
    out: dict[str, Any] = {"questions": len(questions), "articles": len(data.articles), "index": index_dir.name,
                           "chunks": view.size}
    for fusion in fusions:
        started = time.monotonic()
        retriever, how = bench.searcher(view, fusion)
        h1, h5, all_cited = [], [], []
        for q, v in zip(questions, vecs, strict=True):
            cited = [(p.source, p.paragraph) for p in retriever.search(q.text, v, 5, fusion=how)]
            h1.append(hit_at_k(cited, (q.source, q.paragraph), 1))
            h5.append(hit_at_k(cited, (q.source, q.paragraph), 5))
            all_cited.append(cited)
        if ranked is not None:
            ranked[fusion] = all_cited
        out[fusion] = {"hit@1": round(mean(h1), 4), "hit@5": round(mean(h5), 4),
                       "hit@1_ci95": ci95(h1), "hit@5_ci95": ci95(h5),
                       "ms_per_query": round(1000 * (time.monotonic() - started) / max(1, len(questions)), 2)}
        log(f"[{label}] {fusion:9s} hit@1 {mean(h1):.4f}  hit@5 {mean(h5):.4f}")
    return out


def eval_reuters(bench: Bench, fusions: Sequence[str]) -> dict[str, Any]:
    """The Reuters news set (``bench/reuters.py``), not used for tuning: paragraph hit@1 / hit@5 (a hit
    is any gold paragraph), and the engine's answer over each fusion's top ``default_k``: how many
    answerable questions it answers, how often the answer sentence holds a gold span, and how often
    it abstains on questions the articles do not cover."""
    from .reuters import reuters

    data = reuters()
    index_dir = bench.index("reuters", data.corpus)
    view = bench.open(index_dir)
    questions = data.questions
    vecs = bench.vectors([q.text for q in questions])
    assert bench.query is not None
    t = bench.settings.abstain_threshold
    answerable = sum(1 for q in questions if q.gold)
    out: dict[str, Any] = {"package": data.package, "articles": len(data.articles), "questions": answerable,
                           "not_covered": len(questions) - answerable, "index": index_dir.name,
                           "chunks": view.size, "threshold": t}
    for fusion in fusions:
        retriever, how = bench.searcher(view, fusion)
        h1, h5, answered, holds, abstained, holds_before = [], [], [], [], [], []
        for q, v in zip(questions, vecs, strict=True):
            passages = retriever.search(q.text, v, max(5, bench.settings.default_k), fusion=how)
            ans = build_answer(q.text, v, passages[: bench.settings.default_k], bench.query, t)
            if not q.gold:
                abstained.append(float(ans.answer is None))
                continue
            cited = [(p.source, p.paragraph) for p in passages]
            gold = set(q.gold)
            h1.append(float(bool(cited[:1]) and cited[0] in gold))
            h5.append(float(any(c in gold for c in cited[:5])))
            answered.append(float(ans.answer is not None))
            if ans.answer is not None:
                holds.append(float(any(a.lower() in ans.answer.lower() for a in q.answers)))
                before = evidence_choice(q.text, v, passages[: bench.settings.default_k], bench.query).lower()
                holds_before.append(float(any(a.lower() in before for a in q.answers)))
        out[fusion] = {"hit@1": round(mean(h1), 4), "hit@5": round(mean(h5), 4),
                       "hit@1_ci95": ci95(h1), "hit@5_ci95": ci95(h5),
                       "answered_rate": round(mean(answered), 4), "answered_rate_ci95": ci95(answered),
                       "answer_holds_gold_span": round(mean(holds), 4), "answer_holds_gold_span_ci95": ci95(holds),
                       "answer_holds_gold_span_evidence_choice": round(mean(holds_before), 4),
                       "abstain_rate_not_covered": round(mean(abstained), 4),
                       "abstain_rate_not_covered_ci95": ci95(abstained)}
        log(f"[reuters] {fusion:9s} hit@1 {mean(h1):.4f}  hit@5 {mean(h5):.4f}  answered {mean(answered):.3f}  "
            f"gold span {mean(holds):.3f}  abstain {mean(abstained):.3f}")
    return out


def sample(items: list, n: int | None, seed: int = 0) -> list:
    if not n or n >= len(items):
        return list(items)
    return random.Random(seed).sample(items, n)


def _answer_scores(bench: Bench, index_dir: Path, questions: Sequence[str],
                   gold: Sequence[tuple[str, int, tuple[str, ...]]] | None = None) -> dict[str, list]:
    """Per question: the engine's answer score, and (with gold) whether it cites/holds the answer."""
    retriever = bench.retriever(index_dir)
    assert bench.query is not None
    vecs = bench.vectors(questions)
    scores, cites, holds, holds_shown, holds_before = [], [], [], [], []
    for i, (q, v) in enumerate(zip(questions, vecs, strict=True)):
        passages = retriever.search(q, v, bench.settings.default_k)
        ans = build_answer(q, v, passages, bench.query, threshold=-1e9)  # always answer: keep the score
        scores.append(ans.confidence)
        if gold is not None and ans.citations:
            source, paragraph, answers = gold[i]
            first = ans.citations[0]
            cites.append((first.source, first.paragraph) == (source, paragraph))
            holds.append(any(a.lower() in (ans.answer or "").lower() for a in answers))
            # What the reader is shown: the answer, and the sentence before it when it opens with "They" ...
            shown = f"{ans.context.text} {ans.answer}" if ans.context else (ans.answer or "")
            holds_shown.append(any(a.lower() in shown.lower() for a in answers))
            holds_before.append(any(a.lower() in evidence_choice(q, v, passages, bench.query).lower() for a in answers))
    return {"scores": scores, "cites": cites, "holds": holds, "holds_shown": holds_shown, "holds_before": holds_before}


def evidence_choice(question: str, vector: np.ndarray, passages: Sequence[Any], embedder: Any) -> str:
    """The baseline reader's answer sentence: the best evidence score (before ``service.sentence_choice``)."""
    best = score_sentences(question, vector, passages, embedder)
    return best[0].text if best else ""


@dataclass
class AnswerSets:
    """The answer benchmark's indexes and questions: SQuAD answerable, SQuAD questions whose article is
    left out of the half index (must abstain), SciFact claims (must abstain)."""

    full_dir: Path
    half_dir: Path
    answerable: list[Any]
    missing: list[Any]
    claims: list[Any]


def answer_sets(bench: Bench, n: int) -> AnswerSets:
    full = datasets.squad()
    half = datasets.squad(folder="squad-even", articles=slice(0, None, 2))
    in_half = set(half.articles)
    return AnswerSets(
        bench.index("squad", full.corpus), bench.index("squad-even", half.corpus), sample(full.questions, n, seed=1),
        sample([q for q in full.questions if q.source.replace("squad/", "squad-even/") not in in_half], n, seed=2),
        sample(datasets.scifact().queries, n, seed=3))


def eval_answers(bench: Bench, n: int) -> dict[str, Any]:
    sets = answer_sets(bench, n)
    full_dir, half_dir, answerable, missing, claims = (sets.full_dir, sets.half_dir, sets.answerable, sets.missing,
                                                       sets.claims)
    started = time.monotonic()
    pos = _answer_scores(bench, full_dir, [q.text for q in answerable],
                         [(q.source, q.paragraph, q.answers) for q in answerable])
    neg_squad = _answer_scores(bench, half_dir, [q.text for q in missing])["scores"]
    neg_claims = _answer_scores(bench, full_dir, [q.text for q in claims])["scores"]
    t = bench.settings.abstain_threshold
    answered = [s >= t for s in pos["scores"]]
    out = {
        "threshold": t,
        "answerable": len(answerable),
        "answered_rate": round(mean(answered), 4),
        "answered_correct_paragraph": round(mean(c for c, a in zip(pos["cites"], answered, strict=True) if a), 4),
        "answer_holds_gold_span": round(mean(h for h, a in zip(pos["holds"], answered, strict=True) if a), 4),
        "answer_holds_gold_span_ci95": ci95([h for h, a in zip(pos["holds"], answered, strict=True) if a]),
        "answer_holds_gold_span_evidence_choice": round(
            mean(h for h, a in zip(pos["holds_before"], answered, strict=True) if a), 4),
        "answer_or_context_holds_gold_span": round(
            mean(h for h, a in zip(pos["holds_shown"], answered, strict=True) if a), 4),
        "unanswerable_squad": len(missing),
        "abstain_rate_squad_other_articles": round(mean(s < t for s in neg_squad), 4),
        "unanswerable_scifact_claims": len(claims),
        "abstain_rate_scifact_claims": round(mean(s < t for s in neg_claims), 4),
        "sweep": [
            {"threshold": round(x, 3), "answered": round(mean(s >= x for s in pos["scores"]), 4),
             "abstain_other_articles": round(mean(s < x for s in neg_squad), 4),
             "abstain_claims": round(mean(s < x for s in neg_claims), 4)}
            for x in np.arange(0.26, 0.541, 0.02)
        ],
        "seconds": round(time.monotonic() - started, 1),
    }
    log(f"[answers] threshold {t:.3f}: answered {out['answered_rate']:.3f} of answerable; abstained "
        f"{out['abstain_rate_squad_other_articles']:.3f} (other articles), "
        f"{out['abstain_rate_scifact_claims']:.3f} (SciFact claims)")
    return out


def _pack_whole(citations: Sequence[Any], max_tokens: int, count: Any) -> list[Any]:
    """The former ``/v1/context`` packing (the baseline): whole passages that fit, in rank order."""
    from service.context_budget import block

    used, out = 0, []
    for c in citations:
        n = count(block(len(out) + 1, c))
        if used + n <= max_tokens:
            out.append(c)
            used += n
    return out


def eval_context(bench: Bench, n: int, budgets: Sequence[int] = (50, 100, 200, 500)) -> dict[str, Any]:
    """``/v1/context`` at small budgets: how often the packed context holds a gold answer span of an
    answerable SQuAD question, packed as the engine packs it and packed whole-passages-only."""
    from service.context_budget import pack
    from service.tokens import count

    full = datasets.squad()
    index_dir = bench.index("squad", full.corpus)
    retriever = bench.retriever(index_dir)
    questions = sample(full.questions, n, seed=1)
    vecs = bench.vectors([q.text for q in questions])
    assert bench.query is not None
    cache = str(bench.settings.cache_dir)
    counter = lambda t: count(t, cache)  # noqa: E731
    found: dict[int, list[bool]] = {b: [] for b in budgets}
    found_whole: dict[int, list[bool]] = {b: [] for b in budgets}
    for q, v in zip(questions, vecs, strict=True):
        ans = build_answer(q.text, v, retriever.search(q.text, v, bench.settings.max_k), bench.query, threshold=-1e9)
        for b in budgets:
            _text, cited = pack(ans.citations, b, counter)
            found[b].append(any(a in c.text for c in cited for a in q.answers))
            found_whole[b].append(any(a in c.text for c in _pack_whole(ans.citations, b, counter) for a in q.answers))
    out = {"questions": len(questions), "budgets": {
        str(b): {"holds_gold": round(mean(found[b]), 4), "holds_gold_whole_passages": round(mean(found_whole[b]), 4)}
        for b in budgets}}
    log(f"[context] {out['budgets']}")
    return out


def eval_seeds(bench: Bench) -> dict[str, Any]:
    """The seed articles' question sets (tests/test_seed_questions.py): answered, first citation an
    accepted paragraph, top-3 hit, and abstention on off-topic questions."""
    from tests.test_seed_questions import ANSWERABLE, OFF_TOPIC

    index_dir = bench.index("seeds", PROJECT_ROOT / "seeds")
    retriever = bench.retriever(index_dir)
    assert bench.query is not None
    t = bench.settings.abstain_threshold
    rows = []
    for q, source, accepted in ANSWERABLE:
        v = bench.vectors([q])[0]
        passages = retriever.search(q, v, 3)
        ans = build_answer(q, v, passages, bench.query, t)
        first = ans.citations[0] if ans.citations else None
        rows.append({"answered": ans.answer is not None,
                     "first_accepted": bool(first and first.source == source and first.paragraph in accepted),
                     "top1": bool(passages and (passages[0].source, passages[0].paragraph) in
                                  {(source, p) for p in accepted}),
                     "top3": any((p.source, p.paragraph) in {(source, a) for a in accepted} for p in passages)})
    off = []
    for q in OFF_TOPIC:
        v = bench.vectors([q])[0]
        off.append(build_answer(q, v, retriever.search(q, v, 5), bench.query, t).answer is None)
    answered = [r for r in rows if r["answered"]]
    out = {"answerable": len(rows), "answered_rate": round(mean(r["answered"] for r in rows), 4),
           "answered_first_citation_accepted": round(mean(r["first_accepted"] for r in answered), 4) if answered else 0.0,
           "hit@1": round(mean(r["top1"] for r in rows), 4), "hit@3": round(mean(r["top3"] for r in rows), 4),
           "off_topic": len(off), "abstain_rate_off_topic": round(mean(off), 4)}
    log(f"[seeds] {out}")
    return out


def eval_precision(settings: Settings, n_queries: int | None) -> dict[str, Any]:
    """SciFact ingested once with fp32 and once with bf16 embeddings (the service's own indexer),
    queried with the same fp32 query encoder: how much bf16 ingest moves retrieval quality.

    On a CPU without native bf16 the bf16 side is emulated by torch (same rounding, several times
    slower); its vectors are cached like any others.
    """
    from service.embedding import cpu_supports_bf16

    out: dict[str, Any] = {"native_bf16": cpu_supports_bf16()}
    fusions = ["dense", settings.fusion]
    for precision, flag in (("fp32", "off"), ("bf16", "on")):
        bench = Bench.create(settings.model_copy(update={"bf16": flag}))
        block = eval_scifact(bench, n_queries, fusions)
        out[precision] = {"index": block["index"], **{f: block[f]["ndcg@10"] for f in fusions}}
    out["delta"] = {f: round(out["bf16"][f] - out["fp32"][f], 4) for f in fusions}
    log(f"[precision] SciFact nDCG@10 bf16 - fp32: {out['delta']}")
    return out


# What goes into a chunk's text, tested against the default (issue 4: keep what the evidence supports).
ABLATIONS: dict[str, dict[str, Any]] = {
    "windows only, no sentence chunks": {"sentence_chunks": False},
    "no title in the chunk text": {"embed_title": False},
}


def eval_ablations(settings: Settings, n_queries: int | None, n_questions: int | None) -> dict[str, Any]:
    """SciFact and SQuAD again with one chunking choice changed at a time (dense and default fusion)."""
    fusions = ["dense", settings.fusion]
    out: dict[str, Any] = {}
    for name, change in ABLATIONS.items():
        bench = Bench.create(settings.model_copy(update=change))
        sci, sq = eval_scifact(bench, n_queries, fusions), eval_squad(bench, n_questions, fusions)
        out[name] = {
            "settings": change, "scifact_chunks": sci["chunks"], "squad_chunks": sq["chunks"],
            **{f"scifact_{f}_ndcg@10": sci[f]["ndcg@10"] for f in fusions},
            **{f"squad_{f}_hit@1": sq[f]["hit@1"] for f in fusions},
            **{f"squad_{f}_hit@5": sq[f]["hit@5"] for f in fusions},
        }
    return out


# -- stores: the same index in PostgreSQL -------------------------------------------------------------
def index_records(index_dir: Path, settings: Settings, embedder: Any = None) -> tuple[IndexMeta, list[DocumentUpsert]]:
    """A local index's documents, chunks and vectors as a writer's upserts (nothing is embedded): what
    the indexer would hand any store for the same corpus. Lexical texts are the indexer's own rule."""
    from service.indexer import Indexer

    snap = store.open_snapshot(index_dir)
    docs, chunks, vectors = snap.all_records()
    lexical_text = Indexer(settings, index_dir, embedder=embedder, progress=False).lexical_text
    rows: dict[int, list[int]] = {}
    for i, c in enumerate(chunks):
        rows.setdefault(c.doc, []).append(i)
    upserts = []
    for position, doc in enumerate(docs):
        mine = rows.get(position, [])
        records = [chunks[i] for i in mine]
        upserts.append(DocumentUpsert(doc, records, np.array(vectors[mine], np.float32),
                                      [lexical_text(doc, c) for c in records]))
    m = snap.meta
    meta = IndexMeta(corpus=m.corpus, model=dict(m.model), chunking=dict(m.chunking))
    snap.close()
    return meta, upserts


def fill_store(target: Any, meta: IndexMeta, upserts: Sequence[DocumentUpsert]) -> dict[str, Any]:
    """Write ``upserts`` into an empty store in one commit (as ``index`` does with one checkpoint); timed."""
    chunks = sum(len(u.chunks) for u in upserts)
    started = time.perf_counter()
    with target.writer() as writer:
        result = writer.apply(meta, upserts, [], replace_all=True)
    seconds = time.perf_counter() - started
    out: dict[str, Any] = {"documents": result.documents, "chunks": result.chunks, "seconds": round(seconds, 2),
                           "documents_per_s": round(len(upserts) / seconds, 1),
                           "chunks_per_s": round(chunks / seconds, 1)}
    if getattr(target, "kind", "") == "postgresql":
        # Planner statistics for the freshly loaded tables (autovacuum would take them within a minute).
        started = time.perf_counter()
        target.run(lambda c: c.execute("ANALYZE"))
        out["analyze_seconds"] = round(time.perf_counter() - started, 2)
        out["database_mib"] = round(target.run(lambda c: c.execute(
            "SELECT pg_database_size(current_database())").fetchone())[0] / 2**20, 1)
    return out


@contextlib.contextmanager
def pg_server() -> Iterator[Any]:
    """A PostgreSQL server for a benchmark (tests/pg.py, with ``PG_SETTINGS``), in a temporary folder of
    its own: tests/pg.py stops the servers it finds under the temp folder whose owner process it cannot
    see (left by a killed run), and a test run in another PID namespace sharing /tmp would take this
    one for such a server."""
    import os
    import tempfile

    from tests.pg import PgServer

    root = tempfile.mkdtemp(prefix="ask-bench-pg-")
    os.chmod(root, 0o755)  # the server's own OS user (when we are root) must reach its folder
    saved = tempfile.tempdir
    tempfile.tempdir = root
    try:
        with PgServer(settings=PG_SETTINGS) as server:
            yield server
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(root, ignore_errors=True)


def agreement(a: list[Any], b: list[Any]) -> float:
    """Share of queries whose cited paragraphs (in order) are the same in two runs."""
    return round(mean(x == y for x, y in zip(a, b, strict=True)), 4) if a else 0.0


def overlap(a: list[Any], b: list[Any]) -> float:
    """Mean share of one run's cited paragraphs that the other cites too (order aside)."""
    return round(mean(len(set(x) & set(y)) / max(1, len(x)) for x, y in zip(a, b, strict=True)), 4) if a else 0.0


def eval_stores(bench: Bench, stores: Sequence[str], n_queries: int | None, n_questions: int | None,
                fusions: Sequence[str]) -> dict[str, Any]:
    """SciFact and SQuAD over each store, the PostgreSQL one filled from the local index's records."""
    from service.store.postgres import PostgresStore

    sci, sq = datasets.scifact(), datasets.squad()
    dirs = {"scifact": bench.index("scifact", sci.corpus), "squad": bench.index("squad", sq.corpus)}
    out: dict[str, Any] = {"stores": list(stores), "fusions": list(fusions), "postgres_settings": PG_SETTINGS,
                           "fill": {}}
    ranked: dict[str, dict[str, Ranked]] = {}
    evals = {"scifact": lambda view, r, label: eval_scifact(bench, n_queries, fusions, view, r, label),
             "squad": lambda view, r, label: eval_squad(bench, n_questions, fusions, view, r, label)}
    if "local" in stores:
        ranked["local"] = {}
        out["local"] = {}
        for name, run in evals.items():
            ranked["local"][name] = {}
            out["local"][name] = run(None, ranked["local"][name], f"{name} local")
    if "postgresql" in stores:
        ranked["postgresql"] = {}
        out["postgresql"] = {}
        with pg_server() as server:
            out["postgres_version"] = server.query("SHOW server_version")[0][0]
            opened = []
            try:
                for name, run in evals.items():
                    pg = PostgresStore(server.create_database(name), model_sha256=bench.info.sha256)
                    opened.append(pg)
                    meta, upserts = index_records(dirs[name], bench.settings, bench.ingest)
                    fill = fill_store(pg, meta, upserts)
                    del upserts
                    out["fill"][name] = fill
                    out["pgvector_version"] = pg.run(lambda c: c.execute(
                        "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone())[0]
                    log(f"[{name} postgresql] filled: {fill}")
                    ranked["postgresql"][name] = {}
                    out["postgresql"][name] = run(pg.view(), ranked["postgresql"][name], f"{name} postgresql")
            finally:
                for pg in opened:
                    pg.close()
    if "local" in ranked and "postgresql" in ranked:
        # SciFact: the top 20 paragraphs (nDCG@10's search); the deep search (250 paragraphs for
        # recall@100) separately. SQuAD: the top 5.
        lo, pg = ranked["local"], ranked["postgresql"]
        out["same_results"] = {
            "scifact": {f: agreement([x[0] for x in lo["scifact"][f]], [x[0] for x in pg["scifact"][f]])
                        for f in fusions},
            "squad": {f: agreement(lo["squad"][f], pg["squad"][f]) for f in fusions}}
        out["deep_overlap_scifact"] = {
            f: overlap([x[1] for x in lo["scifact"][f]], [x[1] for x in pg["scifact"][f]]) for f in fusions}
        out["delta"] = {f: {
            "scifact_ndcg@10": round(out["postgresql"]["scifact"][f]["ndcg@10"] - out["local"]["scifact"][f]["ndcg@10"], 4),
            "scifact_recall@100": round(out["postgresql"]["scifact"][f]["recall@100"]
                                        - out["local"]["scifact"][f]["recall@100"], 4),
            "squad_hit@1": round(out["postgresql"]["squad"][f]["hit@1"] - out["local"]["squad"][f]["hit@1"], 4),
            "squad_hit@5": round(out["postgresql"]["squad"][f]["hit@5"] - out["local"]["squad"][f]["hit@5"], 4),
        } for f in fusions}
    return out


def stores_table(r: dict[str, Any], default: str) -> str:
    names = {"local": "local (snapshots)", "postgresql": "PostgreSQL + pgvector"}
    lines = ["| retrieval | store | SciFact nDCG@10 | SciFact recall@100 | SQuAD hit@1 | SQuAD hit@5 "
             "| same citations as local (SciFact top 20 / SQuAD top 5) | ms/query (SciFact / SQuAD) |",
             "|---|---|---|---|---|---|---|---|"]
    fusions = sorted(r["fusions"], key=lambda f: f != default)
    for f in fusions:
        label = f"**{f} (default)**" if f == default else f
        for s in r["stores"]:
            sci, sq = r[s]["scifact"][f], r[s]["squad"][f]
            same = ("" if s == "local" or "same_results" not in r else
                    f"{r['same_results']['scifact'][f]:.1%} / {r['same_results']['squad'][f]:.1%}")
            lines.append(f"| {label} | {names[s]} | {sci['ndcg@10']:.4f} | {sci['recall@100']:.4f} | "
                         f"{sq['hit@1']:.4f} | {sq['hit@5']:.4f} | {same} | "
                         f"{sci['ms_per_query']} / {sq['ms_per_query']} |")
        if "delta" in r:
            d = r["delta"][f]
            lines.append(f"| {label} | difference (pg − local) | {d['scifact_ndcg@10']:+.4f} | "
                         f"{d['scifact_recall@100']:+.4f} | {d['squad_hit@1']:+.4f} | {d['squad_hit@5']:+.4f} | | |")
    if "delta" in r:
        d = r["delta"][default]
        ok = abs(d["scifact_ndcg@10"]) <= 0.01 and abs(d["squad_hit@1"]) <= 0.01
        lines += ["", f"Default fusion: SciFact nDCG@10 Δ {d['scifact_ndcg@10']:+.4f}, SQuAD hit@1 Δ "
                      f"{d['squad_hit@1']:+.4f}: {'within' if ok else 'NOT within'} 0.01."]
    for name, f in r.get("fill", {}).items():
        lines.append(f"PostgreSQL fill, {name}: {f['documents']:,} documents, {f['chunks']:,} chunks in "
                     f"{f['seconds']} s ({f['documents_per_s']} documents/s, {f['chunks_per_s']} chunks/s; one "
                     f"transaction), then ANALYZE {f.get('analyze_seconds', 0)} s; database "
                     f"{f.get('database_mib', 0)} MiB.")
    if "postgres_version" in r:
        lines.append(f"PostgreSQL {r['postgres_version']}, pgvector {r.get('pgvector_version')}; settings: "
                     + ", ".join(f"{k}={v}" for k, v in r["postgres_settings"].items()) + ".")
    return "\n".join(lines)


# -- report -------------------------------------------------------------------------------------------
def table(results: dict[str, Any]) -> str:
    default = results["settings"]["fusion"]
    rows = [("BM25 alone", "bm25"), ("dense alone", "dense"), ("naive hybrid (equal weights)", "naive"),
            ("hybrid RRF", "rrf"), ("hybrid weighted", "weighted")]
    sci, sq, su = results.get("scifact", {}), results.get("squad", {}), results.get("squad_untitled", {})
    lines = [
        "| retrieval | SciFact nDCG@10 | SciFact recall@100 | SQuAD hit@1 | SQuAD hit@5 "
        "| SQuAD untitled hit@1 | SQuAD untitled hit@5 |",
        "|---|---|---|---|---|---|---|",
    ] if sci or sq or su else []

    def cell(block: dict[str, Any], fusion: str, metric: str) -> str:
        v = block.get(fusion, {}).get(metric)
        return "–" if v is None else f"{v:.3f}"

    for label, fusion in rows:
        if fusion not in sci and fusion not in sq:
            continue
        name = f"**{label} (default)**" if fusion == default else label
        lines.append(f"| {name} | {cell(sci, fusion, 'ndcg@10')} | {cell(sci, fusion, 'recall@100')} | "
                     f"{cell(sq, fusion, 'hit@1')} | {cell(sq, fusion, 'hit@5')} | "
                     f"{cell(su, fusion, 'hit@1')} | {cell(su, fusion, 'hit@5')} |")
    d_sci, d_sq = sci.get(default, {}), sq.get(default, {})
    if "ndcg@10_ci95" in d_sci or "hit@1_ci95" in d_sq:
        parts = []
        if "ndcg@10_ci95" in d_sci:
            parts.append("SciFact nDCG@10 [{:.3f}, {:.3f}]".format(*d_sci["ndcg@10_ci95"]))
        if "hit@1_ci95" in d_sq:
            parts.append("SQuAD hit@1 [{:.3f}, {:.3f}], hit@5 [{:.3f}, {:.3f}]".format(
                *d_sq["hit@1_ci95"], *d_sq["hit@5_ci95"]))
        if "hit@1_ci95" in su.get(default, {}):
            parts.append("SQuAD untitled hit@1 [{:.3f}, {:.3f}]".format(*su[default]["hit@1_ci95"]))
        lines += ["", "Bootstrap 95% intervals over queries, default fusion: " + "; ".join(parts) + "."]
    rt = results.get("reuters")
    if rt:
        lines += ["", f"Reuters news ({rt['articles']} articles, {rt['questions']} questions + {rt['not_covered']} "
                  f"not covered; not used for tuning; answer threshold {rt['threshold']:.3f}):", "",
                  "| retrieval | hit@1 | hit@5 | answered | answer holds a gold span | same, evidence-score choice "
                  "| abstain (not covered) |",
                  "|---|---|---|---|---|---|---|"]

        def ci(block: dict[str, Any], metric: str) -> str:
            lo, hi = block[f"{metric}_ci95"]
            return f"{block[metric]:.3f} [{lo:.3f}, {hi:.3f}]"

        for label, fusion in rows:
            if fusion in rt:
                r = rt[fusion]
                name = f"**{label} (default)**" if fusion == default else label
                lines.append(f"| {name} | {ci(r, 'hit@1')} | {ci(r, 'hit@5')} | {ci(r, 'answered_rate')} | "
                             f"{ci(r, 'answer_holds_gold_span')} | "
                             f"{r.get('answer_holds_gold_span_evidence_choice', float('nan')):.3f} | "
                             f"{ci(r, 'abstain_rate_not_covered')} |")
    ab = results.get("ablations")
    if ab and sci and sq:
        fusion = default
        lines += ["", "| chunk text | SciFact chunks | SciFact nDCG@10 dense / hybrid | SQuAD hit@1 dense / hybrid "
                  "| SQuAD hit@5 hybrid |", "|---|---|---|---|---|",
                  f"| default (windows + sentence chunks, title) | {sci['chunks']:,} | {sci['dense']['ndcg@10']:.3f} / "
                  f"{sci[fusion]['ndcg@10']:.3f} | {sq['dense']['hit@1']:.3f} / {sq[fusion]['hit@1']:.3f} | "
                  f"{sq[fusion]['hit@5']:.3f} |"]
        for name, r in ab.items():
            lines.append(f"| {name} | {r['scifact_chunks']:,} | {r['scifact_dense_ndcg@10']:.3f} / "
                         f"{r[f'scifact_{fusion}_ndcg@10']:.3f} | {r['squad_dense_hit@1']:.3f} / "
                         f"{r[f'squad_{fusion}_hit@1']:.3f} | {r[f'squad_{fusion}_hit@5']:.3f} |")
    pr = results.get("precision")
    if pr:
        lines += ["", "Ingest precision (SciFact nDCG@10, same fp32 query encoder): " + "; ".join(
            f"{f}: fp32 {pr['fp32'][f]:.4f}, bf16 {pr['bf16'][f]:.4f} (Δ {pr['delta'][f]:+.4f})" for f in pr["delta"])
            + ("" if pr["native_bf16"] else " (bf16 emulated on this CPU: quality only, not speed)") + "."]
    a = results.get("answers")
    if a:
        lines += [
            "",
            f"Answers (threshold {a['threshold']:.3f}): answered {a['answered_rate']:.1%} of {a['answerable']} "
            f"answerable SQuAD questions (first citation is the gold paragraph for "
            f"{a['answered_correct_paragraph']:.1%} of those answered; the answer sentence holds a gold span for "
            f"{a['answer_holds_gold_span']:.1%}"
            + (f" (choosing by the evidence score, as before service.sentence_choice: "
               f"{a['answer_holds_gold_span_evidence_choice']:.1%})" if "answer_holds_gold_span_evidence_choice" in a else "")
            + (f", with the sentence shown before an answer that opens with 'They', 'It' ... "
               f"{a['answer_or_context_holds_gold_span']:.1%}" if "answer_or_context_holds_gold_span" in a else "")
            + f"); abstained on {a['abstain_rate_squad_other_articles']:.1%} of "
            f"{a['unanswerable_squad']} questions whose article is not indexed and on "
            f"{a['abstain_rate_scifact_claims']:.1%} of {a['unanswerable_scifact_claims']} SciFact claims asked "
            "of the SQuAD index.",
        ]
    sd = results.get("seeds")
    if sd:
        lines += ["", f"Seed questions: answered {sd['answered_rate']:.1%} of {sd['answerable']} (first citation an "
                      f"accepted paragraph for {sd['answered_first_citation_accepted']:.1%} of those); paragraph hit@1 "
                      f"{sd['hit@1']:.3f}, hit@3 {sd['hit@3']:.3f}; abstained on {sd['abstain_rate_off_topic']:.1%} of "
                      f"{sd['off_topic']} off-topic questions."]
    cx = results.get("context")
    if cx:
        lines += ["", "| /v1/context budget (tokens) | context holds a gold span | whole passages only (before) |",
                  "|---|---|---|"]
        lines += [f"| {b} | {r['holds_gold']:.3f} | {r['holds_gold_whole_passages']:.3f} |" for b, r in cx["budgets"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="subset: 100 SciFact queries, 1000 SQuAD questions, 200 answers")
    p.add_argument("--scifact-queries", type=int, default=None, help="first N SciFact test queries (default all 300)")
    p.add_argument("--squad-questions", type=int, default=None, help="random N SQuAD questions (default all)")
    p.add_argument("--answers", type=int, default=None, help="questions per answer/abstain set (default 1000)")
    p.add_argument("--skip", action="append", default=[], choices=["scifact", "squad", "squad-untitled", "answers", "reuters"])
    p.add_argument("--fusions", default=",".join(FUSIONS), help="comma-separated subset of " + ",".join(FUSIONS))
    p.add_argument("--lexical-extras", default="",
                   help="comma-separated query-level BM25 additions to measure: rm3, proximity (service.expansion)")
    p.add_argument("--bm25", default="",
                   help="K1,B: BM25's saturation and length normalisation for this run (service.lexical's "
                        "BM25_K1 and BM25_B; applied at query time, so the indexes are the same)")
    p.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results/quality.json)")
    p.add_argument("--ablation", action="store_true",
                   help="also run SciFact and SQuAD with each chunk-text choice switched off in turn "
                        "(sentence chunks, title); embeds the texts they change the first time")
    p.add_argument("--compare-precision", action="store_true",
                   help="also ingest SciFact with bf16 and with fp32 embeddings and compare nDCG@10 "
                        "(slow the first time on CPUs without native bf16: the bf16 side is emulated)")
    p.add_argument("--stores", default="local",
                   help="comma-separated stores to compare: local, postgresql (starts a PostgreSQL server on "
                        "127.0.0.1 for the run, filled from the local index's records)")
    p.add_argument("--only-stores", action="store_true",
                   help="run only the store comparison (SciFact and SQuAD over each store)")
    args = p.parse_args(argv)
    stores = [s for s in args.stores.split(",") if s]
    if unknown := set(stores) - set(STORES):
        p.error(f"unknown stores: {', '.join(sorted(unknown))}; use {', '.join(STORES)}")
    if args.only_stores and "postgresql" not in stores:
        p.error("--only-stores needs --stores with postgresql")
    if args.quick:
        args.scifact_queries = args.scifact_queries or 100
        args.squad_questions = args.squad_questions or 1000
        args.answers = args.answers or 200
    n_answers = args.answers or 1000
    if args.bm25:
        try:
            lexical.BM25_K1, lexical.BM25_B = (float(x) for x in args.bm25.split(","))
        except ValueError:
            p.error("--bm25 takes two numbers, K1,B (e.g. 1.2,0.6)")
    fusions = [f for f in args.fusions.split(",") if f]
    settings = Settings(checkpoint_seconds=1e9)  # one snapshot per index: no intermediate commits
    bench = Bench.create(settings)
    bench.lexical_extras = tuple(x for x in args.lexical_extras.split(",") if x)
    started = time.monotonic()
    results: dict[str, Any] = {
        "settings": {k: getattr(settings, k) for k in (
            "fusion", "rrf_k", "dense_weight", "candidates", "abstain_threshold", "chunk_tokens",
            "chunk_overlap_sentences", "title_tokens", "embed_title", "sentence_chunks", "passage_encoder",
            "sentence_vectors", "block_tokens", "reranker", "rerank_depth",
            "hnsw_threshold", "model")},
        "lexical_extras": list(bench.lexical_extras),
        "bm25": {"k1": lexical.BM25_K1, "b": lexical.BM25_B},
        "quick": bool(args.quick or args.scifact_queries or args.squad_questions or args.answers or args.skip
                      or set(fusions) != set(FUSIONS) or bench.lexical_extras or args.bm25),
    }
    if "postgresql" in stores:
        started_stores = time.monotonic()
        # The local store through the same function (not the sections below), so both rows of the
        # comparison come from one code path.
        comparison = eval_stores(bench, sorted(set(stores) | {"local"}, key=STORES.index), args.scifact_queries,
                                 args.squad_questions, fusions)
        comparison["settings"] = results["settings"]
        comparison["full"] = not (args.quick or args.scifact_queries or args.squad_questions)
        comparison["seconds"] = round(time.monotonic() - started_stores, 1)
        # Its own file: a comparison run never touches the figures of quality.json.
        target = RESULTS / "stores.json" if comparison["full"] else CACHE / "stores-quick.json"
        merged = json.loads(target.read_text()) if target.exists() else {}
        merged["quality"] = comparison
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(merged, indent=2, default=str) + "\n")
        print(stores_table(comparison, settings.fusion))
        print(f"\nwritten to {target.relative_to(PROJECT_ROOT)} (key 'quality')\n")
        if args.only_stores:
            return 0
        # The local rows are this run's SciFact and SQuAD sections already (same function, same view).
        results["scifact"], results["squad"] = comparison["local"]["scifact"], comparison["local"]["squad"]
    if "scifact" not in args.skip and "scifact" not in results:
        results["scifact"] = eval_scifact(bench, args.scifact_queries, fusions)
    if "squad" not in args.skip and "squad" not in results:
        results["squad"] = eval_squad(bench, args.squad_questions, fusions)
    if "squad-untitled" not in args.skip:
        results["squad_untitled"] = eval_squad(bench, args.squad_questions, fusions, label="squad untitled",
                                               titled=False)
    if "reuters" not in args.skip:
        results["reuters"] = eval_reuters(bench, fusions)
    if "answers" not in args.skip:
        results["answers"] = eval_answers(bench, n_answers)
        results["seeds"] = eval_seeds(bench)
        results["context"] = eval_context(bench, n_answers)
    if args.ablation:
        results["ablations"] = eval_ablations(settings, args.scifact_queries, args.squad_questions)
    if args.compare_precision:
        results["precision"] = eval_precision(settings, args.scifact_queries)
    results["seconds"] = round(time.monotonic() - started, 1)
    # A partial run never replaces the recorded full results.
    out = args.out or (CACHE / "quality-quick.json" if results["quick"] else RESULTS / "quality.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    print(f"\nwritten to {out.relative_to(PROJECT_ROOT) if out.is_relative_to(PROJECT_ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
