"""Fusion, paragraph collapse and the retriever over a small index (fake embedder)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from service import store
from service.config import Settings
from service.indexer import Indexer
from service.lexical import analyze, analyze_query
from service.retrieval import (
    FUSIONS,
    Passage,
    Ranking,
    Retriever,
    by_paragraph,
    decisiveness,
    fuse,
    headlines_yield,
    paragraph_ids,
    rrf,
    weighted,
)

from .conftest import FakeEmbedder, write


def ranked(r: Ranking) -> list[int]:
    return r.ids.tolist()


# -- fusion ----------------------------------------------------------------------------------------------
def test_rrf_sums_reciprocal_ranks() -> None:
    fused = rrf([[1, 2, 3], [3, 1]], k=60).as_dict()
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2] == pytest.approx(1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert ranked(rrf([[1, 2, 3], [3, 1]], k=60)) == [1, 3, 2]


def test_rrf_ties_break_by_smaller_id() -> None:
    # 7 is first in one list and 4 first in the other: equal scores, so the smaller id comes first.
    fused = rrf([[7, 4], [4, 7]])
    assert fused.as_dict()[4] == fused.as_dict()[7]
    assert ranked(fused) == [4, 7]
    assert ranked(Ranking.combine(np.array([9, 2, 5]), np.ones(3))) == [2, 5, 9]
    assert ranked(Ranking.combine(np.array([3, 1, 3]), np.array([0.5, 1.0, 0.5]))) == [1, 3], "values per id are summed"


def test_rrf_is_independent_of_list_order() -> None:
    a, b = [5, 1, 9, 3], [3, 8, 5]
    assert ranked(rrf([a, b])) == ranked(rrf([b, a]))
    assert rrf([a, b]).as_dict() == rrf([b, a]).as_dict()


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_fusion_is_independent_of_which_side_is_which_when_symmetric(fusion: str) -> None:
    a = ([1, 2, 3], np.array([0.9, 0.5, 0.1]))
    b = ([3, 4], np.array([7.0, 2.0]))
    assert ranked(fuse(fusion, a, b, dense_weight=0.5)) == ranked(fuse(fusion, b, a, dense_weight=0.5))


def test_fusion_with_one_side_empty_keeps_the_other_order() -> None:
    empty = ([], np.zeros(0))
    dense = ([4, 2, 8], np.array([0.8, 0.7, 0.1]))
    for fusion in ("rrf", "weighted"):
        assert ranked(fuse(fusion, dense, empty)) == [4, 2, 8]
        assert ranked(fuse(fusion, empty, dense)) == [4, 2, 8]
    assert len(fuse("rrf", empty, empty)) == 0 and len(fuse("weighted", empty, empty)) == 0
    assert len(fuse("bm25", dense, empty)) == 0
    assert ranked(fuse("dense", dense, empty)) == [4, 2, 8]


def test_weighted_min_max_normalises_each_side() -> None:
    fused = weighted(([1, 2], np.array([0.9, 0.3])), ([2, 3], np.array([12.0, 4.0])), dense_weight=0.5)
    assert fused.as_dict() == pytest.approx({1: 0.5, 2: 0.5, 3: 0.0})
    one = weighted(([5], np.array([0.2])), ([], np.zeros(0)), dense_weight=0.7)
    assert one.as_dict() == pytest.approx({5: 0.7}), "a single candidate normalises to 1"


def test_decisiveness_measures_how_far_the_top_stands_out() -> None:
    assert decisiveness(np.array([0.9])) == 1.0 and decisiveness(np.zeros(0)) == 1.0
    assert decisiveness(np.array([0.5, 0.5, 0.5])) == 0.0
    peaked = decisiveness(np.array([0.9, 0.3, 0.29, 0.28, 0.27, 0.26, 0.2]))
    flat = decisiveness(np.array([0.9, 0.89, 0.88, 0.87, 0.86, 0.85, 0.2]))
    assert 0.0 <= flat < peaked <= 1.0


def test_adaptive_weighting_trusts_the_decisive_side() -> None:
    # Dense cannot tell its candidates apart; BM25 has one clear winner. Plain weighting with a
    # dense share of 0.9 follows dense; adaptive weighting follows BM25.
    dense = ([1, 2, 3, 4, 5, 6, 7], np.array([0.51, 0.509, 0.508, 0.507, 0.506, 0.505, 0.45]))
    lexical = ([7, 1, 2, 3, 4, 5, 6], np.array([20.0, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5]))
    assert ranked(weighted(dense, lexical, 0.9, adaptive=False))[0] == 1
    assert ranked(weighted(dense, lexical, 0.9, adaptive=True))[0] == 7
    assert ranked(weighted(dense, ([], np.zeros(0)), 0.5))[:2] == [1, 2]


def test_question_words_are_not_query_terms() -> None:
    assert analyze_query("Where was the Boao Forum panel held?") == analyze("Boao Forum panel held")
    assert "what" in analyze("what") and analyze_query("What did they do?") == []


@pytest.mark.parametrize("text", [
    "Liu Zhongyi visited Myawaddy. The police were trained in Honiara! Nothing else happened here.",
    "e-mail x_y 3.5% (re-run) [IL-6]; TNF-α and IL-1β rose. Zürich's 2nd team — São Paulo won.",
    "snake_case words_like_this, tabs\tand\nnew lines; 'quoted' \"double\" #tag @user 1,000 a/b",
])
def test_span_terms_are_the_terms_of_each_span(text: str) -> None:
    """ASCII text takes a faster path than the rest; both must find what ``analyze`` finds."""
    from service.chunking import sentence_spans
    from service.lexical import span_terms

    spans = sentence_spans(text)
    assert span_terms(text, spans) == [set(analyze(text[a:b])) for a, b in spans]
    assert span_terms(text, [(0, len(text))]) == [set(analyze(text))]
    assert span_terms("", [(0, 0)]) == [set()]


def test_paragraph_windows_are_the_chunks_no_earlier_chunk_contains() -> None:
    from service.retrieval import _paragraph_windows

    # paragraph 0: two overlapping windows and three sentences; paragraph 1: one chunk;
    # paragraph 2: a window, a sentence with its exact span (not a window), a sentence inside it
    para = np.array([0, 0, 0, 0, 0, 1, 2, 2, 2])
    starts = np.array([0, 0, 10, 30, 20, 0, 5, 5, 9])
    ends = np.array([40, 10, 30, 40, 60, 7, 50, 50, 20])
    is_window, windows, bounds = _paragraph_windows(para, starts, ends)
    assert is_window.tolist() == [True, False, False, False, True, True, True, False, False]
    assert windows[bounds[0]:bounds[1]].tolist() == [0, 4]  # text order
    assert windows[bounds[1]:bounds[2]].tolist() == [5]
    assert windows[bounds[2]:bounds[3]].tolist() == [6]
    empty = _paragraph_windows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert [len(a) for a in empty] == [0, 0, 1]


def test_dense_weight_moves_the_order() -> None:
    d, lex = ([1, 2], np.array([0.9, 0.1])), ([2, 1], np.array([9.0, 1.0]))
    assert ranked(fuse("weighted", d, lex, dense_weight=0.9))[0] == 1
    assert ranked(fuse("weighted", d, lex, dense_weight=0.1))[0] == 2


def test_unknown_fusion_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("sum", ([], np.zeros(0)), ([], np.zeros(0)))


# -- collapse to paragraphs ---------------------------------------------------------------------------------
def test_paragraph_ids_and_by_paragraph_keep_the_best_chunk() -> None:
    doc = np.array([0, 0, 0, 1, 1])
    par = np.array([2, 2, 3, 2, 2])
    pid = paragraph_ids(doc, par)
    assert pid.tolist() == [0, 0, 1, 2, 2]
    ids, scores = by_paragraph([1, 0, 3, 2, 4], [0.9, 0.8, 0.7, 0.6, 0.5], pid)
    assert ids.tolist() == [0, 2, 1] and scores.tolist() == [0.9, 0.7, 0.6]
    ids, scores = by_paragraph([], [], pid)
    assert ids.tolist() == [] and scores.tolist() == []


# -- the retriever over a real (small) index ---------------------------------------------------------------
LONG = " ".join(f"Sentence number {i} talks about orchards and the harvest of the year {1900 + i}." for i in range(40))
ARTICLES = {
    "orchard.txt": f"Orchards\n\n{LONG}\n\nA short paragraph about the cider press in Zanzibar.",
    "river.txt": "Rivers\n\nThe river flooded the valley in spring.\n\nFishermen caught trout near the weir.",
    "city.txt": "Cities\n\nThe city council met on Tuesday to discuss the budget.",
}


@pytest.fixture
def small_index(settings: Settings, fake_embedder: FakeEmbedder) -> tuple[store.Snapshot, FakeEmbedder]:
    for name, text in ARTICLES.items():
        write(settings.corpus, name, text)
    s = settings.model_copy(update={"chunk_tokens": 64})
    Indexer(s, embedder=fake_embedder, progress=False).sync(settings.corpus)
    return store.open_snapshot(settings.index, fake_embedder.info.sha256), fake_embedder


def _search(snap: store.Snapshot, emb: FakeEmbedder, query: str, k: int, fusion: str, **kw) -> list:
    return Retriever(snap, fusion=fusion, **kw).search(query, emb.embed([query])[0], k)


def test_long_paragraph_is_one_result_and_k_counts_paragraphs(small_index) -> None:
    snap, emb = small_index
    orchard = {(r.source, r.paragraph) for r in snap.chunk_rows(range(snap.rows))}
    assert snap.size > len(orchard), "the long paragraph must be split into several chunks for this test"
    for fusion in FUSIONS:
        results = _search(snap, emb, "harvest of the year, sentence number", 3, fusion)
        keys = [(r.source, r.paragraph) for r in results]
        assert len(keys) == len(set(keys)), f"{fusion}: one result per paragraph"
        assert len(results) == 3 or fusion == "bm25"
        assert keys[0] == ("corpus/orchard.txt", 2)


def test_results_cite_exact_offsets(small_index, settings: Settings) -> None:
    snap, emb = small_index
    for fusion, query in itertools.product(FUSIONS, ["cider press Zanzibar", "trout weir", "budget"]):
        for r in _search(snap, emb, query, 5, fusion):
            text = (Path(settings.corpus).parent / r.source).read_text(encoding="utf-8")
            assert text[r.char_start : r.char_end] == r.text


def test_lexical_names_are_found(small_index) -> None:
    snap, emb = small_index
    for fusion in ("bm25", "rrf", "weighted"):
        top = _search(snap, emb, "Zanzibar", 1, fusion)[0]
        assert (top.source, top.paragraph) == ("corpus/orchard.txt", 3) and top.lexical > 0


def test_query_without_known_terms_falls_back_to_dense(small_index) -> None:
    snap, emb = small_index
    query = "what is the and of in it"  # only stop words: BM25 has nothing to match
    assert _search(snap, emb, query, 5, "bm25") == []
    dense = _search(snap, emb, query, 5, "dense")
    for fusion in ("rrf", "weighted"):
        fused = _search(snap, emb, query, 5, fusion)
        assert [(r.source, r.paragraph) for r in fused] == [(r.source, r.paragraph) for r in dense]


def test_empty_index_and_zero_k(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    settings.corpus.mkdir(parents=True)
    Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus)
    snap = store.open_snapshot(settings.index, fake_embedder.info.sha256)
    assert Retriever(snap).search("anything", fake_embedder.embed(["anything"])[0], 5) == []


def test_search_is_deterministic(small_index) -> None:
    snap, emb = small_index
    runs = [[(r.source, r.paragraph, r.chunk_id) for r in _search(snap, emb, "the river valley", 5, "rrf")]
            for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_unknown_fusion_in_search(small_index) -> None:
    snap, emb = small_index
    with pytest.raises(ValueError):
        _search(snap, emb, "river", 3, "nonsense")


def test_a_matching_sentence_is_shown_in_its_window(small_index) -> None:
    snap, emb = small_index
    query = "Sentence number 17 talks about orchards and the harvest of the year 1917."
    for fusion in FUSIONS:
        top = _search(snap, emb, query, 1, fusion)[0]
        assert (top.source, top.paragraph) == ("corpus/orchard.txt", 2)
        assert "year 1917." in top.text, f"{fusion}: the window holds the matching sentence"
        assert len(top.text) > len(query) + 20, f"{fusion}: a window, not the sentence alone"
    rows = snap.chunk_rows(range(snap.size))
    assert any(r.text == query for r in rows), "the sentence itself is indexed as a chunk"


def _passage(source: str, paragraph: int, text: str, score: float, title: str = "") -> Passage:
    return Passage(0, source, title, paragraph, text, 0, len(text), score, 0.0, 0.0)


def test_headline_hands_its_rank_to_its_own_body_paragraph() -> None:
    head = _passage("a.txt", 1, "OIL PRICES FALL", 0.9, title="OIL PRICES FALL")
    other = _passage("b.txt", 3, "Unrelated.", 0.8, title="B")
    body = _passage("a.txt", 4, "Prices fell 2 dlrs.", 0.7, title="OIL PRICES FALL")
    lone = _passage("c.txt", 1, "GOLD RISES", 0.6, title="GOLD RISES")  # no body paragraph listed: stays
    out = headlines_yield([head, other, body, lone], "how far did oil prices fall?")
    assert [(p.source, p.paragraph) for p in out] == [("a.txt", 4), ("a.txt", 1), ("b.txt", 3), ("c.txt", 1)]
    assert [p.score for p in out] == [0.9, 0.8, 0.7, 0.6]  # the scores keep their order
    # Paragraph 1 that is body text (no title, or not the title) is not a headline.
    plain = _passage("d.txt", 1, "Body text first.", 0.9)
    assert headlines_yield([plain, _passage("d.txt", 2, "More text first.", 0.5)], "text first")[0].paragraph == 1
    # A body paragraph holding none of the question's terms (matched through the glued title) does not qualify.
    junk = _passage("a.txt", 9, "Source link", 0.7, title="OIL PRICES FALL")
    assert headlines_yield([head, junk], "oil prices")[0].paragraph == 1


def test_headline_rule_in_search(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "news.txt", "TANKER CLOSES PHILADELPHIA PORT\n\nThe tanker Seapride II ran aground "
          "near the port of Philadelphia on Monday.\n\nNo oil was spilled, the Coast Guard said.\n")
    write(settings.corpus, "other.txt", "Gold prices\n\nGold rose in London trading.\n")
    Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus)
    snap = store.open_snapshot(settings.index, fake_embedder.info.sha256)
    q = "tanker closes Philadelphia port"
    v = fake_embedder.embed([q])[0]
    plain = Retriever(snap, fusion="bm25", headlines_yield=False).search(q, v, 3)
    news = plain[0].source
    assert news.endswith("news.txt") and plain[0].paragraph == 1  # the headline matches best
    ruled = Retriever(snap, fusion="bm25").search(q, v, 3)
    assert [(p.source, p.paragraph) for p in ruled[:2]] == [(news, 2), (news, 1)]
    assert len(ruled) == 3
