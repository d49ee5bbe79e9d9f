"""Format readers: how a file's bytes become the text that is indexed, cited and served.

Each format has a module with one ``read(data) -> Extracted`` function. Whatever the format, the
result is plain text under the paragraph rule (``service.corpus.paragraphs``): markup is gone, so
titles, quotes and ``GET /v1/documents/{id}`` show words only, and every offset points into this
text. Paged formats (PDF, and Word files that record their page breaks) separate pages with a form
feed (``\\f``): on a line of its own between pages (a blank line, so a paragraph break), or inside a
paragraph that runs on to the next page (``service.pages`` derives a citation's page from the
offsets). A format may declare a title (Markdown ``# Title``, HTML ``<title>``/``<h1>``, PDF and Word
metadata); ``title`` is ``None`` when it declares none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .text import CorpusError

# Each reader's version, by file suffix, recorded in the index's chunking settings; bumped whenever
# the reader's output changes, so that the files it reads are read and chunked again at the next
# run (no stale text stays indexed) while files of other formats keep their chunks and vectors.
# Plain text is version 0 (absent): its text has not changed since indexes recorded no versions.
# HTML 2: the page's publication date is stored with the document (read again to record it).
READER_VERSIONS: dict[str, int] = {".md": 1, ".markdown": 1, ".html": 2, ".htm": 2, ".pdf": 1, ".docx": 1}


def stale_suffixes(recorded: Mapping[str, int]) -> frozenset[str]:
    """Suffixes whose reader changed since an index recorded ``recorded`` (its ``chunking["readers"]``)."""
    suffixes = set(READER_VERSIONS) | set(recorded)
    return frozenset(s for s in suffixes if recorded.get(s, 0) != READER_VERSIONS.get(s, 0))


def suffix_of(source: str) -> str:
    name = source.rsplit("/", 1)[-1]
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""

PAGE_BREAK = "\f"


@dataclass(frozen=True, slots=True)
class Extracted:
    text: str
    encoding: str  # how the bytes became text: a character encoding, or the format ("pdf", "docx")
    title: str | None = None  # declared by the format, not guessed from the text
    metadata: dict[str, str] = field(default_factory=dict)  # e.g. an HTML page's publication date
    pages: int | None = None  # paged formats: the page count
    empty_pages: tuple[int, ...] = ()  # pages without a text layer (scanned), 1-based, skipped


Reader = Callable[[bytes], Extracted]


def _reader(suffix: str) -> Reader:
    if suffix in (".html", ".htm"):
        from . import html

        return html.read
    if suffix in (".md", ".markdown"):
        from . import markdown

        return markdown.read
    if suffix == ".pdf":
        from . import pdf

        return pdf.read
    if suffix == ".docx":
        from . import docx

        return docx.read
    from . import text

    return text.read


def extract(data: bytes, suffix: str) -> Extracted:
    """The text of a file by its name's suffix; raises ``CorpusError`` with a reason when it has none."""
    return _reader(suffix.lower())(data)


__all__ = ["PAGE_BREAK", "READER_VERSIONS", "CorpusError", "Extracted", "extract", "stale_suffixes", "suffix_of"]
