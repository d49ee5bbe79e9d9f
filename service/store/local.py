"""The on-disk index: immutable segments, and a manifest per commit switched atomically.

Layout of an index folder::

    CURRENT                 name of the live snapshot (replaced atomically with os.replace)
    snap-000007/
        manifest.json       format version, model (name, sha256, dim), chunking, counts, and the
                            segments that make up this state, each with the documents it deletes
    segments/seg-<id>/      immutable segments (``service.store.segments``)
    embed-cache.sqlite      embeddings computed but not yet committed (resume after a crash)
    query-<sha>.onnx        the query graph exported from the model (encoder + exact search)
    .lock                   writer lock

A commit writes a segment holding only what it adds (fsynced, then moved into ``segments/``),
writes the next manifest, which names the kept segments, their deleted documents and the new
segment, and replaces CURRENT. Its cost follows the change, not the index. A reader that opened a
snapshot keeps using it; nothing it reads changes. A crash at any point leaves CURRENT naming a
complete snapshot; what a crash leaves behind is collected by the next commit. Segments are merged
in the background (``service.store.merging``) so that their number stays bounded.

Formats 1 to 4 kept everything in the snapshot folder; they still open (as one legacy segment),
and the first write rewrites them as segments.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..files import atomic_write, fsync_dir, sha256_file, writer_pid
from ..lexical import TermPostings
from .base import (
    ChunkRecord,
    DocRecord,
    DocumentUpsert,
    IndexBusy,
    IndexCorrupt,
    IndexIncompatible,
    IndexMeta,
    IndexMissing,
    IndexWriteFailed,
    WriteResult,
)
from .segments import (
    SEGMENTS,
    Part,
    Segment,
    SegmentContent,
    Snapshot,
    SubsetLexical,
    SubsetVectors,
    fsync_tree,
    install_segment,
    new_segment_name,
    open_segment,
    write_segment,
)

# 2: exact search reads vectors.npy directly; vectors.faiss exists only for HNSW. Version 1
# snapshots (which also kept a FAISS copy of exact indexes) are still read.
# 3: documents record their modified time (for filters). Versions 1 and 2 are read with modified
# times unknown; the next `index` run records them (and writes version 3).
# 4: documents record the publication date their page declares (HTML). Versions 1 to 3 are read with
# dates unknown; HTML files are read again at the next `index` run (the HTML reader's version 2).
# 5: segments (a commit writes what changed) and BM25 scored at query time from term frequencies.
# Versions 1 to 4 open as one legacy segment; the first write rewrites the index as version 5.
# 6: a segment may hold an HNSW graph extended from an older segment's (segment format 2, with its
# node -> row map). Version 5 is read as it is; its next commit writes version 6.
FORMAT_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
CURRENT = "CURRENT"
_DEFAULTS = Settings.model_fields  # a store opened without settings takes their defaults
_SNAP_PREFIX = "snap-"
_EDGE = 1 << 20
HNSW_MIN_SEGMENT = 10_000  # chunks: smaller segments are searched exactly, whatever the index's size
# Manifest keys a commit computes (the rest describes how the index was built and is carried over).
_COMPUTED = ("format_version", "generation", "created", "counts", "vector_index", "segments", "files")

__all__ = ["SubsetLexical", "SubsetVectors", "Snapshot"]


def current_name(index_dir: Path) -> str | None:
    """The live snapshot's name, or None when the folder holds no index (yet)."""
    try:
        name = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise IndexMissing(f"{index_dir} is a file, not an index folder; pass a folder with --index") from None
    except OSError as exc:
        raise IndexMissing(f"cannot read the index in {index_dir}: {exc.strerror or exc}") from None
    return name or None




def write_error(index_dir: Path, exc: OSError) -> IndexWriteFailed:
    """A user-facing error for a failed write into ``index_dir`` (full disk, read-only, not a folder…)."""
    if exc.errno == errno.ENOSPC:
        why = "the disk is full"
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        why = "a file stands where a folder is needed (pass a folder with --index)"
    else:
        why = exc.strerror or str(exc)
    return IndexWriteFailed(f"could not write the index in {index_dir}: {why}; the previous index is intact")


# Locks this process holds, by index folder: a thread that holds one may enter it again (the engine
# takes the lock before it touches the corpus, then indexes under the same lock). A *brief* holder
# (a merge switching in its segment: milliseconds) is waited for by the other threads of this
# process instead of refusing them.
_held: dict[str, int] = {}
_brief: set[str] = set()
_held_changed = threading.Condition()
_BRIEF_WAIT = 10.0  # seconds a writer waits for a brief holder of this process


@contextmanager
def writer_lock(index_dir: Path, brief: bool = False) -> Iterator[None]:
    """Serialise writers: a second writer fails at once (``IndexBusy``) instead of waiting.

    Re-entrant for the thread that holds it. Other threads of the same process are not queued
    here (callers that want in-process writers to wait serialise them first: ``Engine``), except
    behind a ``brief`` holder, which they wait for.
    """
    key = os.path.realpath(index_dir)
    me = threading.get_ident()
    with _held_changed:
        reentered = _held.get(key) == me
    if reentered:
        yield
        return
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(index_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_error(index_dir, exc) from exc
    try:
        _acquire(fd, key, brief, index_dir)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        with _held_changed:
            _held[key] = me
        try:
            yield
        finally:
            with _held_changed:
                _held.pop(key, None)
                if brief:
                    _brief.discard(key)
                _held_changed.notify_all()
    finally:
        os.close(fd)


def _acquire(fd: int, key: str, brief: bool, index_dir: Path) -> None:
    """Take the flock of ``fd`` without blocking; behind a brief holder of this process, wait for it
    (up to ``_BRIEF_WAIT``) and try again. A brief holder announces itself before it tries, so no
    writer of this process is refused in the moment between its try and its announcement."""
    if brief:
        with _held_changed:
            _brief.add(key)
    deadline = time.monotonic() + _BRIEF_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            with _held_changed:
                if brief:
                    _brief.discard(key)
                    _held_changed.notify_all()
                if brief or key not in _brief or time.monotonic() > deadline:
                    raise IndexBusy(
                        f"another process is writing the index in {index_dir} (lock held on "
                        f"{index_dir / '.lock'}); wait for it to finish"
                    ) from None
                _held_changed.wait_for(lambda: key not in _brief, timeout=max(0.0, deadline - time.monotonic()))


def commit_manifest(index_dir: Path, manifest: dict[str, Any], installs: Sequence[tuple[Path, str]] = ()) -> str:
    """Move the written segments ``installs`` (temporary folder, name) into place, write ``manifest``
    as the next snapshot and make it current. Caller holds the writer lock."""
    previous = current_name(index_dir)
    generation = int(previous.removeprefix(_SNAP_PREFIX)) + 1 if previous else 1
    name = f"{_SNAP_PREFIX}{generation:06d}"
    tmp = index_dir / f".tmp-{name}-{os.getpid()}"
    try:
        for folder, segment in installs:
            install_segment(index_dir, folder, segment)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        full = {**manifest, "format_version": FORMAT_VERSION, "generation": generation,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True))
        fsync_tree(tmp)
        final = index_dir / name
        if final.exists():  # left by a writer that crashed before switching CURRENT
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(index_dir)
        atomic_write(index_dir / CURRENT, f"{name}\n".encode())
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder, _segment in installs:
            shutil.rmtree(folder, ignore_errors=True)
        raise write_error(index_dir, exc) from exc
    collect_garbage(index_dir, keep={name, previous})
    return name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def collect_garbage(index_dir: Path, keep: set[str | None]) -> None:
    """Remove old snapshots (keeping ``keep``: the current and previous one), the segments none of
    them names, and temporary folders whose writer died. Caller holds the writer lock."""
    referenced: set[str] = set()
    for snap in keep:
        if snap is None:
            continue
        try:
            manifest = json.loads((index_dir / snap / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        referenced.update(p["name"] for p in manifest.get("segments", []))
    for entry in index_dir.iterdir():
        if entry.name.startswith(".tmp-"):
            pid = writer_pid(entry.name)
            if pid is not None and _alive(pid):
                continue  # a live writer's or merge's work in progress
        elif not entry.name.startswith(_SNAP_PREFIX) or entry.name in keep:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:  # a file an atomic write left when its process died
            entry.unlink(missing_ok=True)
    for entry in (index_dir / SEGMENTS).iterdir() if (index_dir / SEGMENTS).is_dir() else ():
        if entry.name not in referenced:
            shutil.rmtree(entry, ignore_errors=True)


def read_manifest(index_dir: Path) -> tuple[str, dict[str, Any]]:
    name = current_name(index_dir)
    if name is None:
        raise IndexMissing(
            f"no index in {index_dir}; build one with `python -m service index --corpus DIR --index {index_dir}`"
        )
    try:
        manifest = json.loads((index_dir / name / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(
            f"the index manifest in {index_dir / name} is unreadable ({exc}); rebuild with "
            f"`python -m service index --index {index_dir} --rebuild`"
        ) from exc
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise IndexIncompatible(
            f"the index in {index_dir} has format version {manifest.get('format_version')}, this program reads "
            f"version {FORMAT_VERSION}; rebuild it with `python -m service index --index {index_dir} --rebuild`"
        )
    return name, manifest




def file_record(path: Path) -> dict[str, Any]:
    """A file's entry in the manifest: its size, sha256, and the hash of its edges (``_edges``)."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path), "edges": _edges(path)}


def _edges(path: Path) -> str:
    """sha256 of a file's first and last MiB: catches truncation and torn writes in milliseconds."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(_EDGE))
        f.seek(max(0, path.stat().st_size - _EDGE))
        h.update(f.read(_EDGE))
    return h.hexdigest()




def _verify(folder: Path, files: Mapping[str, Any], full: bool, index_dir: Path) -> None:
    """Detect truncated or altered files before FAISS or SQLite trip over them.

    ``full`` hashes every byte (servers and writers); otherwise sizes and the first and last MiB
    are checked, which keeps a one-shot ``ask`` fast on a large index.
    """
    for fname, expect in files.items():
        path = folder / fname
        try:
            ok = path.stat().st_size == expect["size"] and (
                sha256_file(path) == expect["sha256"] if full or "edges" not in expect
                else _edges(path) == expect["edges"]
            )
        except OSError:
            ok = False
        if not ok:
            raise IndexCorrupt(
                f"index file {path} is missing, truncated or altered (checksum mismatch); rebuild with "
                f"`python -m service index --index {index_dir} --rebuild`"
            )


def verify_files(index_dir: Path, name: str, manifest: dict[str, Any], full: bool = True) -> None:
    """Check the files of a snapshot of format 1 to 4 (later formats check each segment as it opens)."""
    _verify(index_dir / name, manifest.get("files", {}), full, index_dir)


def open_snapshot(index_dir: Path, model_sha256: str | None = None, full_check: bool = True) -> Snapshot:
    """Open the current snapshot, checking format, model and file checksums.

    A writer may commit twice and collect the snapshot we were about to open; when a read fails
    and CURRENT has moved meanwhile, open the new one instead.
    """
    for _attempt in range(5):
        name = current_name(index_dir)
        try:
            return _open(index_dir, model_sha256, full_check)
        except (IndexCorrupt, IndexMissing):
            if current_name(index_dir) == name:
                raise
    return _open(index_dir, model_sha256, full_check)


def _open(index_dir: Path, model_sha256: str | None, full_check: bool) -> Snapshot:
    name, manifest = read_manifest(index_dir)
    if model_sha256 is not None and manifest["model"]["sha256"] != model_sha256:
        raise IndexIncompatible(
            f"the index in {index_dir} was built with model {manifest['model']['name']!r} "
            f"(weights sha256 {manifest['model']['sha256'][:12]}…), but the configured model has weights "
            f"{model_sha256[:12]}…; rebuild with `python -m service index --index {index_dir} --rebuild` "
            "or configure the same model"
        )
    if manifest["format_version"] < 5:
        verify_files(index_dir, name, manifest, full_check)
        try:
            segment = Segment(index_dir / name, manifest.get("vector_index", "exact"), manifest["format_version"])
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise IndexCorrupt(
                f"the index in {index_dir} ({name}) cannot be read ({exc}); rebuild it with "
                f"`python -m service index --index {index_dir} --rebuild`"
            ) from exc
        return Snapshot(index_dir, name, manifest, [Part(segment, frozenset())])

    def verify(folder: Path, record: dict[str, Any], full: bool) -> None:
        _verify(folder, record.get("files", {}), full, index_dir)

    parts = [Part(open_segment(index_dir, rec["name"], full_check, verify), frozenset(rec["deleted"]))
             for rec in manifest["segments"]]
    return Snapshot(index_dir, name, manifest, parts)


# -- the store ---------------------------------------------------------------------------------------------
LexicalText = Callable[[DocRecord, ChunkRecord], str]
Entry = tuple[DocRecord, list[ChunkRecord], np.ndarray, list[str]]  # a document, its chunks, vectors, lexical texts


def segment_content(entries: Sequence[Entry], dim: int) -> SegmentContent:
    """One segment's content from whole documents (sorted by source, as a rebuild writes them)."""
    ordered = sorted(entries, key=lambda e: e[0].source)
    chunks = [ChunkRecord(i, c.paragraph, c.char_start, c.char_end, c.n_tokens, c.text)
              for i, e in enumerate(ordered) for c in e[1]]
    blocks = [np.asarray(e[2], np.float32).reshape(-1, dim) for e in ordered]
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
    return SegmentContent([e[0] for e in ordered], chunks, vectors,
                          TermPostings.build([t for e in ordered for t in e[3]]))


def part_record(part_name: str, chunk_doc: np.ndarray, documents: int,
                deleted: set[int] | frozenset[int] = frozenset()) -> dict[str, Any]:
    """A segment's entry in a manifest: its name, the documents deleted from it (local ids), and what
    stays live (``chunk_doc``: each chunk's document; ``documents``: how many the segment holds)."""
    gone = int(np.isin(chunk_doc, np.fromiter(deleted, np.int64, len(deleted))).sum()) if deleted else 0
    return {"name": part_name, "deleted": sorted(deleted), "documents": documents - len(deleted),
            "chunks": len(chunk_doc) - gone}


def manifest_for(base: Mapping[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of a state made of the segments ``records``, described by ``base``."""
    return {**{k: v for k, v in base.items() if k not in _COMPUTED}, "segments": list(records),
            "counts": {"documents": sum(r["documents"] for r in records),
                       "chunks": sum(r["chunks"] for r in records)}}


class LocalStore:
    """Segments in a folder (this module's format), as a ``Store``.

    A write adds one segment and marks the documents it replaces or deletes; background merges
    (``service.store.merging``) keep the number of segments bounded. Lexical texts of kept
    documents are rebuilt with ``lexical_text`` (the indexer's rule: title line + chunk) when a
    write must copy them (an older format's first write, a document whose modified time changed),
    which a store opened only for reading does not need.
    """

    kind = "local"

    def __init__(self, index_dir: Path, model_sha256: str | None = None, full_check: bool = True,
                 hnsw_threshold: int = _DEFAULTS["hnsw_threshold"].default, lexical_text: LexicalText | None = None,
                 segments_per_tier: int = _DEFAULTS["segments_per_tier"].default, merge_in_background: bool = True,
                 graph_tail_share: float = _DEFAULTS["graph_tail_share"].default) -> None:
        from .merging import MergePolicy

        self.index_dir = Path(index_dir)
        self.model_sha256 = model_sha256
        self.full_check = full_check
        self.hnsw_threshold = hnsw_threshold
        self.lexical_text = lexical_text
        self.policy = MergePolicy(segments_per_tier, tail_share=graph_tail_share)
        self.merge_in_background = merge_in_background

    def graph_for(self, segment_chunks: int, index_chunks: int, beside_graph: bool = False) -> bool:
        """Whether a new segment gets an HNSW graph: in an index above ``hnsw_threshold`` chunks, every
        segment of ``HNSW_MIN_SEGMENT`` chunks (or the threshold, when lower) or more, the small ones
        being searched exactly; below the threshold none (exact search over the whole index is fast
        there, and exact). A commit ``beside_graph`` (the index has a graph a merge can fold it into)
        builds none: the fold adds its rows to that graph, which a graph of its own would only delay."""
        return (not beside_graph and index_chunks > self.hnsw_threshold
                and segment_chunks >= min(HNSW_MIN_SEGMENT, self.hnsw_threshold))

    def version(self) -> str | None:
        return current_name(self.index_dir)

    def view(self) -> Snapshot:
        return open_snapshot(self.index_dir, self.model_sha256, self.full_check)

    @contextmanager
    def writer(self) -> Iterator[LocalWriter]:
        with writer_lock(self.index_dir):
            yield LocalWriter(self)

    def describe(self) -> str:
        return str(self.index_dir)

    def merge_soon(self) -> None:
        """Start merging segments if the policy asks for it (in the background, or now)."""
        from .merging import merge_soon

        merge_soon(self)

    def settle(self) -> None:
        """Wait until the merges this process started are done (a short CLI run calls it before it
        exits, so that the index it leaves is compact)."""
        from .merging import settle

        settle(self)


class LocalWriter:
    def __init__(self, local: LocalStore) -> None:
        self.local = local
        self._previous: Snapshot | None = None

    def previous(self) -> Snapshot | None:
        name = current_name(self.local.index_dir)
        if name is None:
            return None
        if self._previous is None or self._previous.name != name:
            self._previous = open_snapshot(self.local.index_dir, self.local.model_sha256)
        return self._previous

    def _relex(self) -> LexicalText:
        if self.local.lexical_text is None:
            raise ValueError("a LocalStore opened for writing needs lexical_text")
        return self.local.lexical_text

    def apply(self, meta: IndexMeta, upserts: Sequence[DocumentUpsert], deletes: Sequence[str],
              replace_all: bool = False, touch: Mapping[str, float] | None = None) -> WriteResult:
        prev = None if replace_all else self.previous()
        changed = {u.doc.source for u in upserts} | set(deletes)
        entries: list[Entry] = [(u.doc, list(u.chunks), u.vectors, list(u.lexical)) for u in upserts]
        records: list[dict[str, Any]] = []
        beside_graph = False  # a kept segment has a graph this commit's rows can be folded into
        touch = {s: t for s, t in (touch or {}).items() if s not in changed}
        if prev is not None and prev.legacy:  # an older format: rewritten whole, once
            relex = self._relex()
            for rec, chunks, vecs in prev.iter_records(skip=changed):
                if rec.source in touch:
                    rec = dataclasses.replace(rec, modified=touch[rec.source])
                entries.append((rec, chunks, vecs, [relex(rec, c) for c in chunks]))
        elif prev is not None:
            deleted = {id(p): set(p.deleted) for p in prev.parts}
            touched: dict[int, list[int]] = {}  # part -> its touched documents
            for source in changed | touch.keys():
                found = prev.locate(source)
                if found is not None:
                    deleted[id(found[0])].add(found[1])
                    if source in touch:
                        touched.setdefault(id(found[0]), []).append(found[1])
            if touched:  # content unchanged: copied into the new segment with the new time, not re-embedded
                relex = self._relex()
                for part in prev.parts:
                    for rec, chunks, vecs in part.segment.records(touched.get(id(part), [])):
                        rec = dataclasses.replace(rec, modified=touch[rec.source])
                        entries.append((rec, chunks, vecs, [relex(rec, c) for c in chunks]))
            for part in prev.parts:
                gone = deleted[id(part)]
                if len(gone) < len(part.segment.doc_sources):  # a segment with nothing live is dropped
                    records.append(part_record(part.segment.name, part.segment.chunk_doc,
                                               len(part.segment.doc_sources), gone))
                    beside_graph |= part.segment.vectors.kind == "hnsw" and not part.segment.legacy
        base = {"corpus": meta.corpus, "model": meta.model, "chunking": meta.chunking, **meta.extra}
        installs: list[tuple[Path, str]] = []
        if entries:
            name = new_segment_name()
            content = segment_content(entries, int(meta.model["dim"]))
            total = sum(r["chunks"] for r in records) + len(content.chunks)
            try:
                folder = write_segment(self.local.index_dir, name, content,
                                       self.local.graph_for(len(content.chunks), total, beside_graph), file_record)
            except OSError as exc:
                raise write_error(self.local.index_dir, exc) from exc
            installs.append((folder, name))
            records.append(part_record(name, content.chunk_doc(), len(content.docs)))
        manifest = manifest_for(base, records)
        version = commit_manifest(self.local.index_dir, manifest, installs)
        self.local.merge_soon()
        return WriteResult(version, manifest["counts"]["documents"], manifest["counts"]["chunks"])
