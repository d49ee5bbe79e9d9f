"""BM25: the index is built and saved by bm25s and read back without it; scores must match."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.lexical import (
    PAIR_WEIGHT,
    STOPWORDS_EN,
    CorpusStats,
    LexicalIndex,
    TermPostings,
    analyze,
    bm25_postings,
    query_terms,
)

TEXTS = [
    "Liu Zhongyi visited Myanmar to discuss scam centres along the border.",
    "Police from Myawaddy handed suspects over to Chinese officers.",
    "The orchard grows apples, pears and plums; the apples ripen first.",
    "Scam centres in Myanmar held thousands of workers, police said.",
    "",  # a chunk with no terms at all
    "Apples and apples and more apples.",
]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    LexicalIndex.write(TEXTS, tmp_path / "bm25")
    return tmp_path / "bm25"


def test_stop_words_are_bm25s_english_list() -> None:
    from bm25s.stopwords import STOPWORDS_EN as BM25S_EN

    assert frozenset(BM25S_EN) == STOPWORDS_EN


@pytest.mark.parametrize("query", ["scam centres in Myanmar", "apples", "apples apples police", "Myawaddy",
                                   "zebra", "Liu Zhongyi police Myanmar apples orchard"])
def test_scores_match_bm25s(saved: Path, query: str) -> None:
    import bm25s

    reference = bm25s.BM25.load(str(saved))
    terms = analyze(query)
    expected = reference.get_scores_from_ids(reference.get_tokens_ids(terms)) if terms else np.zeros(len(TEXTS))
    got = LexicalIndex.load(saved).scores(terms)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("query", ["scam centres in Myanmar", "apples", "apples apples police", "Myawaddy",
                                   "zebra", "Liu Zhongyi police Myanmar apples orchard"])
@pytest.mark.parametrize("split", [None, 2, 4])
def test_term_postings_score_as_bm25s(saved: Path, query: str, split: int | None, tmp_path: Path) -> None:
    """Format 5 scores BM25 at query time from term frequencies; over one segment or split into two,
    with the whole index's statistics, every chunk scores what bm25s gives the whole corpus."""
    import bm25s

    reference = bm25s.BM25.load(str(saved))
    terms = analyze(query)
    expected = reference.get_scores_from_ids(reference.get_tokens_ids(terms)) if terms else np.zeros(len(TEXTS))
    parts = [TEXTS] if split is None else [TEXTS[:split], TEXTS[split:]]
    segments = []
    for i, texts in enumerate(parts):
        TermPostings.build(texts).write(tmp_path / f"p{i}")
        segments.append(TermPostings.load(tmp_path / f"p{i}"))
    lengths = np.concatenate([p.lengths for p in segments])
    stats = CorpusStats(len(TEXTS), float(lengths.mean()))
    offsets = np.cumsum([0] + [p.size for p in segments])[:-1].tolist()
    rows, weights = bm25_postings([(p, o, None) for p, o in zip(segments, offsets, strict=True)], terms, stats)
    got = np.bincount(rows, weights=weights, minlength=len(TEXTS))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def _scores(postings: TermPostings, terms: list[str], stats: CorpusStats, pairs: list[str] | None = None
            ) -> np.ndarray:
    rows, weights = bm25_postings([(postings, 0, None)], terms, stats, pairs=pairs or ())
    return np.bincount(rows, weights=weights, minlength=postings.size)


def test_a_questions_words_next_to_each_other_add_a_tenth_of_their_pairs_bm25() -> None:
    texts = ["The tidal power station opened in March.",  # the question's words in its order
             "Station power was tidal in March, it opened.",  # the same words, apart
             "A coal plant opened in March.", "Tides and power lines."]
    postings, plain = TermPostings.build(texts), TermPostings.build(texts, pairs=False)
    assert (postings.lengths == plain.lengths).all()  # a chunk's length counts its words only
    stats = CorpusStats(len(texts), float(plain.lengths.mean()))
    terms, pairs = query_terms("When did the tidal power station open?")
    assert pairs == ["tidal power", "power station", "station open"]
    words = _scores(plain, terms, stats)
    np.testing.assert_allclose(_scores(postings, terms, stats), words, rtol=1e-6)  # words score as before
    pair_bm25 = _scores(postings, pairs, stats)  # the pairs as plain terms
    assert pair_bm25[0] > 0 and pair_bm25[1:].tolist() == [0, 0, 0]
    both = _scores(postings, terms, stats, pairs)
    np.testing.assert_allclose(both, words + PAIR_WEIGHT * pair_bm25, rtol=1e-5)
    assert both[0] > both[1] and words[0] == pytest.approx(words[1], rel=0.2)


def test_search_ranks_by_score_and_skips_non_matches(saved: Path) -> None:
    index = LexicalIndex.load(saved)
    assert index.size == len(TEXTS)
    ids, scores = index.search("Which scam centres are in Myanmar?", 10)
    assert set(ids.tolist()) == {0, 3} and scores[0] >= scores[1] > 0
    assert index.search("zebra giraffe", 10)[0].tolist() == []
    assert index.search("what is it?", 10)[0].tolist() == []  # only question and stop words
    ids, _ = index.search("apples", 1)
    assert ids.tolist() == [5]


def test_an_empty_corpus_saves_and_searches(tmp_path: Path) -> None:
    LexicalIndex.write([], tmp_path / "bm25")
    index = LexicalIndex.load(tmp_path / "bm25")
    assert index.size == 0 and index.search("anything", 5)[0].tolist() == []


def test_a_damaged_index_is_refused(saved: Path) -> None:
    np.save(saved / "indptr.csc.index.npy", np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="inconsistent"):
        LexicalIndex.load(saved)


def test_reading_an_index_imports_neither_bm25s_nor_scipy(saved: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from service.lexical import LexicalIndex; "
        f"LexicalIndex.load(Path({str(saved)!r})).search('scam centres', 5); "
        "print(sorted(m for m in ('bm25s', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
