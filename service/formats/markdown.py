"""Markdown: parsed by markdown-it-py (CommonMark, plus tables), kept as words only.

Each block (heading, paragraph, code block, table row) becomes a paragraph; a list is one
paragraph with an item per line; a paragraph's soft line breaks become spaces, so a sentence
wrapped in the source is one sentence. Emphasis, link targets, images (their alt text stays),
inline HTML and heading marks are dropped. A first-level heading that opens the file is its title.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .text import decode

if TYPE_CHECKING:
    from markdown_it.token import Token

    from . import Extracted

_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\f\v]+")


def _inline(token: Token) -> str:
    out: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type == "softbreak":
            out.append(" ")
        elif child.type == "hardbreak":
            out.append("\n")
        elif child.type == "image":
            out.append(_inline(child))
    return "\n".join(_SPACES.sub(" ", line).strip() for line in "".join(out).split("\n"))


def markdown_blocks(source: str) -> tuple[list[str], str | None]:
    """The text blocks of a Markdown document, in order, and its title (a leading ``# Title``)."""
    import html

    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    blocks: list[str] = []
    title: str | None = None
    group: list[str] | None = None  # lines of the list or table being read
    depth = 0  # nesting of lists and tables
    row: list[str] = []
    for i, tok in enumerate(tokens):
        if tok.type in ("bullet_list_open", "ordered_list_open", "table_open"):
            if depth == 0:
                group = []
            depth += 1
        elif tok.type in ("bullet_list_close", "ordered_list_close", "table_close"):
            depth -= 1
            if depth == 0 and group is not None:
                if group:
                    blocks.append("\n".join(group))
                group = None
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close" and group is not None:
            if any(row):
                group.append(" | ".join(row))
        elif tok.type == "inline":
            text = _inline(tok)
            if group is not None:
                if tokens[i - 1].type in ("th_open", "td_open"):
                    row.append(text)
                elif text:
                    group.append(text)
            elif text:
                if tok.level == 1 and tokens[i - 1].type == "heading_open" and tokens[i - 1].tag == "h1" and not blocks:
                    title = text.replace("\n", " ")
                blocks.append(text)
        elif tok.type in ("fence", "code_block"):
            code = tok.content.strip("\n")
            if code.strip():
                (group if group is not None else blocks).append(code)
        elif tok.type == "html_block":
            text = html.unescape(_SPACES.sub(" ", _TAG.sub(" ", tok.content))).strip()
            if text:
                (group if group is not None else blocks).append(text)
    return [b for b in blocks if b.strip()], title


def read(data: bytes) -> Extracted:
    from . import Extracted

    source, encoding = decode(data)
    blocks, title = markdown_blocks(source)
    return Extracted("\n\n".join(blocks) + "\n" if blocks else "", encoding, title=title)
