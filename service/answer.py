"""Extractive answers: the sentence that best answers the question, tied to its citation.

Every sentence of the top passages is scored against the question, densely (cosine of the
sentence and question embeddings) and lexically (how much of the question's weighted terms the
sentence contains), with a prior for its passage's own similarity. When the best of these
evidence scores reaches the abstain threshold, the sentence that ``service.sentence_choice`` ranks
first is the answer; otherwise the answer is ``None`` and the reason says why, so that an
off-topic question does not get a confident wrong answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .answer_type import expected_kind, holds_kind
from .chunking import sentence_spans
from .embedding import Embedder
from .lexical import analyze_query, iter_span_terms, span_terms
from .retrieval import Passage
from .sentence_choice import choice_scores


# Weights chosen on SQuAD (bench/answer_tuning.py over the evidence of bench/quality.py's answer sets:
# 1,000 answerable questions; unanswerable: questions whose article is not indexed, and SciFact
# claims; the threshold set to answer 95%). Against (0.4, 0.2, 0.4) without the two newer signals,
# the answer sentence holds a gold span for 0.795 of answered questions instead of 0.781, SciFact
# claims are refused more often (0.960 vs 0.940) and other-article questions a little less often
# (0.906 vs 0.929). Larger answer-type bonuses raised the first figure to 0.799 but let
# other-article questions through (abstain 0.81-0.87): such questions find names and numbers too.
@dataclass(frozen=True, slots=True)
class Weights:
    """How a sentence's evidence adds up to its answer score."""

    sentence: float = 0.3  # cosine of the sentence and the question
    passage: float = 0.2  # cosine of its passage and the question
    terms: float = 0.5  # idf-weighted share of the question's terms the sentence holds ...
    context: float = 0.5  # ... of which this share may come from the sentence before it (anaphora)
    answer_type: float = 0.05  # bonus when it holds an answer of the asked kind (``service.answer_type``)


WEIGHTS = Weights()
MAX_ANSWER_PASSAGES = 5


@dataclass(frozen=True, slots=True)
class Sentence:
    passage: int  # index into the passages list
    start: int  # offsets in the source document
    end: int
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class Citation:
    source: str
    paragraph: int
    text: str
    char_start: int
    char_end: int
    score: float
    quote: str  # the passage's best sentence
    quote_start: int
    quote_end: int
    title: str = ""
    page: int | None = None  # paged formats (PDF, Word): the page where the paragraph starts, and
    # then ``paragraph`` counts within that page (``service.pages``)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source, "page": self.page, "paragraph": self.paragraph, "text": self.text,
            "char_start": self.char_start, "char_end": self.char_end, "score": round(self.score, 6),
            "quote": self.quote, "quote_start": self.quote_start, "quote_end": self.quote_end,
            "title": self.title,
        }


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    answer: str | None
    citations: list[Citation] = field(default_factory=list)
    confidence: float = 0.0
    reason: str | None = None
    context: Antecedent | None = None  # the sentence before an answer that opens with "They", "He", …

    def as_dict(self) -> dict[str, object]:
        return {
            "question": self.question, "answer": self.answer, "reason": self.reason,
            "confidence": round(self.confidence, 4), "citations": [c.as_dict() for c in self.citations],
            "context": self.context.as_dict() if self.context else None,
        }


@dataclass(frozen=True, slots=True)
class Antecedent:
    """The sentence before the answer, shown beside it when the answer refers back ("They agreed …"):
    what "they" are is named there. Offsets are into the same document; the answer keeps its own."""

    text: str
    start: int
    end: int

    def as_dict(self) -> dict[str, object]:
        return {"text": self.text, "start": self.start, "end": self.end}


# A sentence that opens with one of these refers to something named before it.
_ANAPHOR = re.compile(
    r"(?:he|she|they|it|its|his|her|their|them|this|these|those|that|such|both|(?:the|this|that|these|those)"
    r"\s+[a-z][\w-]*)\b")
_PRONOUNS = frozenset("he she they it its his her their them this these those that such both".split())


def opens_with_anaphor(sentence: str) -> bool:
    """Whether ``sentence`` begins by referring back: a pronoun, or "the/this …" and a common noun
    ("The ministry said …"), not a name ("The United Nations …")."""
    text = sentence.lstrip(" \"'“‘(")
    m = _ANAPHOR.match(text[:1].lower() + text[1:])
    if not m:
        return False
    first = m.group().split()[0].lower()
    return len(m.group().split()) > 1 or first in _PRONOUNS


def antecedent(passage: Passage, start: int) -> Antecedent | None:
    """The sentence of ``passage`` just before the one starting at document offset ``start``."""
    before = [(a, b) for a, b in sentence_spans(passage.text) if passage.char_start + b <= start]
    if not before:
        return None
    a, b = before[-1]
    return Antecedent(passage.text[a:b], passage.char_start + a, passage.char_start + b)


def term_coverage(question_terms: Sequence[str], present: set[str], idf: dict[str, float]) -> float:
    """Share of the question's idf-weighted terms that a sentence (its ``present`` terms) contains (0..1)."""
    if not question_terms:
        return 0.0
    total = sum(idf.get(t, 1.0) for t in set(question_terms))
    hit = sum(idf.get(t, 1.0) for t in set(question_terms) if t in present)
    return hit / total if total else 0.0


def _idf(question_terms: Sequence[str], passage_terms: Sequence[set[str]]) -> dict[str, float]:
    """Terms rare among the candidate passages weigh more (a name beats 'china' in these seeds)."""
    n = len(passage_terms)
    return {t: math.log(1 + (n + 1) / (1 + sum(t in d for d in passage_terms))) for t in set(question_terms)}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One candidate sentence's evidence, before the weights combine it (``bench`` tunes on these)."""

    passage: int
    start: int
    end: int
    text: str
    similarity: float  # sentence vs question (cosine)
    passage_similarity: float
    coverage: float  # of the question's terms, by the sentence alone
    coverage_with_previous: float  # by the sentence and the one before it in its passage
    holds_kind: float  # 1: holds an answer of the asked kind; 0: does not; 0 too when no kind is asked
    kind_asked: float = 0.0  # 1 when the question asks for a kind of answer (``service.answer_type``)

    def score(self, w: Weights = WEIGHTS) -> float:
        terms = (1 - w.context) * self.coverage + w.context * self.coverage_with_previous
        return (w.sentence * self.similarity + w.passage * self.passage_similarity + w.terms * terms
                + w.answer_type * self.holds_kind)


def sentence_evidence(
    question: str, question_vector: np.ndarray, passages: Sequence[Passage], embedder: Embedder
) -> list[Evidence]:
    """The evidence of every sentence of the top passages, in passage and text order."""
    top = list(passages[:MAX_ANSWER_PASSAGES])
    spans: list[tuple[int, int, int]] = []
    sentence_terms: list[set[str]] = []
    passage_terms: list[set[str]] = []
    for i, p in enumerate(top):
        local = sentence_spans(p.text)
        found = span_terms(p.text, [(0, len(p.text)), *local])
        passage_terms.append(found[0])
        sentence_terms += found[1:]
        spans += [(i, p.char_start + a, p.char_start + b) for a, b in local]
    if not spans:
        return []
    texts = [top[i].text[a - top[i].char_start : b - top[i].char_start] for i, a, b in spans]
    sims = embedder.embed(texts) @ question_vector
    terms = analyze_query(question)
    idf = _idf(terms, passage_terms)
    kind = expected_kind(question)
    out = []
    for j, ((i, a, b), text, sim, present) in enumerate(zip(spans, texts, sims, sentence_terms, strict=True)):
        previous = sentence_terms[j - 1] if j > 0 and spans[j - 1][0] == i else set()
        out.append(Evidence(
            i, a, b, text, float(sim), top[i].dense, term_coverage(terms, present, idf),
            term_coverage(terms, present | previous, idf),
            1.0 if kind is not None and holds_kind(kind, text, question) else 0.0,
            0.0 if kind is None else 1.0,
        ))
    return out


def score_sentences(
    question: str, question_vector: np.ndarray, passages: Sequence[Passage], embedder: Embedder,
    weights: Weights = WEIGHTS,
) -> list[Sentence]:
    """All sentences of the top passages with their scores, best first."""
    out = [Sentence(e.passage, e.start, e.end, e.text, e.score(weights))
           for e in sentence_evidence(question, question_vector, passages, embedder)]
    out.sort(key=lambda s: -s.score)
    return out


def highlight(question: str, passages: Sequence[Passage]) -> list[Citation]:
    """Cite passages, each with its best sentence chosen lexically (no model call: cheap enough for
    search): the first sentence holding the most of the question's terms (``term_coverage`` with
    equal weights ranks sentences the same way)."""
    terms = set(analyze_query(question))
    cited = []
    for p in passages:
        spans = sentence_spans(p.text)
        a, b = spans[0] if spans else (0, len(p.text))
        if len(spans) > 1 and terms:
            best = -1
            for (start, end), present in zip(spans, iter_span_terms(p.text, spans), strict=True):
                hits = len(terms & present)
                if hits > best:
                    best, a, b = hits, start, end
                    if hits == len(terms):  # no later sentence can hold more
                        break
        cited.append(Citation(p.source, p.paragraph, p.text, p.char_start, p.char_end, p.score,
                              p.text[a:b], p.char_start + a, p.char_start + b, p.title))
    return cited


def build_answer(
    question: str,
    question_vector: np.ndarray,
    passages: Sequence[Passage],
    embedder: Embedder,
    threshold: float,
) -> Answer:
    """The answer: whether anything answers is the best evidence score against ``threshold``; which
    sentence answers is ``service.sentence_choice``'s ranking of the same candidates (each cited
    passage quotes its own first-ranked sentence)."""
    if not passages:
        return Answer(question, None, [], 0.0, "the index has no passage related to the question")
    evidence = sentence_evidence(question, question_vector, passages, embedder)
    confidence = max((e.score() for e in evidence), default=0.0)
    choice = choice_scores(question, evidence, passages)
    order = sorted(range(len(evidence)), key=lambda i: -choice[i])
    best_by_passage: dict[int, Evidence] = {}
    for i in order:
        best_by_passage.setdefault(evidence[i].passage, evidence[i])
    citations = []
    for i, p in enumerate(passages):
        s = best_by_passage.get(i)
        citations.append(Citation(
            p.source, p.paragraph, p.text, p.char_start, p.char_end, p.score,
            s.text if s else p.text, s.start if s else p.char_start, s.end if s else p.char_end, p.title,
        ))
    if not evidence or confidence < threshold:
        return Answer(
            question, None, citations, confidence,
            f"no passage answers the question well enough (best evidence scores {confidence:.2f}, "
            f"below the {threshold:.2f} threshold); the closest passages are listed as citations",
        )
    best = evidence[order[0]]
    # The passage holding the answer sentence is cited first.
    cited = [best.passage] + [i for i in range(len(citations)) if i != best.passage]
    context = antecedent(passages[best.passage], best.start) if opens_with_anaphor(best.text) else None
    return Answer(question, best.text, [citations[i] for i in cited], confidence, None, context)
