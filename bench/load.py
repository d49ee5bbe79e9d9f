"""Load test: concurrent searches while documents are added, replaced and deleted.

    python -m bench.load                  # make bench-load (60 s)
    python -m bench.load --seconds 20

A server runs in its own process on loopback over a copy of the seed index. Sixteen search
clients hammer /v1/search and /v1/ask while a writer keeps PUTting new versions of a few documents
and DELETEing them. Every result that cites a churned document must match, at its offsets, one of
the versions that was actually written (a half-applied change would cite text that never existed).
Reports requests/s, p50/p99, errors, inconsistent results, and the server's RSS over time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.config import PROJECT_ROOT, Settings

from .speed import RESULTS, Server, log, ms, pct, rss_mib

QUERIES = [
    "who visited Myanmar?", "police cooperation with Belarus", "G20 summit security in Hangzhou",
    "Chen Yixin tour of Southeast Asia", "intelligence sharing for overseas projects",
    "scam centres repatriation", "marker zebra version", "terrorist organizations list",
]


def version_text(doc: int, v: int) -> str:
    body = [f"Churn document {doc} version {v}"]
    for p in range(1, 4 + v % 3):
        body.append(f"Marker zebra version {v} paragraph {p}: the quick police report number {doc}-{v}-{p} "
                    f"describes border security cooperation in detail, revision {v}.")
    return "\n\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)

    from service.indexer import Indexer

    work = Path(tempfile.mkdtemp(prefix="ask-load-"))
    try:
        corpus = work / "seeds"
        shutil.copytree(PROJECT_ROOT / "seeds", corpus)
        index = work / "index"
        Indexer(Settings(corpus=corpus, index=index), progress=False).sync(corpus)
        server = Server(index)
        import httpx

        written: dict[str, set[str]] = {}  # source -> every text version ever PUT
        written_lock = threading.Lock()
        stop = time.monotonic() + args.seconds
        lat: list[float] = []
        stats = {"requests": 0, "errors": 0, "inconsistent": 0, "writes": 0, "write_errors": 0}
        lock = threading.Lock()
        rss: list[float] = []

        def check(results: list[dict[str, Any]]) -> int:
            bad = 0
            for r in results:
                if not r["source"].startswith("seeds/churn-"):
                    continue
                with written_lock:
                    versions = list(written.get(r["source"], ()))
                if not any(t[r["char_start"] : r["char_end"]] == r["text"] for t in versions):
                    bad += 1
            return bad

        def searcher(i: int) -> None:
            mine: list[float] = []
            errors = inconsistent = 0
            with httpx.Client(base_url=server.url, timeout=60) as client:
                n = i
                while time.monotonic() < stop:
                    q = QUERIES[n % len(QUERIES)]
                    t = time.perf_counter()
                    try:
                        if n % 5 == 0:
                            resp = client.post("/v1/ask", json={"question": q, "k": 5})
                            body = resp.json().get("citations", [])
                        else:
                            resp = client.post("/v1/search", json={"query": q, "k": 10})
                            body = resp.json().get("results", [])
                        ok = resp.status_code == 200
                        if not ok and errors < 3:
                            log(f"error {resp.status_code}: {resp.text[:300]}")
                    except (httpx.HTTPError, ValueError) as exc:
                        ok, body = False, []
                        if errors < 3:
                            log(f"error: {exc!r}")
                    mine.append(time.perf_counter() - t)
                    errors += not ok
                    inconsistent += check(body) if ok else 0
                    n += args.clients
            with lock:
                lat.extend(mine)
                stats["requests"] += len(mine)
                stats["errors"] += errors
                stats["inconsistent"] += inconsistent

        def writer() -> None:
            v = 0
            with httpx.Client(base_url=server.url, timeout=120) as client:
                while time.monotonic() < stop:
                    doc = v % 3
                    source = f"seeds/churn-{doc}.txt"
                    if v % 4 == 3:
                        resp = client.delete(f"/v1/documents/{source}")
                        ok = resp.status_code in (200, 404)
                    else:
                        text = version_text(doc, v)
                        with written_lock:
                            written.setdefault(source, set()).add(text)
                        resp = client.put(f"/v1/documents/{source}", content=text.encode())
                        ok = resp.status_code in (200, 201)
                    with lock:
                        stats["writes"] += 1
                        stats["write_errors"] += not ok
                    v += 1

        def sampler() -> None:
            while time.monotonic() < stop:
                rss.append(rss_mib(server.proc.pid)[0])
                time.sleep(1.0)

        threads = [threading.Thread(target=searcher, args=(i,)) for i in range(args.clients)]
        threads += [threading.Thread(target=writer), threading.Thread(target=sampler)]
        started = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.monotonic() - started
        current, peak = rss_mib(server.proc.pid)
        server.stop()
        third = max(1, len(rss) // 3)
        result = {
            **stats, "clients": args.clients, "seconds": round(elapsed, 1),
            "requests_per_s": round(stats["requests"] / elapsed, 1),
            "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)),
            "rss_first_third_mib": round(statistics.mean(rss[:third]), 1) if rss else None,
            "rss_last_third_mib": round(statistics.mean(rss[-third:]), 1) if rss else None,
            "rss_max_mib": round(max(rss), 1) if rss else None, "peak_rss_mib": round(peak, 1),
            "rss_slope_mib_per_min": round(float(np.polyfit(np.arange(len(rss)), rss, 1)[0]) * 60, 2)
            if len(rss) > 3 else None,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(result, indent=2))
    print("\n| clients | seconds | requests | req/s | p50 | p99 | errors | inconsistent | writes (errors) "
          "| RSS first→last third | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    r = result
    print(f"| {r['clients']} | {r['seconds']} | {r['requests']} | {r['requests_per_s']} | {r['p50_ms']} ms | "
          f"{r['p99_ms']} ms | {r['errors']} | {r['inconsistent']} | {r['writes']} ({r['write_errors']}) | "
          f"{r['rss_first_third_mib']} → {r['rss_last_third_mib']} MiB | {r['peak_rss_mib']} MiB |")
    ok = r["errors"] == 0 and r["inconsistent"] == 0 and r["write_errors"] == 0
    log("load test " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
