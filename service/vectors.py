"""Vector search, chosen by size: exact below a threshold, FAISS HNSW above it.

Vectors are L2-normalised, so inner product is cosine similarity. Row ``i`` is chunk id ``i`` of
the metadata store: one-to-one by construction.

* **Exact** (up to ``hnsw_threshold`` vectors): a matrix product over ``vectors.npy``, memory-
  mapped (opening costs nothing and the pages are the kernel's to share and evict); no second
  copy of the vectors is written. Queries, one or many, are a matrix product in onnxruntime's
  GEMM (MLAS): the query encoder runs in onnxruntime too, and alternating it with numpy's BLAS
  made the two thread pools collide (one query: encode 11 ms + BLAS 5.8 ms, against
  6.6 ms + 7.0 ms with both in onnxruntime, 2 cores). FAISS's ``IndexFlatIP`` took 16 ms for
  one query over 67k vectors (its bundled BLAS is a generic build). Concurrent queries (the
  engine batches them, see ``service.retrieval.DenseQueries``) are one product that reads the
  vectors once for the batch; MLAS does that twice as fast as OpenBLAS, which spends most of a
  product with few query rows repacking the large matrix (8 queries: 14 ms against 30 ms).
* **HNSW** (above the threshold): ``faiss.IndexHNSWFlat`` in ``vectors.faiss``, whose stored
  vectors are memory-mapped where FAISS allows it (``IO_FLAG_MMAP_IFC``). A graph can be
  **extended** instead of built again (``GraphExtension``): the new rows are added as nodes to a
  copy of an existing graph, and ``graph_rows.npy`` maps each node to its row (-1 for a node whose
  chunk is gone; FAISS cannot remove a node from an HNSW graph, so a dead node stays as a waypoint
  and is never returned).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from .files import read_array

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future, ThreadPoolExecutor

    import faiss

T = TypeVar("T")
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 128
FAISS_FILE = "vectors.faiss"
ROWS_FILE = "graph_rows.npy"  # an extended graph's node -> row map


class VectorIndex(Protocol):
    kind: str  # "exact" or "hnsw"

    @property
    def ntotal(self) -> int: ...

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` (ids, scores) per query row, best first; ``n`` is capped at the index size."""
        ...


_omp_set = threading.local()  # whether this thread's OpenMP team is set to one thread


def _faiss() -> ModuleType:  # the faiss module, imported on first use
    import faiss

    # One search is small: OpenMP's thread team costs more than it saves, and on a busy 2-core
    # machine its spinning threads made a 100-vector search take 10 ms. Parallelism comes from
    # concurrent requests instead. The setting is per thread, made once in each.
    if not getattr(_omp_set, "done", False):
        faiss.omp_set_num_threads(1)
        _omp_set.done = True
    return faiss


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best columns of each row of ``scores`` (ids, scores), best first; ties by smaller id."""
    rows, total = scores.shape
    n = min(n, total)
    if n <= 0:
        return np.zeros((rows, 0), np.int64), np.zeros((rows, 0), np.float32)
    if n < total:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.broadcast_to(np.arange(total), (rows, total))
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return ids, np.take_along_axis(picked, order, axis=1).astype(np.float32)


class ExactIndex:
    """Exact inner-product search over a (memory-mapped) float32 matrix."""

    kind = "exact"

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    @property
    def ntotal(self) -> int:
        return int(self.matrix.shape[0])

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.matrix.shape[1])
        if not self.ntotal:
            scores = np.zeros((len(queries), 0), np.float32)
        else:
            scores = _batch_product(queries, self.matrix)
        return top_n(scores, n)


def gemm_model() -> bytes:
    """A one-node ONNX graph, ``scores = queries @ matrix.T``, built with the ``onnx`` package.

    The service keeps its serialized form in ``_GEMM_MODEL`` instead (importing ``onnx`` costs a
    cold ``ask`` 0.1 s); a test checks that the two are the same bytes.
    """
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["queries", "matrix"], ["scores"], transB=1)], "exact_search",
        [helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["batch", "dim"]),
         helper.make_tensor_value_info("matrix", TensorProto.FLOAT, ["rows", "dim"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "rows"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


_GEMM_MODEL = bytes.fromhex(
    "08083aa5010a2e0a07717565726965730a066d6174726978120673636f726573220447656d6d2a0d0a067472616e73"
    "421801a00102120c65786163745f7365617263685a210a077175657269657312160a14080112100a07120562617463"
    "680a05120364696d5a1f0a066d617472697812150a130801120f0a061204726f77730a05120364696d62210a067363"
    "6f72657312170a15080112110a07120562617463680a061204726f777342040a001011"
)


@lru_cache(maxsize=1)
def _gemm_session() -> Any:  # onnxruntime.InferenceSession (onnxruntime has no type stubs)
    """``gemm_model()`` under onnxruntime (threads as the query graph's), with the matrix as an
    input (no copy)."""
    from .runtime import onnx_session

    return onnx_session(_GEMM_MODEL)


def _batch_product(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return _gemm_session().run(None, {"queries": queries, "matrix": matrix})[0]


def gemm_many_model(k: int) -> bytes:
    """``scores_i = queries @ matrix_i.T`` for ``k`` matrices in one ONNX graph (an index made of
    several segments is scored in one onnxruntime run: each run wakes the thread pool, which on a
    busy machine costs more than a small segment's product)."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Gemm", ["queries", f"matrix_{i}"], [f"scores_{i}"], transB=1) for i in range(k)]
    inputs = [helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["batch", "dim"])] + [
        helper.make_tensor_value_info(f"matrix_{i}", TensorProto.FLOAT, [f"rows_{i}", "dim"]) for i in range(k)]
    outputs = [helper.make_tensor_value_info(f"scores_{i}", TensorProto.FLOAT, ["batch", f"rows_{i}"])
               for i in range(k)]
    model = helper.make_model(helper.make_graph(nodes, f"exact_search_{k}", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@lru_cache(maxsize=32)
def _gemm_many_session(k: int) -> Any:
    """``gemm_many_model(k)`` on one thread: each half of :func:`exact_scores_many` runs on its own."""
    from .runtime import onnx_session

    return onnx_session(gemm_many_model(k), threads=1)


HALVES_MIN_ROWS = 16_384  # fewer rows are scored on the calling thread: 2,480 rows took 0.20 ms there, 0.32 ms in halves
_HELPER_FREE = threading.Lock()  # held while the helper thread scores a request's second half


@lru_cache(maxsize=1)
def _second_thread(pid: int) -> ThreadPoolExecutor:
    """One helper thread per process (keyed by pid: a forked child does not inherit the thread)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(1, thread_name_prefix="exact-search")


def on_second_thread(work: Callable[[], T]) -> Future[T] | None:
    """``work`` started on the helper thread when it is free; None when another request holds it (or
    there is one core): the caller then does the work itself rather than queue behind it."""
    from .runtime import intra_op_threads

    if intra_op_threads() < 2 or not _HELPER_FREE.acquire(blocking=False):
        return None

    def run() -> T:
        try:
            return work()
        finally:
            _HELPER_FREE.release()

    return _second_thread(os.getpid()).submit(run)


def _halves(matrices: list[np.ndarray]) -> tuple[list[tuple[int, np.ndarray]], list[tuple[int, np.ndarray]]]:
    """The matrices' rows in two halves of equal rows, as (matrix position, rows) pieces in order: at
    most one matrix is cut in two (a slice of rows, no copy)."""
    cut = sum(len(m) for m in matrices) // 2
    first: list[tuple[int, np.ndarray]] = []
    second: list[tuple[int, np.ndarray]] = []
    row = 0
    for i, m in enumerate(matrices):
        mine = min(max(cut - row, 0), len(m))  # rows of this matrix before the cut
        if mine:
            first.append((i, m[:mine]))
        if mine < len(m):
            second.append((i, m[mine:]))
        row += len(m)
    return first, second


def exact_scores_many(queries: np.ndarray, matrices: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`exact_scores` for several matrices (an index's segments), their rows split in two equal
    halves, each scored in one single-threaded onnxruntime run, one of them on a second thread.

    The two threads meet once per call. Running the matrices as the nodes of one two-threaded graph
    made them meet once per matrix: on a busy machine each meeting waits for a descheduled thread,
    and six segments' products took 22 ms against 14 ms for the same rows as one matrix (load 5 on
    2 cores); split in halves they take 8-12 ms."""
    queries = np.ascontiguousarray(queries, np.float32)
    if len(matrices) == 1:
        return [exact_scores(queries, matrices[0])]
    if sum(len(m) for m in matrices) < HALVES_MIN_ROWS:  # too few rows to pay for the hand-over
        return exact_scores_one_thread(queries, matrices)

    def run(group: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        return exact_scores_one_thread(queries, [m for _i, m in group]) if group else []

    first, second = _halves(matrices)
    later = on_second_thread(partial(run, second)) if second else None
    if later is None:
        first, second = first + second, []
    pieces: list[list[np.ndarray]] = [[] for _ in matrices]
    for (i, _m), scores in zip(first, run(first), strict=True):
        pieces[i].append(scores)
    if later is not None:
        for (i, _m), scores in zip(second, later.result(), strict=True):
            pieces[i].append(scores)
    return [p[0] if len(p) == 1 else np.concatenate(p, axis=1) if p else np.zeros((len(queries), 0), np.float32)
            for p in pieces]


def exact_scores_one_thread(queries: np.ndarray, matrices: list[np.ndarray]) -> list[np.ndarray]:
    """``queries @ matrix.T`` for each matrix, all in one single-threaded onnxruntime run."""
    queries = np.ascontiguousarray(queries, np.float32)
    feed = {"queries": queries, **{f"matrix_{j}": m for j, m in enumerate(matrices)}}
    return list(_gemm_many_session(len(matrices)).run(None, feed))


def exact_scores(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``queries @ matrix.T`` (float32, [len(queries), rows]) in the same GEMM as exact search."""
    if not len(matrix):
        return np.zeros((len(queries), 0), np.float32)
    return np.asarray(_batch_product(np.ascontiguousarray(queries, np.float32), matrix), np.float32)


class HnswIndex:
    """FAISS HNSW (approximate); results below rank ``efSearch`` are the graph's best effort.

    ``rows`` maps graph nodes to rows when the graph was extended (``GraphExtension``); dead nodes
    (-1) are walked through but never returned. Without it node ``i`` is row ``i``."""

    kind = "hnsw"

    def __init__(self, index: faiss.IndexHNSW, rows: np.ndarray | None = None) -> None:
        self.index = index
        self.index.hnsw.efSearch = HNSW_EF_SEARCH
        self.rows = rows
        self._rows_total = int(index.ntotal)
        self._live: tuple[Any, np.ndarray, dict[int, Any]] | None = None
        if rows is not None:
            if len(rows) != index.ntotal:
                raise ValueError(f"{len(rows)} node rows for a graph of {index.ntotal} nodes")
            placed = rows[rows >= 0]
            self._rows_total = len(placed)
            if len(placed) and (int(placed.max()) >= len(placed)
                                or np.bincount(placed, minlength=len(placed)).max() > 1):
                raise ValueError("the graph's node rows are not one node per row")
            self._live = self._bitmap(rows >= 0)

    @property
    def ntotal(self) -> int:
        """Rows searched (dead nodes of an extended graph not counted)."""
        return self._rows_total

    @property
    def nodes(self) -> int:
        """Nodes in the graph, dead ones included."""
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self._live is not None:
            return self.search_selected(queries, n, self._live)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = min(n, self.ntotal)
        if n <= 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        scores, ids = self.index.search(queries, n)
        return ids.astype(np.int64), scores

    @staticmethod
    def _bitmap(nodes: np.ndarray) -> tuple[Any, np.ndarray, dict[int, Any]]:
        bits = np.packbits(np.asarray(nodes, bool), bitorder="little")
        return _faiss().IDSelectorBitmap(bits), bits, {}  # the selector, its bits, its search parameters by efSearch

    def per_node(self, per_row: np.ndarray, dead: Any) -> np.ndarray:
        """``per_row`` (one value per row) as one value per graph node, ``dead`` for dead nodes."""
        if self.rows is None:
            return per_row
        return np.where(self.rows >= 0, per_row[np.maximum(self.rows, 0)], dead)

    def selection(self, mask: np.ndarray) -> tuple[Any, np.ndarray, dict[int, Any]]:
        """A FAISS selector admitting the rows where ``mask`` holds, with the bitmap it reads (keep
        both): built once per mask, one bit test per visited node."""
        return self._bitmap(self.per_node(np.asarray(mask, bool), False))

    def search_selected(self, queries: np.ndarray, n: int, selection: tuple[Any, np.ndarray, dict[int, Any]]
                        ) -> tuple[np.ndarray, np.ndarray]:
        """``search`` over the rows a :meth:`selection` admits (the graph walked as usual, efSearch at
        least ``n``); id -1 pads what it could not find."""
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = min(n, self.ntotal)
        if n <= 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        ef = max(HNSW_EF_SEARCH, n)
        params = selection[2].get(ef)
        if params is None:  # built once per selection and efSearch (a FAISS object costs ~20 us to make)
            params = selection[2].setdefault(ef, faiss.SearchParametersHNSW(sel=selection[0], efSearch=ef))
        scores, found = self.index.search(queries, n, params=params)
        found = found.astype(np.int64)
        if self.rows is not None:
            found = np.where(found >= 0, self.rows[np.maximum(found, 0)], -1)
        return found, scores


@dataclass(frozen=True)
class GraphExtension:
    """A new segment's graph made from an existing one: ``base_rows[i]`` is the new segment's row of
    the base graph's node ``i`` (-1: its chunk is gone); every other row is added as a node.

    Adding a few thousand rows to a graph costs seconds where building it again costs minutes, so a
    big index can keep one graph and fold its small recent segments into it."""

    base: Path  # the base segment's folder
    base_rows: np.ndarray


def _add_nodes(index: faiss.IndexHNSW, vectors: np.ndarray) -> None:
    """Add ``vectors`` to the graph on every core (building is one big job), then back to one thread."""
    if not len(vectors):
        return
    faiss = _faiss()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(1)


def build_hnsw(vectors: np.ndarray) -> faiss.IndexHNSWFlat:
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    _add_nodes(index, vectors)
    return index


def uses_hnsw(count: int, hnsw_threshold: int) -> bool:
    return count > hnsw_threshold


def extend_hnsw(extension: GraphExtension, vectors: np.ndarray) -> tuple[faiss.IndexHNSWFlat, np.ndarray]:
    """A copy of the base graph with every row of ``vectors`` it does not hold added as a node, and
    the node -> row map of the result."""
    faiss = _faiss()
    index = faiss.read_index(str(extension.base / FAISS_FILE))  # read whole: the copy is written to
    if index.ntotal != len(extension.base_rows):
        raise ValueError(f"the base graph has {index.ntotal} nodes, {len(extension.base_rows)} rows given")
    held = np.zeros(len(vectors), bool)
    held[extension.base_rows[extension.base_rows >= 0]] = True
    added = np.flatnonzero(~held)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    _add_nodes(index, vectors[added])
    return index, np.concatenate([extension.base_rows, added]).astype(np.int64)


def write(folder: Path, vectors: np.ndarray, graph: bool | GraphExtension) -> tuple[str, list[str]]:
    """Write the search structures for ``vectors`` into ``folder`` (which already holds
    ``vectors.npy``): an HNSW graph when ``graph`` (built, or extended from another segment's),
    else nothing (exact search reads the matrix); returns the index kind and the files written."""
    if not graph:
        return ExactIndex.kind, []
    if isinstance(graph, GraphExtension):
        index, rows = extend_hnsw(graph, vectors)
        _faiss().write_index(index, str(folder / FAISS_FILE))
        np.save(folder / ROWS_FILE, rows)
        return HnswIndex.kind, [FAISS_FILE, ROWS_FILE]
    _faiss().write_index(build_hnsw(vectors), str(folder / FAISS_FILE))
    return HnswIndex.kind, [FAISS_FILE]


def open_index(folder: Path, kind: str, matrix: np.ndarray) -> VectorIndex:
    """The search index of a snapshot folder. ``matrix`` is its memory-mapped ``vectors.npy``.

    Snapshots of format 1 called the exact index "flat" and kept a FAISS copy of it, which is
    not needed: the matrix is searched directly.
    """
    if kind in (ExactIndex.kind, "flat"):
        return ExactIndex(matrix)
    if kind != HnswIndex.kind:
        raise ValueError(f"unknown vector index kind {kind!r}")
    faiss = _faiss()
    path = str(folder / FAISS_FILE)
    try:  # map the stored vectors instead of reading them (FAISS >= 1.9)
        index = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except (RuntimeError, AttributeError):
        index = faiss.read_index(path)
    rows_file = folder / ROWS_FILE
    return HnswIndex(index, read_array(rows_file) if rows_file.exists() else None)

