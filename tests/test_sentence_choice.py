"""The reader's sentence choice (``service.sentence_choice``): which candidate answers, apart from
whether anything answers (the evidence score and its threshold)."""

from __future__ import annotations

import numpy as np

from service.answer import Evidence, build_answer, sentence_evidence
from service.retrieval import Passage
from service.sentence_choice import CHOICE_WEIGHTS, FEATURES, choice_scores, feature_matrix

from .conftest import FakeEmbedder

TITLE = "Super Bowl 50"
# Every sentence names the event (the article's topic); only one says where it was held.
BODY = ("Super Bowl 50 media day was moved to Monday evening and renamed Opening Night. "
        "Super Bowl 50 Opening Night took place at SAP Center in San Jose. "
        "Super Bowl 50 tickets sold out within hours.")
DOC = f"{TITLE}\n\n{BODY}"


def _passages() -> list[Passage]:
    start = DOC.index(BODY)
    return [Passage(0, "c/sb.txt", TITLE, 2, BODY, start, start + len(BODY), 1.0, 0.6, 3.0),
            Passage(1, "c/sb.txt", TITLE, 1, TITLE, 0, len(TITLE), 0.9, 0.7, 2.0)]


def _evidence(text: str, passage: int = 0, similarity: float = 0.5, coverage: float = 0.5,
              holds_kind: float = 0.0, kind_asked: float = 0.0) -> Evidence:
    return Evidence(passage, 0, len(text), text, similarity, 0.5, coverage, coverage, holds_kind, kind_asked)


def test_weights_name_only_known_features() -> None:
    assert set(CHOICE_WEIGHTS) <= set(FEATURES)


def test_one_feature_row_per_candidate_in_order() -> None:
    ev = [_evidence("Super Bowl 50 tickets sold out."), _evidence("Opening Night took place at SAP Center.")]
    x = feature_matrix("where did opening night take place?", ev, _passages())
    assert x.shape == (2, len(FEATURES))
    assert feature_matrix("anything?", [], _passages()).shape == (0, len(FEATURES))


def test_rare_question_words_outweigh_the_topic_every_sentence_shares() -> None:
    q = "Where did Super Bowl 50 Opening Night take place?"
    ev = [_evidence(s) for s in ("Super Bowl 50 media day was moved to Monday evening.",
                                 "Super Bowl 50 Opening Night took place at SAP Center in San Jose.",
                                 "Super Bowl 50 tickets sold out within hours.")]
    x = feature_matrix(q, ev, _passages())
    rare = FEATURES.index("sentence_idf_coverage")
    assert int(np.argmax(x[:, rare])) == 1
    assert int(np.argmax(choice_scores(q, ev, _passages()))) == 1


def test_a_headline_that_repeats_the_question_loses_to_the_body_sentence_with_the_answer() -> None:
    q = "Where was the Super Bowl 50 Opening Night held?"
    headline = _evidence(TITLE, passage=1, similarity=0.7, coverage=0.8, kind_asked=1.0)
    body = _evidence("Opening Night was held at SAP Center in San Jose.", similarity=0.6, coverage=0.6,
                     holds_kind=1.0, kind_asked=1.0)
    scores = choice_scores(q, [headline, body], _passages())
    assert scores[1] > scores[0]
    x = feature_matrix(q, [headline, body], _passages())
    assert x[0, FEATURES.index("headline")] == 1.0 and x[1, FEATURES.index("headline")] == 0.0
    assert x[0, FEATURES.index("kind_missing")] == 1.0 and x[1, FEATURES.index("kind_missing")] == 0.0


def test_a_sentence_adding_nothing_to_the_question_counts_as_no_novelty() -> None:
    q = "Super Bowl tickets sold out"
    x = feature_matrix(q, [_evidence("Super Bowl tickets sold out."), _evidence("Tickets cost 5,000 dollars.")],
                       _passages())
    novelty = FEATURES.index("novelty")
    assert x[0, novelty] == 0.0 and x[1, novelty] > 0.5


def test_answer_is_the_chosen_sentence_and_confidence_the_best_evidence(fake_embedder: FakeEmbedder) -> None:
    q = "Where did Super Bowl 50 Opening Night take place?"
    v = fake_embedder.embed([q])[0]
    passages = _passages()[:1]
    ev = sentence_evidence(q, v, passages, fake_embedder)
    answer = build_answer(q, v, passages, fake_embedder, threshold=-1.0)
    assert answer.confidence == max(e.score() for e in ev), "answered or not is the evidence score's call"
    chosen = ev[int(np.argmax(choice_scores(q, ev, passages)))]
    assert answer.answer == chosen.text == "Super Bowl 50 Opening Night took place at SAP Center in San Jose."
    first = answer.citations[0]
    assert DOC[first.quote_start : first.quote_end] == answer.answer
    refused = build_answer(q, v, passages, fake_embedder, threshold=answer.confidence + 0.01)
    assert refused.answer is None and refused.citations[0].quote == answer.answer, \
        "an abstention still quotes each passage's chosen sentence"
