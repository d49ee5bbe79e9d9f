"""What a filter costs, at SciFact size, next to the unfiltered search in the same run.

    python -m bench.filters            # make bench-filters
    python -m bench.filters --queries 100

The SciFact index (5,183 abstracts, 67,430 chunks; ``bench.speed.scifact_index``, local store) is
searched in process by ``Engine.search`` (k=10, the real ONNX query encoder) with the 300 SciFact
claims, round-robin over the variants so that drift on a shared machine hits all of them alike:

* ``unfiltered``  — no filter (the baseline);
* ``time 1 %``    — a modified-time range admitting 52 documents (1 %): each abstract is given a
  distinct modification time (``os.utime``, one day apart in file-name order) and the index
  records them (an ``index`` run that embeds nothing);
* ``path 1 %``    — a path glob naming the same 52 files (``{a,b,…}``);
* ``type 100 %``  — a type filter admitting every document (the filter machinery at its widest).

Besides latency it reports the first use of a filter (choosing its chunks, cached per snapshot
afterwards), how many queries got all k results, and, for contrast, how many of the unfiltered
top-50 paragraphs a post-filter would have kept. Results: bench/results/filters.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.config import Settings
from service.engine import Engine
from service.filters import Filter

from . import datasets
from .speed import RESULTS, log, ms, pct, scifact_index

K = 10
BASE = 1_500_000_000.0  # 2017-07-14: the first abstract's modification time; each next one a day later
DAY = 86_400.0
SHARE = 0.01


def _date(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def stamp_times(corpus: Path) -> list[str]:
    """Give every abstract a distinct modification time (file-name order); returns the names."""
    names = sorted(p.name for p in corpus.iterdir() if p.suffix == ".txt")
    for i, name in enumerate(names):
        os.utime(corpus / name, (BASE + i * DAY, BASE + i * DAY))
    return names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    data = datasets.scifact()
    names = stamp_times(data.corpus)
    index, claims = scifact_index()  # records the new times (no model work when the index exists)
    claims = claims[: args.queries]
    settings = Settings(corpus=data.corpus, index=index)
    engine = Engine(settings)
    engine.load()
    stats = engine.stats()
    n = max(1, round(len(names) * SHARE))
    first = len(names) // 2  # a range in the middle of the collection
    chosen = names[first: first + n]
    folder = data.corpus.name
    variants: dict[str, dict[str, Any] | None] = {
        "unfiltered": None,
        "time 1 %": {"modified_after": _date(BASE + first * DAY), "modified_before": _date(BASE + (first + n) * DAY)},
        "path 1 %": {"path": f"{folder}/{{{','.join(chosen)}}}"},
        "type 100 %": {"type": ["txt"]},
    }
    view = engine._current().view
    admitted: dict[str, int] = {}
    selection_ms: dict[str, float] = {}
    chunks: dict[str, int] = {}
    times = view.modified_times()
    for name, spec in variants.items():
        if spec is None:
            admitted[name], chunks[name] = len(times), stats.chunks
            continue
        flt = Filter.parse(spec, settings.extensions)
        admitted[name] = sum(flt.admits(s, t) for s, t in times.items())
        started = time.perf_counter()
        restricted = view.filtered(flt)  # the first use: chooses the chunks (then cached)
        selection_ms[name] = ms(time.perf_counter() - started)
        chunks[name] = restricted.size
    log(f"documents admitted: {admitted}; chunks: {chunks}")
    for claim in claims[:20]:  # warm-up: encoder, pages of the vectors
        for spec in variants.values():
            engine.search(claim, K, spec)
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    full: dict[str, int] = dict.fromkeys(variants, 0)
    load_before = os.getloadavg()
    for claim in claims:
        for name, spec in variants.items():
            started = time.perf_counter()
            found = engine.search(claim, K, spec)
            latencies[name].append(time.perf_counter() - started)
            full[name] += len(found) == K
    load_after = os.getloadavg()
    post_kept = []  # what a post-filter of the unfiltered top 50 would keep, for the 1 % time filter
    time_filter = Filter.parse(variants["time 1 %"], settings.extensions)
    for claim in claims:
        top = engine.search(claim, 50)
        post_kept.append(sum(time_filter.admits(p.source, times.get(p.source)) for p in top))
    base = statistics.median(latencies["unfiltered"])
    rows = {
        name: {
            "documents": admitted[name], "chunks": chunks[name], "p50_ms": ms(pct(values, 50)),
            "p99_ms": ms(pct(values, 99)), "mean_ms": ms(float(np.mean(values))),
            "p50_vs_unfiltered": round(statistics.median(values) / base, 3),
            "queries_with_k_results": full[name], "first_use_ms": selection_ms.get(name),
        }
        for name, values in latencies.items()
    }
    result = {
        "dataset": "SciFact (BEIR test split: 5,183 abstracts, 300 claims); not used for tuning filters",
        "index": {"documents": stats.documents, "chunks": stats.chunks, "vector_index": stats.vector_index,
                  "store": stats.store},
        "k": K, "queries": len(claims), "variants": rows, "filters": variants,
        "post_filter_of_unfiltered_top50": {"mean_kept": round(float(np.mean(post_kept)), 2),
                                            "queries_keeping_k": int(sum(k >= K for k in post_kept))},
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "filters.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
