"""HTML: the page's main text, by trafilatura (Apache-2.0): navigation, cookie banners, "related
stories", comments and ads around an article are left out.

The text is the page's title (its ``<title>``, or the ``<h1>`` when the title only adds the site's
name to it: one paragraph, not two), then each block of the main content as a paragraph: headings,
paragraphs, quotes, code; a list is one paragraph with an item per line; a table row is a paragraph
of cells joined by `` | ``. The publication date is kept as metadata. A page too small or too
unusual for the extractor (it returns at most one block) is read whole by lxml's HTML parser
instead: every block element a paragraph, less scripts, navigation, headers, footers and asides.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .text import decode

if TYPE_CHECKING:
    from . import Extracted

_SPACES = re.compile(r"[ \t\r\f\v\n]+")
_LINE_SPACES = re.compile(r"[ \t\r\f\v]+")


def _text(el: Any) -> str:
    """An element's words; ``<lb>`` (a line break) is kept as a new line, other whitespace folded."""
    parts = [el.text or ""]
    for child in el:
        parts.append("\n" if child.tag == "lb" else _text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _clean(text: str, lines: bool = True) -> str:
    if not lines:
        return _SPACES.sub(" ", text).strip()
    return "\n".join(x for x in (_LINE_SPACES.sub(" ", line).strip() for line in text.split("\n")) if x)


def _blocks(body: Any) -> list[tuple[str, str]]:
    """(tag, text) of each top-level block of trafilatura's output tree."""
    out: list[tuple[str, str]] = []
    for el in body:
        if not isinstance(el.tag, str):
            continue  # a comment or processing instruction
        if el.tag == "list":
            items = [_clean(_text(item), lines=False) for item in el.iter("item")]
            text = "\n".join(i for i in items if i)
        elif el.tag == "table":
            for row in el.iter("row"):
                cells = [_clean(_text(c), lines=False) for c in row.iter("cell")]
                line = " | ".join(c for c in cells if c)
                if line:
                    out.append(("row", line))
            continue
        elif el.tag == "code":
            text = "\n".join(line.rstrip() for line in _text(el).strip("\n").split("\n"))
            text = re.sub(r"\n\s*\n", "\n", text)  # blank lines would split it into paragraphs
        else:
            text = _clean(_text(el))
        if text.strip():
            out.append((el.tag, text))
    return out


_BLOCK_TAGS = frozenset(
    "p div h1 h2 h3 h4 h5 h6 li ul ol dl dt dd tr table section article main blockquote pre figcaption "
    "address details summary hr".split()
)
_DROP = "//script|//style|//noscript|//template|//nav|//header|//footer|//aside|//form|//iframe|//svg"


def _page_blocks(markup: str) -> list[tuple[str, str]]:
    """(tag, text) of every block of the page, by lxml's HTML parser: block elements break paragraphs."""
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.document_fromstring(markup)
    except (etree.ParserError, ValueError):
        return []
    for el in root.xpath(_DROP):
        el.drop_tree()
    body = root.find("body")
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    first_tag = ["p"]

    def flush() -> None:
        text = _clean("".join(buf))
        if text:
            out.append((first_tag[0], text))
        buf.clear()

    def walk(el: Any) -> None:
        if not isinstance(el.tag, str):
            return
        block = el.tag in _BLOCK_TAGS or el.tag == "br"
        if el.tag == "br":
            buf.append("\n")
        elif block:
            flush()
            first_tag[0] = "head" if el.tag in ("h1", "h2", "h3", "h4", "h5", "h6") else "p"
        buf.append(el.text or "")
        for child in el:
            walk(child)
            buf.append(child.tail or "")
        if block and el.tag != "br":
            flush()

    if body is not None:
        walk(body)
    flush()
    return out


def _same(a: str, b: str) -> bool:
    return _SPACES.sub(" ", a).strip().casefold() == _SPACES.sub(" ", b).strip().casefold()


def html_parts(markup: str) -> tuple[str | None, list[str], dict[str, str]]:
    """The title, the main text's blocks and metadata (``date``) of an HTML page."""
    from trafilatura import bare_extraction, baseline

    found = bare_extraction(markup, include_comments=False, include_tables=True, include_images=False,
                            include_links=False, include_formatting=False, with_metadata=True,
                            deduplicate=False, fast=False)
    metadata: dict[str, str] = {}
    title: str | None = None
    body = None
    if found is not None and not isinstance(found, dict):
        title = _clean(found.title, lines=False) if found.title else None
        if found.date:
            metadata["date"] = str(found.date)
        body = found.body
    blocks = _blocks(body) if body is not None else []
    if len(blocks) <= 1:
        # Too small or too unusual for the extractor (it then returns the whole page as one block):
        # every block element of the page, less scripts, navigation, headers, footers and asides.
        whole = _page_blocks(markup)
        if len(whole) > len(blocks):
            blocks = whole
    if not blocks:
        base, _text_only, _length = baseline(markup)
        blocks = _blocks(base)
    if title is None:
        title = _title_element(markup)
    if blocks and title:
        tag, first = blocks[0]
        if _same(first, title):
            blocks = blocks[1:]
        elif tag == "head" and _SPACES.sub(" ", first).strip().casefold() in title.casefold():
            title, blocks = _clean(first, lines=False), blocks[1:]  # "Headline | Site" with <h1>Headline
    return title, [text for _tag, text in blocks], metadata


def _title_element(markup: str) -> str | None:
    import html

    m = re.search(r"(?is)<title\b[^>]*>(.*?)</title\s*>", markup)
    if not m:
        return None
    text = _clean(html.unescape(re.sub(r"<[^>]*>", " ", m.group(1))), lines=False)
    return text or None


def html_to_text(markup: str) -> str:
    """The indexed text of an HTML page: title, then the main text's blocks, a paragraph each."""
    title, blocks, _metadata = html_parts(markup)
    parts = ([title] if title else []) + blocks
    return "\n\n".join(parts) + "\n" if parts else ""


def read(data: bytes) -> Extracted:
    from . import Extracted

    markup, encoding = decode(data)
    title, blocks, metadata = html_parts(markup)
    parts = ([title] if title else []) + blocks
    return Extracted("\n\n".join(parts) + "\n" if parts else "", encoding, title=title, metadata=metadata)
