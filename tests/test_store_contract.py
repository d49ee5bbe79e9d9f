"""The store contract: one suite, run against every store (``local`` snapshots and ``postgresql``).

Each test gets an empty store of the parametrised kind (for PostgreSQL, a fresh database on a
server that ``tests/pg.py`` starts on loopback), indexes a small corpus with the fake embedder,
and checks what every store must do: add, replace and delete documents; the same citations
(source, paragraph, offsets, text) for the same corpus and query; counts and stats; a failed
write leaves the previous state readable; one writer at a time.
"""

from __future__ import annotations

import itertools
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.config import PROJECT_ROOT, Settings
from service.engine import Engine
from service.indexer import Indexer
from service.store import IndexBusy, IndexWriteFailed, StoreError, open_store
from tests.conftest import FakeEmbedder, write
from tests.pg import PgServer, pg_server_fixture

KINDS = ["local", "postgresql"]
QUERIES = ["who visited Myanmar?", "police cooperation with Belarus", "G20 summit security", "scam centres",
           "terrorist organizations list", "Chen Yixin Vietnam visit"]
_databases = itertools.count()

pg_server = pg_server_fixture()


class Case:
    """One store of one kind over a copy of the seed articles, with an engine and an indexer."""

    def __init__(self, kind: str, root: Path, url: str | None) -> None:
        self.kind = kind
        self.corpus = root / "seeds"
        shutil.copytree(PROJECT_ROOT / "seeds", self.corpus)
        self.settings = Settings(corpus=self.corpus, index=root / "index", cache_dir=root / "cache", store=url,
                                 checkpoint_seconds=3600)
        self.embedder = FakeEmbedder()

    def indexer(self) -> Indexer:
        return Indexer(self.settings, embedder=self.embedder, progress=False)

    def engine(self) -> Engine:
        return Engine(self.settings, embedder=self.embedder)

    def citations(self, query: str, k: int = 5) -> list[tuple[str, int, int, int, str]]:
        return [(c.source, c.paragraph, c.char_start, c.char_end, c.text) for c in self.engine().search_cited(query, k)]


def make_case(kind: str, root: Path, request: pytest.FixtureRequest) -> Case:
    url = None
    if kind == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.create_database(f"contract_{next(_databases)}")
    return Case(kind, root, url)


@pytest.fixture(params=KINDS)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    yield make_case(request.param, tmp_path, request)


# -- the contract ------------------------------------------------------------------------------------------
def test_an_empty_store_has_no_index(case: Case) -> None:
    store = open_store(case.settings, case.settings.index)
    assert store.version() is None
    with pytest.raises(StoreError, match="python -m service index"):
        store.view()


def test_index_counts_and_stats(case: Case) -> None:
    report = case.indexer().sync()
    assert len(report.added) == 5 and report.chunks_total > 100 and report.snapshot
    stats = case.engine().stats()
    assert (stats.documents, stats.chunks) == (5, report.chunks_total)
    assert stats.store == case.kind and stats.version == report.snapshot and stats.model == "fake"
    assert stats.corpus == str(case.corpus.resolve()) and stats.dimension == case.embedder.info.dim
    docs = case.engine().documents()
    assert [d.source for d in docs] == sorted(f"seeds/{p.name}" for p in case.corpus.iterdir())
    assert sum(d.chunks for d in docs) == stats.chunks
    again = case.indexer().sync()
    assert again.snapshot is None and again.unchanged == 5, "an unchanged corpus commits nothing"


def test_citations_point_at_the_text(case: Case) -> None:
    case.indexer().sync()
    engine = case.engine()
    for query in QUERIES:
        for c in engine.search_cited(query, 5):
            doc = engine.document(c.source)
            assert doc.text[c.char_start:c.char_end] == c.text
            assert doc.text[c.quote_start:c.quote_end] == c.quote
            assert doc.paragraphs[c.paragraph - 1].char_start <= c.char_start


def test_add_replace_delete(case: Case) -> None:
    case.indexer().sync()
    engine = case.engine()
    new = "seeds/notes/zebra.txt"
    written = engine.put_document(new, b"Zebra report\n\nThe zebra parliament met in Quetzaltenango on Monday.\n")
    assert written.created and written.chunks >= 1
    assert engine.stats().documents == 6 and engine.stats().version == written.snapshot
    assert engine.search_cited("zebra parliament Quetzaltenango", 1)[0].source == new
    replaced = engine.put_document(new, b"Zebra report\n\nThe zebra assembly moved to Antigua on Friday.\n")
    assert not replaced.created
    hits = engine.search_cited("zebra Antigua", 3)
    assert hits[0].source == new and "Antigua" in hits[0].text
    assert not any("Quetzaltenango" in h.text for h in engine.search_cited("Quetzaltenango zebra", 5))
    same = engine.put_document(new, b"Zebra report\n\nThe zebra assembly moved to Antigua on Friday.\n")
    assert not same.created and same.chunks == 0 and same.snapshot == replaced.snapshot
    deleted = engine.delete_document(new)
    assert deleted.deleted and engine.stats().documents == 5
    assert new not in {h.source for h in engine.search_cited("zebra assembly Antigua", 5)}
    assert sum(d.chunks for d in engine.documents()) == engine.stats().chunks


def test_changes_found_by_a_later_sync(case: Case) -> None:
    case.indexer().sync()
    write(case.corpus, "extra.txt", "Extra\n\nA walrus colony settled on the breakwater.\n")
    (case.corpus / "004_ac61203b24847f23.txt").unlink()
    report = case.indexer().sync()
    assert report.added == ["seeds/extra.txt"] and report.deleted == ["seeds/004_ac61203b24847f23.txt"]
    engine = case.engine()
    assert engine.stats().documents == 5
    assert engine.search_cited("walrus colony breakwater", 1)[0].source == "seeds/extra.txt"


def test_a_failed_write_leaves_the_previous_state(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    case.indexer().sync()
    engine = case.engine()
    before = (engine.stats(), case.citations("who visited Myanmar?"), [d.source for d in engine.documents()])
    indexer = case.indexer()
    with indexer.store.writer() as writer:
        def failing(*args: Any, **kwargs: Any) -> Any:
            raise IndexWriteFailed("simulated: the disk is full")

        monkeypatch.setattr(writer, "apply", failing)
        from service.corpus import document_from_bytes

        doc = document_from_bytes(b"Lost\n\nThis write fails.\n", "seeds/lost.txt")
        with pytest.raises(IndexWriteFailed):
            indexer.apply([doc], ["seeds/000_c7b0e32d5953f5e9.txt"], writer)
    fresh = case.engine()
    after = (fresh.stats(), case.citations("who visited Myanmar?"), [d.source for d in fresh.documents()])
    assert after == before


def test_a_write_interrupted_inside_the_store_changes_nothing(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the store started writing (the second document breaks) rolls back the whole commit."""
    case.indexer().sync()
    before = (case.engine().stats(), [d.source for d in case.engine().documents()])
    from service import layout

    calls = {"n": 0}
    real = layout.window_flags

    def breaks_second(spans: Any) -> list[bool]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(spans)

    if case.kind == "postgresql":
        from service.store import postgres

        monkeypatch.setattr(postgres, "window_flags", breaks_second)
    else:
        from service.store import segments

        def full(*args: Any, **kwargs: Any) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(segments, "write_meta", full)
    from service.corpus import document_from_bytes

    docs = [document_from_bytes(f"Doc {i}\n\nBody {i} about lighthouses.\n".encode(), f"seeds/new{i}.txt")
            for i in range(3)]
    with pytest.raises((StoreError, OSError)):
        case.indexer().apply(docs, [])
    monkeypatch.undo()
    assert (case.engine().stats(), [d.source for d in case.engine().documents()]) == before


def test_one_writer_at_a_time(case: Case) -> None:
    case.indexer().sync()
    held, release = threading.Event(), threading.Event()

    def other() -> None:
        with case.indexer().store.writer():
            held.set()
            release.wait(60)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert held.wait(60)
        with pytest.raises(IndexBusy):
            case.indexer().sync()
        with pytest.raises(IndexBusy):
            case.engine().put_document("seeds/busy.txt", b"Busy\n\nBusy text.\n")
    finally:
        release.set()
        thread.join()
    assert not (case.corpus / "busy.txt").exists()


def test_rebuild_replaces_everything(case: Case) -> None:
    case.indexer().sync()
    (case.corpus / "000_c7b0e32d5953f5e9.txt").unlink()
    report = case.indexer().sync(rebuild=True)
    assert len(report.added) == 4 and report.deleted == [] and report.unchanged == 0
    assert case.engine().stats().documents == 4


# -- both stores give the same citations --------------------------------------------------------------------
def test_both_stores_cite_the_same_passages(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    cases = [make_case(kind, tmp_path / kind, request) for kind in KINDS]
    for c in cases:
        c.indexer().sync()
    for query in QUERIES:
        local, pg = (c.citations(query) for c in cases)
        assert local == pg, query
    for c in cases:
        c.engine().put_document("seeds/notes/z.txt", b"Zebra\n\nThe zebra parliament met in Quetzaltenango.\n")
        c.engine().delete_document("seeds/001_db8832c2d6dc6696.txt")
    for query in [*QUERIES, "zebra parliament"]:
        local, pg = (c.citations(query) for c in cases)
        assert local == pg, query
    assert cases[0].engine().stats().chunks == cases[1].engine().stats().chunks


def test_more_candidates_than_the_default_search_width(case: Case) -> None:
    """A store returns as many dense candidates as asked (pgvector's HNSW scan stops at ef_search)."""
    case.indexer().sync()
    view = open_store(case.settings, case.settings.index).view()
    query = case.embedder.embed(["who visited Myanmar?"])
    n = min(view.size, 250)
    if case.kind == "postgresql":
        from service.store.postgres import PostgresStore

        view = PostgresStore(case.settings.store or "", ef_search=40).view()
    ids, _scores = view.vectors.search(query, n)
    assert (ids[0] >= 0).sum() == n


# -- filters and modified times (issue 16) ------------------------------------------------------------------
NOTES = {f"notes/{year}/memo-{i}.{ext}": (year, i) for year in (2023, 2024) for i in range(3) for ext in ("txt", "md")}


def _with_notes(case: Case) -> dict[str, float]:
    """Twelve short notes beside the seeds, each with a known modified time; returns them by source."""
    import os
    from datetime import UTC, datetime

    times = {}
    for name, (year, i) in NOTES.items():
        path = write(case.corpus, name, f"Memo {year}-{i}\n\nThe harbour committee met about the bridge in {year}.\n\n"
                                        f"Item {i}: the ferry timetable changes.\n")
        t = datetime(year, 1 + i, 15, tzinfo=UTC).timestamp()
        os.utime(path, (t, t))
        times[f"seeds/{name}"] = t
    for path in case.corpus.glob("*.txt"):
        os.utime(path, (1e9, 1e9))  # 2001
        times[f"seeds/{path.name}"] = 1e9
    return times


FILTERS: list[tuple[dict[str, Any], Any]] = [
    ({"path": "notes/"}, lambda s: s.startswith("seeds/notes/")),
    ({"path": "notes/2024/*.md"}, lambda s: s.startswith("seeds/notes/2024/") and s.endswith(".md")),
    ({"type": ["md"]}, lambda s: s.endswith(".md")),
    ({"modified_after": "2024-01-01", "modified_before": "2024-03-01"},
     lambda s: s in ("seeds/notes/2024/memo-0.txt", "seeds/notes/2024/memo-0.md", "seeds/notes/2024/memo-1.txt",
                     "seeds/notes/2024/memo-1.md")),
    ({"path": "seeds/0*", "modified_before": "2010-01-01"}, lambda s: s.startswith("seeds/0")),
]


def test_filters_apply_inside_retrieval(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """k passages come back when k admitted paragraphs exist, even for a query about other documents."""
    times = _with_notes(case)
    case.indexer().sync()
    engine = case.engine()
    assert {d.source: d.modified for d in engine.documents()} == times
    for spec, admits in FILTERS:
        admitted = [s for s in times if admits(s)]
        for query in ("who visited Myanmar?", "harbour bridge ferry"):
            found = engine.search_cited(query, 8, spec)
            assert all(admits(c.source) for c in found), (spec, query)
            assert len(found) == min(8, sum(len(engine.document(s).paragraphs) for s in admitted)), (spec, query)
        assert all(admits(c.source) for c in engine.ask("who visited Myanmar?", 5, spec).citations)
        assert all(admits(c.source) for c in engine.context("harbour ferry", 300, spec).citations)
    if case.kind == "postgresql":  # a large selection goes through the HNSW index, scanning on until enough match
        from service.store import postgres

        exact = case.citations("harbour bridge ferry", 8)
        monkeypatch.setattr(postgres, "EXACT_FILTERED_ROWS", 0)
        scanned = case.engine().search_cited("harbour bridge ferry", 8, {"path": "notes/"})
        assert len(scanned) == 8 and all(c.source.startswith("seeds/notes/") for c in scanned)
        assert len(exact) == 8


def test_modified_times_follow_writes_and_touches(case: Case) -> None:
    import os
    import time

    times = _with_notes(case)
    case.indexer().sync()
    engine = case.engine()
    before = time.time()
    engine.put_document("seeds/notes/new.txt", b"New\n\nA brand new memo about the lighthouse.\n")
    after = time.time()
    recorded = {d.source: d.modified for d in engine.documents()}
    assert before - 1 <= (recorded["seeds/notes/new.txt"] or 0) <= after + 1
    assert {c.source for c in engine.search_cited("lighthouse memo", 5, {"modified_after": "2025-01-01"})} \
        == {"seeds/notes/new.txt"}
    touched = case.corpus / "notes/2023/memo-0.txt"
    os.utime(touched, (2e9, 2e9))
    texts = case.embedder.texts
    report = case.indexer().sync()
    assert report.chunks_embedded == 0 and case.embedder.texts == texts and report.snapshot
    recorded = {d.source: d.modified for d in case.engine().documents()}
    assert recorded["seeds/notes/2023/memo-0.txt"] == 2e9
    assert all(recorded[s] == t for s, t in times.items() if s != "seeds/notes/2023/memo-0.txt")
    assert case.indexer().sync().snapshot is None, "nothing changed: nothing committed"


def test_both_stores_filter_alike(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    cases = [make_case(kind, tmp_path / kind, request) for kind in KINDS]
    for c in cases:
        _with_notes(c)
        c.indexer().sync()
    for spec, _admits in FILTERS:
        for query in QUERIES[:3]:
            local, pg = ([(x.source, x.paragraph, x.char_start, x.char_end) for x in c.engine().search_cited(query, 6, spec)]
                         for c in cases)
            assert local == pg, (spec, query)


# -- publication dates (issue 16) ----------------------------------------------------------------------------
def _page(date: str | None, words: str) -> bytes:
    meta = f'<meta property="article:published_time" content="{date}T08:00:00+00:00">' if date else ""
    return (f"<html><head><title>{words.title()}</title>{meta}</head><body><article><h1>{words.title()}</h1>"
            f"<p>The {words} were discussed by the harbour committee at length on Tuesday evening.</p>"
            f"<p>Members agreed that the {words} need a second survey before the summer season.</p>"
            "</article></body></html>").encode()


def test_publication_dates_are_kept_per_document(case: Case) -> None:
    """An HTML page's declared date is stored with the document, listed, served, replaced and reopened;
    a page without one and other formats read null."""
    write(case.corpus, "news/seals.html", _page("2024-05-14", "seal counts"))
    write(case.corpus, "news/undated.html", _page(None, "ferry timetables"))
    case.indexer().sync()
    engine = case.engine()
    listed = {d.source: d.as_dict()["published"] for d in engine.documents()}
    assert listed["seeds/news/seals.html"] == "2024-05-14"
    assert listed["seeds/news/undated.html"] is None
    assert all(v is None for s, v in listed.items() if not s.endswith(".html"))
    assert engine.document("seeds/news/seals.html").as_dict()["published"] == "2024-05-14"
    assert engine.document("seeds/news/undated.html").published is None
    engine.put_document("seeds/news/gulls.html", _page("2023-11-02", "gull nests"))
    engine.put_document("seeds/news/seals.html", _page("2024-06-01", "seal counts"))
    engine.put_document("seeds/news/notes.txt", b"Notes\n\nPublished 2020-01-01, says the text, not the format.\n")
    reopened = case.engine()  # a fresh reader of the stored state
    listed = {d.source: d.published for d in reopened.documents()}
    assert (listed["seeds/news/gulls.html"], listed["seeds/news/seals.html"], listed["seeds/news/notes.txt"]) \
        == ("2023-11-02", "2024-06-01", None)
    # a kept document keeps its date through the next write (of another document)
    reopened.delete_document("seeds/news/undated.html")
    assert {d.source: d.published for d in case.engine().documents()}["seeds/news/gulls.html"] == "2023-11-02"


# -- collections (issue 16) ---------------------------------------------------------------------------------
def test_collections_are_separate_indexes(case: Case) -> None:
    from service.collections import settings_for

    papers = case.corpus.parent / "papers"
    write(papers, "a.txt", "Graphene\n\nGraphene conducts heat better than copper at room temperature.\n")
    write(papers, "sub/b.md", "Perovskite\n\nPerovskite solar cells degrade in humid air.\n")
    from service.config import CollectionSpec

    case.settings = case.settings.model_copy(update={"collections": {"papers": CollectionSpec(corpus=papers)}})
    case.indexer().sync()
    default = case.engine()
    paper_settings = settings_for(case.settings, "papers")
    report = Indexer(paper_settings, embedder=case.embedder, progress=False).sync()
    assert report.added == ["papers/a.txt", "papers/sub/b.md"]
    engine = default.collection("papers")
    assert engine is default.collection("papers") and default.collection("default") is default
    assert engine.stats().documents == 2 and default.stats().documents == 5
    assert {c.source for c in engine.search_cited("graphene heat copper", 5)} <= {"papers/a.txt", "papers/sub/b.md"}
    assert all(c.source.startswith("seeds/") for c in default.search_cited("graphene heat copper", 5))
    assert {c.source for c in engine.search_cited("solar cells", 5, {"type": ["md"]})} == {"papers/sub/b.md"}
    written = engine.put_document("papers/c.txt", b"Topology\n\nTopological insulators conduct on their surface.\n")
    assert written.created and engine.stats().documents == 3 and default.stats().documents == 5
    summaries = {s.name: s.as_dict() for s in default.collections()}
    assert summaries == {
        "default": {"name": "default", "default": True, "documents": 5, "chunks": default.stats().chunks,
                    "store": case.kind, "ready": True},
        "papers": {"name": "papers", "default": False, "documents": 3, "chunks": engine.stats().chunks,
                   "store": case.kind, "ready": True}}
    engine.delete_document("papers/c.txt")
    assert engine.stats().documents == 2
    if case.kind == "local":
        assert (case.settings.index / "collections" / "papers" / "CURRENT").exists()
        assert (papers / "c.txt").exists() is False
    else:
        from service.store.postgres import PostgresStore

        db = PostgresStore(case.settings.store or "")
        try:
            schemas = db.run(lambda c: {r[0] for r in c.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'ask_documents'")})
        finally:
            db.close()
        assert schemas == {"public", "ask_papers"}
    from service.engine import CollectionNotFound

    with pytest.raises(CollectionNotFound, match="collections: default, papers"):
        default.collection("nope")


def test_postgres_schema_1_is_migrated_to_record_modified_times(request: pytest.FixtureRequest) -> None:
    """A database written before modified times and publication dates (schema 1) gains both columns; its
    documents read them as unknown."""
    import psycopg

    from service.store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStore

    server: PgServer = request.getfixturevalue("pg_server")
    url = server.create_database(f"contract_{next(_databases)}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(MIGRATIONS[0].encode())
        conn.execute("CREATE TABLE ask_schema (version int NOT NULL)")
        conn.execute("INSERT INTO ask_schema VALUES (1)")
        conn.execute("INSERT INTO ask_meta (id, generation, corpus, model, chunking) VALUES "
                     "(1, 1, '/x/seeds', '{\"name\": \"fake\", \"sha256\": \"f\", \"dim\": 3}', '{}')")
        conn.execute("INSERT INTO ask_documents (source, sha256, encoding, title, text, n_chunks) "
                     "VALUES ('seeds/a.txt', 'x', 'utf-8', 'A', 'A\n', 0)")
    db = PostgresStore(url)
    try:
        view = db.view()
        assert SCHEMA_VERSION == 3 and view.modified_times() == {"seeds/a.txt": None}
        assert [(d.modified, d.published) for d in view.documents()] == [(None, None)]
        doc = view.document("seeds/a.txt")
        assert doc is not None and doc.published is None
        assert db.run(lambda c: c.execute("SELECT version FROM ask_schema").fetchone()) == (3,)
    finally:
        db.close()
