"""The on-disk index: immutable snapshots switched atomically.

Layout of an index folder::

    CURRENT                 name of the live snapshot (replaced atomically with os.replace)
    snap-000007/            one immutable snapshot
        manifest.json       format version, model (name, sha256, dim), chunking, counts, file checksums
        meta.sqlite         documents (with their text) and chunks (paragraph, offsets, text)
        vectors.npy         float32 [chunks x dim]; row i is chunk id i (searched exactly when small)
        vectors.faiss       FAISS HNSW index over the same rows (only above the HNSW threshold)
        bm25/               bm25s index over the same rows
    embed-cache.sqlite      embeddings computed but not yet committed (resume after a crash)
    query-<sha>.onnx        the query graph exported from the model (encoder + exact search)
    .lock                   writer lock

A writer builds a complete new snapshot in a temporary folder, fsyncs it, renames it into place,
then replaces CURRENT. A reader that opened a snapshot keeps using it; nothing it reads changes.
A crash at any point leaves CURRENT naming a complete snapshot.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import vectors as vector_index
from ..files import atomic_write, fsync_dir, sha256_file
from ..layout import ArrayLayout
from ..lexical import LexicalIndex, analyze_query
from .base import (
    ChunkRecord,
    ChunkRow,
    DocRecord,
    DocumentSummary,
    DocumentUpsert,
    IndexBusy,
    IndexCorrupt,
    IndexIncompatible,
    IndexMeta,
    IndexMissing,
    IndexStats,
    IndexWriteFailed,
    RestrictedView,
    WriteResult,
)

if TYPE_CHECKING:
    from ..filters import Filter

# 2: exact search reads vectors.npy directly; vectors.faiss exists only for HNSW. Version 1
# snapshots (which also kept a FAISS copy of exact indexes) are still read.
# 3: documents record their modified time (for filters). Versions 1 and 2 are read with modified
# times unknown; the next `index` run records them (and writes version 3).
# 4: documents record the publication date their page declares (HTML). Versions 1 to 3 are read with
# dates unknown; HTML files are read again at the next `index` run (the HTML reader's version 2).
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
CURRENT = "CURRENT"
_SNAP_PREFIX = "snap-"
_EDGE = 1 << 20
_SELECTIONS_KEPT = 64  # filters whose chunk selection a snapshot keeps


_SCHEMA = """
CREATE TABLE documents (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL,
    encoding TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL, n_chunks INTEGER NOT NULL, modified REAL,
    published TEXT
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, doc INTEGER NOT NULL REFERENCES documents(id), paragraph INTEGER NOT NULL,
    char_start INTEGER NOT NULL, char_end INTEGER NOT NULL, n_tokens INTEGER NOT NULL, text TEXT NOT NULL
);
CREATE INDEX chunks_doc ON chunks(doc, paragraph);
"""


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))


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
# takes the lock before it touches the corpus, then indexes under the same lock).
_held: dict[str, int] = {}
_held_guard = threading.Lock()


@contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """Serialise writers: a second writer fails at once (``IndexBusy``) instead of waiting.

    Re-entrant for the thread that holds it. Other threads of the same process are not queued
    here: callers that want in-process writers to wait serialise them first (``Engine``).
    """
    key = os.path.realpath(index_dir)
    me = threading.get_ident()
    with _held_guard:
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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBusy(
                f"another process is writing the index in {index_dir} (lock held on {index_dir / '.lock'}); "
                "wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        with _held_guard:
            _held[key] = me
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
    finally:
        os.close(fd)


def write_snapshot(
    index_dir: Path,
    manifest: dict[str, Any],
    docs: Sequence[DocRecord],
    chunks: Sequence[ChunkRecord],
    vectors: np.ndarray,
    lexical_texts: Sequence[str],
    hnsw_threshold: int,
) -> str:
    """Write a complete snapshot and make it current. Caller holds the writer lock."""
    if len(chunks) != len(vectors) or len(chunks) != len(lexical_texts):
        raise ValueError("chunks, vectors and lexical texts must align row for row")
    previous = current_name(index_dir)
    generation = int(previous.removeprefix(_SNAP_PREFIX)) + 1 if previous else 1
    name = f"{_SNAP_PREFIX}{generation:06d}"
    tmp = index_dir / f".tmp-{name}-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        _write_meta(tmp / "meta.sqlite", docs, chunks)
        np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        kind, vector_files = vector_index.write(tmp, vectors, hnsw_threshold)
        LexicalIndex.write(lexical_texts, tmp / "bm25")
        full = dict(manifest)
        full.update(
            format_version=FORMAT_VERSION,
            generation=generation,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            counts={"documents": len(docs), "chunks": len(chunks)},
            vector_index=kind,
            files={f: file_record(tmp / f) for f in ("meta.sqlite", "vectors.npy", *vector_files)},
        )
        (tmp / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True))
        _fsync_tree(tmp)
        final = index_dir / name
        if final.exists():  # left by a writer that crashed before switching CURRENT
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(index_dir)
        atomic_write(index_dir / CURRENT, f"{name}\n".encode())
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(index_dir, exc) from exc
    _collect_garbage(index_dir, keep={name, previous})
    return name


def _write_meta(path: Path, docs: Sequence[DocRecord], chunks: Sequence[ChunkRecord]) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript(_SCHEMA)
        counts = np.bincount([c.doc for c in chunks], minlength=len(docs)) if chunks else np.zeros(len(docs))
        con.executemany(
            "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?)",
            ((i, d.source, d.sha256, d.encoding, d.title, d.text, int(counts[i]), d.modified, d.published)
             for i, d in enumerate(docs)),
        )
        con.executemany(
            "INSERT INTO chunks VALUES (?,?,?,?,?,?,?)",
            ((i, c.doc, c.paragraph, c.char_start, c.char_end, c.n_tokens, c.text) for i, c in enumerate(chunks)),
        )
        con.commit()
    finally:
        con.close()


def _collect_garbage(index_dir: Path, keep: set[str | None]) -> None:
    """Remove old snapshots (keeping the current and previous one) and abandoned temp folders."""
    for entry in index_dir.iterdir():
        stale_snapshot = entry.name.startswith(_SNAP_PREFIX) and entry.name not in keep
        if (stale_snapshot or entry.name.startswith(".tmp-")) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


class Snapshot:
    """A read-only view of one committed snapshot. Thread-safe for readers."""

    def __init__(self, index_dir: Path, name: str, manifest: dict[str, Any]) -> None:
        self.index_dir = index_dir
        self.name = name
        self.path = index_dir / name
        self.manifest = manifest
        self._lock = threading.Lock()
        self._layout: ArrayLayout | None = None
        self._selections: dict[tuple[Any, ...], RestrictedView] = {}
        # Version 3 records each document's modified time; older snapshots read it as unknown (NULL).
        self._modified = "modified" if manifest.get("format_version", 1) >= 3 else "NULL"
        # Version 4 records the date a page declares; older snapshots read it as unknown (NULL).
        self._published = "published" if manifest.get("format_version", 1) >= 4 else "NULL"
        try:
            self._db = sqlite3.connect(
                f"file:{self.path / 'meta.sqlite'}?mode=ro&immutable=1", uri=True, check_same_thread=False
            )
            rows = self._db.execute("SELECT doc, paragraph, char_start, char_end FROM chunks ORDER BY id").fetchall()
            docs = self._db.execute(f"SELECT id, source, title, {self._modified} FROM documents ORDER BY id").fetchall()
            # Memory-mapped: row lookups and exact search read it in place, nothing is copied. (A
            # plain ndarray view of the map: numpy's memmap subclass costs time on every operation.)
            self.matrix = np.load(self.path / "vectors.npy", mmap_mode="r").view(np.ndarray)
            self.vectors = vector_index.open_index(self.path, manifest.get("vector_index", "exact"), self.matrix)
            self.lexical = LexicalIndex.load(self.path / "bm25")
        except (sqlite3.DatabaseError, RuntimeError, OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(
                f"the index in {index_dir} ({name}) cannot be read ({exc}); rebuild it with "
                f"`python -m service index --index {index_dir} --rebuild`"
            ) from exc
        # Per chunk, in memory (32 bytes a chunk): what retrieval needs without a database read.
        columns = np.array(rows, dtype=np.int64).reshape(-1, 4)
        self.chunk_doc, self.chunk_paragraph, self.chunk_start, self.chunk_end = (
            np.ascontiguousarray(columns[:, i]) for i in range(4))
        self.doc_sources = [d[1] for d in docs]
        self.doc_titles = [d[2] for d in docs]
        self.doc_modified: list[float | None] = [d[3] for d in docs]
        self._doc_by_source = {s: i for i, s in enumerate(self.doc_sources)}
        if (self.vectors.ntotal != len(rows) or len(self.matrix) != len(rows)
                or self.lexical.size not in (len(rows), 0)):
            raise IndexCorrupt(
                f"the index in {index_dir} ({name}) is inconsistent: {self.vectors.ntotal} vectors, "
                f"{len(rows)} chunks; rebuild it with `python -m service index --index {index_dir} --rebuild`"
            )

    # -- IndexView --------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self.name

    @property
    def size(self) -> int:
        return len(self.chunk_doc)

    @property
    def meta(self) -> IndexMeta:
        m = self.manifest
        return IndexMeta(corpus=m["corpus"], model=m["model"], chunking=m.get("chunking", {}))

    def layout(self, candidates: np.ndarray) -> ArrayLayout:
        """Every chunk's layout, computed once for the snapshot (candidates need no lookup)."""
        layout = self._layout
        if layout is None:
            with self._lock:
                if self._layout is None:
                    self._layout = ArrayLayout(self.chunk_doc, self.chunk_paragraph, self.chunk_start, self.chunk_end)
                layout = self._layout
        return layout

    def similarity(self, query_vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, np.float32)
        return np.asarray(self.matrix[np.asarray(ids, dtype=np.int64)] @ query_vector, dtype=np.float32)

    def stats(self) -> IndexStats:
        m = self.manifest
        return IndexStats(
            documents=m["counts"]["documents"], chunks=m["counts"]["chunks"], model=m["model"]["name"],
            model_sha256=m["model"]["sha256"], dimension=m["model"]["dim"], version=self.name, created=m["created"],
            vector_index=m["vector_index"], corpus=m["corpus"], store="local",
        )

    def hashes(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT source, sha256 FROM documents"))

    def modified_times(self) -> dict[str, float | None]:
        return dict(zip(self.doc_sources, self.doc_modified, strict=True))

    def filtered(self, flt: Filter) -> RestrictedView:
        """Searches over the chunks of the documents ``flt`` admits (selections cached per filter)."""
        with self._lock:
            found = self._selections.get(flt.key)
        if found is not None:
            return found
        admitted = np.fromiter((flt.admits(s, m) for s, m in zip(self.doc_sources, self.doc_modified, strict=True)),
                               bool, len(self.doc_sources))
        mask = admitted[self.chunk_doc] if len(self.chunk_doc) else np.zeros(0, bool)
        ids = np.flatnonzero(mask).astype(np.int64)
        view = RestrictedView(self, SubsetVectors(self.vectors, self.matrix, ids, mask),
                              SubsetLexical(self.lexical, mask), len(ids))
        with self._lock:
            if len(self._selections) >= _SELECTIONS_KEPT:
                self._selections.pop(next(iter(self._selections)))
            self._selections[flt.key] = view
        return view

    def chunk_rows(self, ids: Sequence[int]) -> list[ChunkRow]:
        if not len(ids):
            return []
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, doc, paragraph, char_start, char_end, text FROM chunks WHERE id IN ({marks})",
                [int(i) for i in ids],
            ).fetchall()
        by_id = {
            r[0]: ChunkRow(r[0], self.doc_sources[r[1]], self.doc_titles[r[1]], r[2], r[3], r[4], r[5]) for r in rows
        }
        return [by_id[int(i)] for i in ids if int(i) in by_id]

    def has_document(self, source: str) -> bool:
        return source in self._doc_by_source

    def document(self, source: str) -> DocRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT source, sha256, encoding, title, text, {self._modified}, {self._published} FROM documents "
                "WHERE source = ?",
                (source,)).fetchone()
        return DocRecord(*row) if row else None

    def documents(self) -> list[DocumentSummary]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT source, title, sha256, n_chunks, length(text), {self._modified}, {self._published} "
                "FROM documents ORDER BY source"
            ).fetchall()
        return [DocumentSummary(*r) for r in rows]

    def all_records(self) -> tuple[list[DocRecord], list[ChunkRecord], np.ndarray]:
        """Everything in the snapshot, for a writer building the next one."""
        with self._lock:
            docs = [DocRecord(*r) for r in self._db.execute(
                f"SELECT source, sha256, encoding, title, text, {self._modified}, {self._published} "
                "FROM documents ORDER BY id")]
            chunks = [ChunkRecord(*r) for r in self._db.execute(
                "SELECT doc, paragraph, char_start, char_end, n_tokens, text FROM chunks ORDER BY id")]
        return docs, chunks, self.matrix

    def close(self) -> None:
        self._db.close()


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


def verify_files(index_dir: Path, name: str, manifest: dict[str, Any], full: bool = True) -> None:
    """Detect truncated or altered files before FAISS or SQLite trip over them.

    ``full`` hashes every byte (servers and writers); otherwise sizes and the first and last MiB
    are checked, which keeps a one-shot ``ask`` fast on a large index.
    """
    for fname, expect in manifest.get("files", {}).items():
        path = index_dir / name / fname
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
    verify_files(index_dir, name, manifest, full_check)
    return Snapshot(index_dir, name, manifest)


# -- the store ---------------------------------------------------------------------------------------------
LexicalText = Callable[[DocRecord, ChunkRecord], str]


class LocalStore:
    """Snapshots in a folder (this module's format), as a ``Store``.

    A write rebuilds the whole snapshot: the documents it keeps are read back from the previous one
    (their vectors memory-mapped), merged with the change and written as the next snapshot. Their
    lexical texts are rebuilt with ``lexical_text`` (the indexer's rule: title line + chunk), which
    a store opened only for reading does not need.
    """

    kind = "local"

    def __init__(self, index_dir: Path, model_sha256: str | None = None, full_check: bool = True,
                 hnsw_threshold: int = 100_000, lexical_text: LexicalText | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.model_sha256 = model_sha256
        self.full_check = full_check
        self.hnsw_threshold = hnsw_threshold
        self.lexical_text = lexical_text

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

    def apply(self, meta: IndexMeta, upserts: Sequence[DocumentUpsert], deletes: Sequence[str],
              replace_all: bool = False, touch: Mapping[str, float] | None = None) -> WriteResult:
        prev = None if replace_all else self.previous()
        changed = {u.doc.source for u in upserts} | set(deletes)
        entries: dict[str, tuple[DocRecord, list[ChunkRecord], np.ndarray, list[str]]] = {}
        if prev is not None:
            if self.local.lexical_text is None:
                raise ValueError("a LocalStore opened for writing needs lexical_text")
            relex = self.local.lexical_text
            for rec, chunks, vecs in _by_document(prev, skip=changed):
                if touch and rec.source in touch:
                    rec = dataclasses.replace(rec, modified=touch[rec.source])
                entries[rec.source] = (rec, chunks, vecs, [relex(rec, c) for c in chunks])
        for u in upserts:
            entries[u.doc.source] = (u.doc, list(u.chunks), u.vectors, list(u.lexical))
        docs: list[DocRecord] = []
        chunk_records: list[ChunkRecord] = []
        lexical: list[str] = []
        blocks: list[np.ndarray] = []
        dim = int(meta.model["dim"])
        for position, source in enumerate(sorted(entries)):
            rec, chunks, vecs, texts = entries[source]
            docs.append(rec)
            chunk_records += [ChunkRecord(position, c.paragraph, c.char_start, c.char_end, c.n_tokens, c.text)
                              for c in chunks]
            lexical += texts
            blocks.append(np.asarray(vecs, dtype=np.float32).reshape(-1, dim))
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
        manifest = {"corpus": meta.corpus, "model": meta.model, "chunking": meta.chunking, **meta.extra}
        name = write_snapshot(self.local.index_dir, manifest, docs, chunk_records, vectors, lexical,
                              self.local.hnsw_threshold)
        return WriteResult(name, len(docs), len(chunk_records))


def _by_document(snap: Snapshot, skip: set[str]) -> Iterator[tuple[DocRecord, list[ChunkRecord], np.ndarray]]:
    """The snapshot's documents (but ``skip``), each with its chunks and their vectors."""
    docs, chunks, vectors = snap.all_records()
    rows: dict[int, list[int]] = {}
    for i, c in enumerate(chunks):
        rows.setdefault(c.doc, []).append(i)
    for pos, d in enumerate(docs):
        if d.source not in skip:
            mine = rows.get(pos, [])
            yield d, [chunks[i] for i in mine], np.asarray(vectors[mine])


# -- filtered searches ---------------------------------------------------------------------------------------
class SubsetVectors:
    """Vector search restricted to some rows (``ids``, ascending; ``mask`` over all rows).

    Exact index: a selection of a quarter of the rows or fewer is gathered and scored alone (cheaper
    than scoring every row), a larger one by scoring every row and dropping the others; exact either
    way. HNSW index: up to ``SUBSET_EXACT_ROWS`` rows are gathered and scored exactly, more are
    searched through the graph with a FAISS ID selector (efSearch at least ``n``; approximate, as
    every HNSW search is). The ``n`` best admitted rows come back whenever ``n`` are admitted.
    """

    def __init__(self, whole: vector_index.VectorIndex, matrix: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> None:
        self.whole, self.matrix, self.ids, self.mask = whole, matrix, ids, mask

    @property
    def ntotal(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.matrix.shape[1])
        n = min(n, len(self.ids))
        if n <= 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        whole_rows = len(self.mask)
        if isinstance(self.whole, vector_index.ExactIndex) and len(self.ids) > whole_rows // 4:
            scores = vector_index.exact_scores(queries, self.matrix)
            scores[:, ~self.mask] = -np.inf
            return vector_index.top_n(scores, n)
        if isinstance(self.whole, vector_index.HnswIndex) and len(self.ids) > SUBSET_EXACT_ROWS:
            return self.whole.search_among(queries, n, self.ids)
        rows = np.ascontiguousarray(self.matrix[self.ids])
        local, scores = vector_index.top_n(vector_index.exact_scores(queries, rows), n)
        return self.ids[local], scores


SUBSET_EXACT_ROWS = 50_000  # an HNSW index's selections up to this size are searched exactly


class SubsetLexical:
    """BM25 over the whole index's statistics, candidates only among the admitted chunks."""

    def __init__(self, whole: LexicalIndex, mask: np.ndarray) -> None:
        self.whole, self.mask = whole, mask

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        terms = analyze_query(query)
        if not self.whole.size or not terms or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self.whole.scores(terms)
        scores[~self.mask] = 0
        hits = np.flatnonzero(scores > 0)
        if len(hits) > n:
            hits = hits[np.argpartition(-scores[hits], n - 1)[:n]]
        order = hits[np.argsort(-scores[hits], kind="stable")]
        return order.astype(np.int64), scores[order]
