"""Background merges of a local index's segments: a tiered policy keeps their number bounded.

Every commit adds a segment, so without merges a long-lived index would be searched in thousands of
pieces. A merge reads the live documents of some segments (immutable, so no lock is needed while it
reads and writes), writes them as one segment, then takes the writer lock for the few milliseconds
it needs to switch the manifest. Documents deleted from the merged segments while it ran are marked
deleted in the new one; if a segment it merged is gone (a rebuild), the merge is dropped. A kill at
any point leaves the previous manifest current; the next commit collects the leftovers.

**Policy** (``MergePolicy``): segments fall into tiers by live size (tier t holds sizes up to
``floor * per_tier**t`` chunks). When a tier holds ``per_tier`` segments they are merged into one,
which usually lands one tier up; so an index of N chunks has at most ``(per_tier - 1)`` segments
per tier, ``log(N / floor) / log(per_tier)`` tiers. A segment with more than ``max_deleted`` of its
chunks deleted is rewritten on its own.

**Past the HNSW threshold** the index keeps one graph. A graph walk costs about the same whatever
the graph's size (0.3 ms at 12k or 100k chunks), and scanning rows exactly costs by the row, so
tiers of graphs made a query walk three graphs and scan up to 24,000 rows: 2.4 times the merged
index's time at 100k chunks. So the biggest graph is the **base**, every other segment its
**tail**; the tail merges by tiers while it holds at most ``tail_share`` of the index's chunks
(``ASK_GRAPH_TAIL_SHARE``) and is then **folded** into the base: its rows
are added to a copy of the base's graph (``service.vectors.GraphExtension``), seconds where
building the graph again takes minutes. Rows deleted from the base stay in the graph as dead
nodes, never returned; once more than ``max_deleted`` of it is dead the base is rebuilt on its
own. ``merge_all`` always builds a fresh graph.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import Settings
from ..lexical import TermPostings
from ..vectors import GraphExtension, HnswIndex, uses_hnsw
from .base import ChunkRecord, IndexBusy, StoreError
from .local import commit_manifest, file_record, manifest_for, open_snapshot, part_record, writer_lock
from .segments import Part, SegmentContent, Snapshot, new_segment_name, write_segment

if TYPE_CHECKING:
    from pathlib import Path

    from .local import LocalStore

log = logging.getLogger(__name__)

_INSTALL_RETRY = 0.2  # seconds between tries to take the writer lock for a merge's switch
_INSTALL_GIVE_UP = 120.0  # then the merge is dropped (the next commit plans it again)


@dataclass(frozen=True)
class MergePolicy:
    per_tier: int = Settings.model_fields["segments_per_tier"].default  # ASK_SEGMENTS_PER_TIER
    floor: int = 8_000  # chunks: every segment up to this size is in tier 0
    max_deleted: float = 0.3
    # graph regime: chunks outside the graph, as a share of the index (ASK_GRAPH_TAIL_SHARE)
    tail_share: float = Settings.model_fields["graph_tail_share"].default

    def tier(self, chunks: int) -> int:
        return max(0, math.ceil(math.log(max(chunks, 1) / self.floor, self.per_tier) - 1e-9))

    def tail(self, chunks: int) -> int:
        """Graph regime: the most chunks that may stand outside the index's graph."""
        return int(self.tail_share * chunks)

    def worn(self, part: Part) -> bool:
        """Over ``max_deleted`` of what its search walks is deleted (an extended graph's dead nodes too)."""
        nodes = part.segment.nodes
        return bool(nodes) and 1 - part.live_chunks / nodes > self.max_deleted

    @staticmethod
    def biggest_graph(parts: list[Part]) -> Part | None:
        """The part with the most graph nodes (legacy snapshots aside): a graph-regime index's base."""
        graphed = [p for p in parts if p.segment.vectors.kind == "hnsw" and not p.segment.legacy]
        return max(graphed, key=lambda p: p.segment.nodes, default=None)

    def plan(self, parts: list[Part], graphs: bool = False) -> list[Part]:
        """The parts to merge next (none: the index is within the policy). ``graphs``: the index is
        past the HNSW threshold, where its biggest graph is the base and the other parts its tail."""
        candidates = [p for p in parts if not p.segment.legacy]
        if graphs:
            base = self.biggest_graph(candidates)
            if base is not None and self.worn(base):
                return [base]
            rest = [p for p in candidates if p is not base]
            if sum(p.live_chunks for p in rest) > self.tail(sum(p.live_chunks for p in parts)):
                return ([base] if base is not None else []) + rest  # folded into the base's graph
            candidates = rest
        tiers: dict[int, list[Part]] = {}
        for p in candidates:
            tiers.setdefault(self.tier(p.live_chunks), []).append(p)
        for t in sorted(tiers):
            if len(tiers[t]) >= self.per_tier:
                return sorted(tiers[t], key=lambda p: p.live_chunks)[: self.per_tier]
        for p in candidates:
            if self.worn(p):
                return [p]
        return []

    def extends(self, chosen: list[Part]) -> Part | None:
        """The part among ``chosen`` whose graph a merge of them extends rather than builds again: the
        biggest graph, unless it is worn (a graph rebuilt drops its dead nodes)."""
        base = self.biggest_graph(chosen)
        return None if base is None or len(chosen) < 2 or self.worn(base) else base


def merged_content(view: Snapshot, chosen: list[Part]) -> tuple[SegmentContent, list[np.ndarray]]:
    """The live documents of ``chosen`` as one segment's content, sorted by source (as a rebuild
    writes them), their vectors gathered and their term postings merged without re-analysis; with,
    per part, each old row's new row (-1: deleted)."""
    entries: list[tuple[str, int, int]] = []  # (source, part position, local document)
    live = [part.live_docs() for part in chosen]
    for i, part in enumerate(chosen):
        entries += [(part.segment.doc_sources[d], i, d) for d in live[i]]
    entries.sort()
    new_rows = [np.full(p.segment.size, -1, np.int64) for p in chosen]
    row = 0
    for _source, i, d in entries:
        seg = chosen[i].segment
        a, b = (int(x) for x in np.searchsorted(seg.chunk_doc, [d, d + 1]))
        new_rows[i][a:b] = np.arange(row, row + b - a)
        row += b - a
    dim = int(view.manifest["model"]["dim"])
    vectors = np.zeros((row, dim), np.float32)
    lengths = np.zeros(row, np.int32)
    vocab: dict[str, int] = {}
    terms, rows, tfs = [], [], []
    records = {}
    for i, part in enumerate(chosen):
        seg, target = part.segment, new_rows[i]
        keep = np.flatnonzero(target >= 0)
        vectors[target[keep]] = seg.matrix[keep]
        postings = seg.postings
        if postings is None:
            raise ValueError("a legacy segment is not merged")
        lengths[target[keep]] = postings.lengths[keep]
        remap = np.fromiter((vocab.setdefault(t, len(vocab)) for t in sorted(postings.vocab, key=postings.vocab.__getitem__)),
                            np.int64, len(postings.vocab))
        t, r, f = postings.pairs()
        alive = target[r] >= 0
        terms.append(remap[t[alive]])
        rows.append(target[r[alive]])
        tfs.append(f[alive])
        for (rec, chunks, _rows), d in zip(seg.documents(live[i]), live[i], strict=True):
            records[(i, d)] = (rec, chunks)  # the vectors were gathered above, all at once
    docs, chunk_records = [], []
    for position, (_source, i, d) in enumerate(entries):
        rec, chunks = records[(i, d)]
        docs.append(rec)
        chunk_records += [ChunkRecord(position, c.paragraph, c.char_start, c.char_end, c.n_tokens, c.text)
                          for c in chunks]
    postings = TermPostings.from_pairs(vocab, np.concatenate(terms) if terms else np.zeros(0, np.int64),
                                       np.concatenate(rows) if rows else np.zeros(0, np.int64),
                                       np.concatenate(tfs) if tfs else np.zeros(0, np.float32), lengths)
    return SegmentContent(docs, chunk_records, vectors, postings), new_rows


def merge_once(local: LocalStore, plan: Callable[[list[Part]], list[Part]] | None = None) -> bool:
    """Plan (by the store's policy, or ``plan``) and run one merge; False when there is nothing to
    merge (or it had to be dropped)."""
    index_dir = local.index_dir
    if not index_dir.joinpath("CURRENT").exists():
        return False
    view = open_snapshot(index_dir, local.model_sha256, local.full_check)
    chosen = plan(view.parts) if plan else local.policy.plan(view.parts, uses_hnsw(view.size, local.hnsw_threshold))
    if not chosen:
        return False
    name = new_segment_name()
    content, new_rows = merged_content(view, chosen)
    graph: bool | GraphExtension = local.graph_for(len(content.chunks), view.size)
    base = local.policy.extends(chosen) if graph and plan is None else None
    if base is not None and isinstance(base.segment.vectors, HnswIndex):  # keep its graph, add the rest
        graph = GraphExtension(base.segment.folder, base.segment.vectors.per_node(new_rows[chosen.index(base)], -1))
    folder = write_segment(index_dir, name, content, graph, file_record)
    try:
        deadline = time.monotonic() + _INSTALL_GIVE_UP
        while True:
            try:
                with writer_lock(index_dir, brief=True):
                    return _switch(local, chosen, name, folder, content)
            except IndexBusy:
                if time.monotonic() > deadline:
                    log.info("merge of %d segments dropped: the index stayed busy", len(chosen))
                    return False
                time.sleep(_INSTALL_RETRY)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # gone already when it was switched in


def merge_all(local: LocalStore) -> bool:
    """Merge every segment into one, deletions purged (a "force merge": the fully merged state that
    benchmarks compare against). Waits for this process's background merges first."""
    settle(local)

    def everything(parts: list[Part]) -> list[Part]:
        whole = len(parts) == 1 and not parts[0].deleted
        return [] if whole or any(p.segment.legacy for p in parts) else parts

    return merge_once(local, everything)


def _switch(local: LocalStore, chosen: list[Part], name: str, folder: Path, content: SegmentContent) -> bool:
    """Under the writer lock: replace the merged parts with the new segment in the current manifest."""
    now = open_snapshot(local.index_dir, local.model_sha256, local.full_check)
    live = {p.segment.name: p for p in now.parts}
    if any(p.segment.name not in live for p in chosen):
        return False  # a rebuild or another merge replaced them meanwhile
    position = {d.source: i for i, d in enumerate(content.docs)}
    deleted: set[int] = set()
    for p in chosen:  # deleted while the merge ran
        for d in live[p.segment.name].deleted - p.deleted:
            deleted.add(position[p.segment.doc_sources[d]])
    merged = {p.segment.name for p in chosen}
    records, placed = [], False
    for rec in now.manifest["segments"]:
        if rec["name"] not in merged:
            records.append(rec)
        elif not placed:
            placed = True
            records.append(part_record(name, content.chunk_doc(), len(content.docs), deleted))
    if len(deleted) == len(content.docs):
        records = [r for r in records if r["name"] != name]
        commit_manifest(local.index_dir, manifest_for(now.manifest, records))
    else:
        commit_manifest(local.index_dir, manifest_for(now.manifest, records), [(folder, name)])
    log.info("merged %d segments (%d chunks) into %s", len(chosen), len(content.chunks), name)
    return True


# -- running merges -------------------------------------------------------------------------------------------
_threads: dict[str, threading.Thread] = {}
_pending: set[str] = set()  # folders with a commit since their merge thread last planned
_threads_guard = threading.Lock()


def _run(local: LocalStore) -> None:
    """Merge while the policy asks for it; False from ``merge_once`` ends the run."""
    while True:
        try:
            if not merge_once(local):
                return
        except (StoreError, OSError, ValueError, sqlite3.Error) as exc:  # the index stays as it was; the next commit retries
            log.warning("segment merge in %s failed: %s", local.index_dir, exc)
            return


def _background(local: LocalStore, key: str) -> None:
    while True:
        try:
            _run(local)
        except Exception:  # the thread must not die holding its folder's slot
            # A failure ``_run`` does not expect (a bug; CPython 3.11's gh-106905, "AST constructor
            # recursion depth mismatch", when another thread compiles code while a segment's .npy
            # header is parsed) leaves the index as it was. Without this, the thread would end with
            # its key still in ``_threads``, and no merge would run again in this process.
            log.exception("segment merge in %s failed; the next commit tries again", local.index_dir)
        with _threads_guard:
            if key not in _pending:
                _threads.pop(key, None)
                return
            _pending.discard(key)


def merge_soon(local: LocalStore) -> None:
    """Run the merges the policy asks for: in a background thread (one per index folder per process),
    or now when the store merges in the foreground."""
    if not local.merge_in_background:
        _run(local)
        return
    key = os.path.realpath(local.index_dir)
    with _threads_guard:
        if key in _threads:
            _pending.add(key)  # the running thread plans again before it stops
            return
        thread = threading.Thread(target=_background, args=(local, key), name=f"merge {local.index_dir.name}",
                                  daemon=True)
        _threads[key] = thread
        thread.start()


def settle(local: LocalStore) -> None:
    """Wait for this process's merges of ``local``'s folder, then run any the policy still asks for."""
    key = os.path.realpath(local.index_dir)
    with _threads_guard:
        running = _threads.get(key)
    if running is not None:
        running.join()
    _run(local)
