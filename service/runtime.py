"""Process settings for serving on a small machine, where thread pools compete for two cores.

* **OpenBLAS spin.** After each call OpenBLAS's worker threads busy-wait (by default for about
  2^28 cycles) before sleeping. Between a server's frequent small matrix products they never
  sleep, and steal the CPU from the query encoder: 16 concurrent clients got 70 requests/s with the
  default and 83 with a 16-cycle wait, at unchanged single-query latency. OpenBLAS reads the
  setting when it is loaded, so ``service/__init__.py`` applies it before anything imports numpy.
* **onnxruntime threads.** Every session (the query graph, the GEMM of exact search) runs on up to
  two intra-op threads that spin between the parallel sections of a run (one query: 4.0 ms
  instead of 5.2) and stop spinning when the run ends, so that between runs they do not steal the
  CPU from concurrent requests (same requests/s as with no spinning at all): ``onnx_session``.
* **malloc arenas.** glibc gives each thread that allocates its own arena, up to 8 per core, and
  freed memory stays in them: a server's pool of request threads held ~95 MiB more resident
  memory than with 2 arenas, at the same throughput.

The OpenBLAS and malloc settings are defaults: a variable already set in the environment wins.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

OPENBLAS_THREAD_TIMEOUT = "4"  # 2^4 cycles of spinning, then sleep (OpenBLAS clamps to 4..30)
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def set_library_defaults() -> None:
    """Environment defaults read by native libraries when they load (call before importing numpy)."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads started from now on; False where that is not glibc."""
    import ctypes
    import ctypes.util

    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the user's own setting, applied by glibc at start-up
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


@lru_cache(maxsize=1)
def intra_op_threads() -> int:
    """The onnxruntime threads a query's run uses: two where there are two cores."""
    return min(2, os.cpu_count() or 1)


def onnx_session(model: Path | bytes, threads: int | None = None) -> Any:  # onnxruntime.InferenceSession
    """An onnxruntime CPU session for ``model`` (a file or serialized bytes) with the threading above."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or intra_op_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(model) if isinstance(model, Path) else model, opts,
                                providers=["CPUExecutionProvider"])
