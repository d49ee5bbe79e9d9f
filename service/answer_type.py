"""What kind of answer a question asks for, and whether a sentence holds one: cheap, dependency-free
signals for the extractive reader.

"How many …" wants a number, "when …" a date, "who …" a person's name, "which countries …" a
place. A sentence that holds none of the asked kind that the question does not already hold (a
headline that names no country, for "which countries …") is unlikely to answer it, however many
of the question's words it repeats. The reader (``service.answer``) adds a bonus to sentences that
hold one; questions of no recognised kind get no bonus either way.
"""

from __future__ import annotations

import re
from enum import Enum


class Kind(Enum):
    NUMBER = "number"
    DATE = "date"
    NAME = "name"  # a person, a place, an organisation: a capitalised name


_NUMBER_Q = re.compile(
    r"\bhow (many|much|long|old|far|large|big|tall|high|often|fast|heavy|deep|wide|few)\b"
    r"|\bwhat (percentage|percent|number|amount|proportion|fraction|share|size|population|age)\b"
)
_DATE_Q = re.compile(
    r"\bwhen\b|\b(what|which|in what|in which) (year|years|date|day|month|century|decade|era|period|time)\b"
    r"|\buntil what\b|\bsince what\b"
)
_NAME_Q = re.compile(
    r"^\s*(who|whom|whose)\b|\b(who|whom|whose)\b|\bwhere\b"
    r"|\b(which|what) (countries|country|city|cities|state|states|nation|nations|region|regions|town|towns"
    r"|place|places|continent|island|islands|province|provinces|company|companies|newspaper|organi[sz]ation"
    r"|group|team|university|person|people|man|woman|king|president|minister|party|river|language)\b"
)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|hundreds|thousand|thousands|million|millions|billion|billions|dozen|dozens|half|twice|"
    r"percent)\b", re.IGNORECASE)
_DATE = re.compile(
    r"\b(1[0-9]{3}|20[0-9]{2})s?\b|\b(january|february|march|april|may|june|july|august|september|october|"
    r"november|december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|century|centuries|decade|"
    r"yesterday|today|tomorrow|bc|ad|bce)\b|\b\d{1,2}(st|nd|rd|th)\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_][\w'’.-]*")


def expected_kind(question: str) -> Kind | None:
    """The kind of answer ``question`` asks for, when its wording says (dates before numbers:
    "in what year" wants a year, not any number)."""
    q = question.lower()
    if _DATE_Q.search(q):
        return Kind.DATE
    if _NUMBER_Q.search(q):
        return Kind.NUMBER
    if _NAME_Q.search(q):
        return Kind.NAME
    return None


def _new_names(sentence: str, question_words: set[str]) -> bool:
    """Whether the sentence holds a capitalised word (not its first) that the question lacks."""
    for i, m in enumerate(_WORD.finditer(sentence)):
        word = m.group()
        if i == 0 or not word[0].isupper():
            continue
        if word.lower().strip(".'’") not in question_words:
            return True
    return False


def holds_kind(kind: Kind, sentence: str, question: str) -> bool:
    """Whether ``sentence`` holds an answer of ``kind`` that ``question`` does not already state."""
    if kind is Kind.NUMBER:
        asked = {m.group().lower() for m in _NUMBER.finditer(question)}
        return any(m.group().lower() not in asked for m in _NUMBER.finditer(sentence))
    if kind is Kind.DATE:
        asked = {m.group().lower() for m in _DATE.finditer(question)}
        return any(m.group().lower() not in asked for m in _DATE.finditer(sentence))
    return _new_names(sentence, {w.lower().strip(".'’") for w in _WORD.findall(question)})
