"""Where chunks sit: which paragraph each belongs to, and which chunks are windows.

A paragraph's chunks are windows (consecutive sentences under the word-piece budget, overlapping
by a sentence) and, for paragraphs of several sentences, the sentences themselves. Retrieval ranks
chunks, collapses them to paragraphs, and shows a **window**: a chunk that no earlier chunk of its
paragraph contains. This module answers both questions from per-chunk arrays (``ArrayLayout``, the
local store: computed once per snapshot, vectorised) or from the rows of a query's candidates
(``RowsLayout``, a database store: only what one query needs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def paragraph_ids(chunk_doc: np.ndarray, chunk_paragraph: np.ndarray) -> np.ndarray:
    """A dense id per (document, paragraph) for every chunk; ids follow (document, paragraph) order."""
    if len(chunk_doc) == 0:
        return np.zeros(0, np.int64)
    key = (np.asarray(chunk_doc, np.int64) << 32) | np.asarray(chunk_paragraph, np.int64)
    return np.unique(key, return_inverse=True)[1].astype(np.int64).reshape(-1)


def paragraph_windows(para: np.ndarray, starts: np.ndarray, ends: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which chunks are windows (not inside an earlier chunk of their paragraph, in text order with
    the longer of two equal starts first), and the windows of paragraph p, in text order, as
    ``windows[bounds[p]:bounds[p + 1]]``. Computed once per snapshot, for all chunks at once."""
    order = np.lexsort((-ends, starts, para))  # stable: equal spans keep the smaller id first
    # A running maximum of the ends, keyed by paragraph so that it starts again in each one.
    key = para[order].astype(np.int64) * (1 << 32) + ends[order]
    reach = np.maximum.accumulate(key) if len(key) else key
    flags = np.ones(len(order), bool)
    flags[1:] = key[1:] > reach[:-1]
    is_window = np.zeros(len(order), bool)
    is_window[order] = flags
    windows = order[flags].astype(np.int64)
    bounds = np.searchsorted(para[windows], np.arange(int(para.max(initial=-1)) + 2))
    return is_window, windows, bounds


def window_flags(spans: Sequence[tuple[int, int, int]]) -> list[bool]:
    """For one document's chunks as ``(paragraph, start, end)``: which are windows (the rule of
    :func:`paragraph_windows`, for a writer that stores the flag with each chunk)."""
    if not spans:
        return []
    para = np.array([p for p, _s, _e in spans], np.int64)
    starts = np.array([s for _p, s, _e in spans], np.int64)
    ends = np.array([e for _p, _s, e in spans], np.int64)
    return paragraph_windows(para, starts, ends)[0].tolist()


def _pick(holding: list[int], rank: Mapping[int, float] | None) -> list[int]:
    if len(holding) > 1 and rank is not None:
        holding.sort(key=lambda c: (-rank.get(c, -np.inf), c))
    return holding


class ArrayLayout:
    """The layout of every chunk of a snapshot, from its per-chunk arrays (chunk id = row)."""

    def __init__(self, chunk_doc: np.ndarray, chunk_paragraph: np.ndarray, starts: np.ndarray,
                 ends: np.ndarray) -> None:
        self.paragraphs = paragraph_ids(chunk_doc, chunk_paragraph)
        self._starts, self._ends = starts, ends
        self._is_window, self._windows_of, self._bounds = paragraph_windows(self.paragraphs, starts, ends)

    def windows_holding(self, best: Sequence[int], rank: Callable[[], Mapping[int, float]]) -> list[int]:
        """For each chunk, the window holding it; when overlapping windows both do, the one ``rank()``
        scores higher (``rank`` is called only then)."""
        starts, ends = self._starts, self._ends
        scores: Mapping[int, float] | None = None
        out = []
        for b in best:
            if self._is_window[b]:  # the usual case, and the only window that holds a window
                out.append(b)
                continue
            p = self.paragraphs[b]
            ids = self._windows_of[self._bounds[p] : self._bounds[p + 1]]
            holding = ids[(starts[ids] <= starts[b]) & (ends[ids] >= ends[b])].tolist()
            if len(holding) > 1 and scores is None:
                scores = rank()
            out.append(_pick(holding, scores)[0] if holding else b)
        return out


@dataclass(frozen=True, slots=True)
class ChunkPlace:
    paragraph: int  # a key shared by the chunks of one paragraph of one document
    start: int
    end: int
    window: bool


class _Keys:
    """``keys[ids]`` for chunk ids that are not row numbers (a database's ids)."""

    def __init__(self, places: Mapping[int, ChunkPlace]) -> None:
        self._places = places

    def __getitem__(self, ids: np.ndarray | int) -> np.ndarray | int:
        if isinstance(ids, int | np.integer):
            return self._places[int(ids)].paragraph
        return np.fromiter((self._places[int(i)].paragraph for i in np.asarray(ids).reshape(-1)), np.int64,
                           count=np.asarray(ids).size)


class RowsLayout:
    """The layout of a query's candidate chunks, from their stored places; the windows of a paragraph
    are fetched (``windows_of``) only for the few best chunks that are not windows themselves."""

    def __init__(self, places: Mapping[int, ChunkPlace],
                 windows_of: Callable[[int], Sequence[tuple[int, int, int]]]) -> None:
        self._places = places
        self._windows_of = windows_of  # paragraph key -> [(chunk id, start, end)] of its windows
        self.paragraphs = _Keys(places)

    def windows_holding(self, best: Sequence[int], rank: Callable[[], Mapping[int, float]]) -> list[int]:
        scores: Mapping[int, float] | None = None
        out = []
        for b in best:
            place = self._places[b]
            if place.window:
                out.append(b)
                continue
            holding = sorted((c for c, s, e in self._windows_of(place.paragraph)
                              if s <= place.start and e >= place.end))
            if len(holding) > 1 and scores is None:
                scores = rank()
            out.append(_pick(holding, scores)[0] if holding else b)
        return out
