"""Packing cited passages into a prompt's token budget (``/v1/context``).

Passages come best first. Each goes in whole when it fits in what is left of the budget; when it
does not, its best sentence (the citation's quote) goes in instead, cited by that sentence's own
offsets. Without the second step a small budget (50–100 tokens) dropped the best passages, which
are long, and filled itself with short, unrelated ones ("Editor's picks") that happened to fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from .answer import Citation
from .pages import label

CountTokens = Callable[[str], int]


def block(n: int, c: Citation) -> str:
    """One passage as the context shows it: ``[n] source ¶N`` then its text."""
    return f"[{n}] {label(c.source, c.page, c.paragraph)}\n{c.text}\n\n"


def to_quote(c: Citation) -> Citation:
    """The citation trimmed to its best sentence (offsets into the same document)."""
    return replace(c, text=c.quote, char_start=c.quote_start, char_end=c.quote_end)


def pack(citations: Sequence[Citation], max_tokens: int, count: CountTokens) -> tuple[str, list[Citation]]:
    """The context text and the citations it holds, in rank order, within ``max_tokens``."""
    parts: list[str] = []
    cited: list[Citation] = []
    used = 0
    for c in citations:
        for candidate in (c, to_quote(c)) if c.quote and c.quote != c.text else (c,):
            text = block(len(cited) + 1, candidate)
            n = count(text)
            if used + n <= max_tokens:
                parts.append(text)
                cited.append(candidate)
                used += n
                break
    return "".join(parts).rstrip("\n"), cited
