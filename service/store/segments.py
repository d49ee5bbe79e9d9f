"""Segments: the immutable parts a local index is made of, and the view that searches them as one.

A **segment** is a folder under ``segments/`` written once and never changed::

    segments/seg-<id>/
        segment.json        counts, vector index kind, file checksums
        meta.sqlite         its documents (with their text) and chunks (paragraph, offsets, text)
        vectors.npy         float32 [chunks x dim]; row i is the segment's chunk i
        vectors.faiss       FAISS HNSW over the same rows (only for segments above the HNSW threshold)
        graph_rows.npy      the graph's node -> row map, when the graph was extended from an older
                            segment's (segment format 2)
        postings/           term frequencies and chunk lengths (``service.lexical.TermPostings``)

A commit writes one small segment for what it adds and records, in the next manifest, which
documents of older segments it deletes (``Part.deleted``). A view numbers chunks across its parts
(part ``i``'s chunk ``r`` is ``offset_i + r``), skips deleted rows in every search, and scores BM25
with the statistics of the live chunks of all parts, so a search returns what one merged index
would. Snapshots of formats 1 to 4 (one folder holding everything, BM25 weights precomputed by
bm25s) open as a view of one legacy part.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import vectors as vector_index
from ..files import fsync_dir, map_array
from ..layout import ArrayLayout
from ..lexical import (
    CorpusStats,
    LexicalIndex,
    TermPostings,
    analyze_query,
    bm25_postings,
    query_terms,
    top_hits,
)
from .base import (
    ChunkRecord,
    ChunkRow,
    DocRecord,
    DocumentSummary,
    IndexCorrupt,
    IndexMeta,
    IndexStats,
    RestrictedView,
)

if TYPE_CHECKING:
    from ..filters import Filter

SEGMENTS = "segments"
SEGMENT_FORMAT = 2  # the newest segment format read here (2: an extended graph's node -> row map)
_SELECTIONS_KEPT = 64  # filters whose chunk selection a view keeps

SCHEMA = """
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


# -- writing ---------------------------------------------------------------------------------------------------
@dataclass
class SegmentContent:
    """What goes into one segment: documents sorted by source, their chunks (``doc`` = position in
    ``docs``, grouped by document), one vector and one postings row per chunk."""

    docs: list[DocRecord]
    chunks: list[ChunkRecord]
    vectors: np.ndarray
    postings: TermPostings

    def chunk_doc(self) -> np.ndarray:
        """Each chunk's document (its position in ``docs``), as a segment's ``chunk_doc`` reads it."""
        return np.fromiter((c.doc for c in self.chunks), np.int64, len(self.chunks))


def new_segment_name() -> str:
    return f"seg-{uuid.uuid4().hex[:16]}"


def fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))


def write_meta(path: Path, docs: Sequence[DocRecord], chunks: Sequence[ChunkRecord]) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript(SCHEMA)
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


def temp_folder(index_dir: Path, name: str) -> Path:
    """Where a segment is written before it is moved into ``segments/`` (named after this process,
    so that garbage collection leaves the folders of live writers and merges alone)."""
    return index_dir / f".tmp-{name}-{os.getpid()}"


def write_segment(index_dir: Path, name: str, content: SegmentContent, graph: bool | vector_index.GraphExtension,
                  file_record: Callable[[Path], dict[str, Any]]) -> Path:
    """Write a complete, fsynced segment (with an HNSW graph when ``graph``: built, or extended from
    another segment's) into a temporary folder and return it; the caller moves it into
    ``segments/`` (``install_segment``) when the manifest that names it is about to be written."""
    docs, chunks, vectors = content.docs, content.chunks, content.vectors
    if len(chunks) != len(vectors) or len(chunks) != content.postings.size:
        raise ValueError("chunks, vectors and postings must align row for row")
    tmp = temp_folder(index_dir, name)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        write_meta(tmp / "meta.sqlite", docs, chunks)
        np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        kind, vector_files = vector_index.write(tmp, vectors, graph)
        posting_files = content.postings.write(tmp / "postings")
        record = {
            "segment_format": 2 if vector_index.ROWS_FILE in vector_files else 1,  # 2: a node -> row map
            "documents": len(docs), "chunks": len(chunks), "vector_index": kind,
            "files": {f: file_record(tmp / f) for f in ("meta.sqlite", "vectors.npy", *vector_files, *posting_files)},
        }
        (tmp / "segment.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def install_segment(index_dir: Path, tmp: Path, name: str) -> None:
    """Move a written segment into ``segments/`` (durably); the manifest naming it comes next."""
    folder = index_dir / SEGMENTS
    folder.mkdir(exist_ok=True)
    final = folder / name
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_dir(folder)


# -- reading ---------------------------------------------------------------------------------------------------
class Segment:
    """One open segment (or a whole legacy snapshot folder). Read-only and thread-safe; shared by
    every view that holds it, so a commit's new view opens only the new segment."""

    def __init__(self, folder: Path, vector_kind: str, legacy_format: int | None = None) -> None:
        self.folder = folder
        self.name = folder.name
        self.legacy = legacy_format is not None
        self._lock = threading.Lock()
        self._layout: ArrayLayout | None = None
        version = legacy_format or 99
        # Legacy formats: modified times from 3 on, publication dates from 4 on (else unknown: NULL).
        self._modified = "modified" if version >= 3 else "NULL"
        self._published = "published" if version >= 4 else "NULL"
        self._db = sqlite3.connect(f"file:{folder / 'meta.sqlite'}?mode=ro&immutable=1", uri=True,
                                   check_same_thread=False)
        rows = self._db.execute("SELECT doc, paragraph, char_start, char_end FROM chunks ORDER BY id").fetchall()
        docs = self._db.execute(f"SELECT id, source, title, {self._modified} FROM documents ORDER BY id").fetchall()
        # Memory-mapped: row lookups and exact search read it in place.
        self.matrix = map_array(folder / "vectors.npy")
        self.vectors = vector_index.open_index(folder, vector_kind, self.matrix)
        self.postings: TermPostings | None = None
        self.legacy_lexical: LexicalIndex | None = None
        if self.legacy:
            self.legacy_lexical = LexicalIndex.load(folder / "bm25")
            lexical_rows = self.legacy_lexical.size
        else:
            self.postings = TermPostings.load(folder / "postings")
            lexical_rows = self.postings.size
        columns = np.array(rows, dtype=np.int64).reshape(-1, 4)
        self.chunk_doc, self.chunk_paragraph, self.chunk_start, self.chunk_end = (
            np.ascontiguousarray(columns[:, i]) for i in range(4))
        self.doc_sources: list[str] = [d[1] for d in docs]
        self.doc_titles: list[str] = [d[2] for d in docs]
        self.doc_modified: list[float | None] = [d[3] for d in docs]
        self.doc_by_source = {s: i for i, s in enumerate(self.doc_sources)}
        if (self.vectors.ntotal != len(rows) or len(self.matrix) != len(rows)
                or lexical_rows not in (len(rows), 0)):
            raise ValueError(f"{self.vectors.ntotal} vectors, {lexical_rows} lexical rows and {len(rows)} chunks")

    @property
    def size(self) -> int:
        return len(self.chunk_doc)

    @property
    def nodes(self) -> int:
        """Vectors its search walks: its rows, and an extended graph's dead nodes too."""
        vectors = self.vectors
        return vectors.nodes if isinstance(vectors, vector_index.HnswIndex) else self.size

    def layout(self) -> ArrayLayout:
        """Every chunk's layout, computed once for the segment."""
        layout = self._layout
        if layout is None:
            with self._lock:
                if self._layout is None:
                    self._layout = ArrayLayout(self.chunk_doc, self.chunk_paragraph, self.chunk_start, self.chunk_end)
                layout = self._layout
        return layout

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql.format(modified=self._modified, published=self._published), args).fetchall()

    def records(self, docs: Sequence[int]) -> Iterator[tuple[DocRecord, list[ChunkRecord], np.ndarray]]:
        """Documents (local ids, ascending), each with its chunks (``doc`` = 0) and their vectors."""
        dim = self.matrix.shape[1]
        for rec, chunks, ids in self.documents(docs):
            yield rec, chunks, np.asarray(self.matrix[ids], np.float32).reshape(len(ids), dim)

    def documents(self, docs: Sequence[int]) -> Iterator[tuple[DocRecord, list[ChunkRecord], np.ndarray]]:
        """Documents (local ids, ascending), each with its chunks (``doc`` = 0) and their rows."""
        docs = sorted(docs)
        for a in range(0, len(docs), 500):
            batch = docs[a : a + 500]
            marks = ",".join("?" * len(batch))
            records = self.query("SELECT id, source, sha256, encoding, title, text, {modified}, {published} "
                                 f"FROM documents WHERE id IN ({marks}) ORDER BY id", batch)
            by_doc: dict[int, list[tuple[Any, ...]]] = {}
            for r in self.query("SELECT doc, id, paragraph, char_start, char_end, n_tokens, text FROM chunks "
                                f"WHERE doc IN ({marks}) ORDER BY doc, id", batch):
                by_doc.setdefault(r[0], []).append(r)
            for rec in records:
                rows = by_doc.get(rec[0], [])
                yield (DocRecord(*rec[1:]), [ChunkRecord(0, *r[2:]) for r in rows],
                       np.fromiter((r[1] for r in rows), np.int64, len(rows)))

    def close(self) -> None:
        self._db.close()


_open_segments: weakref.WeakValueDictionary[tuple[str, str], Segment] = weakref.WeakValueDictionary()
_open_guard = threading.Lock()


def open_segment(index_dir: Path, name: str, full_check: bool,
                 verify: Callable[[Path, dict[str, Any], bool], None]) -> Segment:
    """The segment ``name`` of ``index_dir``, checked against its checksums the first time this
    process opens it (then shared while any view holds it)."""
    key = (os.path.realpath(index_dir), name)
    with _open_guard:
        found = _open_segments.get(key)
    if found is not None:
        return found
    folder = index_dir / SEGMENTS / name
    try:
        record = json.loads((folder / "segment.json").read_text())
        if record.get("segment_format", 1) > SEGMENT_FORMAT:
            raise ValueError(f"segment format {record['segment_format']} is newer than this program reads "
                             f"({SEGMENT_FORMAT})")
        verify(folder, record, full_check)
        segment = Segment(folder, record["vector_index"])
    except (sqlite3.DatabaseError, RuntimeError, OSError, ValueError, KeyError) as exc:
        raise IndexCorrupt(
            f"segment {name} of the index in {index_dir} cannot be read ({exc}); rebuild it with "
            f"`python -m service index --index {index_dir} --rebuild`"
        ) from exc
    with _open_guard:
        return _open_segments.setdefault(key, segment)


@dataclass
class Part:
    """A segment as one manifest sees it: which of its documents are deleted, where its rows start."""

    segment: Segment
    deleted: frozenset[int]  # local document ids
    offset: int = 0  # global id of its first chunk in the view
    live: np.ndarray | None = None  # per chunk row; None: every row is live
    live_chunks: int = 0
    length_sum: float = 0.0

    def __post_init__(self) -> None:
        seg = self.segment
        if self.deleted:
            gone = np.zeros(len(seg.doc_sources), bool)
            gone[list(self.deleted)] = True
            self.live = ~gone[seg.chunk_doc]
            self.live_chunks = int(self.live.sum())
        else:
            self.live_chunks = seg.size
        if seg.postings is not None:
            lengths = seg.postings.lengths
            self.length_sum = float(lengths[self.live].sum() if self.live is not None else lengths.sum())

    def is_live(self, doc: int) -> bool:
        return doc not in self.deleted

    def live_docs(self) -> list[int]:
        return [d for d in range(len(self.segment.doc_sources)) if d not in self.deleted]


def _merge_top(found: list[tuple[np.ndarray, np.ndarray]], rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best of several (global ids, scores) lists per query row (id -1 or score -inf:
    nothing), ties by smaller id; -1 pads a row with fewer. Row by row on flat arrays: a query is
    one row, and this is a few small numpy calls where the two-dimensional forms cost ~0.1 ms."""
    out_ids = np.full((rows, n), -1, np.int64)
    out_scores = np.full((rows, n), -np.inf, np.float32)
    for r in range(rows):
        ids = np.concatenate([f[0][r] for f in found]) if found else np.zeros(0, np.int64)
        scores = np.concatenate([f[1][r] for f in found]).astype(np.float32, copy=False) if found \
            else np.zeros(0, np.float32)
        keep = (ids >= 0) & np.isfinite(scores)
        ids, scores = ids[keep], scores[keep]
        if n < len(ids):  # the n best in one pass; only they are sorted
            best = np.argpartition(-scores, n - 1)[:n]
            ids, scores = ids[best], scores[best]
        order = np.lexsort((ids, -scores))[:n]
        out_ids[r, : len(order)], out_scores[r, : len(order)] = ids[order], scores[order]
    return out_ids, out_scores


class PartsVectors:
    """Nearest chunks over several parts: the exact ones scored together, each HNSW graph walked on
    its own, deleted or filtered-out rows skipped, the best ``n`` of all kept."""

    def __init__(self, parts: Sequence[Part], masks: Sequence[np.ndarray | None], total: int) -> None:
        self.parts, self.total = parts, total
        # Exact parts are scored whole (all rows, or most of them: deleted or filtered rows dropped
        # after) by one ``exact_scores_many`` call (two halves on two threads) and one selection;
        # the rest are searched on their own, their searchers built once per view.
        self.whole = [(p, None if m is None else np.flatnonzero(~m)) for p, m in zip(parts, masks, strict=True)
                      if isinstance(p.segment.vectors, vector_index.ExactIndex) and p.segment.size
                      and (m is None or m.sum() > p.segment.size // 4)]
        starts = np.cumsum([0] + [p.segment.size for p, _x in self.whole])  # column of each in the scores
        self.column_ids = (np.concatenate([p.offset + np.arange(p.segment.size) for p, _x in self.whole])
                           if self.whole else np.zeros(0, np.int64))  # each column's global id
        excluded = [start + x for start, (_p, x) in zip(starts, self.whole, strict=False) if x is not None]
        self.excluded_columns = np.concatenate(excluded) if excluded else None
        self.matrices = [p.segment.matrix for p, _x in self.whole]
        chosen = {id(p) for p, _x in self.whole}
        self.apart: list[tuple[Part, vector_index.VectorIndex | SubsetVectors | None]] = [
            (p, p.segment.vectors if m is None else
             SubsetVectors(p.segment.vectors, p.segment.matrix, np.flatnonzero(m).astype(np.int64), m)
             if m.any() else None)
            for p, m in zip(parts, masks, strict=True) if id(p) not in chosen and p.segment.size]

    @property
    def ntotal(self) -> int:
        return self.total

    @property
    def kind(self) -> str:
        """The parts' index kinds (``exact``, ``hnsw``, or both joined by ``+``)."""
        return "+".join(sorted({p.segment.vectors.kind for p in self.parts})) or "exact"

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        queries = queries.reshape(-1, queries.shape[-1])
        n = min(n, self.total)
        found = []
        matrices = self.matrices
        # A small exact tail beside graphs is scored on the helper thread while this one walks them.
        later = (vector_index.on_second_thread(lambda: vector_index.exact_scores_one_thread(queries, matrices))
                 if self.whole and self.apart and len(self.column_ids) < vector_index.HALVES_MIN_ROWS else None)
        for part, searched in self.apart:
            if searched is None:  # nothing admitted
                continue
            ids, scores = searched.search(queries, n)
            found.append((np.where(ids >= 0, ids + part.offset, -1), scores))
        if self.whole:
            scored = later.result() if later is not None else vector_index.exact_scores_many(queries, matrices)
            scores = scored[0] if len(scored) == 1 else np.concatenate(scored, axis=1)
            if self.excluded_columns is not None:
                scores[:, self.excluded_columns] = -np.inf
            if self.apart:  # chosen with the graphs' results in one pass
                return _merge_top([(np.broadcast_to(self.column_ids, scores.shape), scores), *found], len(queries), n)
            cols, top = vector_index.top_n(scores, n)  # ties by smaller column: by smaller id
            return np.where(np.isfinite(top), self.column_ids[cols], -1), top
        return _merge_top(found, len(queries), n)


class PartsLexical:
    """BM25 over several parts with the statistics of all live chunks (``CorpusStats``)."""

    def __init__(self, parts: Sequence[Part], masks: Sequence[np.ndarray | None], stats: CorpusStats) -> None:
        self.parts, self.masks, self.stats = parts, masks, stats
        self.rows = sum(p.segment.size for p in parts)
        self.postings = [(p.segment.postings, p.offset, p.live) for p in parts if p.segment.postings is not None]

    # Arrays over every part's rows, so a query is one pass over its postings (built on first use: a
    # commit's new view opens without them).
    @cached_property
    def excluded(self) -> np.ndarray | None:
        """The rows not searched (deleted or filtered out), as a mask, or as their ids when they are
        few (zeroing a few deleted rows by id costs ~1 us, by a mask over 100k rows ~50 us); None:
        all searched."""
        if all(m is p.live for p, m in zip(self.parts, self.masks, strict=True)):  # the view's own: deleted rows
            live = self.row_live
            if live is None:
                return None
            out = ~live
        else:
            out = ~np.concatenate([m if m is not None else np.ones(p.segment.size, bool)
                                   for p, m in zip(self.parts, self.masks, strict=True)])
        ids = np.flatnonzero(out)
        return ids if len(ids) < len(out) // 8 else out

    @cached_property
    def row_lengths(self) -> np.ndarray | None:
        """Every row's length in terms (None where a part has no postings)."""
        if not self.parts or any(p.segment.postings is None for p in self.parts):
            return None
        return np.concatenate([p.segment.postings.lengths for p in self.parts])  # type: ignore[union-attr]

    @cached_property
    def row_live(self) -> np.ndarray | None:
        """Every row's liveness (BM25's statistics count deleted rows out, filtered-out rows in)."""
        if all(p.live is None for p in self.parts):
            return None
        return np.concatenate([p.live if p.live is not None else np.ones(p.segment.size, bool) for p in self.parts])

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        terms, pairs = query_terms(query)
        if not self.stats.chunks or not terms or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows, weights = bm25_postings(self.postings, terms, self.stats, self.row_lengths, self.row_live, pairs)
        if not len(rows):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = np.bincount(rows, weights=weights, minlength=self.rows).astype(np.float32)
        if self.excluded is not None:
            scores[self.excluded] = 0
        return top_hits(scores, n)


class _Shifted(Mapping[int, float]):
    """Scores keyed by global chunk id, read with a part's local ids (``key + offset``), no copy."""

    __slots__ = ("offset", "scores")

    def __init__(self, scores: Mapping[int, float], offset: int) -> None:
        self.scores, self.offset = scores, offset

    def __getitem__(self, key: int) -> float:
        return self.scores[key + self.offset]

    def __iter__(self) -> Iterator[int]:
        return (k - self.offset for k in self.scores)

    def __len__(self) -> int:
        return len(self.scores)


class PartsLayout:
    """The layout of chunks across parts: each part's own (computed once per segment), offset."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts = parts
        self.starts = np.array([p.offset for p in parts], np.int64)
        offsets, keys = 0, []
        for p in parts:
            local = p.segment.layout().paragraphs
            keys.append(local + offsets)
            offsets += int(local.max(initial=-1)) + 1
        self.paragraphs = np.concatenate(keys) if keys else np.zeros(0, np.int64)

    def windows_holding(self, best: Sequence[int], rank: Callable[[], Mapping[int, float]]) -> list[int]:
        """Each part's layout answers for its own chunks (one call per part holding some of ``best``)."""
        ids = np.asarray(best, np.int64)
        where = np.searchsorted(self.starts, ids, side="right") - 1
        out = [0] * len(ids)
        ranked: list[Mapping[int, float]] = []  # rank(), asked once for all parts

        def whole_rank() -> Mapping[int, float]:
            if not ranked:
                ranked.append(rank())
            return ranked[0]

        for i in np.unique(where).tolist():
            off = int(self.starts[i])
            positions = np.flatnonzero(where == i).tolist()

            def local_rank(off: int = off) -> Mapping[int, float]:
                return _Shifted(whole_rank(), off)

            held = self.parts[i].segment.layout().windows_holding([int(ids[j]) - off for j in positions], local_rank)
            for j, window in zip(positions, held, strict=True):
                out[j] = window + off
        return out


class Snapshot:
    """One committed state of a local index: its manifest and the live parts of its segments, read as
    one index. Thread-safe for readers."""

    def __init__(self, index_dir: Path, name: str, manifest: dict[str, Any], parts: list[Part]) -> None:
        self.index_dir = index_dir
        self.name = name
        self.path = index_dir / name
        self.manifest = manifest
        self.parts = parts
        offset = 0
        for p in parts:
            p.offset = offset
            offset += p.segment.size
        self._starts = np.array([p.offset for p in parts], np.int64)
        self.rows = offset  # chunk ids run from 0 to rows - 1 (deleted rows included)
        self.live_chunks = sum(p.live_chunks for p in parts)
        self.legacy = any(p.segment.legacy for p in parts)
        stats = CorpusStats(self.live_chunks, sum(p.length_sum for p in parts) / max(self.live_chunks, 1))
        if len(parts) == 1 and parts[0].live is None:  # one whole segment: its own structures, no wrapper
            self.vectors: Any = parts[0].segment.vectors
        else:
            self.vectors = PartsVectors(parts, [p.live for p in parts], self.live_chunks)
        if len(parts) == 1 and parts[0].segment.legacy_lexical is not None:
            self.lexical: Any = parts[0].segment.legacy_lexical
        else:
            self.lexical = PartsLexical(parts, [p.live for p in parts], stats)
        self._stats = stats
        self._lock = threading.Lock()
        self._layout: PartsLayout | None = None
        self._selections: dict[tuple[Any, ...], RestrictedView] = {}

    @property
    def matrix(self) -> np.ndarray:
        """The live chunks' vectors in id order (one segment's memory map when it is whole)."""
        if len(self.parts) == 1 and self.parts[0].live is None:
            return self.parts[0].segment.matrix
        blocks = [p.segment.matrix[p.live] if p.live is not None else p.segment.matrix for p in self.parts]
        return np.concatenate(blocks) if blocks else np.zeros((0, int(self.manifest["model"]["dim"])), np.float32)

    # -- IndexView --------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self.name

    @property
    def size(self) -> int:
        return self.live_chunks

    @property
    def meta(self) -> IndexMeta:
        m = self.manifest
        return IndexMeta(corpus=m["corpus"], model=m["model"], chunking=m.get("chunking", {}))

    def layout(self, candidates: np.ndarray) -> PartsLayout | ArrayLayout:
        if len(self.parts) == 1:
            return self.parts[0].segment.layout()
        layout = self._layout
        if layout is None:
            with self._lock:
                if self._layout is None:
                    self._layout = PartsLayout(self.parts)
                layout = self._layout
        return layout

    def _locate(self, ids: Sequence[int]) -> list[tuple[Part, int]]:
        where = np.searchsorted(self._starts, np.asarray(ids, np.int64), side="right") - 1
        return [(self.parts[int(w)], int(i) - self.parts[int(w)].offset) for w, i in zip(where, ids, strict=True)]

    def similarity(self, query_vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, np.float32)
        rows = np.stack([part.segment.matrix[r] for part, r in self._locate(ids)])
        return np.asarray(rows @ query_vector, dtype=np.float32)

    def chunk_rows(self, ids: Sequence[int]) -> list[ChunkRow]:
        if not len(ids):
            return []
        wanted: dict[int, list[int]] = {}
        for part, r in self._locate(ids):
            wanted.setdefault(id(part), []).append(r)
        by_id: dict[int, ChunkRow] = {}
        for part in self.parts:
            rows = wanted.get(id(part))
            if not rows:
                continue
            seg = part.segment
            marks = ",".join("?" * len(rows))
            sql = f"SELECT id, doc, paragraph, char_start, char_end, text FROM chunks WHERE id IN ({marks})"
            for cid, doc, paragraph, start, end, text in seg.query(sql, rows):
                if part.is_live(doc):
                    by_id[cid + part.offset] = ChunkRow(cid + part.offset, seg.doc_sources[doc], seg.doc_titles[doc],
                                                        paragraph, start, end, text)
        return [by_id[int(i)] for i in ids if int(i) in by_id]

    def stats(self) -> IndexStats:
        m = self.manifest
        kinds = sorted({p.segment.vectors.kind for p in self.parts if p.live_chunks}) or ["exact"]
        return IndexStats(
            documents=m["counts"]["documents"], chunks=m["counts"]["chunks"], model=m["model"]["name"],
            model_sha256=m["model"]["sha256"], dimension=m["model"]["dim"], version=self.name, created=m["created"],
            vector_index="+".join(kinds), corpus=m["corpus"], store="local",
        )

    def locate(self, source: str) -> tuple[Part, int] | None:
        """The part and local id of a live document."""
        for part in self.parts:
            doc = part.segment.doc_by_source.get(source)
            if doc is not None and part.is_live(doc):
                return part, doc
        return None

    def has_document(self, source: str) -> bool:
        return self.locate(source) is not None

    def document(self, source: str) -> DocRecord | None:
        found = self.locate(source)
        if found is None:
            return None
        part, doc = found
        row = part.segment.query("SELECT source, sha256, encoding, title, text, {modified}, {published} "
                                 "FROM documents WHERE id = ?", (doc,))
        return DocRecord(*row[0]) if row else None

    def documents(self) -> list[DocumentSummary]:
        out = []
        for part in self.parts:
            for r in part.segment.query("SELECT id, source, title, sha256, n_chunks, length(text), {modified}, "
                                        "{published} FROM documents"):
                if part.is_live(r[0]):
                    out.append(DocumentSummary(*r[1:]))
        return sorted(out, key=lambda d: d.source)

    def hashes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in self.parts:
            for doc, source, sha in part.segment.query("SELECT id, source, sha256 FROM documents"):
                if part.is_live(doc):
                    out[source] = sha
        return out

    def modified_times(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for part in self.parts:
            seg = part.segment
            for doc in part.live_docs():
                out[seg.doc_sources[doc]] = seg.doc_modified[doc]
        return out

    def filtered(self, flt: Filter) -> RestrictedView:
        """Searches over the chunks of the documents ``flt`` admits (selections cached per filter);
        BM25 keeps the whole index's statistics."""
        with self._lock:
            found = self._selections.get(flt.key)
        if found is not None:
            return found
        masks: list[np.ndarray] = []
        for part in self.parts:
            seg = part.segment
            admitted = np.fromiter((flt.admits(s, m) for s, m in zip(seg.doc_sources, seg.doc_modified, strict=True)),
                                   bool, len(seg.doc_sources))
            mask = admitted[seg.chunk_doc] if seg.size else np.zeros(0, bool)
            masks.append(mask & part.live if part.live is not None else mask)
        size = int(sum(int(m.sum()) for m in masks))
        lexical: Any
        if len(self.parts) == 1 and self.parts[0].segment.legacy_lexical is not None:
            lexical = SubsetLexical(self.parts[0].segment.legacy_lexical, masks[0])
        else:
            lexical = PartsLexical(self.parts, masks, self._stats)
        view = RestrictedView(self, PartsVectors(self.parts, list(masks), size), lexical, size)
        with self._lock:
            if len(self._selections) >= _SELECTIONS_KEPT:
                self._selections.pop(next(iter(self._selections)))
            self._selections[flt.key] = view
        return view

    def all_records(self) -> tuple[list[DocRecord], list[ChunkRecord], np.ndarray]:
        """Every live document (sorted by source), its chunks (``doc`` = its position) and their vectors."""
        entries = sorted(self.iter_records(), key=lambda e: e[0].source)
        docs = [e[0] for e in entries]
        chunks = [ChunkRecord(i, c.paragraph, c.char_start, c.char_end, c.n_tokens, c.text)
                  for i, e in enumerate(entries) for c in e[1]]
        dim = int(self.manifest["model"]["dim"])
        blocks = [e[2] for e in entries]
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
        return docs, chunks, vectors

    def iter_records(self, skip: set[str] | frozenset[str] = frozenset()
                     ) -> Iterator[tuple[DocRecord, list[ChunkRecord], np.ndarray]]:
        """Every live document but ``skip``, with its chunks (``doc`` = 0) and their vectors."""
        for part in self.parts:
            seg = part.segment
            yield from seg.records([d for d in part.live_docs() if seg.doc_sources[d] not in skip])

    def close(self) -> None:
        """Nothing to release: segments close when no view holds them any more."""


# -- filtered searches ---------------------------------------------------------------------------------------
class SubsetVectors:
    """Vector search restricted to some rows (``ids``, ascending; ``mask`` over all rows).

    Exact index: a selection of a quarter of the rows or fewer is gathered and scored alone (cheaper
    than scoring every row), a larger one by scoring every row and dropping the others; exact either
    way. HNSW index: a selection of up to ``SUBSET_EXACT_ROWS`` rows and a quarter of the graph is
    gathered and scored exactly, a larger one is searched through the graph with a bitmap of the
    admitted rows (efSearch at least ``n``; approximate, as every HNSW search is). The ``n`` best
    admitted rows come back whenever ``n`` are admitted.
    """

    def __init__(self, whole: vector_index.VectorIndex, matrix: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> None:
        self.whole, self.matrix, self.ids, self.mask = whole, matrix, ids, mask
        self._selection: tuple[Any, np.ndarray, dict[int, Any]] | None = None  # an HNSW graph's row bitmap, built once

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
        if isinstance(self.whole, vector_index.HnswIndex) and len(self.ids) > min(SUBSET_EXACT_ROWS, whole_rows // 4):
            # Most of the graph admitted (a segment less its deleted rows) or a large selection:
            # walk the graph with a bitmap of the admitted rows, not gather them for every query.
            if self._selection is None:
                self._selection = self.whole.selection(self.mask)
            return self.whole.search_selected(queries, n, self._selection)
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
        return top_hits(scores, n)
