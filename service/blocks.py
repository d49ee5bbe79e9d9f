"""Blocks: one model run shared by every chunk inside it (``ASK_BLOCK_TOKENS``).

Windows overlap by a sentence and a split paragraph's sentences are chunks too, so a run per
window puts many word-pieces through the model twice (SciFact's first 1,000 files: 481,704
word-pieces in runs per window against 240,105 in their whole texts, cut at 256). A **block** is a
stretch of consecutive windows of one paragraph (or, with ``cross_paragraphs``, of one document),
with the document's title line in front, of at most ``ASK_BLOCK_TOKENS`` word-pieces; the model runs once over it, and every chunk
inside it -- window or sentence -- gets the mean of that run's token embeddings over its own
word-pieces, the title line's and the run's [CLS]/[SEP] (what its own run ``title\\nchunk`` would
have averaged, with the block around it as context). The chunks, their texts and BM25 are the same
as with a run per window; only where the vectors' token embeddings come from changes.

Measured (README, "Blocks"): blocks of 512 cut SciFact's word-pieces by 23 % but ingest time by about
11 %, as attention makes a word-piece in a long run dearer, and SciFact nDCG@10 falls from 0.726 (a
run per window) to 0.719; so blocks are a setting, off by default.

Where the block starts the document and the document opens with its title line, that line is
the title span itself (it is not repeated in front).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

from .chunking import Chunk, window_hosts
from .embedding import Pool

TokenOffsets = Callable[[str], list[tuple[int, int]]]
Host = tuple[str, Pool]  # the text the model runs, and the character spans of it to pool
SPECIAL_TOKENS = 2  # [CLS] and [SEP]


def block_hosts(text: str, chunks: Sequence[Chunk], title: str, with_title: bool, token_offsets: TokenOffsets,
                max_tokens: int, cross_paragraphs: bool = True) -> list[Host]:
    """For each chunk of a document (``text``), the block it is pooled from and its spans there.

    Windows (chunks inside no longer chunk of their paragraph) go into blocks greedily, in text
    order, while the block's word-pieces (title line, the document text from the first window's
    start to the last one's end, [CLS]/[SEP]) stay within ``max_tokens``; a window that alone is
    longer forms a block of its own. A sentence goes with the window holding it. ``title``: the
    title glued to chunks of paragraphs after the first (``embed_text``), "" for none.
    ``cross_paragraphs`` False: a block holds windows of one paragraph only."""
    if not chunks:
        return []
    title = title if with_title else ""
    offsets = token_offsets(text)
    starts = [a for a, _b in offsets]
    ends = [b for _a, b in offsets]

    def pieces(a: int, b: int) -> int:  # word-pieces of text[a:b], as tokenized in the whole text
        return max(0, bisect_right(ends, b) - bisect_left(starts, a))

    title_pieces = len(token_offsets(title)) + 1 if title else 0  # the line break adds none; +1 margin
    first_start = chunks[0].char_start

    def opens_with_title(start: int) -> bool:  # the block starts with the document's own title line
        return bool(title) and chunks[0].paragraph == 1 and start == first_start and text.startswith(title, start)

    def prefixed(start: int, paragraph: int) -> bool:
        """Whether the title line goes in front of the block starting at ``start`` in ``paragraph``: not
        where the text opens with it, nor (blocks of one paragraph) in front of paragraph 1, whose
        chunks are embedded without it (``embed_text``). The line is the title and the document's
        most used words, so it is no longer paragraph 1's own text even where that is the title."""
        return bool(title) and not opens_with_title(start) and (cross_paragraphs or paragraph != 1)

    hosts_of = window_hosts(chunks)
    windows = [i for i, h in enumerate(hosts_of) if h is None]
    block_of: dict[int, tuple[int, int]] = {}  # window position -> (block start, block end) in text
    k = 0
    while k < len(windows):
        start = chunks[windows[k]].char_start
        paragraph = chunks[windows[k]].paragraph
        fixed = (title_pieces if prefixed(start, paragraph) else 0) + SPECIAL_TOKENS
        j = k + 1
        while (j < len(windows) and (cross_paragraphs or chunks[windows[j]].paragraph == paragraph)
               and pieces(start, chunks[windows[j]].char_end) + fixed <= max_tokens):
            j += 1
        span = (start, max(chunks[w].char_end for w in windows[k:j]))
        block_of.update((w, span) for w in windows[k:j])
        k = j
    out: list[Host] = []
    for i, c in enumerate(chunks):
        start, end = block_of[i if hosts_of[i] is None else _window_of(i, hosts_of)]
        prefix = f"{title}\n" if prefixed(start, c.paragraph) else ""
        span = (len(prefix) + c.char_start - start, len(prefix) + c.char_end - start)
        glued = bool(title) and c.paragraph != 1
        out.append((prefix + text[start:end], ((0, len(title)), span) if glued else (span,)))
    return out


def _window_of(i: int, hosts: Sequence[int | None]) -> int:
    """The window a sentence is pooled from (its host, whose own host is None)."""
    h = hosts[i]
    while h is not None and hosts[h] is not None:
        h = hosts[h]
    assert h is not None
    return h
