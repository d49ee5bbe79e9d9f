"""The FAISS index, chosen by size: exact inner product below a threshold, HNSW above it.

Vectors are L2-normalised, so inner product is cosine similarity. FAISS ids are row numbers,
which are the chunk ids of the metadata store: one-to-one by construction.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 128


def _faiss():  # noqa: ANN202
    import faiss

    # Batched queries use BLAS above this many queries; keep single queries on the fast path.
    faiss.cvar.distance_compute_blas_threshold = 4
    # One search is small: OpenMP's thread team costs more than it saves, and on a busy 2-core
    # machine its spinning threads made a 100-vector search take 10 ms. Parallelism comes from
    # concurrent requests instead.
    faiss.omp_set_num_threads(1)
    return faiss


def build(vectors: np.ndarray, hnsw_threshold: int):  # noqa: ANN201 - faiss.Index
    faiss = _faiss()
    dim = vectors.shape[1]
    if len(vectors) > hnsw_threshold:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building is one big job: use every core
        try:
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        finally:
            faiss.omp_set_num_threads(1)
    return index


def kind(index) -> str:  # noqa: ANN001
    return "hnsw" if "HNSW" in type(index).__name__ else "flat"


def save(index, path: Path) -> None:  # noqa: ANN001
    _faiss().write_index(index, str(path))


def load(path: Path):  # noqa: ANN201
    faiss = _faiss()
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        index = faiss.read_index(str(path))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def search(index, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Top ``n`` (ids, scores) per query; missing slots (fewer vectors than n) are dropped."""
    n = min(n, index.ntotal)
    if n <= 0:
        empty = np.zeros((len(queries), 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), n)
    return ids, scores
