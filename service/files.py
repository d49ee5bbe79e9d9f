"""Small file-system primitives shared by the store, the engine and the model code."""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from pathlib import Path

import numpy as np

NAME_MAX = 255  # bytes in one path segment on Linux, macOS and Windows file systems


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(target: Path) -> Path:
    """A hidden, unique sibling of ``target`` to write before renaming: short whatever the target's
    name (a segment may have up to NAME_MAX bytes), and never shared by two writers of one file.
    The writer's pid comes last, as in every ``.tmp-`` name, so a sweep can tell a dead writer's
    leftover from a live one's work (``writer_pid``)."""
    return target.with_name(f".tmp-{secrets.token_hex(6)}-{os.getpid()}")


def writer_pid(name: str) -> int | None:
    """The pid that ends a ``.tmp-…-PID`` name, or None when the name does not end in one."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() and len(tail) <= 10 else None


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that readers see the old file or the new one, never a part."""
    tmp = temp_name(target)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


_NPY_HEADERS = threading.Lock()


def map_array(path: Path) -> np.ndarray:
    """A ``.npy`` file memory-mapped read-only, as a plain ndarray (numpy's memmap subclass costs
    time on every operation).

    Opens are serialised: numpy parses the header with ``ast.literal_eval``, and CPython 3.11.7's
    AST constructor keeps a recursion counter per interpreter, so concurrent parses in several
    threads (a background merge opening segments while requests open the new view) can fail with
    "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).
    """
    with _NPY_HEADERS:
        return np.load(path, mmap_mode="r").view(np.ndarray)


def read_array(path: Path) -> np.ndarray:
    """A small ``.npy`` file read whole, its header parsed under ``map_array``'s lock (same reason)."""
    with _NPY_HEADERS:
        return np.asarray(np.load(path))
