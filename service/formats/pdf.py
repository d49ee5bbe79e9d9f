"""PDF: the text layer of each page by pypdfium2 (PDFium, Apache-2.0/BSD), paragraphs rebuilt from
the layout.

On each page, lines come in PDFium's reading order with their boxes. A line starts a new paragraph
when the white space above it is well over the page's usual spacing between lines (the typical
small gap) or a line high, when it sits above the previous line (another column, a box placed out
of order), when its font size changes (a heading), or when it is indented from the line before (a
first-line indent, unless that line starts a list item). Lines of one paragraph are joined by a space;
a word hyphenated at a line end is joined again. A lone page number at the top or bottom of a page
is dropped, and so are running heads and feet (a line that recurs at the top or bottom of most pages).

Pages are separated by a form feed (``\\f``) on a line of its own, so the paragraph rule sees a
break there; a paragraph that runs on to the next page (it does not end a sentence and the next
page starts in lower case) keeps going, with the form feed inside it, and is cited on the page
where it starts. A page with no text layer (a scanned image) is recorded in ``empty_pages``.
Encrypted, damaged and over-long files raise ``CorpusError`` with the reason.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .text import CorpusError

if TYPE_CHECKING:
    from . import Extracted

MAX_PAGES = 5000  # a longer PDF is skipped as "huge": its text would not be cited usefully anyway
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")
_PAGE_NUMBER = re.compile(r"(?:page\s*)?[-–]?\s*\d{1,4}\s*[-–]?(?:\s*(?:of|/)\s*\d{1,4})?", re.I)
_SENTENCE_END = re.compile(r"[.!?:;\"'”’)\]]$")
_HYPHENATED = re.compile(r"[^\W\d_]-$")
_BULLET = re.compile(r"\s*(?:[•◦▪‣∙·*–-]|\(?\d{1,3}[.)]|\(?[a-z][.)])\s")


@dataclass(slots=True)
class _Line:
    text: str
    top: float
    bottom: float
    left: float
    height: float


def _lines(textpage: Any) -> list[_Line]:
    """The page's text lines with their boxes (PDFium ends each line with CR LF)."""
    count = textpage.count_chars()
    if count <= 0:
        return []
    text = textpage.get_text_range(0, count)
    aligned = len(text) == count  # one character per index: boxes can be read by position
    out: list[_Line] = []
    for m in re.finditer(r"[^\r\n]+", text):
        raw, start = m.group(), m.start()
        clean = _CONTROL.sub(lambda m: "-" if m.group() == "\x02" else "", raw)
        if not clean.strip():
            continue
        if not aligned:
            out.append(_Line(clean, 0.0, 0.0, 0.0, 0.0))
            continue
        # A line is level: the boxes of its first and last characters and a few between are enough.
        solid = [i for i in range(start, min(start + len(raw), count)) if not raw[i - start].isspace()]
        step = max(1, len(solid) // 8)
        boxes = [textpage.get_charbox(i, loose=True) for i in sorted({*solid[::step], *solid[-1:]})]
        if not boxes:
            continue
        left = min(b[0] for b in boxes)
        bottom = min(b[1] for b in boxes)
        top = max(b[3] for b in boxes)
        height = statistics.median(b[3] - b[1] for b in boxes)
        out.append(_Line(clean, top, bottom, left, height))
    return out


def _paragraphs(lines: list[_Line]) -> list[list[_Line]]:
    if not lines:
        return []
    if all(x.height == 0 for x in lines):
        return [[x] for x in lines]  # no geometry: PDFium's lines are all we know; each is a paragraph
    # The white space between one line's box and the next; the page's usual spacing is the typical
    # small gap (a page of one-line paragraphs has as many paragraph gaps as line gaps).
    height = statistics.median(x.height for x in lines)
    gaps = [a.bottom - b.top for a, b in zip(lines, lines[1:], strict=False)]
    small = [g for g in gaps if g <= min(gaps) + 0.3 * height]
    usual = statistics.median(small) if small else 0.0
    paras: list[list[_Line]] = [[lines[0]]]
    for prev, line, gap in zip(lines, lines[1:], gaps, strict=False):
        size = max(prev.height, line.height, 1e-6)
        new = (
            gap > usual + 0.6 * size  # well above the page's line spacing
            or gap > 1.0 * size  # a blank line's worth, even where every line is a paragraph
            or line.bottom > prev.top  # moved up: another column, or a box placed out of order
            or abs(prev.height - line.height) > 0.2 * size  # another font size: a heading
            or (0.8 * size < line.left - prev.left < 4 * size  # a first-line indent (books, papers)
                and not _BULLET.match(prev.text))  # not the hanging indent of a list item
        )
        if new:
            paras.append([line])
        else:
            paras[-1].append(line)
    return paras


def _join(lines: list[str]) -> str:
    out = ""
    for line in (x.strip() for x in lines):
        if not out:
            out = line
        elif _HYPHENATED.search(out) and line[:1].islower():
            out = out[:-1] + line
        else:
            out = f"{out} {line}"
    return re.sub(r"[ \t]+", " ", out)


def _page_lines(page: Any) -> list[_Line]:
    textpage = page.get_textpage()
    try:
        lines = _lines(textpage)
    finally:
        textpage.close()
    # A lone page number as the first or last line of the page is furniture, not text.
    while lines and _PAGE_NUMBER.fullmatch(lines[-1].text.strip()):
        lines.pop()
    while lines and _PAGE_NUMBER.fullmatch(lines[0].text.strip()):
        lines.pop(0)
    return lines


def _furniture_key(line: _Line) -> str:
    return re.sub(r"\d+", "#", " ".join(line.text.lower().split()))


def _drop_running_heads(pages: list[list[_Line]]) -> None:
    """Remove running heads and feet: a line among the first or last two of a page whose text (digits
    aside: "Review 2024, page 7") recurs there on at least half the pages with text, and on three."""
    edges = [{_furniture_key(x) for x in lines[:2] + lines[-2:]} for lines in pages if lines]
    counts: dict[str, int] = {}
    for keys in edges:
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    furniture = {k for k, c in counts.items() if c >= 3 and c * 2 >= len(edges)}
    if not furniture:
        return
    for lines in pages:
        keep = [x for i, x in enumerate(lines)
                if not ((i < 2 or i >= len(lines) - 2) and _furniture_key(x) in furniture)]
        lines[:] = keep


def _continues(previous: str, following: str) -> bool:
    """Whether a page's last paragraph runs on into the next page's first."""
    return not _SENTENCE_END.search(previous) and following[:1].islower()


def _sane_title(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    title = re.sub(r"\s+", " ", _CONTROL.sub("", value)).strip()
    lowered = title.lower()
    if not title or lowered in ("untitled", "title") or re.search(r"\.(docx?|pdf|odt|rtf|txt|indd|pptx?)$", lowered):
        return None  # a file name or a placeholder a writing program left behind
    return title[:200]


def read(data: bytes, max_pages: int = MAX_PAGES) -> Extracted:
    import pypdfium2 as pdfium

    from . import PAGE_BREAK, Extracted

    if not data.lstrip()[:1024].startswith(b"%PDF") and b"%PDF" not in data[:1024]:
        raise CorpusError("not a PDF file (no %PDF header)")
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message = str(exc)
        if "password" in message.lower():
            raise CorpusError("encrypted PDF: it needs a password to be read") from None
        raise CorpusError(f"damaged or unreadable PDF ({message})") from None
    try:
        n = len(pdf)
        if n == 0:
            raise CorpusError("PDF without pages")
        if n > max_pages:
            raise CorpusError(f"PDF has {n} pages, over the {max_pages}-page limit")
        try:
            title = _sane_title(pdf.get_metadata_dict().get("Title"))
        except Exception:  # noqa: BLE001 -- damaged metadata must not lose the text
            title = None
        page_lines: list[list[_Line]] = []
        for i in range(n):
            try:
                page = pdf[i]
            except pdfium.PdfiumError as exc:
                raise CorpusError(f"damaged PDF: page {i + 1} cannot be read ({exc})") from None
            try:
                page_lines.append(_page_lines(page))
            finally:
                page.close()
    finally:
        pdf.close()
    _drop_running_heads(page_lines)
    pages = [[t for t in (_join([x.text for x in p]) for p in _paragraphs(lines)) if t] for lines in page_lines]
    empty = tuple(i + 1 for i, paras in enumerate(pages) if not paras)
    if len(empty) == n:
        raise CorpusError(f"no text layer on any of its {n} pages (a scanned PDF? it needs OCR first)")
    text = "\n\n".join(pages[0])
    for paras in pages[1:]:
        if not paras:
            text += f"\n{PAGE_BREAK}\n"
            continue
        last = text.rstrip().rsplit("\n\n", 1)[-1]
        following = "\n\n".join(paras)
        if text.strip() and not text.endswith("\n") and _continues(last, paras[0]):
            # The paragraph runs on: the page break sits inside it, between words (after the first
            # word of the new page when a word was hyphenated across the break).
            if _HYPHENATED.search(text):
                word, space, rest = following.partition(" ")
                text = text[:-1] + word + f" {PAGE_BREAK}" + rest
            else:
                text += f" {PAGE_BREAK}" + following
        else:
            text += f"\n{PAGE_BREAK}\n" + following
    return Extracted(text + "\n", "pdf", title=title, pages=n, empty_pages=empty)
