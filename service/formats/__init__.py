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

from collections.abc import Callable
from dataclasses import dataclass, field

from .text import CorpusError

# Bumped whenever a reader's output changes: an index made by older readers is chunked again from
# the files (the manifest's chunking settings record it), so no stale text stays indexed.
READERS_VERSION = 1

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


__all__ = ["PAGE_BREAK", "READERS_VERSION", "CorpusError", "Extracted", "extract"]
