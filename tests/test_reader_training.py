"""The sentence choice's fit (``bench.reader_training``), on tiny inline questions: the fit learns
which signal marks the answering sentence, and the evaluation counts answered questions only."""

from __future__ import annotations

import random

from bench.reader_training import Item, evaluate, fit, labels
from service.answer import Evidence
from service.retrieval import Passage
from service.sentence_choice import FEATURES

TEXTS = ("The festival opened on Monday.", "It drew large crowds from the city.", "Tickets were free for children.")


def _item(rng: random.Random, i: int) -> Item:
    """Three candidate sentences; the answering one holds the asked kind, the others do not, and
    their similarities are noise."""
    answer = rng.randrange(3)
    body = " ".join(TEXTS)
    passage = Passage(0, "c/f.txt", "", 2, body, 0, len(body), 1.0, 0.5, 1.0)
    evidence = []
    for j, text in enumerate(TEXTS):
        start = body.index(text)
        evidence.append(Evidence(0, start, start + len(text), text, rng.uniform(0.3, 0.6), 0.5, 0.4, 0.4,
                                 1.0 if j == answer else 0.0, 1.0))
    return Item(f"question {i}?", [passage], evidence, (TEXTS[answer].split()[1],), group="train")


def test_fit_learns_the_signal_that_marks_the_answer() -> None:
    rng = random.Random(0)
    items = [_item(rng, i) for i in range(60)]
    weights = fit(items)
    assert set(weights) == set(FEATURES)
    assert max(weights, key=lambda k: weights[k]) == "holds_kind"
    assert weights["kind_missing"] < 0
    fitted = evaluate(items, weights, threshold=0.0)["train"]
    assert fitted["holds"] == 1.0 and fitted["answered"] == 1.0
    assert evaluate(items, weights, threshold=10.0)["train"] == {"n": 60, "answered": 0.0}, \
        "nothing is answered above every evidence score, so nothing is judged"


def test_labels_by_span_or_by_accepted_paragraph() -> None:
    item = _item(random.Random(1), 0)
    assert labels(item).sum() == 1
    by_paragraph = Item(item.question, item.passages, item.evidence, (), (("c/f.txt", 2),), "seeds")
    assert labels(by_paragraph).tolist() == [1.0, 1.0, 1.0]
