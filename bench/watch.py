"""The watched folder, end to end: how soon a written file is searchable, and how a burst commits.

    python -m bench.watch                # 10 single files, then a git checkout of 1,000 files
    python -m bench.watch --files 5 --burst 200

A real ``python -m service serve --watch`` over a copy of seeds/ (indexed first with ``index``):
* single files — a new file with one new sentence is written; the time until ``/v1/search`` returns
  that sentence is measured from the end of the write. Baseline from the same run: the sync alone
  (the indexer's own ``seconds`` in the server's ``watch:`` lines), so the difference is what watching
  adds (the quiet period, ``ASK_WATCH_QUIET_MS``, and the notification).
* burst — ``git checkout`` of a branch that adds N files: the snapshots committed (a sync per file
  would commit N) and the time until all N are in ``/v1/documents``.
Results go to bench/results/watch.json. No data set is involved (seeds/ and generated notes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "watch.json"
WORDS = ["amber", "basalt", "cobalt", "dahlia", "ember", "fjord", "garnet", "heron", "indigo", "juniper",
         "kestrel", "lichen", "marram", "nutmeg", "osprey", "pumice", "quartz", "russet", "saffron", "tamarind"]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _git(folder: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, env=env)


def run(files: int, burst: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    corpus, index = work / "seeds", work / "index"
    shutil.copytree(ROOT / "seeds", corpus)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ASK_CACHE_DIR": str(work / "cache")}
    py = sys.executable
    # the burst's branch: N notes added to the corpus, checked out while the server watches
    _git(corpus, "init", "-q", "-b", "base")
    _git(corpus, "add", "-A")
    _git(corpus, "commit", "-q", "-m", "base")
    _git(corpus, "checkout", "-q", "-b", "burst")
    for i in range(burst):
        note = corpus / "burst" / f"{i // 100:02d}" / f"note-{i:04d}.txt"
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(f"Note {i}\n\nCrate {i} holds {i * 3} brass lanterns for the harbour.\n", encoding="utf-8")
    _git(corpus, "add", "-A")
    _git(corpus, "commit", "-q", "-m", "burst")
    _git(corpus, "checkout", "-q", "base")
    subprocess.run([py, "-m", "service", "index", "--corpus", str(corpus), "--index", str(index)], env=env,
                   check=True, capture_output=True, cwd=ROOT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = work / "serve.err"
    with log.open("w") as err:
        proc = subprocess.Popen([py, "-m", "service", "serve", "--watch", "--index", str(index), "--port", str(port)],
                                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        try:
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(log.read_text())
                time.sleep(0.1)
            time.sleep(2)  # the watcher's first sync (nothing to do)
            load_before = _load()
            latencies = []
            for i in range(files):
                word = WORDS[i % len(WORDS)]
                sentence = f"The {word} lantern number {i} was repaired by the harbour master in {1900 + i}."
                (corpus / f"new-{i}.txt").write_text(f"Note {i}\n\n{sentence}\n", encoding="utf-8")
                start = time.monotonic()
                while True:
                    hits = client.post("/v1/search", json={"query": f"who repaired the {word} lantern number {i}?",
                                                           "k": 5}).json()["results"]
                    if any(h["text"] == sentence for h in hits):
                        break
                    time.sleep(0.02)
                latencies.append(time.monotonic() - start)
                time.sleep(1.0)  # let the folder settle: each file is its own batch
            syncs = [float(x) for x in re.findall(r"in ([0-9.]+)s: snapshot", log.read_text())]
            before = int(client.get("/health").json()["snapshot"].removeprefix("snap-"))
            count = len(client.get("/v1/documents").json()["documents"])
            _git(corpus, "checkout", "-q", "burst")
            start = time.monotonic()
            while len(client.get("/v1/documents").json()["documents"]) < count + burst:
                time.sleep(0.1)
            burst_seconds = time.monotonic() - start
            commits = int(client.get("/health").json()["snapshot"].removeprefix("snap-")) - before
            load_after = _load()
        finally:
            client.close()
            proc.terminate()
            proc.wait(120)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "single_files": files,
        "write_to_searchable_s": {"p50": round(statistics.median(latencies), 3), "max": round(max(latencies), 3),
                                  "all": [round(x, 3) for x in latencies]},
        "baseline_sync_alone_s": {"p50": round(statistics.median(syncs), 3), "max": round(max(syncs), 3),
                                  "all": syncs, "note": "IndexReport.seconds, printed to 0.1 s"},
        "burst": {"files": burst, "how": "git checkout", "commits": commits, "per_file_commits_would_be": burst,
                  "seconds_until_all_listed": round(burst_seconds, 2)},
        "load_average_1min": {"before": load_before, "after": load_after, "cpus": os.cpu_count()},
        "server_exit_status": proc.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    result = run(args.files, args.burst)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
