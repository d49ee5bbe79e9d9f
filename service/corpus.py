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
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_NEWLINE = r"(?:\r\n|\r(?!\n)|\n)"
_PARAGRAPH_BREAK = re.compile(rf"{_NEWLINE}(?:[^\S\r\n]*{_NEWLINE})+")
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


class CorpusError(ValueError):
    """A file that cannot be indexed; the message says why."""


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
    title: str


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


def decode(data: bytes) -> tuple[str, str]:
    """Bytes to text. Byte-order marks first, then strict UTF-8, then charset detection.

    Raises CorpusError for binary data or text no decoder accepts.
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc), enc.removesuffix("-sig")
            except UnicodeDecodeError as exc:
                raise CorpusError(f"invalid {enc} after its byte-order mark: {exc.reason}") from None
    head = data[:8192]
    if b"\x00" in head:
        raise CorpusError("binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1024 * 1024]).best()
    if best is None or best.encoding is None:
        raise CorpusError("binary or undecodable file (no text encoding fits)")
    if not _is_multibyte(best.encoding):
        # Detection cannot tell single-byte Latin code pages apart on short texts (it guesses
        # cp1250 for French); Windows-1252 is by far the most common of them, so it wins.
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode(best.encoding), best.encoding
    except (UnicodeDecodeError, LookupError):
        return data.decode(best.encoding, errors="replace"), f"{best.encoding}+replace"


def _is_multibyte(encoding: str) -> bool:
    import codecs

    name = codecs.lookup(encoding).name
    return any(m in name for m in ("gb", "big5", "shift_jis", "euc", "cp932", "cp949", "cp950", "iso2022", "hz", "utf"))


_TAG_BLOCK = re.compile(
    r"</?(?:p|div|br|h[1-6]|li|ul|ol|tr|table|section|article|header|footer|blockquote|pre|hr)\b[^>]*>",
    re.I,
)


def html_to_text(markup: str) -> str:
    """Readable text of an HTML page: block elements become paragraph breaks, scripts dropped."""
    import html

    markup = re.sub(r"(?is)<(script|style|noscript|template)\b.*?</\1\s*>", " ", markup)
    markup = re.sub(r"(?s)<!--.*?-->", " ", markup)
    markup = _TAG_BLOCK.sub("\n\n", markup)
    markup = re.sub(r"(?s)<[^>]+>", " ", markup)
    lines = [re.sub(r"[ \t\f\v]+", " ", html.unescape(line)).strip() for line in markup.splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def load_document(path: Path, source: str, max_bytes: int) -> Document:
    """Read and decode one file; raises CorpusError with a human reason when it cannot be indexed."""
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
    return document_from_bytes(data, source, path.suffix)


def document_from_bytes(data: bytes, source: str, suffix: str = ".txt") -> Document:
    text, encoding = decode(data)
    if suffix.lower() in (".html", ".htm"):
        text = html_to_text(text)
    if not text.strip():
        raise CorpusError("no text (empty or whitespace only)")
    name = source.rsplit("/", 1)[-1]
    return Document(
        source=source,
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        encoding=encoding,
        title=title_of(text, name),
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
