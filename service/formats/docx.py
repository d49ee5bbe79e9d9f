"""Word (``.docx``): paragraphs and headings in document order, tables as rows of text, by
python-docx (MIT).

Each non-empty paragraph is a paragraph; each table row is a paragraph of its cells joined by
`` | `` (a merged cell once). A line break inside a Word paragraph stays a line break; tabs become
spaces. Word files record where pages break: explicit page breaks (``<w:br w:type="page"/>``, "page
break before") and, in files saved by Word, where its last layout broke pages
(``<w:lastRenderedPageBreak/>``). When a file records breaks, they become form feeds as in a PDF, and
citations name the page; a file that records none is cited by paragraph only. The title is the
document property, else a paragraph styled "Title".
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import TYPE_CHECKING, Any

from .text import CorpusError

if TYPE_CHECKING:
    from . import Extracted

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_PAGE = "\x00page\x00"  # an explicit page break's place while a paragraph is read
_RENDERED = "\x00rendered\x00"  # where Word's last layout broke the page
_BREAKS = re.compile("(\x00page\x00|\x00rendered\x00)")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


def _paragraph_text(p: Any) -> str:
    """A ``w:p``'s words in order, with ``_PAGE`` where a page breaks."""
    out: list[str] = []
    ppr = p.find(f"{_W}pPr")
    if ppr is not None and ppr.find(f"{_W}pageBreakBefore") is not None:
        flag = ppr.find(f"{_W}pageBreakBefore").get(f"{_W}val", "true")
        if flag not in ("0", "false", "off"):
            out.append(_PAGE)
    for el in p.iter(f"{_W}t", f"{_W}tab", f"{_W}br", f"{_W}cr", f"{_W}lastRenderedPageBreak", f"{_W}delText",
                     f"{_W}instrText"):
        tag = el.tag
        if tag == f"{_W}t":
            out.append(el.text or "")
        elif tag == f"{_W}tab":
            out.append(" ")
        elif tag == f"{_W}br":
            out.append(_PAGE if el.get(f"{_W}type") == "page" else "\n")
        elif tag == f"{_W}cr":
            out.append("\n")
        elif tag == f"{_W}lastRenderedPageBreak":
            out.append(_RENDERED)
    return "".join(out)


def _clean(text: str) -> str:
    return "\n".join(x for x in (_SPACES.sub(" ", line).strip() for line in text.split("\n")) if x)


def _row_text(row: Any) -> str:
    cells: list[str] = []
    for cell in row.cells:
        text = " ".join(_clean(p.text).replace("\n", " ") for p in cell.paragraphs).strip()
        if text and (not cells or cells[-1] != text):  # a merged cell is listed once per grid column
            cells.append(text)
    return " | ".join(cells)


def _assemble(blocks: list[str]) -> str:
    """Paragraphs separated by blank lines; a page break between paragraphs is a form feed on a line
    of its own, one inside a paragraph (words on both sides) a form feed between its words. Word
    records a rendered break right after an explicit one too: with no words between, they are one."""
    from . import PAGE_BREAK

    text = ""
    between = 0  # page breaks since the last paragraph with words
    explicit_open = False  # an explicit break with no words after it yet
    for block in blocks:
        started = False  # this block's paragraph has words in ``text``
        inside = 0
        for part in _BREAKS.split(block):
            if part in (_PAGE, _RENDERED):
                if part == _RENDERED and explicit_open:
                    continue
                explicit_open = part == _PAGE
                if started:
                    inside += 1
                else:
                    between += 1
                continue
            words = _clean(part)
            if not words:
                continue
            explicit_open = False
            if started:
                text += f" {PAGE_BREAK}" * inside + ("" if inside else " ") + words
                inside = 0
            else:
                if text:
                    text += "\n" + f"{PAGE_BREAK}\n" * between + ("" if between else "\n")
                else:
                    text = f"{PAGE_BREAK}\n" * between
                between = 0
                text += words
                started = True
        between += inside  # breaks after a paragraph's last words fall between paragraphs
    return text


def read(data: bytes) -> Extracted:
    from docx import Document as open_docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    from . import PAGE_BREAK, Extracted

    try:
        doc = open_docx(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise CorpusError(f"damaged or unreadable Word file ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # noqa: BLE001 -- python-docx raises many kinds for a damaged package
        raise CorpusError(f"damaged or unreadable Word file ({type(exc).__name__})") from None
    # Each block is a paragraph's text, possibly holding _PAGE marks.
    blocks: list[str] = []
    styled_title: str | None = None
    for item in doc.iter_inner_content():
        if isinstance(item, Paragraph):
            text = _paragraph_text(item._p)
            style = (item.style.name if item.style is not None else "") or ""
            words = _clean(_BREAKS.sub("", text))
            if style == "Title" and styled_title is None and words:
                styled_title = words.replace("\n", " ")
            blocks.append(text)
        elif isinstance(item, Table):
            blocks.extend(_row_text(row) for row in item.rows)
    text = _assemble(blocks)
    if not text.strip():
        raise CorpusError("no text (empty or whitespace only)")
    title = (doc.core_properties.title or "").strip() or styled_title
    pages = text.count(PAGE_BREAK) + 1 if PAGE_BREAK in text else None
    return Extracted(text + "\n", "docx", title=title or None, pages=pages)
