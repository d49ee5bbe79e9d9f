from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest

from service import store
from service.config import Settings
from service.engine import Engine
from service.indexer import Indexer
from service.store import segments

from .conftest import FakeEmbedder, write
from .old_formats import as_older_format

ARTICLE = "A title line\n\nThe first paragraph talks about apples. Apples are red.\n\nThe second paragraph is about pears."


def sync(settings: Settings, embedder: FakeEmbedder):
    return Indexer(settings, embedder=embedder, progress=False).sync(settings.corpus)


def test_index_build_and_citation_offsets(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    write(settings.corpus, "sub/b.txt", "B\r\n\r\nCRLF text about bananas.\r\n")  # raw offsets: plain text
    report = sync(settings, fake_embedder)
    assert report.added == ["corpus/a.txt", "corpus/sub/b.txt"] and report.snapshot
    snap = store.open_snapshot(settings.index, fake_embedder.info.sha256)
    assert snap.size == snap.rows == snap.vectors.ntotal
    for row in snap.chunk_rows(range(snap.rows)):
        with open(settings.corpus.parent / row.source, encoding="utf-8", newline="") as f:
            text = f.read()
        assert text[row.char_start : row.char_end] == row.text
    manifest = snap.manifest
    assert manifest["model"]["sha256"] == fake_embedder.info.sha256
    assert manifest["format_version"] == store.FORMAT_VERSION
    assert manifest["corpus"] == str(settings.corpus.resolve())


def test_unchanged_reindex_does_no_embedding(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    first = sync(settings, fake_embedder)
    calls = fake_embedder.calls
    again = sync(settings, fake_embedder)
    assert fake_embedder.calls == calls, "an unchanged corpus must not touch the model"
    assert again.snapshot is None and again.unchanged == 1 and again.chunks_embedded == 0
    assert store.current_name(settings.index) == first.snapshot


def test_add_change_delete_are_reflected(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    write(settings.corpus, "b.txt", "B title\n\nBananas are yellow.")
    sync(settings, fake_embedder)
    write(settings.corpus, "c.txt", "C title\n\nCherries are small.")
    write(settings.corpus, "a.txt", ARTICLE + "\n\nA new paragraph about plums.")
    (settings.corpus / "b.txt").unlink()
    before = fake_embedder.texts
    report = sync(settings, fake_embedder)
    assert report.added == ["corpus/c.txt"] and report.changed == ["corpus/a.txt"]
    assert report.deleted == ["corpus/b.txt"] and report.unchanged == 0
    assert fake_embedder.texts - before == report.chunks_embedded
    engine = Engine(settings, embedder=fake_embedder)
    sources = [d.source for d in engine.documents()]
    assert sources == ["corpus/a.txt", "corpus/c.txt"]
    hits = engine.search("plums", 3)
    assert hits[0].source == "corpus/a.txt" and hits[0].paragraph == 4
    assert all(h.source != "corpus/b.txt" for h in engine.search("bananas yellow", 5))


def test_index_remembers_its_corpus(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    sync(settings, fake_embedder)
    write(settings.corpus, "b.txt", "B\n\nMore.")
    other = Settings(index=settings.index, cache_dir=settings.cache_dir)  # default corpus is seeds/
    report = Indexer(other, embedder=fake_embedder, progress=False).sync(None)
    assert report.added == ["corpus/b.txt"]


def test_index_built_with_another_model_is_refused(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    sync(settings, fake_embedder)
    other = FakeEmbedder(sha="0" * 64)
    with pytest.raises(store.IndexIncompatible, match="rebuild"):
        Engine(settings, embedder=other).search("apples")
    with pytest.raises(store.IndexIncompatible):
        sync(settings, other)
    report = Indexer(settings, embedder=other, progress=False).sync(settings.corpus, rebuild=True)
    assert report.added == ["corpus/a.txt"]
    assert Engine(settings, embedder=other).search("apples")


def test_format_version_change_is_detected(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    name = sync(settings, fake_embedder).snapshot
    path = settings.index / name / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 999
    path.write_text(json.dumps(manifest))
    with pytest.raises(store.IndexIncompatible, match="format version"):
        Engine(settings, embedder=fake_embedder).search("apples")


def test_sentence_chunks_are_a_setting(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    long = "Title\n\n" + " ".join(f"Sentence {i} is about the harvest of the year {1900 + i}." for i in range(60))
    write(settings.corpus, "long.txt", long)
    with_sentences = sync(settings, fake_embedder).chunks_total
    windows_only = settings.model_copy(update={"sentence_chunks": False})
    report = Indexer(windows_only, embedder=fake_embedder, progress=False).sync(settings.corpus)
    assert report.changed == ["corpus/long.txt"], "a different chunking re-chunks the document"
    assert 0 < report.chunks_total < with_sentences


def test_indexes_from_before_the_sentence_setting_are_not_rechunked(settings: Settings,
                                                                    fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    name = sync(settings, fake_embedder).snapshot
    path = settings.index / name / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["chunking"]["sentences"]  # as written by earlier versions, which always made them
    path.write_text(json.dumps(manifest))
    calls = fake_embedder.calls
    report = sync(settings, fake_embedder)
    assert report.unchanged == 1 and fake_embedder.calls == calls


def test_format_1_snapshot_is_still_read(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    """Version 1 named the exact index "flat" (and kept a FAISS copy of it, which is not needed)."""
    write(settings.corpus, "a.txt", ARTICLE)
    assert sync(settings, fake_embedder).snapshot
    expected = Engine(settings, embedder=fake_embedder).search("apples")
    folder = as_older_format(settings.index, 1, "modified", Indexer(settings, embedder=fake_embedder,
                                                                    progress=False).lexical_text)
    assert json.loads((folder / "manifest.json").read_text())["vector_index"] == "flat"
    assert Engine(settings, embedder=fake_embedder).search("apples") == expected


@pytest.mark.parametrize(("victim", "hnsw_threshold"),
                         [("meta.sqlite", 100), ("vectors.npy", 100), ("vectors.faiss", 0)])
def test_truncated_index_file_is_detected(settings: Settings, fake_embedder: FakeEmbedder, victim: str,
                                          hnsw_threshold: int) -> None:
    settings = settings.model_copy(update={"hnsw_threshold": hnsw_threshold})
    write(settings.corpus, "a.txt", ARTICLE)
    sync(settings, fake_embedder)
    (segment,) = (settings.index / "segments").iterdir()
    path: Path = segment / victim
    gc.collect()  # no view of this process keeps the segment open (and checked)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(store.IndexCorrupt, match="rebuild"):
        Engine(settings, embedder=fake_embedder).search("apples")


def test_second_writer_is_refused(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    import threading

    write(settings.corpus, "a.txt", ARTICLE)
    held, release = threading.Event(), threading.Event()

    def other_writer() -> None:  # the lock is re-entrant for its own thread only
        with store.writer_lock(settings.index):
            held.set()
            release.wait(60)

    thread = threading.Thread(target=other_writer)
    thread.start()
    try:
        assert held.wait(60)
        with pytest.raises(store.IndexBusy, match="another process"):
            sync(settings, fake_embedder)
    finally:
        release.set()
        thread.join()
    with store.writer_lock(settings.index), store.writer_lock(settings.index):  # re-entered, not refused
        assert sync(settings, fake_embedder).snapshot


def test_missing_index_says_how_to_build(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    with pytest.raises(store.IndexMissing, match="python -m service index"):
        Engine(settings, embedder=fake_embedder).search("apples")


def test_unwritable_index_folder_keeps_old_index(settings: Settings, fake_embedder: FakeEmbedder, monkeypatch) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    first = sync(settings, fake_embedder).snapshot
    write(settings.corpus, "b.txt", "B\n\nNew text.")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segments, "write_meta", full)
    with pytest.raises(store.IndexWriteFailed, match="disk is full.*previous index is intact"):
        sync(settings, fake_embedder)
    monkeypatch.undo()
    assert store.current_name(settings.index) == first
    assert not list(settings.index.glob(".tmp-*"))
    assert [d.source for d in Engine(settings, embedder=fake_embedder).documents()] == ["corpus/a.txt"]


def test_a_commit_sweeps_what_dead_writers_left_and_keeps_a_live_writers(settings: Settings,
                                                                          fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    sync(settings, fake_embedder)
    dead_dir = settings.index / ".tmp-snap-000009-4194304999"  # no such pid (beyond pid_max)
    dead_dir.mkdir()
    dead_file = settings.index / ".tmp-8f03c1d2e4a9-4194304999"  # an atomic write's leftover
    dead_file.write_bytes(b"part")
    huge = settings.index / ".tmp-839201938475392018475"  # all digits, too big for a pid
    huge.write_bytes(b"part")
    live = settings.index / f".tmp-snap-000010-{os.getpid()}"
    live.mkdir()
    write(settings.corpus, "b.txt", "B\n\nNew text.")
    sync(settings, fake_embedder)
    assert sorted(p.name for p in settings.index.glob(".tmp-*")) == [live.name]


def test_altered_file_is_caught_by_the_full_check(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "a.txt", ARTICLE)
    sync(settings, fake_embedder)
    (segment,) = (settings.index / "segments").iterdir()
    path: Path = segment / "vectors.npy"
    gc.collect()  # no view of this process keeps the segment open (and checked)
    data = bytearray(path.read_bytes())
    data[len(data) - 8] ^= 0xFF  # same size, one flipped byte in the last MiB
    path.write_bytes(bytes(data))
    with pytest.raises(store.IndexCorrupt, match="checksum"):
        store.open_snapshot(settings.index, fake_embedder.info.sha256, full_check=False)
    with pytest.raises(store.IndexCorrupt, match="checksum"):
        Engine(settings, embedder=fake_embedder).search("apples")


def test_word_pairs_are_recorded_and_an_index_without_them_is_built_again(settings: Settings,
                                                                           fake_embedder: FakeEmbedder) -> None:
    """BM25 postings hold consecutive word pairs (service.lexical): an index whose postings lack them
    is indexed again, and a passage holding the question's words in its order ranks above one holding
    them apart."""
    write(settings.corpus, "a.txt", "Plants\n\nThe tidal power station opened in March.")
    write(settings.corpus, "b.txt", "Plants\n\nStation power was tidal in March, it opened.")
    indexer = Indexer(settings, embedder=fake_embedder, progress=False)
    indexer.sync(settings.corpus)
    view = indexer.store.view()
    assert view.meta.chunking["lexical_pairs"] == 1
    ids, _scores = view.lexical.search("When did the tidal power station open?", 5)
    assert view.chunk_rows([int(ids[0])])[0].source == "corpus/a.txt"
    assert indexer._same_chunking(view)
    manifest_path = settings.index / store.current_name(settings.index) / "manifest.json"  # type: ignore[operator]
    manifest = json.loads(manifest_path.read_text())
    del manifest["chunking"]["lexical_pairs"]  # as an index built before pairs recorded it
    manifest_path.write_text(json.dumps(manifest))
    older = Indexer(settings, embedder=fake_embedder, progress=False)
    assert not older._same_chunking(older.store.view())
    report = older.sync(settings.corpus)
    assert sorted(report.changed) == ["corpus/a.txt", "corpus/b.txt"]
    assert older.store.view().meta.chunking["lexical_pairs"] == 1
