"""Pages in citations: which page a paragraph starts on, and how a citation is written.

Paged formats keep their pages in the text itself: a form feed (``\\f``) separates them (see
``service.formats``), so the paragraph rule and every offset are the same as for any text, and a
citation's page is derived from its offsets. A document is paged when it is a PDF, or a Word file
whose text holds page breaks. In a paged document a citation names the page where its paragraph
starts and the paragraph's number *within that page* (``report.pdf p. 3 ¶2``); elsewhere it names
the paragraph's number in the file (``notes.txt ¶4``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .corpus import PAGE_BREAK, paragraphs

PAGED_SUFFIXES = (".pdf", ".docx")
_ID = re.compile(r"^(?P<source>.+?)#(?:page(?P<page>\d+)\.)?p?(?P<paragraph>\d+)$")


def may_be_paged(source: str) -> bool:
    """Whether ``source`` is of a paged format (cheap: by name, before the text is read)."""
    return source.lower().endswith(PAGED_SUFFIXES)


def is_paged(source: str, text: str) -> bool:
    return source.lower().endswith(".pdf") or (may_be_paged(source) and PAGE_BREAK in text)


def page_at(text: str, offset: int) -> int:
    """The 1-based page holding character ``offset`` of a paged text."""
    return text.count(PAGE_BREAK, 0, offset) + 1


@dataclass(frozen=True, slots=True)
class PageMap:
    """For each paragraph of a document (by its number in the file): its page and its number on that page."""

    places: tuple[tuple[int, int], ...]  # index: paragraph number - 1
    pages: int
    empty_pages: tuple[int, ...]  # pages with no paragraph (a scanned page without a text layer)

    def place(self, paragraph: int) -> tuple[int, int]:
        return self.places[paragraph - 1]

    def paragraph_in_file(self, page: int, paragraph: int) -> int | None:
        for number, place in enumerate(self.places, start=1):
            if place == (page, paragraph):
                return number
        return None


def page_map(text: str) -> PageMap:
    places: list[tuple[int, int]] = []
    counts: dict[int, int] = {}
    pos, page = 0, 1
    for para in paragraphs(text):
        page += text.count(PAGE_BREAK, pos, para.start)
        pos = para.start
        counts[page] = counts.get(page, 0) + 1
        places.append((page, counts[page]))
    pages = text.count(PAGE_BREAK) + 1
    return PageMap(tuple(places), pages, tuple(p for p in range(1, pages + 1) if p not in counts))


def label(source: str, page: int | None, paragraph: int) -> str:
    """A citation as a reader writes it: ``report.pdf p. 3 ¶2``, or ``notes.txt ¶4``."""
    return f"{source} p. {page} ¶{paragraph}" if page is not None else f"{source} ¶{paragraph}"


def citation_id(source: str, paragraph: int, page: int | None = None) -> str:
    """``<source>#p<paragraph>``, or ``<source>#page<page>.p<paragraph>`` in a paged document: one
    paragraph; MCP's ``fetch`` takes it."""
    return f"{source}#page{page}.p{paragraph}" if page is not None else f"{source}#p{paragraph}"


def parse_citation_id(value: str) -> tuple[str, int | None, int] | None:
    """``(source, page, paragraph)`` of a citation id, or None when ``value`` is not one."""
    m = _ID.match(value)
    if not m:
        return None
    return m["source"], int(m["page"]) if m["page"] else None, int(m["paragraph"])
