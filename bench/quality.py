"""Retrieval and answer quality, measured through the service's own pipeline.

    python -m bench.quality            # everything (make bench-quality)
    python -m bench.quality --quick    # a subset, for a fast look

Each data set is written as a folder of article files (``bench/datasets.py``), indexed with the
project's own :class:`service.indexer.Indexer`, and queried with the same query encoder (ONNX) and
:class:`service.retrieval.Retriever` the engine uses. BM25 alone, dense alone and both fusions run
over one index in one run, so the rows of the table are comparable.

* SciFact: nDCG@10 and recall@100 over documents (a document ranks where its best paragraph ranks).
  nDCG@10 comes from the default settings; recall@100 from a deeper search (more candidates).
* SQuAD: hit@1 / hit@5, a hit being the question's own article file and paragraph number.
* Answers: on a sample of SQuAD questions, how often the engine answers (and whether the answer
  sentence holds a gold answer), and how often it abstains on questions whose article is not in
  the index (the other half of SQuAD) and on SciFact claims asked of the SQuAD index.

Embeddings are cached under ``bench/.cache/`` (keyed by model weights and exact text), and indexes
there are keyed by the chunking settings and the source of the modules that shape them, so a
re-run or a fusion experiment does no model work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service import store
from service.answer import build_answer
from service.config import PROJECT_ROOT, Settings
from service.embed_cache import EmbeddingCache
from service.embedding import ModelInfo, OnnxEmbedder, TorchEmbedder, model_info, onnx_path_for
from service.retrieval import Retriever

from . import datasets
from .metrics import hit_at_k, mean, ndcg_at_k, recall_at_k, unique

CACHE = PROJECT_ROOT / "bench" / ".cache"
RESULTS = PROJECT_ROOT / "bench" / "results"
FUSIONS = ("bm25", "dense", "rrf", "weighted")
# Source files whose code decides what an index holds: a change to any of them means a new index.
_INDEX_SOURCES = ("corpus.py", "chunking.py", "indexer.py", "lexical.py")


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
            "sentence_chunks": s.sentence_chunks,
            "hnsw_threshold": s.hnsw_threshold,
        }, sort_keys=True).encode())
        for f in _INDEX_SOURCES:
            h.update((PROJECT_ROOT / "service" / f).read_bytes())
        return f"{name}-{h.hexdigest()[:12]}"

    def index(self, name: str, corpus: Path) -> Path:
        """An index of ``corpus`` built by the service's own indexer (reused when nothing changed)."""
        from service.indexer import Indexer

        index_dir = CACHE / "index" / self.index_key(name)
        before = self.ingest.computed
        started = time.monotonic()
        report = Indexer(self.settings, index_dir, embedder=self.ingest, progress=sys.stderr.isatty()).sync(corpus)
        if report.snapshot:
            log(f"[{name}] {report.summary()} ({self.ingest.computed - before} vectors computed, "
                f"{time.monotonic() - started:.0f}s)")
        if self.query is None:
            onnx = onnx_path_for(index_dir, self.info)
            qcache = EmbeddingCache(CACHE / f"queries-{self.info.sha256[:12]}-onnx.sqlite",
                                    self.info.sha256 + ":onnx", self.info.dim)
            self.query = CachedEmbedder(OnnxEmbedder(self.info, onnx), qcache)
        return index_dir

    def retriever(self, index_dir: Path, **overrides: Any) -> Retriever:
        """The retriever the engine builds for these settings (``overrides`` change settings)."""
        snap = store.open_snapshot(index_dir, self.info.sha256)
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return Retriever.from_settings(snap, settings)

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


def eval_scifact(bench: Bench, n_queries: int | None, fusions: Sequence[str]) -> dict[str, Any]:
    data = datasets.scifact()
    queries = data.queries[:n_queries] if n_queries else data.queries
    index_dir = bench.index("scifact", data.corpus)
    vecs = bench.vectors([q.text for q in queries])
    shallow = bench.retriever(index_dir)
    deep = bench.retriever(index_dir, candidates=max(1000, bench.settings.candidates))
    out: dict[str, Any] = {"queries": len(queries), "documents": len(list(data.corpus.iterdir())),
                           "index": index_dir.name, "chunks": shallow.snapshot.size,
                           "vector_index": shallow.snapshot.manifest.get("vector_index")}
    for fusion in fusions:
        started = time.monotonic()
        ndcg, recall = [], []
        for q, v in zip(queries, vecs, strict=True):
            # Documents have two paragraphs (title, abstract): 2x paragraphs give enough documents.
            top = unique(doc_id(p.source) for p in shallow.search(q.text, v, 20, fusion=fusion))
            ndcg.append(ndcg_at_k(top, data.qrels[q.id], 10))
            many = unique(doc_id(p.source) for p in deep.search(q.text, v, 250, fusion=fusion))
            recall.append(recall_at_k(many, data.qrels[q.id], 100))
        out[fusion] = {"ndcg@10": round(mean(ndcg), 4), "recall@100": round(mean(recall), 4),
                       "ndcg@10_ci95": ci95(ndcg),
                       "ms_per_query": round(1000 * (time.monotonic() - started) / max(1, len(queries)) / 2, 2)}
        log(f"[scifact] {fusion:9s} nDCG@10 {mean(ndcg):.4f}  recall@100 {mean(recall):.4f}")
    return out


def eval_squad(bench: Bench, n_questions: int | None, fusions: Sequence[str]) -> dict[str, Any]:
    data = datasets.squad()
    questions = sample(data.questions, n_questions)
    index_dir = bench.index("squad", data.corpus)
    vecs = bench.vectors([q.text for q in questions])
    retriever = bench.retriever(index_dir)
    out: dict[str, Any] = {"questions": len(questions), "articles": len(data.articles), "index": index_dir.name,
                           "chunks": retriever.snapshot.size}
    for fusion in fusions:
        started = time.monotonic()
        h1, h5 = [], []
        for q, v in zip(questions, vecs, strict=True):
            cited = [(p.source, p.paragraph) for p in retriever.search(q.text, v, 5, fusion=fusion)]
            h1.append(hit_at_k(cited, (q.source, q.paragraph), 1))
            h5.append(hit_at_k(cited, (q.source, q.paragraph), 5))
        out[fusion] = {"hit@1": round(mean(h1), 4), "hit@5": round(mean(h5), 4),
                       "hit@1_ci95": ci95(h1), "hit@5_ci95": ci95(h5),
                       "ms_per_query": round(1000 * (time.monotonic() - started) / max(1, len(questions)), 2)}
        log(f"[squad]   {fusion:9s} hit@1 {mean(h1):.4f}  hit@5 {mean(h5):.4f}")
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
    scores, cites, holds = [], [], []
    for i, (q, v) in enumerate(zip(questions, vecs, strict=True)):
        passages = retriever.search(q, v, bench.settings.default_k)
        ans = build_answer(q, v, passages, bench.query, threshold=-1e9)  # always answer: keep the score
        scores.append(ans.confidence)
        if gold is not None and ans.citations:
            source, paragraph, answers = gold[i]
            first = ans.citations[0]
            cites.append((first.source, first.paragraph) == (source, paragraph))
            holds.append(any(a.lower() in (ans.answer or "").lower() for a in answers))
    return {"scores": scores, "cites": cites, "holds": holds}


def eval_answers(bench: Bench, n: int) -> dict[str, Any]:
    full = datasets.squad()
    half = datasets.squad(folder="squad-even", articles=slice(0, None, 2))
    in_half = set(half.articles)
    full_dir = bench.index("squad", full.corpus)
    half_dir = bench.index("squad-even", half.corpus)
    answerable = sample(full.questions, n, seed=1)
    missing = sample([q for q in full.questions if q.source.replace("squad/", "squad-even/") not in in_half], n, seed=2)
    claims = sample(datasets.scifact().queries, n, seed=3)
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


# -- report -------------------------------------------------------------------------------------------
def table(results: dict[str, Any]) -> str:
    default = results["settings"]["fusion"]
    rows = [("BM25 alone", "bm25"), ("dense alone", "dense"), ("hybrid RRF", "rrf"), ("hybrid weighted", "weighted")]
    sci, sq = results.get("scifact", {}), results.get("squad", {})
    lines = [
        "| retrieval | SciFact nDCG@10 | SciFact recall@100 | SQuAD hit@1 | SQuAD hit@5 |",
        "|---|---|---|---|---|",
    ]

    def cell(block: dict[str, Any], fusion: str, metric: str) -> str:
        v = block.get(fusion, {}).get(metric)
        return "–" if v is None else f"{v:.3f}"

    for label, fusion in rows:
        if fusion not in sci and fusion not in sq:
            continue
        name = f"**{label} (default)**" if fusion == default else label
        lines.append(f"| {name} | {cell(sci, fusion, 'ndcg@10')} | {cell(sci, fusion, 'recall@100')} | "
                     f"{cell(sq, fusion, 'hit@1')} | {cell(sq, fusion, 'hit@5')} |")
    d_sci, d_sq = sci.get(default, {}), sq.get(default, {})
    if "ndcg@10_ci95" in d_sci or "hit@1_ci95" in d_sq:
        parts = []
        if "ndcg@10_ci95" in d_sci:
            parts.append("SciFact nDCG@10 [{:.3f}, {:.3f}]".format(*d_sci["ndcg@10_ci95"]))
        if "hit@1_ci95" in d_sq:
            parts.append("SQuAD hit@1 [{:.3f}, {:.3f}], hit@5 [{:.3f}, {:.3f}]".format(
                *d_sq["hit@1_ci95"], *d_sq["hit@5_ci95"]))
        lines += ["", "Bootstrap 95% intervals over queries, default fusion: " + "; ".join(parts) + "."]
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
            f"{a['answer_holds_gold_span']:.1%}); abstained on {a['abstain_rate_squad_other_articles']:.1%} of "
            f"{a['unanswerable_squad']} questions whose article is not indexed and on "
            f"{a['abstain_rate_scifact_claims']:.1%} of {a['unanswerable_scifact_claims']} SciFact claims asked "
            "of the SQuAD index.",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="subset: 100 SciFact queries, 1000 SQuAD questions, 200 answers")
    p.add_argument("--scifact-queries", type=int, default=None, help="first N SciFact test queries (default all 300)")
    p.add_argument("--squad-questions", type=int, default=None, help="random N SQuAD questions (default all)")
    p.add_argument("--answers", type=int, default=None, help="questions per answer/abstain set (default 1000)")
    p.add_argument("--skip", action="append", default=[], choices=["scifact", "squad", "answers"])
    p.add_argument("--fusions", default=",".join(FUSIONS), help="comma-separated subset of " + ",".join(FUSIONS))
    p.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results/quality.json)")
    p.add_argument("--ablation", action="store_true",
                   help="also run SciFact and SQuAD with each chunk-text choice switched off in turn "
                        "(sentence chunks, title); embeds the texts they change the first time")
    p.add_argument("--compare-precision", action="store_true",
                   help="also ingest SciFact with bf16 and with fp32 embeddings and compare nDCG@10 "
                        "(slow the first time on CPUs without native bf16: the bf16 side is emulated)")
    args = p.parse_args(argv)
    if args.quick:
        args.scifact_queries = args.scifact_queries or 100
        args.squad_questions = args.squad_questions or 1000
        args.answers = args.answers or 200
    n_answers = args.answers or 1000
    fusions = [f for f in args.fusions.split(",") if f]
    settings = Settings(checkpoint_seconds=1e9)  # one snapshot per index: no intermediate commits
    bench = Bench.create(settings)
    started = time.monotonic()
    results: dict[str, Any] = {
        "settings": {k: getattr(settings, k) for k in (
            "fusion", "rrf_k", "dense_weight", "candidates", "abstain_threshold", "chunk_tokens",
            "chunk_overlap_sentences", "title_tokens", "embed_title", "sentence_chunks", "reranker", "rerank_depth",
            "hnsw_threshold", "model")},
        "quick": bool(args.quick or args.scifact_queries or args.squad_questions or args.answers or args.skip
                      or set(fusions) != set(FUSIONS)),
    }
    if "scifact" not in args.skip:
        results["scifact"] = eval_scifact(bench, args.scifact_queries, fusions)
    if "squad" not in args.skip:
        results["squad"] = eval_squad(bench, args.squad_questions, fusions)
    if "answers" not in args.skip:
        results["answers"] = eval_answers(bench, n_answers)
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
