"""The Reuters news benchmark's reader and question checks, on tiny inline data (offline: no apt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.reuters import QUESTIONS, Article, articles_from, check_questions, read_article, read_questions
from service.corpus import paragraphs

RECORD = """<?xml version="1.0"?>
<REUTERS TOPICS="YES" NEWID="10">
 <DATE>26-FEB-1987 15:18:06.67</DATE>
 <TEXT>
  <TITLE>ACME &lt;ACM&gt; SELLS UNIT</TITLE>
  <DATELINE>COMMACK, N.Y., Feb 26 -</DATELINE>
  <BODY>Acme Inc said
it has sold its widget unit to &lt;Bolt N.V.&gt; for 50,000 dlrs.
    The company&apos;s board said the sale
was part of its &quot;reorganization&quot; plan.
    Bolt makes bolts.
 Reuter</BODY>
 </TEXT>
</REUTERS>"""


def test_headline_body_paragraphs_and_dateline() -> None:
    art = read_article(RECORD)
    assert art.headline == "ACME <ACM> SELLS UNIT"
    assert art.paragraphs == (
        "COMMACK, N.Y., Feb 26 - Acme Inc said it has sold its widget unit to <Bolt N.V.> for 50,000 dlrs.",
        "The company's board said the sale was part of its \"reorganization\" plan.",
        "Bolt makes bolts.",
    )
    text = art.text()
    # The headline is paragraph 1 under the service's own paragraph rule; the body follows in order.
    assert [text[p.start : p.end] for p in paragraphs(text)] == [art.headline, *art.paragraphs]


def test_record_without_dateline_or_sign_off() -> None:
    xml = "<REUTERS><TEXT><TITLE>OIL UP</TITLE><BODY>Prices rose.\n    They held.</BODY></TEXT></REUTERS>"
    assert read_article(xml) == Article("OIL UP", ("Prices rose.", "They held."))


@pytest.mark.parametrize("xml", [
    "<REUTERS><TEXT><BODY>No headline.</BODY></TEXT></REUTERS>",
    "<REUTERS><TEXT><TITLE>NO BODY</TITLE></TEXT></REUTERS>",
    "<REUTERS></REUTERS>",
])
def test_incomplete_records_are_refused(xml: str) -> None:
    with pytest.raises(ValueError):
        read_article(xml)


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_folder_of_records_and_question_checks(tmp_path: Path) -> None:
    (tmp_path / "acq").mkdir()
    (tmp_path / "crude").mkdir()
    (tmp_path / "acq" / "reut-00007.xml").write_text(RECORD, encoding="utf-8")
    articles = articles_from(tmp_path)
    assert list(articles) == ["acq-00007.txt"]
    good = _write(tmp_path, [
        {"id": "a", "question": "Who bought the unit?", "gold": [{"file": "acq-00007.txt", "paragraph": 2}],
         "answers": ["Bolt N.V."], "kind": "who"},
        {"id": "b", "question": "What is the boiling point of ethanol?", "gold": [], "answers": []},
    ])
    qs = read_questions(good)
    assert qs[0].gold == (("reuters/acq-00007.txt", 2),) and qs[1].gold == ()
    check_questions(articles, qs)
    for gold, answers in [({"file": "acq-00007.txt", "paragraph": 3}, ["Bolt N.V."]),  # span not in that paragraph
                          ({"file": "acq-00007.txt", "paragraph": 9}, ["Bolt"]),  # no such paragraph
                          ({"file": "acq-00008.txt", "paragraph": 2}, ["Bolt"])]:  # no such article
        bad = read_questions(_write(tmp_path, [{"id": "x", "question": "?", "gold": [gold], "answers": answers}]))
        with pytest.raises(ValueError):
            check_questions(articles, bad)


def test_committed_question_file_is_well_formed() -> None:
    qs = read_questions(QUESTIONS)
    assert len({q.id for q in qs}) == len(qs)
    answerable = [q for q in qs if q.gold]
    assert len(answerable) >= 120 and len(qs) - len(answerable) >= 20
    assert all(q.answers and q.text.endswith("?") for q in answerable)
