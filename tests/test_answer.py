"""The extractive answer and its abstain threshold (fake embedder: fast, deterministic)."""

from __future__ import annotations

from service.answer import build_answer, highlight, score_sentences
from service.retrieval import Passage

from .conftest import FakeEmbedder

DOC_A = "Fruit\n\nApples are red and crisp. Bananas are long and yellow. Pears grow on trees."
DOC_B = "Weather\n\nIt rained all week in the valley. The river rose by a metre."


def passage(doc: str, source: str, chunk_id: int, dense: float) -> Passage:
    start = doc.index("\n\n") + 2
    return Passage(chunk_id, source, doc.split("\n")[0], 2, doc[start:], start, len(doc), 1.0 / (chunk_id + 1),
                   dense, 0.0)


PASSAGES = [passage(DOC_B, "c/b.txt", 0, 0.2), passage(DOC_A, "c/a.txt", 1, 0.6)]
QUESTION = "which fruit is long and yellow?"


def best_score(embedder: FakeEmbedder) -> float:
    q = embedder.embed([QUESTION])[0]
    return score_sentences(QUESTION, q, PASSAGES, embedder)[0].score


def test_answer_is_best_sentence_with_exact_offsets(fake_embedder: FakeEmbedder) -> None:
    q = fake_embedder.embed([QUESTION])[0]
    answer = build_answer(QUESTION, q, PASSAGES, fake_embedder, threshold=-1.0)
    assert answer.answer == "Bananas are long and yellow."
    first = answer.citations[0]
    assert first.source == "c/a.txt", "the passage holding the answer is cited first"
    assert DOC_A[first.quote_start : first.quote_end] == first.quote == answer.answer
    assert DOC_A[first.char_start : first.char_end] == first.text
    assert {c.source for c in answer.citations} == {"c/a.txt", "c/b.txt"}
    assert answer.reason is None


def test_threshold_is_inclusive_and_abstains_above(fake_embedder: FakeEmbedder) -> None:
    q = fake_embedder.embed([QUESTION])[0]
    score = best_score(fake_embedder)
    at = build_answer(QUESTION, q, PASSAGES, fake_embedder, threshold=score)
    assert at.answer is not None and abs(at.confidence - score) < 1e-9
    above = build_answer(QUESTION, q, PASSAGES, fake_embedder, threshold=score + 1e-6)
    assert above.answer is None
    assert above.reason and "threshold" in above.reason
    assert abs(above.confidence - score) < 1e-9, "an abstention still reports its best evidence score"
    assert [c.source for c in above.citations] == ["c/b.txt", "c/a.txt"], "closest passages kept, in rank order"


def test_threshold_is_monotonic(fake_embedder: FakeEmbedder) -> None:
    q = fake_embedder.embed([QUESTION])[0]
    answered = [build_answer(QUESTION, q, PASSAGES, fake_embedder, t).answer is not None
                for t in (-1.0, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0)]
    assert answered == sorted(answered, reverse=True), "raising the threshold never turns an abstention into an answer"
    assert answered[0] and not answered[-1]


def test_no_passages_abstains_with_reason(fake_embedder: FakeEmbedder) -> None:
    q = fake_embedder.embed([QUESTION])[0]
    answer = build_answer(QUESTION, q, [], fake_embedder, threshold=0.0)
    assert answer.answer is None and answer.citations == [] and answer.reason


def test_off_topic_scores_below_on_topic(fake_embedder: FakeEmbedder) -> None:
    on = best_score(fake_embedder)
    off_q = "who won the cup final?"
    off = score_sentences(off_q, fake_embedder.embed([off_q])[0], PASSAGES, fake_embedder)[0].score
    assert off < on


def test_highlight_picks_the_sentence_with_the_question_terms() -> None:
    [cited] = highlight("how far did the river rise?", PASSAGES[:1])
    assert cited.quote == "The river rose by a metre."
    assert DOC_B[cited.quote_start : cited.quote_end] == cited.quote
