"""Process settings for serving on a small machine, where thread pools compete for two cores.

* **OpenBLAS spin.** After each call OpenBLAS's worker threads busy-wait (by default for about
  2^28 cycles) before sleeping. Between a server's frequent small matrix products they never
  sleep, and steal the CPU from the query encoder: 16 concurrent clients got 70 requests/s with the
  default and 83 with a 16-cycle wait, at unchanged single-query latency. OpenBLAS reads the
  setting when it is loaded, so ``service/__init__.py`` applies it before anything imports numpy.
* **malloc arenas.** glibc gives each thread that allocates its own arena, up to 8 per core, and
  freed memory stays in them: a server's pool of request threads held ~95 MiB more resident
  memory than with 2 arenas, at the same throughput.

Both are defaults: a variable already set in the environment wins.
"""

from __future__ import annotations

import os

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
