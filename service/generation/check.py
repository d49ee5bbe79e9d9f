"""Checking the citations a model writes: every marked sentence against the passage it cites.

The generated answer is split into sentences (the corpus's own splitter; markers written after a
sentence's full stop, ``… Myanmar. [1]``, belong to that sentence). For each marker ``[n]`` the
supporting span is looked for in passage ``n``: every sentence of the passage, and every two
adjacent sentences, is scored against the claim (the sentence without its markers) as

    support = ½ · share of the claim's terms the span contains + ½ · cosine(claim, span)

with the terms stemmed and stop words dropped (the BM25 analyzer) and the cosine from the
embedding model the index uses. The best span is the evidence, reported with its offsets in the
document as the extractive answer's quote is. A marker whose best span scores under
``ASK_LLM_SUPPORT_THRESHOLD`` (or that names no passage) is removed from the answer, and its
sentence is flagged; a sentence is *supported* when it has a marker and all of them stand.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..answer import Citation
from ..chunking import sentence_spans
from ..embedding import Embedder
from ..lexical import analyze

TERMS_SHARE = 0.5  # the rest is the cosine
MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_LEADING_MARKERS = re.compile(r"(?:\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])+")


@dataclass(frozen=True, slots=True)
class Evidence:
    citation: int  # the marker's number: citations[citation - 1]
    supported: bool
    score: float
    quote: str = ""  # the supporting span (empty when the marker names no passage)
    quote_start: int = 0  # offsets in the cited document
    quote_end: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"citation": self.citation, "supported": self.supported, "score": round(self.score, 4),
                "quote": self.quote, "quote_start": self.quote_start, "quote_end": self.quote_end}


@dataclass(frozen=True, slots=True)
class CheckedSentence:
    text: str  # as the model wrote it, markers included
    start: int  # offsets in the model's raw answer
    end: int
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def cited(self) -> bool:
        return bool(self.evidence)

    @property
    def supported(self) -> bool:
        return self.cited and all(e.supported for e in self.evidence)

    @property
    def flagged(self) -> bool:
        """A marker of this sentence was removed: its passage does not support it."""
        return any(not e.supported for e in self.evidence)

    def as_dict(self) -> dict[str, object]:
        return {"text": self.text, "start": self.start, "end": self.end, "cited": self.cited,
                "supported": self.supported, "flagged": self.flagged,
                "evidence": [e.as_dict() for e in self.evidence]}


@dataclass(frozen=True, slots=True)
class Checked:
    raw: str  # the model's answer
    text: str  # with unsupported markers removed
    sentences: list[CheckedSentence]

    def summary(self) -> dict[str, int]:
        return {
            "sentences": len(self.sentences),
            "cited": sum(s.cited for s in self.sentences),
            "supported": sum(s.supported for s in self.sentences),
            "flagged": sum(s.flagged for s in self.sentences),
            "markers": sum(len(s.evidence) for s in self.sentences),
            "markers_removed": sum(not e.supported for s in self.sentences for e in s.evidence),
        }


def markers(text: str) -> list[int]:
    """The passage numbers a sentence cites, in order, each once."""
    out: list[int] = []
    for m in MARKER.finditer(text):
        for n in (int(x) for x in m[1].split(",")):
            if n not in out:
                out.append(n)
    return out


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans of a generated answer; leading markers go back to the sentence before them."""
    spans = [list(s) for s in sentence_spans(text)]
    for i in range(1, len(spans)):
        m = _LEADING_MARKERS.match(text, spans[i][0], spans[i][1])
        if m:
            spans[i - 1][1] = m.end()
            rest = m.end()
            while rest < spans[i][1] and text[rest].isspace():
                rest += 1
            spans[i][0] = rest
    return [(a, b) for a, b in spans if b > a]


def _claim(text: str) -> str:
    return " ".join(MARKER.sub(" ", text).split())


def _coverage(claim_terms: set[str], span_terms: set[str]) -> float:
    return len(claim_terms & span_terms) / len(claim_terms) if claim_terms else 0.0


def _spans(c: Citation) -> list[tuple[int, int]]:
    """Candidate supporting spans of a passage (offsets in its text): each sentence, each pair."""
    one = sentence_spans(c.text) or [(0, len(c.text))]
    return one + [(one[i][0], one[i + 1][1]) for i in range(len(one) - 1)]


def check_citations(answer: str, citations: Sequence[Citation], embedder: Embedder, threshold: float) -> Checked:
    sentences = split_sentences(answer)
    claims = [(a, b, _claim(answer[a:b]), markers(answer[a:b])) for a, b in sentences]
    cited_passages = sorted({n for *_, ns in claims for n in ns if 1 <= n <= len(citations)})
    spans = {n: _spans(citations[n - 1]) for n in cited_passages}
    texts = [claim for _, _, claim, ns in claims if ns]
    span_texts = [citations[n - 1].text[a:b] for n in cited_passages for a, b in spans[n]]
    vectors = embedder.embed(texts + span_texts) if texts else np.zeros((0, 1), dtype=np.float32)
    claim_vectors = iter(vectors[: len(texts)])
    span_vectors: dict[int, np.ndarray] = {}
    at = len(texts)
    for n in cited_passages:
        span_vectors[n] = vectors[at : at + len(spans[n])]
        at += len(spans[n])
    span_terms = {n: [set(analyze(citations[n - 1].text[a:b])) for a, b in spans[n]] for n in cited_passages}

    checked: list[CheckedSentence] = []
    for a, b, claim, ns in claims:
        evidence: list[Evidence] = []
        if ns:
            vector = next(claim_vectors)
            terms = set(analyze(claim))
            for n in ns:
                if n not in spans:
                    evidence.append(Evidence(n, False, 0.0))
                    continue
                cosines = span_vectors[n] @ vector
                scores = [TERMS_SHARE * _coverage(terms, t) + (1 - TERMS_SHARE) * max(float(cos), 0.0)
                          for t, cos in zip(span_terms[n], cosines, strict=True)]
                best = int(np.argmax(scores))
                s, e = spans[n][best]
                c = citations[n - 1]
                score = scores[best] if terms else 0.0
                evidence.append(Evidence(n, score >= threshold, score, c.text[s:e], c.char_start + s,
                                         c.char_start + e))
        checked.append(CheckedSentence(answer[a:b], a, b, evidence))
    return Checked(answer, _without_unsupported(answer, checked), checked)


def _without_unsupported(answer: str, sentences: Sequence[CheckedSentence]) -> str:
    """The answer with each unsupported marker number removed (a marker left empty goes entirely)."""
    keep_by_sentence = [(s.start, s.end, {e.citation for e in s.evidence if e.supported}) for s in sentences]
    out: list[str] = []
    last = 0
    for m in MARKER.finditer(answer):
        keep = next((k for a, b, k in keep_by_sentence if a <= m.start() < b), set())
        numbers = [n for n in (int(x) for x in m[1].split(",")) if n in keep]
        out.append(answer[last : m.start()])
        if numbers:
            out.append("[" + ", ".join(str(n) for n in numbers) + "]")
        elif out and out[-1].endswith(" "):
            out[-1] = out[-1].rstrip(" ")
        last = m.end()
    out.append(answer[last:])
    return "".join(out).strip()
