"""Hostile corpus files: each is indexed correctly or skipped with a reason, and the run completes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service import corpus as corpus_module
from service.config import Settings
from service.engine import Engine
from service.indexer import Indexer

from .conftest import FakeEmbedder, write


def test_hostile_corpus(settings: Settings, fake_embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch,
                        caplog: pytest.LogCaptureFixture) -> None:
    c = settings.corpus
    write(c, "ok.txt", "Title\n\nA normal paragraph about border police.")
    write(c, "zero.txt", b"")
    write(c, "binary.md", bytes(range(256)) * 64)
    write(c, "png-named.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 100)
    write(c, "bad-utf8.txt", b"Caf\xc3 au lait \xff\xfe and more\n\nsecond para")
    write(c, "utf16le.txt", "UTF-16 LE\r\n\r\nwith BOM and CRLF, ünïcödé.".encode("utf-16-le").join([b"\xff\xfe", b""]))
    write(c, "utf16be.txt", b"\xfe\xff" + "Big endian\n\ntext body".encode("utf-16-be"))
    write(c, "latin1.txt", "Caf\xe9 cr\xe8me br\xfbl\xe9e, tr\xe8s appr\xe9ci\xe9e.\n\nD\xe9j\xe0 vu.".encode("latin-1"))
    write(c, "spaces and ünïcödé/file name ✓.txt", "Unicode path\n\nbody text here")
    # A 40 MB single-line file: over the default 32 MiB limit, skipped with a reason (fast).
    with open(c / "huge-line.txt", "wb") as f:
        f.write(b"word " * (8 * 1024 * 1024))
    # unreadable (root can read anything, so simulate the error the OS would give)
    locked = write(c, "locked.txt", "secret")
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied")
        return real_read(self)

    monkeypatch.setattr(corpus_module.Path, "read_bytes", read_bytes)
    os.symlink(c, c / "spaces and ünïcödé" / "loop-back")
    os.symlink(c / "missing-target.txt", c / "dangling.txt")

    report = Indexer(settings, embedder=fake_embedder, progress=False).sync(c)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in report.skipped}
    assert reasons["zero.txt"] == "empty file"
    assert "binary" in reasons["binary.md"] and "binary" in reasons["png-named.txt"]
    assert "limit" in reasons["huge-line.txt"]
    assert "Permission denied" in reasons["locked.txt"]
    assert "symlink loop" in reasons["loop-back"]
    assert "broken symlink" in reasons["dangling.txt"]
    for item in report.skipped:  # every skip is logged with its reason
        assert any(item.reason in r.getMessage() for r in caplog.records)
    engine = Engine(settings, embedder=fake_embedder)
    indexed = {d.source for d in engine.documents()}
    name = c.name
    assert indexed == {f"{name}/ok.txt", f"{name}/bad-utf8.txt", f"{name}/utf16le.txt", f"{name}/utf16be.txt", f"{name}/latin1.txt",
                       f"{name}/spaces and ünïcödé/file name ✓.txt"}
    assert engine.document(f"{name}/utf16le.txt").paragraphs[1].text == "with BOM and CRLF, ünïcödé."
    assert engine.document(f"{name}/utf16be.txt").paragraphs[1].text == "text body"
    assert "crème brûlée" in engine.document(f"{name}/latin1.txt").text
    assert locked.exists()


def test_large_single_line_file_is_indexed_with_exact_offsets(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    words = "alpha beta gamma delta police security treaty border".split()
    line = " ".join(words[i % len(words)] + str(i % 97) for i in range(400_000))  # ~3.5 MB, no punctuation
    write(settings.corpus, "one-line.txt", "Big\n\n" + line)
    report = Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus)
    assert report.chunks_total > 1000 and not report.skipped
    engine = Engine(settings, embedder=fake_embedder)
    text = engine.document(f"{settings.corpus.name}/one-line.txt").text
    snap = engine._current().view
    rows = snap.chunk_rows(range(0, snap.size, 97))
    assert rows and all(text[r.char_start : r.char_end] == r.text and r.paragraph in (1, 2) for r in rows)
