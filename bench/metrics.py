"""Ranking metrics, computed the way BEIR (pytrec_eval) and the SQuAD citation check define them."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence


def unique(items: Iterable[Hashable]) -> list:
    """First occurrence of each item, order kept (documents ranked by their best paragraph)."""
    return list(dict.fromkeys(items))


def ndcg_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains (rel / log2(rank + 1)), as pytrec_eval's ``ndcg_cut``."""
    dcg = sum(qrels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in qrels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int = 100) -> float:
    relevant = {d for d, r in qrels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def hit_at_k(ranked: Sequence[Hashable], gold: Hashable, k: int) -> float:
    return 1.0 if gold in ranked[:k] else 0.0


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
