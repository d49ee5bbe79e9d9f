"""What one commit of the local store costs, segments against rewriting the whole index, same run.

    python -m bench.commits                       # SciFact size, ~100k chunks, ~100k with graphs (make bench-commits)
    python -m bench.commits --sizes scifact,100k,1m

For each size the benchmark builds an index from the SciFact index's own records (documents,
chunks, vectors: no model work; 100k and 1M add renamed copies of the documents), then measures:

* **one document's PUT and DELETE** at the store (``writer.apply``: what a commit costs besides
  the model, which is timed apart on the same document's texts): p50 of ``--repeat`` runs, with the
  bytes the process wrote (``/proc/self/io``) and the bytes of the files the commit added;
* the same change as a **full rewrite** of the index (every document written again, HNSW rebuilt
  above the threshold): what every commit cost before segments (format 4), in the same run;
* **queries** (the service's retrieval, weighted fusion, k=10, SciFact claims embedded once by the
  query encoder) on the merge policy's worst case (the most segments the policy lets stand, with
  deleted documents) and on the same documents fully merged, in alternating blocks of 50 claims,
  every claim timed ``--query-rounds`` times on each: p50/p99 of all, the ratio of the p50s, and each
  round's ratio (one round's swings by a few per cent on this machine); and on the
  source index itself when it is format 4 (one snapshot, BM25 weights precomputed by bm25s).

``100k-hnsw`` is the ~100k index past a lowered HNSW threshold (50,000): its worst case is one graph
and a tail of ``ASK_GRAPH_TAIL_SHARE`` of the chunks, and the merged index has one graph, as every
index past the threshold has; the fold of that tail into the graph (the policy's own merge) is timed
beside ``merge_all``'s fresh build.
At 1M chunks the copies' big segment is searched exactly (``--exact-1m``, the default: building its
HNSW graph takes about 15 minutes on 2 cores and a commit never touches it). Results go to
bench/results/commits.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.config import PROJECT_ROOT, Settings
from service.store.base import DocumentUpsert, IndexMeta
from service.store.local import LocalStore, open_snapshot
from service.store.merging import MergePolicy, merge_all, merge_once
from service.vectors import uses_hnsw

RESULTS = PROJECT_ROOT / "bench" / "results"
HNSW_100K_THRESHOLD = 50_000  # "100k-hnsw": the ~100k index with graphs, as an index past the threshold has


def log(msg: str) -> None:
    print(f"[commits] {msg}", file=sys.stderr, flush=True)


def written_bytes() -> int:
    """Bytes this process has caused to be written to storage so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def files_bytes(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def source_index() -> Path:
    """The SciFact index of ``make bench-speed``, as it is when one exists (its chunks, vectors and
    texts are what a commit benchmark needs, whichever chunker version built it), else built."""
    from service.store import current_name

    from .speed import CACHE, scifact_index

    if current_name(CACHE / "scifact-index") is not None:
        return CACHE / "scifact-index"
    return scifact_index()[0]


def records(index: Path) -> tuple[IndexMeta, list[DocumentUpsert]]:
    """The SciFact index's documents as a writer receives them (lexical texts by the indexer's rule)."""
    from .quality import index_records

    return index_records(index, Settings(index=index))


def copies(upserts: list[DocumentUpsert], chunks: int) -> list[DocumentUpsert]:
    """``upserts`` and renamed copies of them until about ``chunks`` chunks."""
    out, total, n = list(upserts), sum(len(u.chunks) for u in upserts), 0
    while total < chunks:
        n += 1
        for u in upserts:
            if total >= chunks:
                break
            out.append(dataclasses.replace(u, doc=dataclasses.replace(u.doc, source=f"copy{n:02d}/{u.doc.source}")))
            total += len(u.chunks)
    return out


def worst_case_groups(upserts: list[DocumentUpsert], policy: MergePolicy, graphs: bool = False
                      ) -> list[list[DocumentUpsert]]:
    """Documents grouped into the most segments the policy lets stand, counting the commit that then
    replaces one document of each group (``bench_size``) as one more segment of tier 0.

    Exact index: ``per_tier - 1`` segments at the top of each tier, from the smallest tier up (tier 0:
    one fewer, for that commit), the rest in one segment. Past the HNSW threshold (``graphs``): one
    graph holding all but the policy's tail, and the tail (all it may hold) in ``per_tier - 2``
    segments beside that commit's."""
    if graphs:
        parts = max(policy.per_tier - 2, 1)
        # the replacing commit's chunks, at most (it replaces the smallest document of each group)
        margin = (parts + 1) * int(statistics.median(len(u.chunks) for u in upserts))
        budget = policy.tail(sum(len(u.chunks) for u in upserts)) - margin
        kept, chunks = len(upserts), 0
        while kept > 1 and chunks + len(upserts[kept - 1].chunks) <= budget:
            kept -= 1
            chunks += len(upserts[kept].chunks)
        tail = upserts[kept:]
        cut = [round(i * len(tail) / parts) for i in range(parts + 1)]
        return [upserts[:kept], *[tail[cut[i] : cut[i + 1]] for i in range(parts) if cut[i + 1] > cut[i]]]
    groups: list[list[DocumentUpsert]] = []
    rest = list(upserts)
    tier = 0
    while rest:
        size = policy.floor * policy.per_tier ** tier
        for _ in range(policy.per_tier - (2 if tier == 0 else 1)):
            group: list[DocumentUpsert] = []
            chunks = 0
            while rest and chunks + len(rest[0].chunks) <= size:
                chunks += len(rest[0].chunks)
                group.append(rest.pop(0))
            if group:
                groups.append(group)
        tier += 1
        if sum(len(u.chunks) for u in rest) <= policy.floor * policy.per_tier ** tier:
            if rest:
                groups.append(rest)
            break
    return groups


def build(folder: Path, meta: IndexMeta, groups: Sequence[list[DocumentUpsert]], hnsw_threshold: int) -> LocalStore:
    """An index whose segments are exactly ``groups`` (merges held off while it is built)."""
    local = LocalStore(folder, hnsw_threshold=hnsw_threshold, lexical_text=lambda d, c: c.text,
                       merge_in_background=False)
    local.policy = MergePolicy(10_000, tail_share=1.0)  # no tier fills, no tail outgrows its share
    for group in groups:
        with local.writer() as writer:
            writer.apply(meta, group, [])
    return local


def timed_commit(local: LocalStore, meta: IndexMeta, upserts: list[DocumentUpsert], deletes: list[str],
                 replace_all: bool = False) -> dict[str, float]:
    before_files, before_io = files_bytes(local.index_dir), written_bytes()
    t = time.perf_counter()
    with local.writer() as writer:
        writer.apply(meta, upserts, deletes, replace_all=replace_all)
    view = open_snapshot(local.index_dir)  # until a reader sees it
    seconds = time.perf_counter() - t
    after_files = files_bytes(local.index_dir)
    added = sum(size for p, size in after_files.items() if before_files.get(p) != size)
    del view
    return {"seconds": seconds, "io_bytes": written_bytes() - before_io, "file_bytes": added}


def p50(rows: list[dict[str, float]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def encoder(index: Path) -> Any:
    """The ONNX query encoder the service exports next to an index."""
    from service.embedding import OnnxEmbedder, model_info, onnx_path_for

    info = model_info(Settings().model)
    return OnnxEmbedder(info, onnx_path_for(index, info))


def model_seconds(doc: DocumentUpsert, index: Path) -> float:
    """The ONNX encoder's time on the document's texts: about the model's share of a PUT."""
    embedder = encoder(index)
    texts = [c.text for c in doc.chunks]
    embedder.embed(texts)
    t = time.perf_counter()
    for _ in range(3):
        embedder.embed(texts)
    return (time.perf_counter() - t) / 3


def query_times(view: Any, claims: list[str], vectors: np.ndarray) -> list[float]:
    from service.retrieval import Retriever

    retriever = Retriever(view, fusion="weighted")
    out = []
    for text, v in zip(claims, vectors, strict=True):
        t = time.perf_counter()
        retriever.search(text, v, 10)
        out.append(time.perf_counter() - t)
    return out


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def bench_size(name: str, meta: IndexMeta, upserts: list[DocumentUpsert], probe: DocumentUpsert, repeat: int,
               hnsw_threshold: int, claims: list[str], claim_vectors: np.ndarray, root: Path,
               full_rewrites: int, query_rounds: int) -> dict[str, Any]:
    settings = Settings()
    policy = MergePolicy(settings.segments_per_tier, tail_share=settings.graph_tail_share)
    chunks = sum(len(u.chunks) for u in upserts)
    graphs = uses_hnsw(chunks, hnsw_threshold)
    groups = worst_case_groups(upserts, policy, graphs)
    log(f"{name}: {len(upserts)} documents, {chunks} chunks in {len(groups)} segments")
    t = time.perf_counter()
    local = build(root / name, meta, groups, hnsw_threshold)
    built = time.perf_counter() - t
    # the worst case also carries deletions: a few documents of each segment replaced
    replaced = [min(g, key=lambda u: len(u.chunks)) for g in groups if len(g) > 1]
    with local.writer() as writer:
        writer.apply(meta, replaced, [])
    split = open_snapshot(local.index_dir)
    if policy.plan(split.parts, graphs):
        raise AssertionError(f"{name}: the worst case built is not a state the merge policy lets stand")
    out: dict[str, Any] = {"documents": len(upserts), "chunks": chunks, "segments_worst_case": len(split.parts),
                           "graphs_worst_case": sum(p.segment.vectors.kind == "hnsw" for p in split.parts),
                           "exact_rows_worst_case": sum(p.segment.size for p in split.parts
                                                        if p.segment.vectors.kind == "exact"),
                           "build_s": round(built, 1)}
    shutil.copytree(local.index_dir, root / f"{name}-merged")
    whole = LocalStore(root / f"{name}-merged", hnsw_threshold=hnsw_threshold, lexical_text=lambda d, c: c.text,
                       merge_in_background=False)
    merge_t = time.perf_counter()
    merge_all(whole)
    out["merge_all_s"] = round(time.perf_counter() - merge_t, 2)
    if graphs:  # the policy's own merge once the tail outgrows its share: folded into the base's graph
        shutil.copytree(local.index_dir, root / f"{name}-fold")
        folding = LocalStore(root / f"{name}-fold", hnsw_threshold=hnsw_threshold, lexical_text=lambda d, c: c.text,
                             merge_in_background=False)
        folding.policy = MergePolicy(policy.per_tier, tail_share=1e-9)
        fold_t = time.perf_counter()
        merge_once(folding)
        folded = open_snapshot(folding.index_dir)
        out["fold_s"] = round(time.perf_counter() - fold_t, 2)
        out["fold_rows_added"] = out["exact_rows_worst_case"]
        if len(folded.parts) != 1 or folded.parts[0].segment.nodes <= folded.size:
            raise AssertionError(f"{name}: the fold did not extend the base's graph")
        del folded
        shutil.rmtree(root / f"{name}-fold")
    merged = open_snapshot(whole.index_dir)
    split_q, merged_q = [], []
    round_ratios = []
    for view in (split, merged):  # both opened and warm, as a serving process's views are
        query_times(view, claims[:10], claim_vectors[:10])
    for _round in range(query_rounds):  # every claim timed once per round on each
        split_r, merged_r = [], []
        for block in range(0, len(claims), 50):  # alternating blocks: load drift hits both alike
            for view, times in ((split, split_r), (merged, merged_r)):
                times += query_times(view, claims[block : block + 50], claim_vectors[block : block + 50])
        round_ratios.append(round(pct(split_r, 50) / pct(merged_r, 50), 3))
        split_q += split_r
        merged_q += merged_r
    out["queries"] = {"worst_case_p50_ms": pct(split_q, 50), "worst_case_p99_ms": pct(split_q, 99),
                      "merged_p50_ms": pct(merged_q, 50), "merged_p99_ms": pct(merged_q, 99)}
    out["queries"]["p50_ratio"] = round(out["queries"]["worst_case_p50_ms"] / out["queries"]["merged_p50_ms"], 3)
    out["queries"]["p50_ratio_per_round"] = round_ratios  # how much one round's ratio swings
    log(f"{name}: queries {out['queries']}")
    puts, deletes = [], []
    for i in range(repeat):
        doc = dataclasses.replace(probe, doc=dataclasses.replace(probe.doc, source=f"probe/{i}.txt"))
        puts.append(timed_commit(local, meta, [doc], []))
        deletes.append(timed_commit(local, meta, [], [doc.doc.source]))
    out["segments"] = {"put_s": p50(puts, "seconds"), "delete_s": p50(deletes, "seconds"),
                       "put_io_bytes": p50(puts, "io_bytes"), "put_file_bytes": p50(puts, "file_bytes"),
                       "delete_io_bytes": p50(deletes, "io_bytes"), "delete_file_bytes": p50(deletes, "file_bytes")}
    log(f"{name}: segment commit PUT {out['segments']['put_s']:.3f}s DELETE {out['segments']['delete_s']:.3f}s")
    rewrites = []
    everything = list(upserts)
    for i in range(full_rewrites):  # format 4: every commit wrote the whole index again
        doc = dataclasses.replace(probe, doc=dataclasses.replace(probe.doc, source=f"probe/full{i}.txt"))
        rewrites.append(timed_commit(local, meta, [*everything, doc], [], replace_all=True))
    if rewrites:
        out["full_rewrite"] = {"commit_s": p50(rewrites, "seconds"), "io_bytes": p50(rewrites, "io_bytes"),
                               "file_bytes": p50(rewrites, "file_bytes"), "runs": len(rewrites)}
        out["speedup_put"] = round(out["full_rewrite"]["commit_s"] / out["segments"]["put_s"], 1)
        log(f"{name}: full rewrite {out['full_rewrite']['commit_s']:.2f}s")
    del split, merged
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="scifact,100k,100k-hnsw")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--full-rewrites", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--query-rounds", type=int, default=3, help="times each claim is timed on each index")
    parser.add_argument("--hnsw-1m", action="store_true", help="build the 1M index's HNSW graph (~15 min)")
    args = parser.parse_args(argv)
    from . import datasets

    index = source_index()
    meta, upserts = records(index)
    probe = next(u for u in upserts if 2 <= len(u.chunks) <= 6)
    claims = [q.text for q in datasets.scifact().queries][: args.queries]
    settings = Settings()
    claim_vectors = encoder(index).embed(claims)
    results: dict[str, Any] = {"machine": os.uname().nodename, "load_before": os.getloadavg()[0],
                               "model_put_s": round(model_seconds(probe, index), 4),
                               "probe_chunks": len(probe.chunks), "policy": {"per_tier": settings.segments_per_tier,
                                                                             "floor": MergePolicy().floor}}
    sizes: dict[str, Callable[[], list[DocumentUpsert]]] = {
        "scifact": lambda: upserts, "100k": lambda: copies(upserts, 99_000), "1m": lambda: copies(upserts, 1_000_000),
        "100k-hnsw": lambda: copies(upserts, 99_000)}
    legacy = open_snapshot(index)
    if legacy.legacy:  # the same documents in format 4 (BM25 weights precomputed), one snapshot
        times = query_times(legacy, claims, claim_vectors)
        results["format4_scifact_queries"] = {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99)}
    del legacy
    with tempfile.TemporaryDirectory(prefix="bench-commits-") as tmp:
        for name in args.sizes.split(","):
            threshold = settings.hnsw_threshold if name != "1m" or args.hnsw_1m else 10**9
            if name == "100k-hnsw":  # above the threshold: graphs for segments of 10k chunks or more
                threshold = HNSW_100K_THRESHOLD
            results[name] = bench_size(name, meta, sizes[name](), probe, args.repeat, threshold, claims,
                                       claim_vectors, Path(tmp), args.full_rewrites if name in ("scifact", "100k") else 1,
                                       args.query_rounds)
            if name == "1m" and not args.hnsw_1m:
                results[name]["note"] = "the 1M segment searched exactly (no HNSW graph built)"
            if name == "100k-hnsw":
                results[name]["note"] = f"hnsw_threshold {threshold}: segments of 10k chunks or more have graphs"
    results["load_after"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "commits.json"
    if args.sizes != parser.get_default("sizes") and path.exists():  # other sizes: kept from their own run
        results = {**json.loads(path.read_text()), **{k: v for k, v in results.items() if k in args.sizes.split(",")},
                   f"run_{'_'.join(args.sizes.split(','))}": {k: v for k, v in results.items()
                                                              if k not in args.sizes.split(",")}}
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
