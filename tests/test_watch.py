"""The watched folder (``serve --watch``, ``index --watch``): changes reach the index in batches.

Unit tests run the watcher in a thread over a tiny corpus with the fake embedder; the integration
tests run the real commands (``serve --watch`` over HTTP, ``index --watch --json``) with the model.
Waits poll for a state with a generous bound (so a loaded machine only makes them slower); nothing
asserts on a duration.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.config import CollectionSpec, Settings
from service.engine import Engine
from service.indexer import Indexer, IndexReport
from service.store import current_name, writer_lock
from service.watch import FolderWatcher
from tests.conftest import FakeEmbedder, write
from tests.live_server import private_index

WAIT = 120.0  # the most any one wait may take before the test fails (never reached on a healthy run)


def wait_for(what: str, condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def generation(index_dir: Path) -> int:
    """The live snapshot's number: it goes up by one with every commit."""
    name = current_name(index_dir)
    assert name is not None
    return int(name.removeprefix("snap-"))


class Watched:
    """A corpus, its index and a watcher running in a thread, with the reports it made."""

    def __init__(self, settings: Settings, embedder: FakeEmbedder) -> None:
        self.settings = settings
        self.corpus = Path(settings.corpus)
        self.index = Path(settings.index)
        self.reports: list[IndexReport] = []
        self.engine = Engine(settings, embedder=embedder)
        self.watcher = FolderWatcher(settings, embedder=lambda: embedder, on_report=self.reports.append)

    def sources(self) -> set[str]:
        return {d.source for d in self.engine.documents()}

    def has(self, *sources: str) -> Callable[[], bool]:
        return lambda: set(sources) <= self.sources()

    def lacks(self, *sources: str) -> Callable[[], bool]:
        return lambda: not set(sources) & self.sources()


@contextlib.contextmanager
def watching(settings: Settings, embedder: FakeEmbedder) -> Iterator[Watched]:
    """A corpus of two files, indexed, and a watcher on it that has made its first sync."""
    write(settings.corpus, "a.txt", "Apples\n\nApples grow on trees in orchards.\n")
    write(settings.corpus, "b.txt", "Bees\n\nBees make honey from nectar.\n")
    Indexer(settings, embedder=embedder, progress=False).sync(settings.corpus)
    w = Watched(settings, embedder)
    w.watcher.start()
    try:
        wait_for("the first sync", lambda: w.watcher.stats.syncs >= 1)
        yield w
    finally:
        assert w.watcher.stop(), "the watcher did not stop"


@pytest.fixture
def watched(settings: Settings, fake_embedder: FakeEmbedder) -> Iterator[Watched]:
    with watching(settings, fake_embedder) as w:
        yield w


def test_created_changed_moved_and_deleted_files_reach_the_index(watched: Watched) -> None:
    w, c = watched, watched.corpus
    write(c, "c.txt", "Cranes\n\nCranes migrate south over the marshes each autumn.\n")
    wait_for("c.txt", w.has("corpus/c.txt"))

    write(c, "a.txt", "Apples\n\nApples grow on trees in orchards.\n\nThe quince orchard flooded in March.\n")
    wait_for("the edit", lambda: any("quince" in p.text for p in w.engine.search("quince orchard flooded", 3)))
    assert w.engine.document("corpus/a.txt").paragraphs[-1].text == "The quince orchard flooded in March."

    (c / "sub").mkdir()
    (c / "b.txt").rename(c / "sub" / "b2.txt")  # a move: one name gone, one new
    wait_for("the moved file", lambda: w.sources() == {"corpus/a.txt", "corpus/c.txt", "corpus/sub/b2.txt"})

    (c / "sub").rename(c / "moved")  # a moved folder is reported as the folder alone
    wait_for("the moved folder", lambda: w.sources() == {"corpus/a.txt", "corpus/c.txt", "corpus/moved/b2.txt"})

    (c / "c.txt").unlink()
    shutil.rmtree(c / "moved")
    wait_for("the deletions", lambda: w.sources() == {"corpus/a.txt"})
    assert w.watcher.stats.errors == 0 and w.watcher.stats.busy == 0


def test_same_skips_and_bad_files_as_index_never_fatal(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    with watching(settings.model_copy(update={"max_file_bytes": 300}), fake_embedder) as w:
        c = w.corpus
        write(c, ".hidden.txt", "Hidden\n\nNever indexed.\n")
        write(c, ".git/objects/x.txt", "Git internals\n\nNot indexed.\n")
        write(c, "binary.txt", b"\x00\x01\x02 not text")
        write(c, "huge.txt", "Huge\n\n" + "A long line of words. " * 40)
        write(c, "notes.log", "Logs\n\nNot an indexed type.\n")
        write(c, "d.txt", "Dunes\n\nDunes shift with the wind.\n")
        wait_for("the report of d.txt", lambda: any("corpus/d.txt" in r.added for r in w.reports))
        assert w.sources() == {"corpus/a.txt", "corpus/b.txt", "corpus/d.txt"}
        skipped = {s.path: s.reason for r in w.reports for s in r.skipped}  # reported, as `index` reports them
        assert "binary" in skipped["corpus/binary.txt"]
        assert "over the 300-byte limit" in skipped["corpus/huge.txt"]
        assert set(skipped) == {"corpus/binary.txt", "corpus/huge.txt"}
        (c / "binary.txt").write_text("Binary no more\n\nNow it is text.\n", encoding="utf-8")
        wait_for("the repaired file", w.has("corpus/binary.txt"))
        assert w.watcher.stats.errors == 0


def test_relevant_changes(settings: Settings) -> None:
    """Events that cannot matter do not start a sync: hidden paths, the index's own folder, files of
    other types. Folders and vanished paths may hold indexed files, so they do."""
    corpus = Path(settings.corpus).resolve()
    write(corpus, "notes.log", "x")
    write(corpus, "sub/a.txt", "x")
    watcher = FolderWatcher(settings.model_copy(update={"index": corpus / "index"}), corpus=corpus)
    relevant = watcher._relevant
    assert relevant(1, str(corpus / "sub" / "a.txt"))
    assert relevant(3, str(corpus / "gone.md"))
    assert relevant(1, str(corpus / "sub"))  # a folder moved in
    assert relevant(3, str(corpus / "old-folder"))  # a folder (or anything) gone
    assert not relevant(1, str(corpus / "notes.log"))
    assert not relevant(1, str(corpus / ".a.txt.swp"))
    assert not relevant(2, str(corpus / ".git" / "index"))
    assert not relevant(2, str(corpus / "sub" / ".hidden" / "a.txt"))
    assert not relevant(1, str(corpus / "index" / "snap-000002" / "meta.sqlite"))


def test_a_burst_of_files_is_one_commit(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    """A `git checkout` of 1,000 files: one batch, one commit (a sync per file would make 1,000)."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("needs git")
    c = Path(settings.corpus)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull}

    def run(*args: str) -> None:
        subprocess.run([git, "-C", str(c), *args], check=True, capture_output=True, env=env)

    write(c, "readme.txt", "Readme\n\nA corpus under version control.\n")
    run("init", "-q", "-b", "small")
    run("add", "-A")
    run("commit", "-q", "-m", "small")
    run("checkout", "-q", "-b", "many")
    for i in range(1000):
        write(c, f"notes/{i // 100:02d}/note-{i:04d}.txt", f"Note {i}\n\nThe value of item {i} is {i * 7}.\n")
    run("add", "-A")
    run("commit", "-q", "-m", "many")
    run("checkout", "-q", "small")
    assert not (c / "notes").exists()
    Indexer(settings, embedder=fake_embedder, progress=False).sync(c)
    w = Watched(settings, fake_embedder)
    w.watcher.start()
    try:
        wait_for("the first sync", lambda: w.watcher.stats.syncs >= 1)
        before, commits = generation(w.index), w.watcher.stats.commits
        run("checkout", "-q", "many")
        wait_for("1,000 files reported", lambda: sum(len(r.added) for r in w.reports) == 1000)
        assert len(w.sources()) == 1001
        made = generation(w.index) - before
        assert made == w.watcher.stats.commits - commits
        assert 1 <= made <= 2, f"{made} commits for one checkout"
        run("checkout", "-q", "small")  # and back: 1,000 deletions, again in one go
        wait_for("1 document", lambda: len(w.sources()) == 1)
        assert 1 <= generation(w.index) - before - made <= 2
    finally:
        assert w.watcher.stop()


def test_a_busy_index_is_retried_until_the_other_writer_is_done(watched: Watched) -> None:
    w = watched
    with writer_lock(w.index):  # another writer (here: this thread) holds the index
        write(w.corpus, "e.txt", "Eels\n\nEels cross the Sargasso Sea to spawn.\n")
        wait_for("a busy retry", lambda: w.watcher.stats.busy >= 1)
        assert "corpus/e.txt" not in w.sources()
    wait_for("e.txt after the lock is released", w.has("corpus/e.txt"))
    assert w.watcher.stats.errors == 0


def test_corpus_folder_gone_and_back(watched: Watched) -> None:
    """A vanished corpus folder is an error to retry, not a reason to empty the index."""
    w = watched
    away = w.corpus.with_name("away")
    w.corpus.rename(away)
    wait_for("the watcher to notice", lambda: w.watcher.stats.errors >= 1)
    assert w.sources() == {"corpus/a.txt", "corpus/b.txt"}
    away.rename(w.corpus)
    write(w.corpus, "f.txt", "Ferns\n\nFerns grow in the shade.\n")
    wait_for("f.txt", w.has("corpus/f.txt"))
    assert w.sources() == {"corpus/a.txt", "corpus/b.txt", "corpus/f.txt"}


def test_a_failing_report_callback_does_not_stop_the_watch(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", "Apples\n\nApples grow on trees.\n")

    def broken(_report: IndexReport) -> None:
        raise RuntimeError("reporting failed")

    watcher = FolderWatcher(settings, embedder=lambda: fake_embedder, on_report=broken)
    watcher.start()
    engine = Engine(settings, embedder=fake_embedder)
    try:
        wait_for("a.txt", lambda: engine.has_index() and "corpus/a.txt" in {d.source for d in engine.documents()})
        write(settings.corpus, "b.txt", "Bees\n\nBees make honey.\n")
        wait_for("b.txt", lambda: "corpus/b.txt" in {d.source for d in engine.documents()})
    finally:
        assert watcher.stop()


def test_every_collection_folder_is_watched(settings: Settings, fake_embedder: FakeEmbedder, tmp_path: Path) -> None:
    """``serve --watch``'s watchers: one per configured collection, each syncing into its own index."""
    papers = tmp_path / "papers"
    write(settings.corpus, "a.txt", "Apples\n\nApples grow on trees in orchards.\n")
    write(papers, "g.txt", "Graphene\n\nGraphene conducts heat better than copper.\n")
    settings = settings.model_copy(update={"collections": {"papers": CollectionSpec(corpus=papers)}})
    engine = Engine(settings, embedder=fake_embedder)
    watchers = FolderWatcher.for_collections(engine)
    assert [(w.name, w.index_dir) for w in watchers] == [
        ("default", Path(settings.index).resolve()), ("papers", (Path(settings.index) / "collections/papers").resolve())]
    for w in watchers:
        w.start()
    paper_engine = engine.collection("papers")

    def sources(e: Engine) -> set[str]:
        return {d.source for d in e.documents()} if e.has_index() else set()

    try:
        wait_for("both first syncs", lambda: sources(engine) == {"corpus/a.txt"}
                 and sources(paper_engine) == {"papers/g.txt"})
        write(papers, "sub/p.md", "Perovskite\n\nPerovskite solar cells degrade in humid air.\n")
        wait_for("the new paper", lambda: "papers/sub/p.md" in sources(paper_engine))
        assert paper_engine.search_cited("perovskite humid", 1)[0].source == "papers/sub/p.md"
        write(settings.corpus, "b.txt", "Bees\n\nBees make honey from nectar.\n")
        wait_for("the default's new file", lambda: "corpus/b.txt" in sources(engine))
        assert sources(paper_engine) == {"papers/g.txt", "papers/sub/p.md"}, "each folder into its own index"
        assert all(w.stats.errors == 0 for w in watchers)
    finally:
        stopped = [w.stop() for w in watchers]  # every one, even after a failure
        assert all(stopped)


# -- the commands, with the real model ---------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ASK_CACHE_DIR": str(settings.cache_dir)}
    for name in ("ASK_API_KEY", "ASK_SERVER", "ASK_STORE", "ASK_STORE_READ", "ASK_CORPUS"):
        env.pop(name, None)
    return env


def _serve_watch(index: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "service", "serve", "--watch", "--index", str(index),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stopped(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, as a service manager stops it: the process exits 0 without a traceback; its stderr."""
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return err


@pytest.mark.model
def test_serve_watch_finds_an_edit_by_search(seed_index: Path, tmp_path: Path) -> None:
    """A real `serve --watch` process: edit, delete, move and a burst of files, seen through HTTP."""
    settings = private_index(seed_index, tmp_path / "copy")
    corpus, index = Path(settings.corpus), Path(settings.index)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve_watch(index, port, _env(settings))
    client = httpx.Client(base_url=url, timeout=30)

    def documents() -> set[str]:
        return {d["source"] for d in client.get("/v1/documents").json()["documents"]}

    try:
        def up() -> bool:
            assert proc.poll() is None, proc.communicate(timeout=10)
            try:
                return client.get("/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the server", up)
        seeds = sorted(p.name for p in corpus.glob("*.txt"))
        first, second, third = (f"seeds/{n}" for n in seeds[:3])
        sentence = "The lighthouse keeper on Skellig Michael counted 412 puffins nesting below the lamp."
        with (corpus / seeds[0]).open("a", encoding="utf-8") as f:
            f.write(f"\n\n{sentence}\n")

        def found() -> bool:
            hits = client.post("/v1/search", json={"query": "how many puffins did the lighthouse keeper count?",
                                                   "k": 3}).json()["results"]
            return any(h["source"] == first and h["text"] == sentence for h in hits)

        wait_for("the new sentence", found)

        (corpus / seeds[1]).unlink()
        (corpus / "archive").mkdir()
        (corpus / seeds[2]).rename(corpus / "archive" / seeds[2])
        moved = f"seeds/archive/{seeds[2]}"
        wait_for("the delete and the move", lambda: second not in documents() and third not in documents()
                 and moved in documents())

        before = int(client.get("/health").json()["snapshot"].removeprefix("snap-"))
        count = len(documents())
        for i in range(100):
            write(corpus, f"burst/item-{i:03d}.txt", f"Item {i}\n\nCrate {i} holds {i * 3} brass lanterns.\n")
        wait_for("the burst", lambda: len(documents()) == count + 100)
    finally:
        client.close()
        err = _stopped(proc)
    # The watcher's own commits after ``before``, from its line per committed sync: the snapshot number
    # also counts the background merges of segments, which may land between any two commits.
    burst = [n for n in map(int, re.findall(r"^watch: .*: snapshot snap-(\d+)$", err, re.MULTILINE)) if n > before]
    assert 1 <= len(burst) <= 2, f"{len(burst)} commits for a burst of 100 files"
    assert "watching the corpus folder" in err
    assert "watch: " in err and "1 changed" in err  # one line per committed sync


@pytest.mark.model
def test_index_watch_reports_each_batch_as_json(tmp_path: Path) -> None:
    corpus, index = tmp_path / "notes", tmp_path / "index"
    write(corpus, "one.txt", "One\n\nThe first note is about rivers.\n")
    settings = Settings(corpus=corpus, index=index, cache_dir=tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, "-m", "service", "index", "--watch", "--json", "--corpus", str(corpus),
                             "--index", str(index)], env=_env(settings), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True)
    reader.start()

    def next_report() -> dict[str, object]:
        try:
            line = lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError("no report from index --watch") from None
        report: dict[str, object] = json.loads(line)
        return report

    try:
        assert next_report()["added"] == ["notes/one.txt"]  # the initial run, one line
        write(corpus, "two.txt", "Two\n\nThe second note is about mountains.\n")
        write(corpus, "bad.txt", b"\x00binary")
        report = next_report()
        assert report["added"] == ["notes/two.txt"] and report["documents_total"] == 2
        assert report["skipped"] == [{"path": "notes/bad.txt", "reason": "binary file (contains NUL bytes)"}]
        (corpus / "one.txt").unlink()
        report = next_report()
        assert report["deleted"] == ["notes/one.txt"] and report["documents_total"] == 1
    finally:
        _stopped(proc)


@pytest.mark.model
def test_serve_watch_watches_every_collection(seed_index: Path, tmp_path: Path) -> None:
    """A real `serve --watch` with two collections: a file written into the second collection's folder
    is found by `/v1/collections/papers/search`, and stays out of the default collection."""
    settings = private_index(seed_index, tmp_path / "copy")
    papers = tmp_path / "papers"
    write(papers, "graphene.txt", "Graphene\n\nGraphene conducts heat better than copper at room temperature.\n")
    port = _free_port()
    env = {**_env(settings), "ASK_COLLECTIONS": json.dumps({"papers": {"corpus": str(papers)}})}
    proc = _serve_watch(Path(settings.index), port, env)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def up() -> bool:
        assert proc.poll() is None, proc.communicate(timeout=10)
        try:
            return client.get("/v1/collections/papers/health").status_code == 200  # its first sync built it
        except httpx.TransportError:
            return False

    def hits(collection: str, query: str) -> list[dict[str, str]]:
        found: list[dict[str, str]] = client.post(f"/v1/collections/{collection}/search",
                                                  json={"query": query, "k": 3}).json()["results"]
        return found

    sentence = "Perovskite solar cells lose a fifth of their output after a month in humid air."
    try:
        wait_for("the server and the papers index", up)
        assert [h["source"] for h in hits("papers", "what conducts heat better than copper?")][:1] == \
            ["papers/graphene.txt"]
        write(papers, "solar/perovskite.txt", f"Perovskite\n\n{sentence}\n")
        wait_for("the new paper", lambda: any(h["source"] == "papers/solar/perovskite.txt" and h["text"] == sentence
                                              for h in hits("papers", "how much output do perovskite cells lose?")))
        assert all(h["source"].startswith("seeds/") for h in hits("default", "perovskite solar cells humid air"))
    finally:
        client.close()
        err = _stopped(proc)
    assert "watching 2 corpus folders" in err
