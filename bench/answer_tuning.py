"""Tune the reader's weights (``service.answer.Weights``) on the answer benchmark's evidence.

    python -m bench.answer_tuning            # grid over the weights, one line per setting

Collects every candidate sentence's evidence once (``sentence_evidence``) for the same question
sets as ``bench.quality.eval_answers`` (SQuAD answerable, SQuAD questions whose article is not
indexed, SciFact claims) and for the Reuters news set, then scores each weight setting without model work: the threshold is
the highest that still answers 95% of answerable questions, and the table gives how often the
evidence score's own best sentence holds a gold span and how often unanswerable questions are refused.
The weights decide the confidence (answer or abstain); which sentence the service answers with is
``service.sentence_choice``'s ranking, fitted and checked by ``python -m bench.reader_training``.
"""

from __future__ import annotations

import itertools
import pickle
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.answer import Evidence, Weights, sentence_evidence
from service.config import Settings

from .quality import CACHE, Bench, answer_sets
from .reuters import reuters


def collect(bench: Bench, index_dir: Any, questions: Sequence[str]) -> list[list[Evidence]]:
    retriever = bench.retriever(index_dir)
    assert bench.query is not None
    vecs = bench.vectors(questions)
    out = []
    for q, v in zip(questions, vecs, strict=True):
        passages = retriever.search(q, v, bench.settings.default_k)
        out.append(sentence_evidence(q, v, passages, bench.query))
    return out


def evidence(n: int = 1000) -> dict[str, Any]:
    bench = Bench.create(Settings(checkpoint_seconds=1e9))
    sets = answer_sets(bench, n)
    full_dir, half_dir, answerable, missing, claims = (sets.full_dir, sets.half_dir, sets.answerable, sets.missing,
                                                       sets.claims)
    news = reuters()
    news_dir = bench.index("reuters", news.corpus)
    key = CACHE / f"answer-evidence-{full_dir.name}-{half_dir.name}-{news_dir.name}-{n}.pickle"
    if key.exists():
        return pickle.loads(key.read_bytes())
    covered = [q for q in news.questions if q.gold]
    out = {
        "pos": collect(bench, full_dir, [q.text for q in answerable]),
        "gold": [q.answers for q in answerable],
        "neg_squad": collect(bench, half_dir, [q.text for q in missing]),
        "neg_claims": collect(bench, full_dir, [q.text for q in claims]),
        "news_pos": collect(bench, news_dir, [q.text for q in covered]),
        "news_gold": [q.answers for q in covered],
        "news_neg": collect(bench, news_dir, [q.text for q in news.questions if not q.gold]),
    }
    key.write_bytes(pickle.dumps(out))
    return out


def evaluate(ev: dict[str, Any], w: Weights, answered: float = 0.95) -> dict[str, float]:
    def best(sentences: list[Evidence]) -> tuple[float, str]:
        if not sentences:
            return 0.0, ""
        scored = max(sentences, key=lambda e: e.score(w))
        return scored.score(w), scored.text

    pos = [best(s) for s in ev["pos"]]
    scores = np.array([p[0] for p in pos])
    t = float(np.quantile(scores, 1 - answered))
    holds = [any(a.lower() in text.lower() for a in gold) for (_s, text), gold in zip(pos, ev["gold"], strict=True)]
    ans = scores >= t
    neg_squad = np.array([best(s)[0] for s in ev["neg_squad"]])
    neg_claims = np.array([best(s)[0] for s in ev["neg_claims"]])
    out = {"threshold": round(t, 3), "holds": round(float(np.mean([h for h, a in zip(holds, ans, strict=True) if a])), 4),
           "holds_all": round(float(np.mean(holds)), 4),
           "abstain_other": round(float(np.mean(neg_squad < t)), 4),
           "abstain_claims": round(float(np.mean(neg_claims < t)), 4)}
    if "news_pos" in ev:  # Reuters at the threshold SQuAD chose
        npos = [best(s) for s in ev["news_pos"]]
        nholds = [any(a.lower() in text.lower() for a in gold) and score >= t
                  for (score, text), gold in zip(npos, ev["news_gold"], strict=True)]
        nans = [score >= t for score, _ in npos]
        out |= {"news_answered": round(float(np.mean(nans)), 4),
                "news_holds": round(sum(nholds) / max(1, sum(nans)), 4),
                "news_abstain": round(float(np.mean([best(s)[0] < t for s in ev["news_neg"]])), 4)}
    return out


def main() -> int:
    ev = evidence()
    grid = itertools.product((0.3, 0.4), (0.1, 0.2), (0.4, 0.5), (0.0, 0.3, 0.5), (0.0, 0.05, 0.1, 0.15))
    rows = []
    for s, p, t, c, a in grid:
        w = Weights(s, p, t, c, a)
        r = evaluate(ev, w)
        rows.append((r["holds"], w, r))
        print(w, r, file=sys.stderr, flush=True)
    rows.sort(key=lambda x: -x[0])
    print("baseline", evaluate(ev, Weights()))
    for _h, w, r in rows[:15]:
        print(w, r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
