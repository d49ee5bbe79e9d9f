"""Questions a reader could answer from the seed articles, and questions the seeds cannot answer.

Every answerable question must find a paragraph that answers it among the first 3 citations (the
accepted paragraphs are the ones that state the answer; several seed paragraphs repeat a fact),
and must be answered (but for two, marked below). Off-topic questions (sports, cooking, geography
and science the seeds never mention) must get ``answer: null``. The questions were written from the
articles, not tuned to the ranking.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.model

S0 = "seeds/000_c7b0e32d5953f5e9.txt"  # Chen Zhimin: intelligence sharing for belt and road projects
S1 = "seeds/001_db8832c2d6dc6696.txt"  # Chen Yixin's tour of Southeast Asia
S2 = "seeds/002_87262ed74157155f.txt"  # G20 Hangzhou counter-terrorism assistance
S3 = "seeds/003_517cb5bd72187ee7.txt"  # Liu Zhongyi, Myanmar scam centres, police diplomacy
S4 = "seeds/004_ac61203b24847f23.txt"  # China and Belarus law-enforcement cooperation

ANSWERABLE: list[tuple[str, str, set[int]]] = [
    # 000
    ("Until what year was Chen Zhimin vice-minister for public security?", S0, {4, 5}),
    ("Where was the Boao Forum panel held?", S0, {5}),
    ("What concept did Chen Zhimin say countries need to establish?", S0, {3, 5}),
    ("What does China's five-year plan say about protecting overseas investments?", S0, {3, 9}),
    ("Which company does security expert Lu Wei work for?", S0, {11}),
    ("What kind of legislation did the security expert call for?", S0, {12}),
    ("Which newspaper did the security expert talk to?", S0, {12}),
    ("What warning mechanism was proposed to protect overseas Chinese investments?", S0, {13}),
    ("How many Chinese nationals were killed in the Pakistan bus blast?", S0, {8, 9}),
    ("What should nations share on security matters, including big data?", S0, {6}),
    # 001
    ("Which countries did Chen Yixin visit on his Southeast Asia tour?", S1, {2}),
    ("How long was the Chinese state security chief's tour of Southeast Asia?", S1, {1, 2, 4}),
    ("When did Chen Yixin assume his post?", S1, {5}),
    ("Who received Chen in Vietnam?", S1, {6}),
    ("Which Vietnamese politburo members met Chen?", S1, {7}),
    ("Who is the head of Thailand's National Intelligence Agency?", S1, {9}),
    ("Where did Gui Minhai disappear from in 2015?", S1, {14}),
    ("Which law was recently revised amid the renewed focus on national security?", S1, {4}),
    ("Which anniversary of diplomatic relations with Beijing does Cambodia mark?", S1, {5}),
    ("Why are the three Southeast Asian countries important to China?", S1, {15}),
    # 002
    ("Which city hosts the G20 summit?", S2, {7}),
    ("What assistance is China seeking from the international community for the G20 meeting?", S2, {4, 5, 8}),
    ("Who is Hou Le?", S2, {6}),
    ("Where are members of the East Turkestan Islamic Movement receiving military training?", S2, {12}),
    ("When did the United Nations label the East Turkestan Islamic Movement a terrorist group?", S2, {12}),
    ("Which passports have been stolen according to police intelligence?", S2, {14}),
    ("Who is Thorsten Boelts?", S2, {10}),
    ("What does the Islamic State group do in Southeast Asia?", S2, {13}),
    # 003
    ("Who visited Myanmar?", S3, {2, 3, 4, 5}),
    ("How many Chinese nationals rescued from scam centres were repatriated on Thursday?", S3, {2, 3}),
    ("Who gave police tactical training to officers in the Solomon Islands?", S3, {2, 3}),
    ("How much money did Australia announce to support the Solomon Islands police force?", S3, {2}),
    ("How many foreign law enforcement officers did China train in 2023?", S3, {2}),
    ("Why did Italy stop joint police patrols with China?", S3, {2}),
    ("What did President Xi Jinping announce in 2022?", S3, {2}),
    ("Which armed group controls the area where the scam centres are located?", S3, {4, 5}),
    ("What supplies did Thailand cut to the scam areas in Myanmar?", S3, {4, 5}),
    ("Who is Guo Jiakun?", S3, {4}),
    ("Which Pacific country removed Chinese officers embedded in its police force?", S3, {2}),
    ("What happened to Papua New Guinea's plan to accept Chinese help for its police?", S3, {2}),
    ("From which Thai town did the flights carrying Chinese scam workers leave?", S3, {5}),
    ("How many scam workers were rescued along Myanmar's border with Thailand?", S3, {5}),
    # 004
    ("What did China and Belarus agree to strengthen?", S4, {2, 4, 5}),
    ("Where do the suspects buy fake passports?", S4, {9}),
    ("Who is Su Qiang?", S4, {10}),
    ("Which organization are China and Belarus both members of?", S4, {11}),
    ("What must the authorities of both countries agree on about terrorism?", S4, {12, 13}),
    ("Which countries have suspects from China crossed into illegally?", S4, {8}),
    ("How often will China and Belarus hold meetings and forums?", S4, {6}),
]

OFF_TOPIC = [
    # sports
    "Who won the 2018 FIFA World Cup final?",
    "How many players does a basketball team have on the court?",
    "Which tennis player has won the most Wimbledon singles titles?",
    "What is the world record time for the men's marathon?",
    "How is the offside rule applied in ice hockey?",
    "How many holes are played in a round of golf?",
    # cooking
    "How long should I boil an egg for a soft yolk?",
    "What temperature should I bake sourdough bread at?",
    "What ingredients go into a traditional carbonara?",
    "How do I keep pancakes fluffy?",
    "How much salt should I add to pasta water?",
    "What is the best way to caramelize onions?",
    # geography and science not in the seeds
    "What is the longest river in South America?",
    "How tall is Mount Kilimanjaro?",
    "What is the capital city of Peru?",
    "Which desert is the largest hot desert in the world?",
    "How many time zones does Canada have?",
    "Why is the sky blue?",
    "How do plants convert sunlight into energy?",
    "What is the boiling point of water at high altitude?",
]


@pytest.mark.parametrize(("question", "source", "paragraphs"), ANSWERABLE, ids=[q for q, _, _ in ANSWERABLE])
def test_answerable_question_finds_its_paragraph(seed_engine, question: str, source: str, paragraphs: set[int]) -> None:
    top3 = [(p.source, p.paragraph) for p in seed_engine.search(question, 3)]
    assert any(s == source and n in paragraphs for s, n in top3), f"{question!r}: got {top3}"


# The abstain threshold (calibrated on SQuAD: the highest that still answers 95% of answerable
# questions) trades answered questions for refused off-topic ones. A question that finds its
# paragraph (above) but scores under it goes here, strict: when the answer scoring improves, it must
# be moved back. ("Where was the Boao Forum panel held?" was here until the sentence before an
# answer counted toward it, issue 15; "Which newspaper did the security expert talk to?" until the
# document's most used words were glued to its chunks, ASK_CONTEXT_TERMS: it now scores 0.412, just
# over the threshold, and is answered from ¶11, which names the expert, not ¶12, which names the
# newspaper.)
ABSTAINS_TODAY: set[str] = set()


@pytest.mark.parametrize(
    "question",
    [pytest.param(q, marks=pytest.mark.xfail(strict=True, reason="below the abstain threshold"))
     if q in ABSTAINS_TODAY else q for q, _, _ in ANSWERABLE],
)
def test_answerable_question_is_answered(seed_engine, question: str) -> None:
    answer = seed_engine.ask(question, 3)
    assert answer.answer is not None, f"{question!r} was not answered: {answer.reason}"
    first = answer.citations[0]
    assert first.quote == answer.answer and first.quote in first.text, "the answer is quoted from its citation"


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_question_is_not_answered(seed_engine, question: str) -> None:
    answer = seed_engine.ask(question)
    assert answer.answer is None, f"{question!r} got an answer: {answer.answer!r} ({answer.confidence:.3f})"
    assert answer.reason and answer.citations, "an abstention explains itself and still lists the closest passages"


def test_question_sets_are_large_enough() -> None:
    assert len(ANSWERABLE) >= 40 and len(OFF_TOPIC) >= 15
    assert {s for _, s, _ in ANSWERABLE} == {S0, S1, S2, S3, S4}
