"""Soak test: 30 minutes of mixed reads and writes from 16 clients against one server process.

    python -m bench.load                       # make bench-load: 30 minutes, 16 clients
    python -m bench.load --minutes 2           # a quick check
    python -m bench.load --seconds 90 --clients 8 --write-share 0.2
    make bench-load ARGS="--minutes 5"

A server runs in its own process on loopback (127.0.0.1 only) over a private copy of the seed
index. Each of the clients loops until the deadline, choosing for every request a read or, with
probability ``--write-share`` (10 %), a write:

* reads: POST /v1/search (40 %), POST /v1/ask (20 %), GET /v1/search (15 %), POST /v1/context
  (10 %), GET /v1/documents (5 %), GET /v1/documents/{id} (10 %: a seed article or a churned one);
* writes, only on ``seeds/churn/…`` ids (``--docs`` of them; the seed articles are never touched):
  PUT of a new document, PUT of a replacement, re-PUT of identical content, DELETE of a present
  document, DELETE of an absent one, and (a tenth of the writes) DELETE of an id never written.
  A writer prefers a document no other write is touching; ``--same-doc-share`` (10 %) of the
  writes go to a document that another write is working on, to exercise concurrent writes of one id.

Expected statuses: reads 200 (a churned document's GET may be 404 when it is absent); PUT 201 when
the document was absent and 200 when it was present; DELETE 200 when present, 404 when absent or
never written. When writes to one id overlapped (the server may apply them in either order) or an
earlier write failed, the harness does not know the state: PUT may then be 200 or 201, DELETE 200
or 404, and the next write that runs alone makes the state known again. Writes are serialised
inside the one server process, so a 503 ``index_busy`` is as much an error as any other 5xx: every
unexpected status, exception and timeout counts as an error (the first 20 are kept as examples).

Consistency: every passage cited by search/ask/context (text and quote at their offsets), every
listed document and every document read must match, byte for byte, a version that was actually
written (``not_written``; seed articles must match their own text). Where no write to that document
was in flight during the whole request, it must match the *current* version, and a deleted document
must be neither cited, listed nor readable (``stale``). Both count as inconsistent.

Memory: the server's RSS (VmRSS) is sampled every 10 s (more often in runs under 400 s). Warm-up
is the first 10 % of the run or 2 minutes, whichever is smaller. RSS "start" is the median of the
samples in the window right after the warm-up, "middle" the median around the run's midpoint,
"end" the median of the last window (windows of max(2 samples, min(60 s, 5 % of the run))); growth
after warm-up = (end - start) / start.

PASS when errors == 0, inconsistent == 0 and RSS growth after warm-up < 10 %; the exit status is 1
otherwise. Prints a table. A full-length run (30 minutes or more) writes bench/results/load.json; a
shorter run writes bench/.cache/load-quick.json (git-ignored), so a quick check never replaces the
published figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.config import PROJECT_ROOT, Settings

from .speed import CACHE, RESULTS, Server, log, ms, pct, rss_mib

FULL_MINUTES = 30.0
QUICK_PATH = CACHE.parent / "load-quick.json"
FULL_PATH = RESULTS / "load.json"
CHURN = "seeds/churn/"
MAX_EXAMPLES = 20
MISSING_SHARE = 0.1  # of the writes: DELETE of an id that was never written
GROWTH_LIMIT_PCT = 10.0
READS = (("search", 40), ("ask", 20), ("search_get", 15), ("context", 10), ("list", 5), ("document", 10))

QUERIES = [
    "who visited Myanmar?", "police cooperation with Belarus", "G20 summit security in Hangzhou",
    "Chen Yixin tour of Southeast Asia", "intelligence sharing for overseas projects",
    "scam centres repatriation", "marker zebra version", "terrorist organizations list",
    "border security cooperation report", "churn document revision paragraph",
    "quick police report number", "which ministers met in Beijing?",
]


def version_text(doc: int, v: int) -> str:
    body = [f"Churn document {doc} version {v}"]
    for p in range(1, 4 + v % 3):
        body.append(f"Marker zebra version {v} paragraph {p}: the quick police report number {doc}-{v}-{p} "
                    f"describes border security cooperation in detail, revision {v}.")
    return "\n\n".join(body) + "\n"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- what the writers know ------------------------------------------------------------------------
@dataclass
class Doc:
    source: str
    number: int
    present: bool | None = False  # None: unknown (after overlapping writes or a failed one)
    text: str | None = None
    inflight: int = 0
    gen: int = 0  # bumped when a write starts: a read is "stable" if it saw no write start or run
    overlapped: bool = False  # two writes were in flight at once since the doc was last idle


class Churn:
    """The churned documents as the harness knows them, and every version ever written."""

    def __init__(self, n_docs: int) -> None:
        self.lock = threading.Lock()
        self.docs = {s: Doc(s, i) for i, s in enumerate(f"{CHURN}doc-{i:02d}.txt" for i in range(n_docs))}
        self.written: dict[str, list[str]] = defaultdict(list)
        self.shas: dict[str, set[str]] = defaultdict(set)
        self.versions = itertools.count(1)
        self.missing = itertools.count(1)

    def begin(self, rng: random.Random, same_doc_share: float) -> tuple[Doc, bool | None, str | None]:
        """Pick a document for a write and mark the write in flight: (doc, present, text) as known."""
        with self.lock:
            idle = [d for d in self.docs.values() if not d.inflight]
            busy = [d for d in self.docs.values() if d.inflight]
            doc = rng.choice(busy) if busy and (not idle or rng.random() < same_doc_share) else rng.choice(idle)
            doc.inflight += 1
            doc.gen += 1
            doc.overlapped |= doc.inflight > 1
            return doc, doc.present, doc.text

    def end(self, doc: Doc, known_at_start: bool, outcome: tuple[bool, str | None] | None) -> bool:
        """A write finished; ``outcome`` is (present, text) after it, None when it failed. Returns
        whether its status could be predicted exactly (state known, no other write of the id overlapped)."""
        with self.lock:
            strict = known_at_start and not doc.overlapped
            doc.inflight -= 1
            if doc.overlapped or outcome is None:
                doc.present, doc.text = None, None
            else:
                doc.present, doc.text = outcome
            if doc.inflight == 0:
                doc.overlapped = False
            return strict

    def new_text(self, doc: Doc) -> str:
        return version_text(doc.number, next(self.versions))

    def record(self, source: str, text: str) -> None:
        """Before a PUT is sent: from now on the server may serve this version."""
        with self.lock:
            if text not in self.written[source]:
                self.written[source].append(text)
                self.shas[source].add(sha(text))

    def view(self) -> dict[str, tuple[int, bool, bool | None, str | None]]:
        """source -> (gen, stable, present, text), taken before a read is sent."""
        with self.lock:
            return {s: (d.gen, not d.inflight and d.present is not None, d.present, d.text)
                    for s, d in self.docs.items()}

    def gens(self) -> dict[str, int]:
        with self.lock:
            return {s: d.gen for s, d in self.docs.items()}

    def versions_of(self, source: str) -> list[str]:
        with self.lock:
            return list(self.written.get(source, ()))

    def sha_known(self, source: str, digest: str) -> bool:
        with self.lock:
            return digest in self.shas.get(source, ())


# -- the tally ------------------------------------------------------------------------------------
class Tally:
    def __init__(self, started: float) -> None:
        self.lock = threading.Lock()
        self.started = started
        self.status: dict[str, Counter[str]] = defaultdict(Counter)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.read_lat: list[float] = []
        self.write_lat: list[float] = []
        self.errors = 0
        self.examples: list[dict[str, Any]] = []
        self.inconsistent: Counter[str] = Counter()
        self.inconsistent_examples: list[dict[str, Any]] = []
        self.contended_writes = 0
        self.checked: Counter[str] = Counter()  # churned-document citations checked (and how strictly)

    @property
    def requests(self) -> int:
        return len(self.read_lat) + len(self.write_lat)

    def add(self, label: str, write: bool, status: int | None, seconds: float, ok: bool,
            method: str, path: str, body: str) -> None:
        with self.lock:
            self.status[label][str(status) if status is not None else "exception"] += 1
            self.latency[label].append(seconds)
            (self.write_lat if write else self.read_lat).append(seconds)
            if not ok:
                self.errors += 1
                if len(self.examples) < MAX_EXAMPLES:
                    ex = {"t_s": round(time.monotonic() - self.started, 1), "op": label, "method": method,
                          "path": path, "status": status, "body": body[:200]}
                    self.examples.append(ex)
                    log(f"error: {ex}")

    def bad(self, kind: str, label: str, detail: str) -> None:
        with self.lock:
            self.inconsistent[kind] += 1
            if len(self.inconsistent_examples) < MAX_EXAMPLES:
                ex = {"t_s": round(time.monotonic() - self.started, 1), "kind": kind, "op": label,
                      "detail": detail[:300]}
                self.inconsistent_examples.append(ex)
                log(f"inconsistent: {ex}")


# -- the run ----------------------------------------------------------------------------------------
class Soak:
    def __init__(self, args: argparse.Namespace, server: Server, seeds: dict[str, str], total_s: float) -> None:
        self.args = args
        self.server = server
        self.seeds = seeds  # seed article id -> its text
        self.seed_ids = sorted(seeds)
        self.churn = Churn(args.docs)
        self.total_s = total_s
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.deadline = self.started + total_s
        self.tally = Tally(self.started)
        self.samples: list[list[float]] = []  # [t_s, rss MiB]
        self.progress: list[list[float]] = []  # [t_s, requests, writes, errors, inconsistent]
        self.server_exit: int | None = None

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    # -- one request ----------------------------------------------------------------------------------
    def send(self, client: Any, label: str, write: bool, method: str, path: str, expect: set[int] | None,
             **kw: Any) -> tuple[int | None, Any, str, float]:
        """Sends; returns (status, parsed JSON or None, raw text, seconds). ``expect`` None: the
        caller judges the status and calls ``judge`` itself."""
        import httpx

        t = time.perf_counter()
        try:
            resp = client.request(method, path, **kw)
            status, text = resp.status_code, resp.text
            body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else None
        except (httpx.HTTPError, ValueError) as exc:
            status, text, body = None, repr(exc), None
        seconds = time.perf_counter() - t
        if expect is not None:
            self.tally.add(label, write, status, seconds, status in expect, method, path, text)
        return status, body, text, seconds

    # -- reads ----------------------------------------------------------------------------------------
    def read(self, client: Any, rng: random.Random) -> None:
        kind = rng.choices([k for k, _ in READS], weights=[w for _, w in READS])[0]
        q, k = rng.choice(QUERIES), rng.randint(3, 10)
        before = self.churn.view()
        if kind == "document":
            churned = rng.random() < 0.5
            source = rng.choice(sorted(self.churn.docs)) if churned else rng.choice(self.seed_ids)
            label = "GET /v1/documents/{churn}" if churned else "GET /v1/documents/{seed}"
            status, body, text, _ = self.send(client, label, False, "GET", f"/v1/documents/{source}",
                                              {200, 404} if churned else {200})
            if status == 200 and body is not None:
                self.check_document(label, source, body, before)
            elif status == 404 and churned:
                gen, stable, present, _ = before[source]
                if stable and present and self.churn.gens()[source] == gen:
                    self.tally.bad("stale", label, f"{source} is present but GET answered 404")
            return
        label, method, path, kw, key = {
            "search": ("POST /v1/search", "POST", "/v1/search", {"json": {"query": q, "k": k}}, "results"),
            "search_get": ("GET /v1/search", "GET", "/v1/search", {"params": {"q": q, "k": k}}, "results"),
            "ask": ("POST /v1/ask", "POST", "/v1/ask", {"json": {"question": q, "k": k}}, "citations"),
            "context": ("POST /v1/context", "POST", "/v1/context",
                        {"json": {"query": q, "max_tokens": rng.choice([300, 800, 2000])}}, "citations"),
            "list": ("GET /v1/documents", "GET", "/v1/documents", {}, "documents"),
        }[kind]
        status, body, text, seconds = self.send(client, label, False, method, path, None, **kw)
        ok = status == 200 and isinstance(body, dict) and isinstance(body.get(key), list)
        self.tally.add(label, False, status, seconds, ok, method, path, text)
        if ok:
            try:
                if kind == "list":
                    self.check_list(label, body[key], before)
                else:
                    self.check_citations(label, body[key], before)
            except (KeyError, TypeError) as exc:
                self.tally.bad("malformed", label, f"{exc!r} in {text[:200]}")

    def stable(self, before: dict[str, tuple[int, bool, bool | None, str | None]], source: str,
               gens: dict[str, int]) -> tuple[bool, bool | None, str | None]:
        gen, stable, present, text = before[source]
        return stable and gens[source] == gen, present, text

    def check_citations(self, label: str, cites: list[dict[str, Any]], before: dict[str, Any]) -> None:
        gens = self.churn.gens()
        for c in cites:
            src, cs, ce, qs, qe = c["source"], c["char_start"], c["char_end"], c["quote_start"], c["quote_end"]

            def fits(t: str, c: dict[str, Any] = c, cs: int = cs, ce: int = ce, qs: int = qs, qe: int = qe) -> bool:
                return t[cs:ce] == c["text"] and t[qs:qe] == c["quote"]

            if src in self.seeds:
                if not fits(self.seeds[src]):
                    self.tally.bad("not_written", label, f"{src} [{cs}:{ce}] differs from the seed article")
                continue
            if not src.startswith(CHURN):
                self.tally.bad("not_written", label, f"cites {src!r}, which was never written")
                continue
            if not any(fits(v) for v in self.churn.versions_of(src)):
                self.tally.bad("not_written", label, f"{src} [{cs}:{ce}] {c['text'][:80]!r} matches no version written")
                continue
            if src in before:
                stable, present, text = self.stable(before, src, gens)
                with self.tally.lock:
                    self.tally.checked["churn_citations"] += 1
                    self.tally.checked["churn_citations_current_version"] += stable
                if stable and not present:
                    self.tally.bad("stale", label, f"cites {src}, deleted before the request")
                elif stable and not fits(text or ""):
                    self.tally.bad("stale", label, f"cites an older version of {src}")

    def check_list(self, label: str, docs: list[dict[str, Any]], before: dict[str, Any]) -> None:
        gens = self.churn.gens()
        listed = {d["source"]: d["sha256"] for d in docs}
        missing = [s for s in self.seed_ids if s not in listed]
        if missing:
            self.tally.bad("stale", label, f"seed articles not listed: {missing}")
        for src, digest in listed.items():
            if src in self.seeds:
                continue
            if not src.startswith(CHURN) or not self.churn.sha_known(src, digest):
                self.tally.bad("not_written", label, f"lists {src} with a sha256 of no version written")
        for src in before:
            stable, present, text = self.stable(before, src, gens)
            if not stable:
                continue
            if present and listed.get(src) != sha(text or ""):
                self.tally.bad("stale", label, f"{src}: listed {listed.get(src, 'absent')}, current version differs")
            elif not present and src in listed:
                self.tally.bad("stale", label, f"lists {src}, deleted before the request")

    def check_document(self, label: str, source: str, body: dict[str, Any], before: dict[str, Any]) -> None:
        got = body.get("text")
        paras = body.get("paragraphs") or []
        if body.get("source") != source or not isinstance(got, str) or any(
                got[p["char_start"] : p["char_end"]] != p["text"] for p in paras):
            self.tally.bad("malformed", label, f"{source}: source, text or paragraphs do not agree")
            return
        if source in self.seeds:
            if got != self.seeds[source]:
                self.tally.bad("not_written", label, f"{source} differs from the seed article")
            return
        if got not in self.churn.versions_of(source):
            self.tally.bad("not_written", label, f"{source}: a text that was never written")
            return
        stable, present, text = self.stable(before, source, self.churn.gens())
        if stable and not present:
            self.tally.bad("stale", label, f"{source} was deleted before the request, GET answered 200")
        elif stable and got != text:
            self.tally.bad("stale", label, f"{source}: an older version")

    # -- writes ---------------------------------------------------------------------------------------
    def write(self, client: Any, rng: random.Random) -> None:
        if rng.random() < MISSING_SHARE:
            source = f"{CHURN}missing-{next(self.churn.missing)}.txt"
            self.send(client, "DELETE {never written}", True, "DELETE", f"/v1/documents/{source}", {404})
            return
        doc, present, text = self.churn.begin(rng, self.args.same_doc_share)
        r = rng.random()
        if present is True:
            op = "replace" if r < 0.5 else "identical" if r < 0.75 else "delete present"
        elif present is False:
            op = "new" if r < 0.85 else "delete absent"
        else:
            op = "put unknown" if r < 0.7 else "delete unknown"
        method = "DELETE" if op.startswith("delete") else "PUT"
        label = f"{method} {{churn}} {op.removeprefix('delete ').removeprefix('put ')}"
        path = f"/v1/documents/{doc.source}"
        outcome: tuple[bool, str | None] | None = None
        status: int | None = None
        raw, seconds = "", 0.0
        try:
            if method == "PUT":
                body_text = text if op == "identical" and text else self.churn.new_text(doc)
                self.churn.record(doc.source, body_text)
                status, _, raw, seconds = self.send(client, label, True, "PUT", path, None, content=body_text.encode())
                outcome = (True, body_text) if status in (200, 201) else None
            else:
                status, _, raw, seconds = self.send(client, label, True, "DELETE", path, None)
                outcome = (False, None) if status in (200, 404) else None
        finally:
            strict = self.churn.end(doc, present is not None, outcome)
        if not strict:
            expect = {200, 201} if method == "PUT" else {200, 404}
            if present is not None:  # known at the start, but another write of the id overlapped
                label += " (overlapped)"
                with self.tally.lock:
                    self.tally.contended_writes += 1
        elif method == "PUT":
            expect = {200} if present else {201}
        else:
            expect = {200} if present else {404}
        self.tally.add(label, True, status, seconds, status in expect, method, path, raw)

    # -- clients and the sampler ---------------------------------------------------------------------
    def client(self, i: int) -> None:
        import httpx

        rng = random.Random(self.args.seed * 1000 + i)
        with httpx.Client(base_url=self.server.url, timeout=120) as client:
            while self.running():
                if rng.random() < self.args.write_share:
                    self.write(client, rng)
                else:
                    self.read(client, rng)

    def sampler(self, every: float, report_every: float) -> None:
        next_report = report_every
        while True:
            now = time.monotonic()
            t = round(now - self.started, 1)
            if self.server.proc.poll() is not None:
                self.server_exit = self.server.proc.returncode
                log(f"the server exited ({self.server_exit}) at {t} s: stopping")
                self.stop.set()
                return
            self.samples.append([t, round(rss_mib(self.server.proc.pid)[0], 1)])
            tally = self.tally
            with tally.lock:
                row = [t, tally.requests, len(tally.write_lat), tally.errors, sum(tally.inconsistent.values())]
            self.progress.append(row)
            if t >= next_report:
                next_report += report_every
                log(f"{t:7.0f} s  requests {row[1]}  writes {row[2]}  errors {row[3]}  inconsistent {row[4]}  "
                    f"RSS {self.samples[-1][1]} MiB")
            if now >= self.deadline or self.stop.is_set():
                return
            self.stop.wait(min(every, max(0.0, self.deadline - now)))


def rss_summary(samples: list[list[float]], total_s: float, every: float) -> dict[str, Any]:
    warmup = min(0.1 * total_s, 120.0)
    window = max(2 * every, min(60.0, 0.05 * total_s))
    mid = warmup + (total_s - warmup) / 2

    def median(lo: float, hi: float) -> float | None:
        vals = [m for t, m in samples if lo <= t <= hi]
        return round(statistics.median(vals), 1) if vals else None

    start = median(warmup, warmup + window)
    middle = median(mid - window / 2, mid + window / 2)
    end = median(total_s - window, total_s + every)
    after = [(t, m) for t, m in samples if t >= warmup]
    slope = float(np.polyfit([t for t, _ in after], [m for _, m in after], 1)[0]) * 60 if len(after) > 3 else None
    growth = round((end - start) / start * 100, 2) if start and end else None
    return {
        "warmup_s": round(warmup, 1), "window_s": round(window, 1), "sample_every_s": round(every, 1),
        "start": start, "middle": middle, "end": end,
        "max": round(max(m for _, m in samples), 1) if samples else None,
        "growth_pct": growth, "slope_mib_per_min": round(slope, 2) if slope is not None else None,
    }


def git_commit() -> tuple[str | None, bool | None]:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head, bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        return None, None


def server_exceptions(path: Path, limit: int = 10) -> list[str]:
    """The distinct exception lines of the server's log (tracebacks of 500s), most frequent first."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    pattern = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")
    found = Counter(line.strip()[:200] for line in lines if pattern.match(line.strip()))
    return [f"{n}x {line}" for line, n in found.most_common(limit)]


def table(r: dict[str, Any]) -> str:
    rss = r["rss_mib"]
    rows = [
        ("duration", f"{r['minutes_requested']} min ({r['minutes']} with the drain), {r['clients']} clients, {r['write_share']:.0%} writes "
                     f"on {r['churn_documents']} churned documents"),
        ("requests", f"{r['requests']:,} ({r['reads']:,} reads, {r['writes']:,} writes), {r['requests_per_s']} req/s"),
        ("reads p50 / p99", f"{r['p50_ms']} / {r['p99_ms']} ms"),
        ("writes p50 / p99", f"{r['write_p50_ms']} / {r['write_p99_ms']} ms "
                             f"({r['contended_writes']} with overlapping writes of the same id)"),
        ("errors", f"{r['errors']}"),
        ("inconsistent", f"{r['inconsistent']} {dict(r['inconsistent_detail']) or ''}".strip()
         + f" (churned-document citations checked: {r['checked'].get('churn_citations', 0):,}, "
           f"{r['checked'].get('churn_citations_current_version', 0):,} against the current version)"),
        ("RSS idle / start / middle / end", f"{rss['idle']} / {rss['start']} / {rss['middle']} / {rss['end']} MiB"),
        ("RSS max (VmHWM)", f"{rss['max']} MiB ({rss['peak_vmhwm']})"),
        ("RSS growth after warm-up", f"{r['rss_growth_after_warmup_pct']} % (warm-up {rss['warmup_s']} s, "
                                     f"slope {rss['slope_mib_per_min']} MiB/min)"),
    ]
    out = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    out += ["", "| request | statuses | p50 / p99 ms |", "|---|---|---|"]
    for label, counts in r["status_counts"].items():
        lat = r["latency_ms"][label]
        out.append(f"| {label} | {', '.join(f'{s}: {n}' for s, n in counts.items())} | {lat['p50']} / {lat['p99']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=FULL_MINUTES, help="run length (default 30)")
    parser.add_argument("--seconds", type=float, default=None, help="run length in seconds (overrides --minutes)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--write-share", type=float, default=0.1, help="share of requests that are writes")
    parser.add_argument("--same-doc-share", type=float, default=0.1,
                        help="share of writes sent to a document another write is working on")
    parser.add_argument("--docs", type=int, default=24, help="churned document ids (seeds/churn/doc-NN.txt)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the clients' choices")
    args = parser.parse_args(argv)
    total_s = args.seconds if args.seconds is not None else args.minutes * 60
    if total_s <= 0 or args.clients < 1 or args.docs < 1 or not 0 <= args.write_share <= 1:
        parser.error("need a positive duration, at least one client and one document, and 0 <= write-share <= 1")
    every = min(10.0, max(1.0, total_s / 40))

    from service.indexer import Indexer

    CACHE.parent.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="ask-load-"))
    try:
        corpus = work / "seeds"
        shutil.copytree(PROJECT_ROOT / "seeds", corpus)
        index = work / "index"
        Indexer(Settings(corpus=corpus, index=index), progress=False).sync(corpus)
        server = Server(index)
        try:
            import httpx

            with httpx.Client(base_url=server.url, timeout=60) as c:
                ids = [d["source"] for d in c.get("/v1/documents").raise_for_status().json()["documents"]]
                seeds = {s: c.get(f"/v1/documents/{s}").raise_for_status().json()["text"] for s in ids}
            idle = round(rss_mib(server.proc.pid)[0], 1)
            log(f"soak: {total_s:.0f} s, {args.clients} clients, {args.write_share:.0%} writes, "
                f"{len(seeds)} seed articles, server RSS {idle} MiB")
            soak = Soak(args, server, seeds, total_s)
            threads = [threading.Thread(target=soak.client, args=(i,), daemon=True) for i in range(args.clients)]
            sampler = threading.Thread(target=soak.sampler, args=(every, min(60.0, total_s / 6)), daemon=True)
            for th in [*threads, sampler]:
                th.start()
            sampler.join()
            for th in threads:
                th.join(timeout=max(0.0, soak.deadline + 150 - time.monotonic()))
            elapsed = time.monotonic() - soak.started
            hung = sum(th.is_alive() for th in threads)
            peak = rss_mib(server.proc.pid)[1] if server.proc.poll() is None else None
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    t = soak.tally
    with t.lock:
        reads, writes = len(t.read_lat), len(t.write_lat)
        errors = t.errors + hung + (soak.server_exit is not None)
        rss = rss_summary(soak.samples, total_s, every)
        commit, dirty = git_commit()
        inconsistent = sum(t.inconsistent.values())
        growth = rss.pop("growth_pct")
        passed = errors == 0 and inconsistent == 0 and growth is not None and growth < GROWTH_LIMIT_PCT
        result: dict[str, Any] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "git_commit": commit, "git_dirty": dirty,
            "machine": {"cores": os.cpu_count(), "load_average_start": load_start,
                        "load_average_end": os.getloadavg()[0]},
            "minutes": round(elapsed / 60, 2), "minutes_requested": round(total_s / 60, 2), "clients": args.clients,
            "write_share": args.write_share, "same_doc_share": args.same_doc_share, "churn_documents": args.docs,
            "seed": args.seed,
            "requests": reads + writes, "reads": reads, "writes": writes,
            "requests_per_s": round((reads + writes) / elapsed, 1), "reads_per_s": round(reads / elapsed, 1),
            "writes_per_s": round(writes / elapsed, 2),
            "p50_ms": ms(pct(t.read_lat, 50)), "p99_ms": ms(pct(t.read_lat, 99)),
            "write_p50_ms": ms(pct(t.write_lat, 50)), "write_p99_ms": ms(pct(t.write_lat, 99)),
            "errors": errors, "hung_clients": hung, "server_exit": soak.server_exit,
            "error_examples": t.examples,
            "inconsistent": inconsistent, "inconsistent_detail": dict(t.inconsistent),
            "inconsistent_examples": t.inconsistent_examples,
            "contended_writes": t.contended_writes, "checked": dict(t.checked),
            "status_counts": {k: dict(sorted(v.items())) for k, v in sorted(t.status.items())},
            "latency_ms": {k: {"p50": ms(pct(v, 50)), "p99": ms(pct(v, 99))} for k, v in sorted(t.latency.items())},
            "rss_mib": {"idle": idle, **{k: rss[k] for k in ("start", "middle", "end", "max")},
                        "peak_vmhwm": round(peak, 1) if peak else None, "warmup_s": rss["warmup_s"],
                        "window_s": rss["window_s"], "samples": soak.samples},
            "rss_method": "start/middle/end: medians of the samples in a window of window_s right after the "
                          "warm-up (min(10 % of the run, 120 s)), around the midpoint, and at the end",
            "rss_growth_after_warmup_pct": growth, "rss_slope_mib_per_min": rss["slope_mib_per_min"],
            "progress": soak.progress,
            "server_start_s": round(server.start_seconds, 2),
            "server_log_exceptions": server_exceptions(CACHE.parent / "server.log"),
            "criteria": {"errors": 0, "inconsistent": 0, "rss_growth_after_warmup_pct_below": GROWTH_LIMIT_PCT},
            "passed": passed,
        }
        rss_for_table = {**result["rss_mib"], "slope_mib_per_min": rss["slope_mib_per_min"]}
    full = total_s >= FULL_MINUTES * 60
    path = FULL_PATH if full else QUICK_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table({**result, "rss_mib": rss_for_table}))
    if result["server_log_exceptions"]:
        print("\nserver log exceptions:\n" + "\n".join(f"  {e}" for e in result["server_log_exceptions"]))
    why = [f"{errors} errors" if errors else "", f"{inconsistent} inconsistent" if inconsistent else "",
           f"RSS growth {growth} % >= {GROWTH_LIMIT_PCT} %" if growth is None or growth >= GROWTH_LIMIT_PCT else ""]
    print(f"\n{'PASS' if passed else 'FAIL'}: {errors} errors, {inconsistent} inconsistent, RSS growth after "
          f"warm-up {growth} % (limit {GROWTH_LIMIT_PCT} %)" + ("" if passed else f" [{', '.join(w for w in why if w)}]"))
    print(f"written to {path.relative_to(PROJECT_ROOT)}" + ("" if full else " (a run under 30 minutes: "
                                                              "bench/results/load.json is left as it is)"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
