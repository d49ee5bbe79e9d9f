"""Query-level additions to BM25, on top of any store's lexical search (measured in issue 15).

* :func:`rm3_query`: pseudo-relevance feedback in the manner of RM3: the terms that carry most of
  the weight of the top BM25 chunks (each chunk weighted by its share of the top scores, each term
  by its share of the chunk) are added to the question, and the question's own terms are repeated
  so that they keep most of the weight. It works through the store's ``search(query, n)`` (a
  repeated term counts again there), so it needs nothing from how BM25 is stored.
* :func:`proximity_rescore`: the lexical candidates whose text holds two consecutive question
  terms next to each other (a phrase of the question) are boosted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .lexical import QUERY_STOPWORDS, STOPWORDS_EN, analyze, analyze_query
from .store.base import IndexView

Dense = tuple[np.ndarray, np.ndarray]
_WORD = re.compile(r"\w+", re.UNICODE)
_DROP = QUERY_STOPWORDS | STOPWORDS_EN  # words a query loses: never worth adding


def rm3_query(view: IndexView, query: str, feedback_chunks: int = 10, terms: int = 10,
              query_repeats: int = 2) -> str:
    """``query`` with the feedback terms of its top ``feedback_chunks`` BM25 chunks appended.

    The text is what the lexical search analyzes: the question's terms ``query_repeats`` times (their
    weight against the added terms), then the ``terms`` best feedback terms once each."""
    q_terms = analyze_query(query)
    if not q_terms:
        return query
    ids, scores = view.lexical.search(query, feedback_chunks)
    if len(ids) == 0:
        return query
    weights = np.asarray(scores, np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(ids), 1 / len(ids))
    relevance: Counter[str] = Counter()
    surface: dict[str, str] = {}  # stem -> a word it came from (the search analyzes words, not stems)
    for row, w in zip(view.chunk_rows([int(i) for i in ids]), weights.tolist(), strict=True):
        words = [x for x in _WORD.findall(row.text.lower()) if x not in _DROP and not x.isdigit()]
        stems = analyze(" ".join(words))  # one stem per word: its stop words are gone already
        for word, stem in zip(words, stems, strict=True):
            surface.setdefault(stem, word)
        counts = Counter(stems)
        total = sum(counts.values()) or 1
        for term, n in counts.items():
            relevance[term] += w * n / total
    own = set(q_terms)
    added = [surface[t] for t, _ in relevance.most_common() if t not in own][:terms]
    return " ".join([*([query] * query_repeats), *added])


def _bigrams(terms: Sequence[str]) -> set[tuple[str, str]]:
    return set(zip(terms, terms[1:], strict=False))


def proximity_rescore(view: IndexView, query: str, lexical: Dense, boost: float = 0.25) -> Dense:
    """The lexical candidates re-scored: ``score * (1 + boost * share of the question's term pairs
    found next to each other in the chunk)``, best first."""
    ids, scores = lexical
    pairs = _bigrams(analyze_query(query))
    if not pairs or len(ids) == 0:
        return lexical
    rows = view.chunk_rows([int(i) for i in ids])
    by_id = {r.id: r.text for r in rows}
    share = np.array([len(pairs & _bigrams(analyze(by_id.get(int(i), "")))) / len(pairs) for i in ids])
    new = np.asarray(scores, np.float64) * (1 + boost * share)
    order = np.argsort(-new, kind="stable")
    return np.asarray(ids)[order], new[order].astype(np.float32)
