"""Reading a corpus folder: which files count, how their bytes become text, and what a paragraph is.

The paragraph rule (also in the README): a paragraph is a maximal run of lines that contain at
least one non-whitespace character; paragraphs are separated by one or more blank lines (lines of
only whitespace). They are numbered from 1 in each file, the first line (the title) included.
Character offsets index the decoded text of the file (Python ``str`` positions; a UTF-8 or UTF-16
byte-order mark is not part of the text), so ``text[char_start:char_end]`` is exactly the passage.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .formats import PAGE_BREAK, extract
from .formats.html import html_to_text
from .formats.text import CorpusError, decode

__all__ = ["PAGE_BREAK", "CorpusError", "Document", "Paragraph", "Skipped", "decode", "document_from_bytes",
           "html_to_text", "load_document", "paragraphs", "source_name", "title_of", "walk"]

log = logging.getLogger(__name__)

_NEWLINE = r"(?:\r\n|\r(?!\n)|\n)"
_PARAGRAPH_BREAK = re.compile(rf"{_NEWLINE}(?:[^\S\r\n]*{_NEWLINE})+")


@dataclass(frozen=True, slots=True)
class Paragraph:
    number: int  # 1-based, as a reader counts
    start: int  # character offsets in the decoded text
    end: int


@dataclass(frozen=True, slots=True)
class Document:
    source: str  # the citation name: path relative to the corpus folder's parent, '/' separated
    text: str
    sha256: str
    encoding: str
    title: str  # the declared title, else the first line
    declared_title: str | None = None  # what the format declares (Markdown '# Title', HTML <title>, PDF metadata)
    metadata: dict[str, str] = field(default_factory=dict)  # e.g. an HTML page's publication date
    pages: int | None = None  # paged formats (PDF, Word with page breaks): the page count
    empty_pages: tuple[int, ...] = ()  # pages without a text layer (scanned), skipped
    unread: bool = False  # the bytes are those already indexed: the text was not extracted again


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


def paragraphs(text: str) -> list[Paragraph]:
    """Split ``text`` into numbered paragraphs with offsets trimmed of surrounding whitespace."""
    out: list[Paragraph] = []
    pos = 0
    for brk in [*_PARAGRAPH_BREAK.finditer(text), None]:
        end = brk.start() if brk else len(text)
        block = text[pos:end]
        stripped = block.strip()
        if stripped:
            lead = len(block) - len(block.lstrip())
            start = pos + lead
            out.append(Paragraph(len(out) + 1, start, start + len(stripped)))
        if brk:
            pos = brk.end()
    return out


def title_of(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:200]
    return fallback


def load_document(path: Path, source: str, max_bytes: int, indexed_sha256: str | None = None) -> Document:
    """Read and decode one file; raises CorpusError with a human reason when it cannot be indexed.

    ``indexed_sha256``: the hash of the version already indexed (by the same readers). When the
    bytes still have it, their text is not extracted again (a PDF costs milliseconds a page): the
    document comes back ``unread``, with no text, for the indexer to keep as it is.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise CorpusError(f"cannot stat: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CorpusError("not a regular file")
    if st.st_size == 0:
        raise CorpusError("empty file")
    if st.st_size > max_bytes:
        raise CorpusError(f"file is {st.st_size} bytes, over the {max_bytes}-byte limit (ASK_MAX_FILE_BYTES)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read: {exc.strerror}") from None
    if indexed_sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest == indexed_sha256:
            return Document(source, "", digest, "", "", unread=True)
    return document_from_bytes(data, source, path.suffix)


def document_from_bytes(data: bytes, source: str, suffix: str = ".txt") -> Document:
    """A file's bytes as a document, read by the format its suffix names (``service.formats``)."""
    try:
        got = extract(data, suffix)
    except (CorpusError, MemoryError):
        raise
    except Exception as exc:  # a damaged file is skipped with a reason, never stops a run
        log.debug("reading %s failed", source, exc_info=True)
        raise CorpusError(f"cannot be read as {suffix.lower().lstrip('.') or 'text'} "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not got.text.strip():
        raise CorpusError("no text (empty or whitespace only)")
    name = source.rsplit("/", 1)[-1]
    return Document(
        source=source,
        text=got.text,
        sha256=hashlib.sha256(data).hexdigest(),
        encoding=got.encoding,
        title=got.title or title_of(got.text, name),
        declared_title=got.title,
        metadata=dict(got.metadata),
        pages=got.pages,
        empty_pages=got.empty_pages,
    )


def source_name(corpus: Path, path: Path) -> str:
    """The citation name of a file: relative to the corpus folder's parent (``seeds/x.txt``)."""
    rel = path.relative_to(corpus).as_posix()
    return f"{corpus.name}/{rel}"


def walk(
    corpus: Path, extensions: tuple[str, ...], external_symlinks: bool = False
) -> Iterator[tuple[Path, str] | Skipped]:
    """Yield (path, source) for indexable files, or Skipped with a reason. Sorted, deterministic.

    Hidden files and folders are skipped; symlinks are followed once (loops are detected by the
    real path of each folder visited). A symlink that leads outside the corpus folder is skipped
    (with the reason) unless ``external_symlinks``: then it is followed, and logged.
    """
    seen_dirs: set[str] = set()
    exts = tuple(e.lower() for e in extensions)
    root = os.path.realpath(corpus)

    def outside(path: Path) -> bool:
        target = os.path.realpath(path)
        return target != root and not target.startswith(root.rstrip(os.sep) + os.sep)

    def visit(folder: Path) -> Iterator[tuple[Path, str] | Skipped]:
        try:
            real = os.path.realpath(folder)
        except OSError:
            real = str(folder)
        if real in seen_dirs:
            yield Skipped(source_name(corpus, folder) if folder != corpus else str(folder), "symlink loop")
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(str(folder), f"cannot list folder: {exc.strerror}")
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                log.debug("skip hidden %s", path)
                continue
            try:
                is_dir = entry.is_dir()
                is_file = entry.is_file()
            except OSError as exc:
                yield Skipped(source_name(corpus, path), f"cannot stat: {exc.strerror}")
                continue
            if (is_dir or is_file) and entry.is_symlink() and outside(path):
                if not external_symlinks:
                    yield Skipped(source_name(corpus, path), f"symlink to {os.path.realpath(path)}, outside the "
                                  "corpus folder (ASK_EXTERNAL_SYMLINKS=true indexes such files)")
                    continue
                log.info("following %s to %s, outside the corpus folder", path, os.path.realpath(path))
            if is_dir:
                yield from visit(path)
            elif is_file:
                if path.suffix.lower() in exts:
                    yield path, source_name(corpus, path)
                else:
                    log.debug("skip %s: extension not indexed", path)
            elif entry.is_symlink():
                yield Skipped(source_name(corpus, path), "broken symlink")

    yield from visit(corpus)
