"""Which sentence of the retrieved passages answers the question: a linear ranker over cheap signals.

The reader (``service.answer``) scores every sentence of the top passages with a few hand-set
weights, and that score says whether anything answers at all (the abstain threshold). Choosing
*which* sentence answers is a narrower question, and the same score answers it less well: a
sentence that repeats the question's words but adds nothing, or that matches on words every
sentence of the article shares (its topic), scores well as evidence and still answers nothing.
So the choice is made here, by a linear score over signals that need no model beyond the
sentence vectors the reader already computed:

* the sentence's and its passage's cosine with the question;
* the question's terms the sentence holds, weighted twice: by rarity among the candidate
  passages (with the sentence before it counting at half, for "They …" sentences) and by rarity
  among the candidate *sentences* (a term every sentence of the article holds says nothing about
  which one answers); the question's bigrams it holds in order;
* what the sentence adds: the share of its own terms the question does not hold (an answer says
  something the question does not);
* whether it holds the asked kind of answer (``service.answer_type``), or a kind is asked and it
  holds none;
* its passage's rank and fused score, and whether the passage is a headline (a title line says
  what the article is about, rarely the answer).

The weights (``CHOICE_WEIGHTS``) were fitted by ``python -m bench.reader_training`` on 2,000 SQuAD
questions of the odd-numbered articles, none of them in the benchmark's answer sample, and checked
without refitting on the even-numbered articles, the Reuters news set and the seed questions
(README, Benchmarks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .lexical import analyze, analyze_query
from .retrieval import is_headline

if TYPE_CHECKING:
    from .answer import Evidence
    from .retrieval import Passage

FEATURES = (
    "similarity", "passage_similarity", "coverage", "coverage_with_previous", "sentence_idf_coverage",
    "bigrams", "novelty", "holds_kind", "kind_missing", "passage_rank", "passage_score", "headline",
)

# Fitted by ``bench/reader_training.py`` (see the module docstring), scaled so the largest is 1: only
# the order of one question's candidates matters.
CHOICE_WEIGHTS: dict[str, float] = {
    "similarity": 0.609, "passage_similarity": 0.763, "coverage": -0.461, "coverage_with_previous": 0.578,
    "sentence_idf_coverage": 1.0, "bigrams": 0.191, "novelty": 0.225, "holds_kind": 0.121, "kind_missing": -0.125,
    "passage_rank": 0.062, "passage_score": 0.477, "headline": -0.490,
}


def _bigrams(terms: Sequence[str]) -> set[tuple[str, str]]:
    return set(zip(terms, terms[1:], strict=False))


def feature_matrix(question: str, evidence: Sequence[Evidence], passages: Sequence[Passage]) -> np.ndarray:
    """One row of ``FEATURES`` per candidate sentence (``evidence``, in its order)."""
    if not evidence:
        return np.zeros((0, len(FEATURES)))
    q_terms = analyze_query(question)
    q_set = set(q_terms)
    q_bigrams = _bigrams(q_terms)
    seqs = [analyze(e.text) for e in evidence]
    sets = [set(s) for s in seqs]
    n = len(sets)
    # Rarity among the candidate sentences: the question's words that only a few sentences hold.
    idf = {t: math.log(1 + (n + 1) / (1 + sum(t in s for s in sets))) for t in q_set}
    total_idf = sum(idf.values())
    top_score = max((p.score for p in passages), default=0.0)
    top_score = top_score if top_score > 0 else 1.0
    rows = []
    for e, terms, own in zip(evidence, seqs, sets, strict=True):
        p = passages[e.passage]
        rows.append((
            e.similarity,
            e.passage_similarity,
            e.coverage,
            e.coverage_with_previous,
            sum(v for t, v in idf.items() if t in own) / total_idf if total_idf else 0.0,
            len(q_bigrams & _bigrams(terms)) / len(q_bigrams) if q_bigrams else 0.0,
            len(own - q_set) / len(own) if own else 0.0,
            e.holds_kind,
            e.kind_asked * (1.0 - e.holds_kind),
            1.0 / (1 + e.passage),
            p.score / top_score,
            1.0 if is_headline(p) else 0.0,
        ))
    return np.asarray(rows, dtype=np.float64)


def choice_scores(question: str, evidence: Sequence[Evidence], passages: Sequence[Passage],
                  weights: dict[str, float] = CHOICE_WEIGHTS) -> np.ndarray:
    """How strongly each candidate sentence answers the question (higher: more), in ``evidence``'s order."""
    w = np.array([weights.get(name, 0.0) for name in FEATURES])
    return feature_matrix(question, evidence, passages) @ w
