"""Chunks: windows of whole sentences inside one paragraph, under a word-piece budget, and the
sentences themselves.

A chunk never crosses a paragraph, so every chunk cites exactly one paragraph. Each paragraph gets
two kinds of chunk, both embedded and BM25-indexed:

* **windows**: consecutive sentences packed under the budget. Long paragraphs are split into
  several windows that overlap by ``overlap`` sentences; a single sentence longer than the budget
  is cut at word-piece boundaries. Windows are what a reader is shown.
* **sentences**: every sentence (or piece of an over-long one) of a paragraph that needs more than
  one, as its own chunk. A question usually matches one sentence; a sentence-sized chunk matches
  it more sharply than a window that dilutes it with its neighbours (on SQuAD, dense paragraph
  hit@1 rises from 0.61 to 0.72 with them). The retriever shows the window that contains the
  matching sentence. With an ONNX passage encoder a sentence costs no model run of its own: its vector is pooled
  from the run of the first window holding it (``window_hosts``; ``ASK_SENTENCE_VECTORS``).

Chunks of a paragraph are in text order (by start, the longer first), so a window comes right
before the sentences it begins with. Offsets are character positions in the document text, so
``doc.text[chunk.char_start:chunk.char_end] == chunk.text`` always holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .corpus import Document, paragraphs

# Counts word-pieces for a batch of strings; and, for one string, the (start, end) character
# offsets of each word-piece (used to cut an over-long sentence).
CountTokens = Callable[[Sequence[str]], list[int]]
TokenOffsets = Callable[[str], list[tuple[int, int]]]

_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)")
_LINE = re.compile(r"[^\r\n]+")
_INITIALS = re.compile(r"(?:[a-z]\.)+[a-z]")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e u.s u.k u.n no gen gov sen rep lt col capt inc ltd co "
    "corp jan feb mar apr jun jul aug sep sept oct nov dec fig al approx dept est mt ft".split()
)


@dataclass(frozen=True, slots=True)
class Chunk:
    paragraph: int
    char_start: int
    char_end: int
    text: str
    n_tokens: int


def _is_abbreviation(text: str, dot: int) -> bool:
    start = dot
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
        start -= 1
    word = text[start:dot].lower()
    if not word:
        return False
    if len(word) == 1 and word.isalpha():  # an initial: "J. Smith"
        return True
    # Dotted initials: "E.F. Hutton", "C.A. Thomas", "L.P." (compared with syntok on Reuters, issue 15).
    return word in _ABBREVIATIONS or _INITIALS.fullmatch(word) is not None


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence (start, end) offsets within ``text[start:end]``; line breaks always end a sentence."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for line in _LINE.finditer(text, start, end):
        s = line.start()
        for m in _SENTENCE_END.finditer(text, line.start(), line.end()):
            nxt = m.end()
            while nxt < line.end() and text[nxt].isspace():
                nxt += 1
            if nxt >= line.end():
                break
            if text[nxt].islower() or (text[m.start()] == "." and _is_abbreviation(text, m.start())):
                continue
            spans.append((s, m.end()))
            s = nxt
        spans.append((s, line.end()))
    return [(a, b) for a, b in ((_strip(text, a, b)) for a, b in spans) if b > a]


def _strip(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _cut_long_sentence(
    text: str, span: tuple[int, int], budget: int, token_offsets: TokenOffsets
) -> list[tuple[int, int, int]]:
    """Pieces (start, end, n_tokens) of one over-long sentence, cut between words where possible."""
    a, b = span
    offsets = token_offsets(text[a:b])
    pieces: list[tuple[int, int, int]] = []
    i = 0
    while i < len(offsets):
        j = min(i + budget, len(offsets))
        if j < len(offsets):
            # Back off to a token that starts a new word (a gap before it), at most 16 tokens.
            k = j
            while k > i + 1 and k > j - 16 and offsets[k][0] == offsets[k - 1][1]:
                k -= 1
            if offsets[k][0] != offsets[k - 1][1]:
                j = k
        s, e = _strip(text, a + offsets[i][0], a + offsets[j - 1][1])
        if e > s:
            pieces.append((s, e, j - i))
        i = j
    return pieces


def chunk_document(
    doc: Document,
    count_tokens: CountTokens,
    token_offsets: TokenOffsets,
    budget: int,
    overlap: int = 1,
    sentences: bool = True,
) -> list[Chunk]:
    """Split a document into chunks; see the module docstring for the rules.

    ``sentences=False`` gives the windows only.
    """
    text = doc.text
    chunks: list[Chunk] = []
    max_chars = budget * 16  # no word-piece is longer than 16 characters in practice
    for para in paragraphs(text):
        spans = [piece for span in sentence_spans(text, para.start, para.end)
                 for piece in _split_at_spaces(text, span, max_chars)]
        counts = count_tokens([text[a:b] for a, b in spans])
        units: list[tuple[int, int, int]] = []
        for span, n in zip(spans, counts, strict=True):
            units.extend(_cut_long_sentence(text, span, budget, token_offsets) if n > budget else [(*span, n)])
        pieces = _windows(units, budget, overlap)
        if sentences:  # a sentence that is a whole window already is not repeated
            windows = {(a, b) for a, b, _n in pieces}
            pieces += [u for u in units if (u[0], u[1]) not in windows]
            pieces.sort(key=lambda u: (u[0], -u[1]))
        for a, b, n in pieces:
            chunks.append(Chunk(para.number, a, b, text[a:b], n))
    return chunks


def _split_at_spaces(text: str, span: tuple[int, int], max_chars: int) -> list[tuple[int, int]]:
    """Pre-cut a huge run-on "sentence" (a data dump, a line with no punctuation) at whitespace,
    so that tokenizing it stays cheap; each piece is then measured like any sentence."""
    a, b = span
    if b - a <= max_chars:
        return [span]
    out = []
    while b - a > max_chars:
        cut = text.rfind(" ", a + max_chars // 2, a + max_chars)
        cut = cut if cut > a else a + max_chars
        out.append(_strip(text, a, cut))
        a = cut
    out.append(_strip(text, a, b))
    return [(x, y) for x, y in out if y > x]


def _windows(
    units: list[tuple[int, int, int]], budget: int, overlap: int
) -> list[tuple[int, int, int]]:
    """Greedy windows of consecutive units under ``budget`` tokens, repeating ``overlap`` units."""
    out: list[tuple[int, int, int]] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and (j == i or total + units[j][2] <= budget):
            total += units[j][2]
            j += 1
        out.append((units[i][0], units[j - 1][1], total))
        if j >= len(units):
            break
        back = min(overlap, j - i - 1)
        # Only repeat sentences if the next window can still make progress.
        i = j - back if back > 0 and sum(u[2] for u in units[j - back : j]) < budget // 2 else j
    return out


def window_hosts(chunks: Sequence[Chunk]) -> list[int | None]:
    """For each chunk, the position of the first longer chunk of its paragraph that contains it (a
    sentence's window), or None (a window, or a paragraph's only chunk). Sentence vectors can be
    pooled from their window's model run: see ``service.embedding.PassageEncoder``."""
    by_paragraph: dict[int, list[int]] = {}
    for i, c in enumerate(chunks):
        by_paragraph.setdefault(c.paragraph, []).append(i)
    hosts: list[int | None] = [None] * len(chunks)
    for members in by_paragraph.values():
        if len(members) < 2:
            continue
        for i in members:
            c = chunks[i]
            hosts[i] = next((j for j in members
                             if chunks[j].char_start <= c.char_start and c.char_end <= chunks[j].char_end
                             and chunks[j].char_end - chunks[j].char_start > c.char_end - c.char_start), None)
    return hosts
