"""Kill the indexer (SIGKILL) at many points; the index must always open and stay consistent."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service import store
from service.config import PROJECT_ROOT, Settings
from service.engine import Engine

from .conftest import FakeEmbedder, write

N_FILES = 240


def make_corpus(folder: Path, n: int = N_FILES, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = "alpha beta gamma delta police security treaty border scam visit minister training".split()
    for i in range(n):
        paras = [f"Article {i}"] + [
            " ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) + "." for _ in range(rng.randint(1, 4))
        ]
        write(folder, f"d{i // 50}/file{i:04d}.txt", "\n\n".join(paras))


def run_worker(corpus: Path, index: Path, kill_at: str | None = None, kill_after: float | None = None):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    if kill_at:
        env["KILL_AT"] = kill_at
    if kill_at and kill_at.startswith("extend_hnsw"):  # past the HNSW threshold: the tail folded into one graph
        env.update(ASK_HNSW_THRESHOLD="60", ASK_GRAPH_TAIL_SHARE="0.05")
    proc = subprocess.Popen([sys.executable, "-m", "tests.index_worker", str(corpus), str(index)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.kill()
    out, err = proc.communicate(timeout=300)
    committed = [line.split() for line in out.splitlines() if line.startswith("committed")]
    return proc.returncode, committed, "done" in out.splitlines(), err


def check_consistent(index: Path, corpus: Path, reported: list[list[str]]) -> set[str]:
    """The index opens, agrees with itself, and holds a state that was (or was about to be) reported."""
    settings = Settings(corpus=corpus, index=index, cache_dir=index.parent / "cache")
    name = store.current_name(index)
    if name is None:
        assert not reported
        return set()
    snap = store.open_snapshot(index, FakeEmbedder().info.sha256)
    assert snap.vectors.ntotal == snap.size
    docs = snap.documents()
    sources = [d.source for d in docs]
    assert len(sources) == len(set(sources))
    assert sum(d.chunks for d in docs) == snap.size
    rows = snap.chunk_rows(range(snap.rows))  # deleted rows (merged or replaced documents) are skipped
    assert len(rows) == snap.size
    # every document's chunks are exactly its own text's slices
    for row in rows:
        assert snap.document(row.source).text[row.char_start : row.char_end] == row.text
    reported_names = [r[1] for r in reported]
    if reported_names:
        last = int(reported_names[-1].removeprefix("snap-"))
        # the last reported commit, one more that was durable before the report line was printed, or
        # merges of them (which keep every document; this sync only adds documents)
        assert int(name.removeprefix("snap-")) >= last and len(docs) >= int(reported[-1][2])
        if name == reported_names[-1]:
            assert len(docs) == int(reported[-1][2])
    engine = Engine(settings, embedder=FakeEmbedder())
    assert engine.search("police security", 3)
    return set(sources)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("ref")
    make_corpus(root / "corpus")
    code, committed, done, err = run_worker(root / "corpus", root / "index")
    assert code == 0 and done, err
    return root / "corpus", store.open_snapshot(root / "index").size


KILL_POINTS = [f"{name}:{n}" for name in ("rename", "replace", "write_meta", "np_save", "fsync_tree")
               for n in (1, 3)] + ["cache_put:1", "cache_put:10", "merge_write:1", "merge_switch:1", "merge_switch:2",
                                                        "extend_hnsw:1", "extend_hnsw:2"]


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_kill_at_write_step_then_resume(tmp_path: Path, reference: tuple[Path, int], kill_at: str) -> None:
    corpus, expected_chunks = reference
    index = tmp_path / "index"
    code, committed, done, err = run_worker(corpus, index, kill_at=kill_at)
    assert not done and code == -9, f"kill point {kill_at} was not reached: {err}"
    check_consistent(index, corpus, committed)
    # the lock file may remain, but flock died with the process: the next run is not refused
    code, committed, done, err = run_worker(corpus, index)
    assert code == 0 and done, err
    sources = check_consistent(index, corpus, committed)
    assert len(sources) == N_FILES
    assert store.open_snapshot(index).size == expected_chunks  # no duplicates, nothing missing


def test_random_time_kills_then_resume(tmp_path: Path, reference: tuple[Path, int]) -> None:
    corpus, expected_chunks = reference
    index = tmp_path / "index"
    rng = random.Random(1)
    for _ in range(6):
        code, committed, done, err = run_worker(corpus, index, kill_after=rng.uniform(0.8, 2.5))
        if not done:
            check_consistent(index, corpus, committed)
    code, committed, done, err = run_worker(corpus, index)
    assert code == 0 and done, err
    assert len(check_consistent(index, corpus, committed)) == N_FILES
    assert store.open_snapshot(index).size == expected_chunks


def test_previous_state_survives_a_killed_update(tmp_path: Path, reference: tuple[Path, int]) -> None:
    corpus = tmp_path / "corpus"
    make_corpus(corpus, 30)
    index = tmp_path / "index"
    assert run_worker(corpus, index)[0] == 0
    before = {d.source: d.sha256 for d in store.open_snapshot(index).documents()}
    write(corpus, "d0/file0000.txt", "Changed\n\nCompletely new text about treaties.")
    write(corpus, "new.txt", "New\n\nA new file.")
    code, committed, done, err = run_worker(corpus, index, kill_at="replace:1")
    assert code == -9
    after = {d.source: d.sha256 for d in store.open_snapshot(index).documents()}
    assert after == before  # killed before the switch: the full previous state
    assert run_worker(corpus, index)[0] == 0
    final = {d.source for d in store.open_snapshot(index).documents()}
    assert f"{corpus.name}/new.txt" in final and len(final) == 31
