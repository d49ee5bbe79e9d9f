"""Filters (service.filters): parsing with errors that name the field, what a filter admits, and
searches that apply it inside retrieval (k results whenever k matching paragraphs exist)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from service import store
from service.config import Settings
from service.engine import Engine, QueryError
from service.filters import Filter, FilterError, parse_time
from service.indexer import Indexer
from tests.conftest import FakeEmbedder, write
from tests.old_formats import as_older_format

DAY = 86_400.0
JAN_1 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
KNOWN = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")


# -- parsing -----------------------------------------------------------------------------------------------
def test_times_parse_dates_and_datetimes_as_utc() -> None:
    assert parse_time("2024-01-01", "modified_after") == JAN_1
    assert parse_time("2024-01-01T00:00:00Z", "modified_after") == JAN_1
    assert parse_time("2024-01-01T02:00:00+02:00", "modified_after") == JAN_1
    assert parse_time("2024-01-01T06:30", "modified_after") == JAN_1 + 6.5 * 3600


@pytest.mark.parametrize(("spec", "field", "needle"), [
    ({"modified_after": "yesterday"}, "modified_after", "ISO 8601"),
    ({"modified_before": "2024-13-01"}, "modified_before", "ISO 8601"),
    ({"modified_after": 5}, "modified_after", "ISO 8601"),
    ({"modified_after": "2024-02-01", "modified_before": "2024-01-01"}, "modified_before", "later than"),
    ({"type": ["exe"]}, "type", "not an indexed file type"),
    ({"type": ["p d f"]}, "type", "not a file type"),
    ({"type": 3}, "type", "list"),
    ({"path": "/etc/"}, "path", "inside the corpus"),
    ({"path": "reports/../../x"}, "path", "'..'"),
    ({"path": "a\\b"}, "path", "backslash"),
    ({"path": 7}, "path", "prefix or glob"),
    ({"colour": "red"}, "colour", "unknown filter field"),
    ({"path": "{a,b}" * 12}, "path", "not a usable glob"),
])
def test_bad_values_name_their_field(spec: dict[str, object], field: str, needle: str) -> None:
    with pytest.raises(FilterError, match=needle) as caught:
        Filter.parse(spec, KNOWN)
    assert caught.value.field == field and str(caught.value).startswith(f"filter.{field}: ")


def test_an_empty_filter_admits_everything() -> None:
    for spec in (None, {}, {"path": "  "}, {"type": []}):
        flt = Filter.parse(spec, KNOWN)
        assert flt.empty and flt.admits("seeds/x.txt", None)


# -- what a filter admits ------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "admitted"), [
    ("reports", {"c/reports/a.pdf", "c/reports/2024/b.md", "c/reports"}),
    ("reports/", {"c/reports/a.pdf", "c/reports/2024/b.md", "c/reports"}),
    ("c/reports/", {"c/reports/a.pdf", "c/reports/2024/b.md", "c/reports"}),
    ("reports/2024", {"c/reports/2024/b.md"}),
    ("reports/*.pdf", {"c/reports/a.pdf"}),
    ("reports/**/*.md", {"c/reports/2024/b.md"}),
    ("**/*.{pdf,txt}", {"c/reports/a.pdf", "c/reportsx/c.txt", "c/notes.txt"}),
    ("*.txt", {"c/notes.txt"}),
    ("report", set()),
])
def test_path_prefix_is_whole_segments_and_globs_follow_slashes(path: str, admitted: set[str]) -> None:
    sources = ["c/reports/a.pdf", "c/reports/2024/b.md", "c/reportsx/c.txt", "c/notes.txt", "c/reports"]
    flt = Filter.parse({"path": path}, KNOWN)
    assert {s for s in sources if flt.admits(s, None)} == admitted


def test_types_are_case_insensitive_with_aliases() -> None:
    flt = Filter.parse({"type": [".MD", "htm"]}, KNOWN)
    assert flt.types == ("html", "md")
    assert [s for s in ("a/x.md", "a/y.markdown", "a/z.HTML", "a/w.htm", "a/v.txt", "a/noext")
            if flt.admits(s, None)] == ["a/x.md", "a/y.markdown", "a/z.HTML", "a/w.htm"]
    assert Filter.parse({"type": "pdf"}, KNOWN).types == ("pdf",)


def test_time_range_is_inclusive_then_exclusive_and_unknown_times_never_match() -> None:
    flt = Filter.parse({"modified_after": "2024-01-01", "modified_before": "2024-01-02"}, KNOWN)
    assert flt.admits("a/x.txt", JAN_1) and flt.admits("a/x.txt", JAN_1 + DAY - 1)
    assert not flt.admits("a/x.txt", JAN_1 - 1) and not flt.admits("a/x.txt", JAN_1 + DAY)
    assert not flt.admits("a/x.txt", None)


# -- inside retrieval ------------------------------------------------------------------------------------
FILES = {f"{folder}/{name}.{ext}": i for i, (folder, name, ext) in enumerate(
    (folder, name, ext) for folder in ("alpha", "beta", "beta/deep") for name in ("one", "two", "three")
    for ext in ("txt", "md"))}


def _text(i: int) -> str:
    words = ["river", "bridge", "harbour", "market", "station", "garden", "tower", "castle"]
    return "\n\n".join([f"Document number {i}"] + [
        f"The {words[(i + p) % 8]} near the {words[(i * 3 + p) % 8]} was rebuilt in year {1900 + i * 7 + p}."
        for p in range(3)]) + "\n"


@pytest.fixture(scope="module")
def corpus_engine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Settings]:
    root = tmp_path_factory.mktemp("filters")
    settings = Settings(corpus=root / "corpus", index=root / "index", cache_dir=root / "cache", candidates=500)
    for name, i in FILES.items():
        path = write(settings.corpus, name, _text(i))
        os.utime(path, (JAN_1 + i * DAY, JAN_1 + i * DAY))
    embedder = FakeEmbedder()
    Indexer(settings, embedder=embedder, progress=False).sync()
    return Engine(settings, embedder=embedder), settings


filters = st.fixed_dictionaries({}, optional={
    "path": st.sampled_from(["alpha", "beta/", "beta/deep", "**/one.*", "*/t*.md", "corpus/alpha/"]),
    "type": st.lists(st.sampled_from(["txt", "md"]), min_size=1, max_size=2),
    "modified_after": st.integers(0, len(FILES)).map(lambda d: f"2024-01-{1 + d:02d}"),
})


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=filters, k=st.integers(1, 12), query=st.sampled_from(["river bridge", "castle tower 1950", "garden"]))
def test_filtered_search_is_the_unfiltered_ranking_restricted(corpus_engine: tuple[Engine, Settings],
                                                              spec: dict[str, object], k: int, query: str) -> None:
    """k results whenever k admitted paragraphs exist, all admitted; with one retriever (dense or
    BM25) over every candidate, exactly the unfiltered ranking with the other documents left out."""
    engine, _settings = corpus_engine
    flt = Filter.parse(spec, KNOWN)
    times = engine._current().view.modified_times()
    admitted = {s for s in times if flt.admits(s, times[s])}
    paragraphs = 4 * len(admitted)
    found = engine.search(query, k, spec)
    assert {p.source for p in found} <= admitted
    assert len(found) == min(k, paragraphs)
    retriever = engine._current().retriever
    for fusion in ("dense", "bm25"):
        every = retriever.search(query, engine.embedder.embed([query])[0], 100, fusion=fusion)
        live = engine._current()
        view, restricted = live.filtered(flt) if not flt.empty else (live.view, live.retriever)
        mine = restricted.search(query, engine.embedder.embed([query])[0], k, fusion=fusion)
        expected = [(p.source, p.paragraph) for p in every if p.source in admitted][:k]
        assert [(p.source, p.paragraph) for p in mine] == expected


def test_engine_refuses_bad_filters_naming_the_field(corpus_engine: tuple[Engine, Settings]) -> None:
    engine, _ = corpus_engine
    with pytest.raises(QueryError, match=r"^filter\.modified_after: "):
        engine.search("river", 3, {"modified_after": "soon"})
    with pytest.raises(QueryError, match=r"^filter\.type: "):
        engine.ask("river", 3, {"type": ["xlsx"]})


def test_a_filter_nothing_matches_finds_nothing(corpus_engine: tuple[Engine, Settings]) -> None:
    engine, _ = corpus_engine
    assert engine.search("river", 5, {"path": "gamma/"}) == []
    assert engine.ask("river bridge?", 5, {"path": "gamma/"}).citations == []


def test_hnsw_index_filters_inside_the_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.store.segments.SUBSET_EXACT_ROWS", 0)  # the graph, not an exact search of the few
    settings = Settings(corpus=tmp_path / "corpus", index=tmp_path / "index", cache_dir=tmp_path / "cache",
                        hnsw_threshold=10)
    for name, i in FILES.items():
        write(settings.corpus, name, _text(i))
    embedder = FakeEmbedder()
    Indexer(settings, embedder=embedder, progress=False).sync()
    engine = Engine(settings, embedder=embedder)
    assert engine.stats().vector_index == "hnsw"
    for spec, documents in (({"path": "beta/"}, 12), ({"path": "alpha/one.txt"}, 1)):
        found = engine.search("river bridge", 50, spec)
        assert len(found) == min(50, 4 * documents)
        assert all(Filter.parse(spec).admits(p.source, None) for p in found)


# -- modified times in the index ---------------------------------------------------------------------------
def test_modified_times_are_recorded_touched_and_upgraded(tmp_path: Path) -> None:
    """Index time records each file's mtime; a touched file gets its new time without embedding; an
    index written before times were recorded (format 2) is read, refuses time filters with the command
    to run, and that command records them."""
    settings = Settings(corpus=tmp_path / "corpus", index=tmp_path / "index", cache_dir=tmp_path / "cache")
    a = write(settings.corpus, "a.txt", _text(1))
    b = write(settings.corpus, "sub/b.txt", _text(2))
    os.utime(a, (JAN_1, JAN_1))
    os.utime(b, (JAN_1 + DAY, JAN_1 + DAY))
    embedder = FakeEmbedder()
    Indexer(settings, embedder=embedder, progress=False).sync()
    engine = Engine(settings, embedder=embedder)
    assert {d.source: d.modified for d in engine.documents()} == {"corpus/a.txt": JAN_1, "corpus/sub/b.txt": JAN_1 + DAY}
    assert engine.documents()[0].as_dict()["modified"] == "2024-01-01T00:00:00Z"
    assert {p.source for p in engine.search("river", 10, {"modified_before": "2024-01-02"})} == {"corpus/a.txt"}

    os.utime(a, (JAN_1 + 5 * DAY, JAN_1 + 5 * DAY))
    texts = embedder.texts
    report = Indexer(settings, embedder=embedder, progress=False).sync()
    assert report.snapshot and report.chunks_embedded == 0 and embedder.texts == texts
    assert {p.source for p in engine.search("river", 10, {"modified_after": "2024-01-03"})} == {"corpus/a.txt"}

    # make the live snapshot look like format 2: no modified column (checksums redone)
    as_older_format(settings.index, 2, "modified", Indexer(settings, embedder=embedder, progress=False).lexical_text)
    old = Engine(settings, embedder=embedder)
    assert all(d.modified is None for d in old.documents()) and old.search("river", 3)
    with pytest.raises(QueryError, match="python -m service index"):
        old.search("river", 3, {"modified_after": "2024-01-01"})
    assert old.search("river", 3, {"path": "sub/"})  # other filters still work
    report = Indexer(settings, embedder=embedder, progress=False).sync()
    assert report.snapshot and report.chunks_embedded == 0
    manifest = json.loads((settings.index / report.snapshot / "manifest.json").read_text())
    assert manifest["format_version"] == store.FORMAT_VERSION >= 3
    assert {p.source for p in Engine(settings, embedder=embedder).search(
        "river", 10, {"modified_after": "2024-01-03"})} == {"corpus/a.txt"}
