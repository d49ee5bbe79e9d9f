"""Fit and check the reader's sentence choice (``service.sentence_choice.CHOICE_WEIGHTS``).

    python -m bench.reader_training            # collect (cached), fit on the training split, report
    python -m bench.reader_training --failures 30   # also print the held-out questions it gets wrong

Every candidate sentence of each question's top passages (what the engine's reader sees, as
``bench.quality.eval_answers`` retrieves them) is collected once and cached. The weights are fitted
on **SQuAD questions of the odd-numbered articles that are not in the answer benchmark's sample**
(2,000 of them): a softmax over each question's candidates, pushed toward the sentences holding a
gold span, with a small L2 penalty. They are then checked, without refitting, on the benchmark's
own 1,000-question sample (all articles, and the even-numbered articles alone, whose questions
and paragraphs the fit never saw), on the Reuters news questions and on the seed questions.
The answer's confidence (and so answered / abstain) is the reader's evidence score, which this fit
does not change.
"""

from __future__ import annotations

import argparse
import pickle
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from service.answer import Evidence, sentence_evidence
from service.config import PROJECT_ROOT, Settings
from service.retrieval import Passage
from service.sentence_choice import CHOICE_WEIGHTS, FEATURES, feature_matrix

from . import datasets
from .quality import CACHE, Bench, answer_sets
from .reuters import reuters


@dataclass
class Item:
    question: str
    passages: list[Passage]
    evidence: list[Evidence]
    answers: tuple[str, ...] = ()  # gold spans (empty: judged by paragraph, or unanswerable)
    gold: tuple[tuple[str, int], ...] = ()  # accepted (source, paragraph)
    group: str = ""  # "train", "odd", "even", "reuters", "seeds", "neg_squad", "neg_claims", "neg_news"


def _collect(bench: Bench, index_dir: Any, questions: Sequence[str], k: int) -> list[tuple[list[Passage], list[Evidence]]]:
    retriever = bench.retriever(index_dir)
    assert bench.query is not None
    vecs = bench.vectors(questions)
    out = []
    for q, v in zip(questions, vecs, strict=True):
        passages = retriever.search(q, v, k)
        out.append((passages, sentence_evidence(q, v, passages, bench.query)))
    return out


def collect(n: int = 1000, n_train: int = 2000) -> list[Item]:
    bench = Bench.create(Settings(checkpoint_seconds=1e9))
    k = bench.settings.default_k
    sets = answer_sets(bench, n)
    full = datasets.squad()
    news = reuters()
    news_dir = bench.index("reuters", news.corpus)
    seeds_dir = bench.index("seeds", PROJECT_ROOT / "seeds")
    key = CACHE / f"reader-{sets.full_dir.name}-{sets.half_dir.name}-{news_dir.name}-{seeds_dir.name}-{n}-{n_train}.pickle"
    if key.exists():
        return [Item(**d) for d in pickle.loads(key.read_bytes())]
    parity = {name: i % 2 for i, name in enumerate(full.articles)}
    in_sample = {q.id for q in sets.answerable}
    pool = [q for q in full.questions if parity[q.source] == 1 and q.id not in in_sample]
    train = random.Random(4).sample(pool, n_train)
    items = []
    for group_of, qs, where in (
        (lambda q: "train", train, sets.full_dir),
        (lambda q: "odd" if parity[q.source] else "even", sets.answerable, sets.full_dir),
    ):
        for q, (ps, ev) in zip(qs, _collect(bench, where, [q.text for q in qs], k), strict=True):
            items.append(Item(q.text, ps, ev, q.answers, ((q.source, q.paragraph),), group_of(q)))
    for qs, where, group in ((sets.missing, sets.half_dir, "neg_squad"), (sets.claims, sets.full_dir, "neg_claims")):
        for q, (ps, ev) in zip(qs, _collect(bench, where, [q.text for q in qs], k), strict=True):
            items.append(Item(q.text, ps, ev, group=group))
    nq = news.questions
    for q, (ps, ev) in zip(nq, _collect(bench, news_dir, [q.text for q in nq], k), strict=True):
        items.append(Item(q.text, ps, ev, q.answers, q.gold, "reuters" if q.gold else "neg_news"))
    from tests.test_seed_questions import ANSWERABLE

    seed_qs = [q for q, _s, _a in ANSWERABLE]
    for (q, source, accepted), (ps, ev) in zip(ANSWERABLE, _collect(bench, seeds_dir, seed_qs, 3), strict=True):
        items.append(Item(q, ps, ev, (), tuple((source, a) for a in accepted), "seeds"))
    key.write_bytes(pickle.dumps([vars(it) for it in items]))  # plain dicts: readable under any __main__
    return items


def labels(item: Item) -> np.ndarray:
    """1 for a candidate that answers: holds a gold span, or (seeds) lies in an accepted paragraph."""
    if item.answers:
        return np.array([any(a.lower() in e.text.lower() for a in item.answers) for e in item.evidence], float)
    accepted = set(item.gold)
    return np.array([(item.passages[e.passage].source, item.passages[e.passage].paragraph) in accepted
                     for e in item.evidence], float)


def fit(items: Sequence[Item], l2: float = 1e-3) -> dict[str, float]:
    """Softmax over each question's candidates; maximise the probability of its answering ones."""
    data = []
    for it in items:
        y = labels(it)
        if it.evidence and 0 < y.sum() < len(y):  # questions with no answer among candidates teach nothing
            x = feature_matrix(it.question, it.evidence, it.passages)
            data.append((x, y))
    mu = np.mean(np.vstack([x for x, _ in data]), axis=0)
    sd = np.std(np.vstack([x for x, _ in data]), axis=0) + 1e-9

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(w)
        for x, y in data:
            z = ((x - mu) / sd) @ w
            z -= z.max()
            p = np.exp(z)
            p /= p.sum()
            pos = (p * y).sum()
            total -= np.log(pos + 1e-12)
            q = p * y / (pos + 1e-12)  # posterior over the answering candidates
            grad -= ((x - mu) / sd).T @ (q - p)
        n = len(data)
        return total / n + l2 * float(w @ w), grad / n + 2 * l2 * w

    res = minimize(loss, np.zeros(len(FEATURES)), jac=True, method="L-BFGS-B")
    w = res.x / sd  # back to raw features (the shift by mu does not change a question's order)
    scale = float(np.abs(w).max()) or 1.0
    return {name: round(float(v / scale), 4) for name, v in zip(FEATURES, w, strict=True)}


def evaluate(items: Sequence[Item], weights: dict[str, float] | None, threshold: float) -> dict[str, Any]:
    """Per group: answered rate, and the share of answered questions whose chosen sentence answers
    (holds a gold span; seeds: lies in an accepted paragraph). ``weights=None``: the evidence score
    chooses (the reader before this module)."""
    w = None if weights is None else np.array([weights.get(f, 0.0) for f in FEATURES])
    groups: dict[str, dict[str, list[float]]] = {}
    for it in items:
        g = groups.setdefault(it.group, {"answered": [], "holds": []})
        if not it.evidence:
            g["answered"].append(0.0)
            continue
        confidence = max(e.score() for e in it.evidence)
        answered = confidence >= threshold
        g["answered"].append(float(answered))
        if not answered or it.group.startswith("neg"):
            continue
        if w is None:
            choice = max(range(len(it.evidence)), key=lambda i: it.evidence[i].score())
        else:
            choice = int(np.argmax(feature_matrix(it.question, it.evidence, it.passages) @ w))
        g["holds"].append(float(labels(it)[choice]))
    out: dict[str, Any] = {}
    for name, g in groups.items():
        row = {"n": len(g["answered"]), "answered": round(float(np.mean(g["answered"])), 4)}
        if g["holds"]:
            row["holds"] = round(float(np.mean(g["holds"])), 4)
        out[name] = row
    sq = [groups[name] for name in ("odd", "even") if name in groups]
    if sq:  # the benchmark's answer sample: both halves together
        holds = [h for g in sq for h in g["holds"]]
        out["squad_sample"] = {"n": sum(len(g["answered"]) for g in sq),
                               "answered": round(float(np.mean([a for g in sq for a in g["answered"]])), 4),
                               "holds": round(float(np.mean(holds)), 4) if holds else 0.0}
    return out


def failures(items: Sequence[Item], weights: dict[str, float], n: int, group: str = "even") -> None:
    w = np.array([weights.get(f, 0.0) for f in FEATURES])
    shown = 0
    for it in items:
        if it.group != group or not it.evidence or max(e.score() for e in it.evidence) < 0.41:
            continue
        x = feature_matrix(it.question, it.evidence, it.passages)
        s = x @ w
        choice = int(np.argmax(s))
        y = labels(it)
        if y[choice]:
            continue
        print(f"\nQ: {it.question}   gold: {it.answers[:2]} {it.gold}")
        for i in np.argsort(-s)[:4]:
            e = it.evidence[i]
            p = it.passages[e.passage]
            mark = "*" if y[i] else " "
            print(f" {mark} {s[i]:.3f} p{e.passage} ¶{p.paragraph} sim {e.similarity:.2f} cov {e.coverage:.2f} "
                  f"kind {e.holds_kind:.0f}: {e.text[:150]}")
        gold_rows = [i for i in range(len(y)) if y[i]]
        if gold_rows and gold_rows[0] not in np.argsort(-s)[:4]:
            i = gold_rows[0]
            e = it.evidence[i]
            print(f" * {s[i]:.3f} p{e.passage} sim {e.similarity:.2f} cov {e.coverage:.2f}: {e.text[:150]}")
        shown += 1
        if shown >= n:
            break


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reader_training", description=__doc__.split("\n\n")[0])
    p.add_argument("--failures", type=int, default=0, help="print N held-out questions the fitted choice gets wrong")
    p.add_argument("--l2", type=float, default=1e-3)
    args = p.parse_args(argv)
    items = collect()
    threshold = Settings().abstain_threshold
    train = [it for it in items if it.group == "train"]
    fitted = fit(train, args.l2)
    print("fitted:", fitted)
    for label, w in (("evidence score (before)", None), ("CHOICE_WEIGHTS (service)", CHOICE_WEIGHTS),
                     ("fitted now", fitted)):
        r = evaluate(items, w, threshold)
        print(f"{label:26s}", " ".join(f"{g}: {v}" for g, v in sorted(r.items())), flush=True)
    if args.failures:
        failures(items, fitted, args.failures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
