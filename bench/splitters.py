"""The hand-written sentence splitter (``service.chunking.sentence_spans``) against maintained ones.

    python -m bench.splitters                 # needs: pip install pysbd syntok blingfire (not pinned)

Two measurements, each splitter applied line by line (a line break ends a sentence in all of them, as
in the service):

* **Boundaries**: on the seed articles (scraped pages: bullet lines, captions, bylines, curly quotes),
  the Reuters articles and SQuAD's paragraphs: how many sentences each finds and how many of the
  hand-written splitter's sentences it reproduces exactly; a sample of disagreements is written to
  ``bench/.cache/splitters-disagreements.txt`` to be read.
* **Reader**: the engine's answer over the same retrieved passages with the reader's sentences cut by
  each splitter (``service.answer``'s splitter replaced; the index keeps the service's sentence
  chunks): answered rate, gold-span share and mean answer length on SQuAD's answer sets and on
  Reuters, abstain rates on SQuAD other-article questions, SciFact claims and Reuters' uncovered
  questions. A longer "sentence" holds a gold span more often, so the length is printed beside it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from service import answer as answer_module
from service.answer import build_answer
from service.chunking import _strip, sentence_spans
from service.config import PROJECT_ROOT, Settings
from service.corpus import paragraphs

from . import datasets
from .quality import CACHE, RESULTS, Bench, answer_sets, log
from .reuters import reuters

Spans = list[tuple[int, int]]
Splitter = Callable[[str], Spans]


def _per_line(split_line: Callable[[str], Spans]) -> Callable[..., Spans]:
    """A splitter of one line, applied to each line of ``text[start:end]`` (offsets in ``text``)."""

    def split(text: str, start: int = 0, end: int | None = None) -> Spans:
        end = len(text) if end is None else end
        out: Spans = []
        pos = start
        for line in text[start:end].splitlines(keepends=True):
            body = line.rstrip("\r\n")
            if body.strip():
                for a, b in split_line(body):
                    a, b = _strip(body, a, b)
                    if b > a:
                        out.append((pos + a, pos + b))
            pos += len(line)
        return out

    return split


def splitters() -> dict[str, Callable[..., Spans]]:
    import blingfire
    import pysbd
    from syntok.segmenter import analyze

    seg = pysbd.Segmenter(language="en", clean=False, char_span=True)

    def by_pysbd(line: str) -> Spans:
        return [(s.start, s.end) for s in seg.segment(line)]

    def by_syntok(line: str) -> Spans:
        out = []
        for para in analyze(line):
            for sent in para:
                toks = list(sent)
                if toks:
                    out.append((toks[0].offset, toks[-1].offset + len(toks[-1].value)))
        return out

    def by_blingfire(line: str) -> Spans:
        return [(a, b) for a, b in blingfire.text_to_sentences_and_offsets(line)[1]]

    return {"hand-written": sentence_spans, "pysbd": _per_line(by_pysbd), "syntok": _per_line(by_syntok),
            "blingfire": _per_line(by_blingfire)}


def boundary_texts() -> dict[str, list[str]]:
    seeds = [p.read_text(encoding="utf-8") for p in sorted((PROJECT_ROOT / "seeds").glob("*.txt"))]
    news = [p.read_text(encoding="utf-8") for p in sorted(reuters().corpus.glob("*.txt"))]
    squad_paras = [t[p.start : p.end] for f in sorted(datasets.squad().corpus.glob("*.txt"))
                   for t in [f.read_text(encoding="utf-8")] for p in paragraphs(t)]
    return {"seeds": seeds, "reuters": news, "squad": random.Random(0).sample(squad_paras, 500)}


def eval_boundaries(split: dict[str, Callable[..., Spans]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lines: list[str] = []
    for name, texts in boundary_texts().items():
        hand = [set(sentence_spans(t)) for t in texts]
        row: dict[str, Any] = {"texts": len(texts), "hand_sentences": sum(len(h) for h in hand)}
        for sname, fn in split.items():
            if sname == "hand-written":
                continue
            spans = [set(fn(t)) for t in texts]
            same = sum(len(h & s) for h, s in zip(hand, spans, strict=True))
            row[sname] = {"sentences": sum(len(s) for s in spans), "same_as_hand": same}
            shown = 0
            for t, h, s in zip(texts, hand, spans, strict=True):
                for a, b in sorted(s - h):
                    if shown < 15:
                        lines.append(f"[{name}] {sname} only: {t[a:b]!r}")
                        shown += 1
        out[name] = row
        log(f"[boundaries] {name}: {row}")
    (CACHE / "splitters-disagreements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _reader_rows(bench: Bench, index_dir: Any, questions: Sequence[str]) -> list[tuple[str, Any, list[Any]]]:
    retriever = bench.retriever(index_dir)
    vecs = bench.vectors(questions)
    return [(q, v, retriever.search(q, v, bench.settings.default_k)) for q, v in zip(questions, vecs, strict=True)]


def eval_reader(bench: Bench, split: dict[str, Callable[..., Spans]], n: int) -> dict[str, Any]:
    sets = answer_sets(bench, n)
    news = reuters()
    news_dir = bench.index("reuters", news.corpus)
    covered = [q for q in news.questions if q.gold]
    groups = {
        "squad": (_reader_rows(bench, sets.full_dir, [q.text for q in sets.answerable]),
                  [q.answers for q in sets.answerable]),
        "squad_other_articles": (_reader_rows(bench, sets.half_dir, [q.text for q in sets.missing]), None),
        "scifact_claims": (_reader_rows(bench, sets.full_dir, [q.text for q in sets.claims]), None),
        "reuters": (_reader_rows(bench, news_dir, [q.text for q in covered]), [q.answers for q in covered]),
        "reuters_not_covered": (_reader_rows(bench, news_dir, [q.text for q in news.questions if not q.gold]),
                                None),
    }
    assert bench.query is not None
    t = bench.settings.abstain_threshold
    out: dict[str, Any] = {"threshold": t}
    original = answer_module.sentence_spans
    try:
        for sname, fn in split.items():
            answer_module.sentence_spans = fn  # the reader's splitter only
            row: dict[str, Any] = {}
            for gname, (rows, gold) in groups.items():
                answers = [build_answer(q, v, ps, bench.query, t).answer for q, v, ps in rows]
                if gold is None:
                    row[gname] = {"abstain": round(sum(a is None for a in answers) / len(answers), 4)}
                    continue
                given = [(a, g) for a, g in zip(answers, gold, strict=True) if a is not None]
                row[gname] = {
                    "answered": round(len(given) / len(answers), 4),
                    "gold_span": round(sum(any(x.lower() in a.lower() for x in g) for a, g in given) / len(given), 4),
                    "mean_answer_words": round(sum(len(a.split()) for a, _ in given) / len(given), 1),
                }
            out[sname] = row
            log(f"[reader] {sname}: {row}")
    finally:
        answer_module.sentence_spans = original
    return out


def main() -> int:
    bench = Bench.create(Settings(checkpoint_seconds=1e9))
    split = splitters()
    results = {"boundaries": eval_boundaries(split), "reader": eval_reader(bench, split, 1000)}
    out = RESULTS / "splitters.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
