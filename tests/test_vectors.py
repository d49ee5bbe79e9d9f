"""Vector search: exact top-n (ties, caps, batching), and the index kind chosen by size."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from service import vectors


def unit_rows(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(matrix: np.ndarray, query: np.ndarray, n: int) -> list[int]:
    scores = matrix @ query
    return sorted(range(len(matrix)), key=lambda i: (-scores[i], i))[:n]


def test_top_n_is_the_sorted_best_with_ties_broken_by_smaller_id() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.9, 0.5]], np.float32)
    ids, best = vectors.top_n(scores, 4)
    assert ids.tolist() == [[1, 4, 0, 2]]
    np.testing.assert_allclose(best, [[0.9, 0.9, 0.5, 0.5]])
    ids, _ = vectors.top_n(scores, 99)  # capped at the number of columns
    assert ids.tolist() == [[1, 4, 0, 2, 5, 3]]
    assert vectors.top_n(scores, 0)[0].shape == (1, 0)


def test_exact_index_matches_brute_force_single_and_batched() -> None:
    matrix, queries = unit_rows(500), unit_rows(7, seed=1)
    index = vectors.ExactIndex(matrix)
    batch_ids, batch_scores = index.search(queries, 20)
    for q, ids, scores in zip(queries, batch_ids, batch_scores, strict=True):
        assert ids.tolist() == brute_force(matrix, q, 20)
        np.testing.assert_allclose(scores, matrix[ids] @ q, rtol=1e-5)
        single_ids, _ = index.search(q[None, :], 20)
        assert single_ids[0].tolist() == ids.tolist()


def test_exact_index_on_no_vectors_returns_nothing() -> None:
    index = vectors.ExactIndex(np.zeros((0, 16), np.float32))
    ids, scores = index.search(unit_rows(1), 10)
    assert ids.shape == (1, 0) and scores.shape == (1, 0)
    assert index.search(unit_rows(3), 10)[0].shape == (3, 0)


def test_concurrent_searches_are_batched_and_each_gets_its_own_results() -> None:
    matrix, queries = unit_rows(2000), unit_rows(32, seed=2)
    index = vectors.ExactIndex(matrix)
    got: dict[int, list[int]] = {}

    def search(i: int) -> None:
        got[i] = index.search(queries[i][None, :], 5 + i % 7)[0][0].tolist()

    threads = [threading.Thread(target=search, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, q in enumerate(queries):
        assert got[i] == brute_force(matrix, q, 5 + i % 7)  # each caller's own n, own query


@pytest.mark.parametrize(("count", "threshold", "kind"), [(300, 300, "exact"), (301, 300, "hnsw")])
def test_index_kind_is_chosen_by_size(tmp_path: Path, count: int, threshold: int, kind: str) -> None:
    matrix = unit_rows(count)
    np.save(tmp_path / "vectors.npy", matrix)
    written_kind, files = vectors.write(tmp_path, matrix, vectors.uses_hnsw(count, threshold))
    assert written_kind == kind
    assert (tmp_path / vectors.FAISS_FILE).exists() == (kind == "hnsw") == bool(files)
    index = vectors.open_index(tmp_path, written_kind, np.load(tmp_path / "vectors.npy", mmap_mode="r"))
    assert index.kind == kind and index.ntotal == count
    ids, scores = index.search(matrix[:10], 5)
    assert ids[:, 0].tolist() == list(range(10))  # every vector finds itself first
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)


def test_format_1_flat_snapshots_are_searched_exactly(tmp_path: Path) -> None:
    matrix = unit_rows(50)
    index = vectors.open_index(tmp_path, "flat", matrix)
    assert index.kind == "exact"
    with pytest.raises(ValueError, match="unknown vector index"):
        vectors.open_index(tmp_path, "ivf", matrix)


def test_the_stored_gemm_graph_is_the_one_onnx_builds() -> None:
    assert vectors._GEMM_MODEL == vectors.gemm_model()


def test_one_query_and_a_batch_get_the_same_exact_results() -> None:
    matrix = unit_rows(500, seed=3)
    queries = unit_rows(4, seed=4)
    index = vectors.ExactIndex(matrix)
    batch_ids, batch_scores = index.search(queries, 7)
    for row, q in enumerate(queries):
        ids, scores = index.search(q[None, :], 7)
        assert ids[0].tolist() == batch_ids[row].tolist() == brute_force(matrix, q, 7)
        np.testing.assert_allclose(scores[0], batch_scores[row], rtol=1e-5)


@pytest.mark.parametrize("sizes", [[7], [5, 0, 300], [1000, 3, 3, 250, 17, 600, 2]])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("halves_from", [0, vectors.HALVES_MIN_ROWS])
def test_several_matrices_score_as_their_products(sizes: list[int], batch: int, halves_from: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments are scored in two single-threaded halves on two threads (from ``HALVES_MIN_ROWS``
    rows), else on the calling thread; each matrix's scores come back in its own place, equal to the
    plain product."""
    monkeypatch.setattr(vectors, "HALVES_MIN_ROWS", halves_from)
    rng = np.random.default_rng(len(sizes) * 10 + batch)
    matrices = [rng.standard_normal((n, 16)).astype(np.float32) for n in sizes]
    queries = rng.standard_normal((batch, 16)).astype(np.float32)
    got = vectors.exact_scores_many(queries, matrices)
    assert [g.shape for g in got] == [(batch, n) for n in sizes]
    for g, m in zip(got, matrices, strict=True):
        np.testing.assert_allclose(g, queries @ m.T, rtol=1e-5, atol=1e-5)


def test_halves_cover_every_row_once_in_equal_halves() -> None:
    sizes = [1000, 3, 0, 250, 17, 600, 2]
    matrices = [np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 1000 * i for i, n in enumerate(sizes)]
    first, second = vectors._halves(matrices)
    assert abs(sum(len(m) for _i, m in first) - sum(len(m) for _i, m in second)) <= 1
    for i, m in enumerate(matrices):  # each matrix is its pieces, in order, without copies
        pieces = [p for j, p in first + second if j == i]
        np.testing.assert_array_equal(np.concatenate(pieces) if pieces else m[:0], m)
        assert all(np.shares_memory(p, m) for p in pieces)


def test_several_matrices_scored_from_many_threads_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent callers share one helper thread: whoever finds it busy scores both halves itself,
    and every caller gets its own scores."""
    monkeypatch.setattr(vectors, "HALVES_MIN_ROWS", 0)
    rng = np.random.default_rng(7)
    matrices = [rng.standard_normal((n, 16)).astype(np.float32) for n in (400, 90, 300, 5)]
    queries = [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(8)]
    results: dict[int, list[np.ndarray]] = {}

    def worker(i: int) -> None:
        for _ in range(20):
            results[i] = vectors.exact_scores_many(queries[i], matrices)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, q in enumerate(queries):
        for got, m in zip(results[i], matrices, strict=True):
            np.testing.assert_allclose(got, q @ m.T, rtol=1e-5, atol=1e-5)


def test_an_extended_graph_returns_live_rows_only_scored_exactly(tmp_path: Path) -> None:
    """A graph extended from another keeps the base's nodes (renumbered to the new rows, dead ones
    never returned) and adds the new rows as nodes; plain, selected and n > rows searches agree with
    brute force over the live rows."""
    old = unit_rows(300, seed=1)
    base = tmp_path / "base"
    base.mkdir()
    vectors.write(base, old, True)
    rng = np.random.default_rng(2)
    dead = rng.random(300) < 0.2
    kept = np.flatnonzero(~dead)
    new = unit_rows(120, seed=3)
    # the new segment's rows: the kept old rows and the new ones, shuffled (a merge sorts by source)
    order = rng.permutation(len(kept) + len(new))
    matrix = np.concatenate([old[kept], new])[np.argsort(order)]
    base_rows = np.full(300, -1, np.int64)
    base_rows[kept] = order[: len(kept)]
    folder = tmp_path / "extended"
    folder.mkdir()
    kind, files = vectors.write(folder, matrix, vectors.GraphExtension(base, base_rows))
    assert kind == "hnsw" and files == [vectors.FAISS_FILE, vectors.ROWS_FILE]
    index = vectors.open_index(folder, kind, matrix)
    assert isinstance(index, vectors.HnswIndex)
    assert index.ntotal == len(matrix) and index.nodes == 300 + len(new)
    queries = unit_rows(40, seed=4)
    ids, scores = index.search(queries, 10)
    assert ids.min() >= 0 and ids.max() < len(matrix)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ matrix.T, ids, axis=1), rtol=1e-5, atol=1e-6)
    hits = sum(len(set(ids[i].tolist()) & set(brute_force(matrix, q, 10))) for i, q in enumerate(queries))
    assert hits >= 0.97 * 10 * len(queries)
    ids, _ = index.search(matrix[:20], 1)
    assert ids[:, 0].tolist() == list(range(20))  # every row finds itself, none finds a dead node
    mask = rng.random(len(matrix)) < 0.5
    ids, _ = index.search_selected(queries, 10, index.selection(mask))
    assert mask[ids[ids >= 0]].all()
    ids, _ = index.search(queries[:2], 10_000)  # more than there are: capped at the live rows
    assert ids.shape == (2, len(matrix)) and len(set(ids[0][ids[0] >= 0].tolist())) == (ids[0] >= 0).sum()


def test_a_node_row_map_that_is_not_one_node_per_row_is_refused(tmp_path: Path) -> None:
    matrix = unit_rows(20)
    vectors.write(tmp_path, matrix, True)
    np.save(tmp_path / vectors.ROWS_FILE, np.array([0, 0] + list(range(2, 20)), np.int64))
    with pytest.raises(ValueError, match="one node per row"):
        vectors.open_index(tmp_path, "hnsw", matrix)
    np.save(tmp_path / vectors.ROWS_FILE, np.arange(19, dtype=np.int64))
    with pytest.raises(ValueError, match="node rows"):
        vectors.open_index(tmp_path, "hnsw", matrix)
