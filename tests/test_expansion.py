"""Query-level BM25 additions (service/expansion.py) over a tiny real index."""

from __future__ import annotations

import pytest

from service import store
from service.config import Settings
from service.expansion import proximity_rescore, rm3_query
from service.lexical import analyze_query
from service.retrieval import Retriever

from .conftest import FakeEmbedder, indexed

ARTICLES = {
    "tanker.txt": "Port news\n\nThe tanker ran aground near the refinery. The tanker lost its steering.\n\n"
                  "Crews hoped to refloat the tanker on the high tide near the refinery.\n",
    "gold.txt": "Metals\n\nGold prices rose in London. Silver fell.\n",
    "port.txt": "Harbour\n\nThe port of Philadelphia closed for a day.\n",
}


@pytest.fixture
def snap(settings: Settings, fake_embedder: FakeEmbedder) -> store.Snapshot:
    return indexed(settings, fake_embedder, ARTICLES)


def test_rm3_keeps_the_question_and_adds_words_of_the_top_chunks(snap: store.Snapshot) -> None:
    q = "Which vessel went aground?"
    expanded = rm3_query(snap, q, feedback_chunks=3, terms=3)
    terms = analyze_query(expanded)
    assert terms[: 2 * len(analyze_query(q))] == analyze_query(q) * 2  # the question, twice
    added = terms[2 * len(analyze_query(q)):]
    assert 0 < len(added) <= 3 and "tanker" in added  # the feedback chunks are about the tanker
    assert not set(added) & set(analyze_query(q))


def test_rm3_without_a_match_leaves_the_query(snap: store.Snapshot) -> None:
    assert rm3_query(snap, "zebra quasar?") == "zebra quasar?"
    assert rm3_query(snap, "what is it?") == "what is it?"  # nothing left once question words go


def test_proximity_lifts_the_chunk_holding_the_phrase(snap: store.Snapshot) -> None:
    q = "port of Philadelphia"
    ids, scores = snap.lexical.search(q, 10)
    new_ids, new_scores = proximity_rescore(snap, q, (ids, scores), boost=0.5)
    assert sorted(new_ids.tolist()) == sorted(ids.tolist())
    assert list(new_scores) == sorted(new_scores, reverse=True)
    rows = {r.id: r.text for r in snap.chunk_rows(new_ids.tolist())}
    assert "port of Philadelphia" in rows[int(new_ids[0])]
    assert all(n >= s for n, s in zip(sorted(new_scores), sorted(scores), strict=True))  # only boosts


def test_retriever_runs_with_the_extras(snap: store.Snapshot, fake_embedder: FakeEmbedder) -> None:
    q = "tanker refinery steering"
    v = fake_embedder.embed([q])[0]
    for extras in [("rm3",), ("proximity",), ("rm3", "proximity")]:
        found = Retriever(snap, fusion="bm25", lexical_extras=extras).search(q, v, 2)
        assert found and found[0].source.endswith("tanker.txt")
