"""The reader's cheap signals: the kind of answer a question asks for, the antecedent of an answer
that refers back, and packing passages into a small token budget."""

from __future__ import annotations

import pytest

from service.answer import Citation, antecedent, build_answer, opens_with_anaphor, sentence_evidence
from service.answer_type import Kind, expected_kind, holds_kind
from service.context_budget import pack
from service.retrieval import Passage

from .conftest import FakeEmbedder


@pytest.mark.parametrize(("question", "kind"), [
    ("How many Chinese nationals were killed in the blast?", Kind.NUMBER),
    ("How much money did Australia announce?", Kind.NUMBER),
    ("When did Chen Yixin assume his post?", Kind.DATE),
    ("In what year did the war end?", Kind.DATE),
    ("Until what year was Chen Zhimin vice-minister?", Kind.DATE),
    ("Who is Hou Le?", Kind.NAME),
    ("Which countries did Chen Yixin visit?", Kind.NAME),
    ("Where was the panel held?", Kind.NAME),
    ("What did China and Belarus agree to strengthen?", None),
    ("Why did Italy stop joint police patrols?", None),
])
def test_expected_kind(question: str, kind: Kind | None) -> None:
    assert expected_kind(question) is kind


def test_holds_kind_wants_something_the_question_does_not_say() -> None:
    q = "Which countries did Chen Yixin visit on his Southeast Asia tour?"
    assert not holds_kind(Kind.NAME, "Chinese state security chief wraps up tour of Southeast Asia", q), \
        "a headline that names no country (only what the question names) holds no answer"
    assert holds_kind(Kind.NAME, "Chen visited Vietnam, Thailand and Cambodia.", q)
    assert holds_kind(Kind.NUMBER, "Nine people were killed.", "How many were killed?")
    assert holds_kind(Kind.NUMBER, "It cost 12 million dollars.", "How much did it cost?")
    assert not holds_kind(Kind.NUMBER, "The blast killed Chinese nationals.", "How many were killed in 2021?")
    assert holds_kind(Kind.DATE, "He took office in March 2018.", "When did he take office?")
    assert not holds_kind(Kind.DATE, "He took office after a vote.", "When did he take office?")


@pytest.mark.parametrize(("sentence", "refers_back"), [
    ("They agreed to share intelligence.", True),
    ("He said the plan was ready.", True),
    ("The ministry said it would help.", True),
    ("“This is a priority,” he said.", True),
    ("The United Nations listed the group.", False),
    ("Theresa May spoke.", False),
    ("There are two reasons.", False),
    ("China and Belarus agreed.", False),
])
def test_opens_with_anaphor(sentence: str, refers_back: bool) -> None:
    assert opens_with_anaphor(sentence) is refers_back


DOC = "Talks\n\nChina and Belarus met in Minsk. They agreed to share intelligence on terrorism."


def _passage() -> Passage:
    start = DOC.index("\n\n") + 2
    return Passage(0, "c/a.txt", "Talks", 2, DOC[start:], start, len(DOC), 1.0, 0.5, 1.0)


def test_answer_shows_the_antecedent_with_exact_offsets(fake_embedder: FakeEmbedder) -> None:
    q = "what did they agree to share on terrorism?"
    answer = build_answer(q, fake_embedder.embed([q])[0], [_passage()], fake_embedder, threshold=-1.0)
    assert answer.answer == "They agreed to share intelligence on terrorism."
    first = answer.citations[0]
    assert DOC[first.quote_start : first.quote_end] == answer.answer, "the quote keeps its own offsets"
    assert answer.context is not None and answer.context.text == "China and Belarus met in Minsk."
    assert DOC[answer.context.start : answer.context.end] == answer.context.text
    assert answer.as_dict()["context"] == {"text": answer.context.text, "start": answer.context.start,
                                           "end": answer.context.end}
    assert antecedent(_passage(), _passage().char_start) is None, "the first sentence has no antecedent in its passage"


def test_previous_sentence_counts_toward_coverage(fake_embedder: FakeEmbedder) -> None:
    q = "what did China and Belarus agree?"
    ev = sentence_evidence(q, fake_embedder.embed([q])[0], [_passage()], fake_embedder)
    first, second = ev
    assert second.coverage_with_previous > second.coverage, "'They' gets credit for what the sentence before names"
    assert first.coverage_with_previous == first.coverage, "a passage's first sentence has no previous one"


def _citation(text: str, quote: str, start: int = 100) -> Citation:
    a = text.index(quote)
    return Citation("c/a.txt", 3, text, start, start + len(text), 1.0, quote, start + a, start + a + len(quote))


def test_small_budget_keeps_the_best_passage_as_its_best_sentence() -> None:
    count = lambda s: len(s.split())  # noqa: E731 - a word count stands in for tokens
    best = _citation("Filler words " * 30 + "Liu Zhongyi visited Myanmar. " + "More filler " * 30,
                     "Liu Zhongyi visited Myanmar.")
    filler = Citation("c/b.txt", 7, "Editor's picks", 0, 14, 0.5, "Editor's picks", 0, 14)
    text, cited = pack([best, filler], 12, count)
    assert cited[0].text == "Liu Zhongyi visited Myanmar." and "Liu Zhongyi visited Myanmar." in text
    assert (cited[0].char_start, cited[0].char_end) == (best.quote_start, best.quote_end), "offsets of the sentence"
    assert text.startswith("[1] c/a.txt ¶3\n")
    big_text, big = pack([best, filler], 10_000, count)
    assert [c.text for c in big] == [best.text, filler.text], "whole passages when they fit"
    assert count(text) <= 12 and pack([best], 2, count) == ("", [])
