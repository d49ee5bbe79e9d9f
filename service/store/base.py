"""The storage seam: what the engine, retrieval and the indexer need from a store, and nothing more.

A **store** holds documents, their chunks (citation fields, a vector, lexical postings) and the
settings they were built with. Two implementations pass one contract suite
(``tests/store_contract.py``): ``local`` (immutable snapshot folders switched atomically, one
machine) and ``postgres`` (PostgreSQL + pgvector, shared by many servers).

* ``Store.view()`` is a consistent read state (``IndexView``): every call of one request reads the
  same version, so a search never mixes two states. ``Store.version()`` is cheap (one small read)
  and tells a reader when to take a new view.
* ``Store.writer()`` serialises writers (``IndexBusy`` at once when another holds it) and yields an
  ``IndexWriter``; ``apply`` adds, replaces and deletes whole documents in one commit that readers
  see entirely or not at all.

Retrieval reads candidates through three small protocols (``VectorSearch``, ``LexicalSearch``,
``ChunkLayout``), so the local store keeps its memory-mapped arrays and the database runs SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..filters import Filter


# -- errors -----------------------------------------------------------------------------------------------
class StoreError(RuntimeError):
    """Base for index problems that a user can act on (the message says how)."""


class IndexMissing(StoreError):
    pass


class IndexCorrupt(StoreError):
    pass


class IndexIncompatible(StoreError):
    pass


class IndexBusy(StoreError):
    pass


class IndexWriteFailed(StoreError):
    pass


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (a database connection lost); retrying may work."""


# -- records ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DocRecord:
    source: str
    sha256: str
    encoding: str
    title: str
    text: str
    modified: float | None = None  # the file's modification time (seconds since the epoch); None: not recorded
    published: str | None = None  # the date the page declares (HTML: ``2024-05-01``); None: none, or not recorded


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    doc: int  # position of the document in the write's document list
    paragraph: int
    char_start: int
    char_end: int
    n_tokens: int
    text: str


@dataclass(frozen=True, slots=True)
class ChunkRow:
    id: int
    source: str
    title: str
    paragraph: int
    char_start: int
    char_end: int
    text: str


@dataclass(frozen=True, slots=True)
class DocumentSummary:
    source: str
    title: str
    sha256: str
    chunks: int
    characters: int
    modified: float | None = None
    published: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "title": self.title, "sha256": self.sha256, "chunks": self.chunks,
                "characters": self.characters, "modified": iso_time(self.modified), "published": self.published}


def iso_time(seconds: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC (``2024-05-01T12:00:00Z``), None as None."""
    if seconds is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class IndexStats:
    documents: int
    chunks: int
    model: str
    model_sha256: str
    dimension: int
    version: str  # the snapshot's name, or the database's generation
    created: str
    vector_index: str
    corpus: str
    store: str  # "local" or "postgresql"


@dataclass(frozen=True, slots=True)
class DocumentUpsert:
    """One document as the indexer hands it to a writer: its chunks, their vectors and lexical texts."""

    doc: DocRecord
    chunks: Sequence[ChunkRecord]  # ``doc`` fields are ignored: every chunk belongs to this document
    vectors: np.ndarray  # float32 [len(chunks), dim], L2-normalised
    lexical: Sequence[str]  # the text each chunk is BM25-indexed by (title line + chunk)


@dataclass(frozen=True, slots=True)
class WriteResult:
    version: str  # the version that holds the change (the live one when nothing changed)
    documents: int  # documents in the index after the write
    chunks: int


@dataclass
class IndexMeta:
    """What a write records about how the index was built (checked by the next writer and by readers)."""

    corpus: str
    model: dict[str, Any]  # name, sha256, dim, max_seq_length
    chunking: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


# -- the read side ------------------------------------------------------------------------------------------
class VectorSearch(Protocol):
    """Nearest chunks by inner product of L2-normalised vectors (cosine)."""

    @property
    def ntotal(self) -> int: ...

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, scores)`` of shape [len(queries), n], best first; id -1 pads rows with fewer hits."""
        ...


class LexicalSearch(Protocol):
    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` chunk ids and BM25 scores (only chunks sharing a term with the query)."""
        ...


class ChunkLayout(Protocol):
    """Where candidate chunks sit (``service.layout``): their paragraph, and the windows that hold them."""

    @property
    def paragraphs(self) -> Any:
        """``paragraphs[ids]``: a key per chunk id, equal for the chunks of one paragraph."""
        ...

    def windows_holding(self, best: Sequence[int], rank: Callable[[], Mapping[int, float]]) -> list[int]:
        """For each chunk, the window (a chunk no other chunk of its paragraph contains) holding it;
        when several do, the one ``rank()`` scores highest (then the smaller id)."""
        ...


class IndexView(Protocol):
    """One consistent, read-only state of an index."""

    @property
    def version(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def meta(self) -> IndexMeta: ...

    @property
    def vectors(self) -> VectorSearch: ...

    @property
    def lexical(self) -> LexicalSearch: ...

    def layout(self, candidates: np.ndarray) -> ChunkLayout:
        """The layout of (at least) these candidate chunks."""
        ...

    def similarity(self, query_vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Cosine of the query and each chunk."""
        ...

    def chunk_rows(self, ids: Sequence[int]) -> list[ChunkRow]: ...

    def stats(self) -> IndexStats: ...

    def has_document(self, source: str) -> bool: ...

    def document(self, source: str) -> DocRecord | None: ...

    def documents(self) -> list[DocumentSummary]: ...

    def hashes(self) -> dict[str, str]:
        """sha256 of every document, by source (what the indexer compares a folder with)."""
        ...

    def modified_times(self) -> dict[str, float | None]:
        """Every document's recorded modified time, by source (None: not recorded)."""
        ...

    def filtered(self, flt: Filter) -> IndexView:
        """This state with searches (``vectors``, ``lexical``, ``size``) restricted to the chunks of
        the documents ``flt`` admits; everything else reads the whole state."""
        ...


# -- the write side -----------------------------------------------------------------------------------------
class IndexWriter(Protocol):
    def previous(self) -> IndexView | None:
        """The state this writer builds on (None: an empty index)."""
        ...

    def apply(self, meta: IndexMeta, upserts: Sequence[DocumentUpsert], deletes: Sequence[str],
              replace_all: bool = False, touch: Mapping[str, float] | None = None) -> WriteResult:
        """Add or replace ``upserts`` and delete ``deletes`` (sources), keeping every other document
        (none with ``replace_all``: a rebuild); one commit that readers see whole or not at all.
        ``touch``: new modified times of kept documents (content unchanged, nothing re-embedded)."""
        ...


class Store(Protocol):
    kind: str  # "local" or "postgresql"

    def version(self) -> str | None:
        """The live version, or None when the store holds no index yet (cheap: readers poll it)."""
        ...

    def view(self) -> IndexView:
        """The live state (``IndexMissing`` when there is none)."""
        ...

    def writer(self) -> AbstractContextManager[IndexWriter]:
        """Exclusive write access: ``IndexBusy`` at once when another writer holds it."""
        ...

    def describe(self) -> str:
        """Where the index lives, for messages (a folder, or a database URL without its password)."""
        ...

    def settle(self) -> None:
        """Finish the maintenance this process's writes started (the local store's segment merges;
        nothing for PostgreSQL, which vacuums itself), so that a one-shot command leaves its work done."""
        ...


class RestrictedView:
    """An ``IndexView`` whose searches see only some chunks (a filter's): a store supplies the
    restricted ``vectors``, ``lexical`` and their ``size``; every other read goes to the whole view
    (BM25 keeps the whole index's statistics, so a passage scores the same with or without a filter)."""

    def __init__(self, view: IndexView, vectors: VectorSearch, lexical: LexicalSearch, size: int) -> None:
        self.whole = view
        self.vectors: VectorSearch = vectors
        self.lexical: LexicalSearch = lexical
        self.size = size

    @property
    def version(self) -> str:
        return self.whole.version

    @property
    def meta(self) -> IndexMeta:
        return self.whole.meta

    def layout(self, candidates: np.ndarray) -> ChunkLayout:
        return self.whole.layout(candidates)

    def similarity(self, query_vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        return self.whole.similarity(query_vector, ids)

    def chunk_rows(self, ids: Sequence[int]) -> list[ChunkRow]:
        return self.whole.chunk_rows(ids)

    def stats(self) -> IndexStats:
        return self.whole.stats()

    def has_document(self, source: str) -> bool:
        return self.whole.has_document(source)

    def document(self, source: str) -> DocRecord | None:
        return self.whole.document(source)

    def documents(self) -> list[DocumentSummary]:
        return self.whole.documents()

    def hashes(self) -> dict[str, str]:
        return self.whole.hashes()

    def modified_times(self) -> dict[str, float | None]:
        return self.whole.modified_times()

    def filtered(self, flt: Filter) -> IndexView:
        return self.whole.filtered(flt)


def rows_by_document(chunks: Sequence[ChunkRecord]) -> Iterator[tuple[int, list[int]]]:
    """Positions of each document's chunks, by document position (chunks are grouped by document)."""
    start = 0
    while start < len(chunks):
        doc = chunks[start].doc
        end = start
        while end < len(chunks) and chunks[end].doc == doc:
            end += 1
        yield doc, list(range(start, end))
        start = end
