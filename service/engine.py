"""The facade: everything a user can do, for the CLI, the REST API and the MCP server alike.

The engine owns the live view of the index and the query encoder. Each call asks the store for
its version (one small file read for the local store, one indexed row for a database) and takes a
new view when it changed, so a running server picks up changes made by ``python -m service index``
or by another server without a restart. With the local store a call uses one snapshot from start
to end; with a database each document changes in one transaction, so a call sees a document's old
rows or its new ones, never a mix. Adapters import this module only: it re-exports the errors
they catch.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .answer import Answer, Citation, build_answer, highlight
from .collections import CollectionNotFound
from .config import Settings, get_settings
from .corpus import CorpusError, document_from_bytes, paragraphs
from .embedding import (
    Embedder,
    ModelInfo,
    OnnxEmbedder,
    TorchEmbedder,
    model_info,
    onnx_path_for,
)
from .files import NAME_MAX, atomic_write, fsync_dir
from .filters import Filter, FilterError
from .generation import (
    GeneratedAnswer,
    Generation,
    GeneratorError,
    GeneratorNotConfigured,
    GeneratorTimeout,
    GeneratorUnavailable,
    Token,
)
from .pages import PageMap, is_paged, may_be_paged, page_map
from .retrieval import DenseQueries, Passage, Retriever
from .store import open_store
from .store.base import (
    DocumentSummary,
    IndexBusy,
    IndexStats,
    IndexView,
    Store,
    StoreError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from .collections import Collections, CollectionSummary
    from .indexer import Indexer, IndexReport

# What the adapters (REST, CLI, MCP) may catch: the engine's own errors and the store's, one import.
__all__ = ["Answer", "Citation", "CollectionNotFound", "Conflict", "Context", "CorpusError", "DocumentDeleted",
           "DocumentText", "DocumentWritten", "Engine", "IndexBusy", "NotFound", "QueryError", "StoreError",
           "StoreUnavailable",
           # generated answers (service.generation)
           "GeneratedAnswer", "Generation", "GeneratorError", "GeneratorNotConfigured", "GeneratorTimeout",
           "GeneratorUnavailable", "Token"]

log = logging.getLogger(__name__)


class QueryError(ValueError):
    """A request the engine refuses; the message says what to change."""


class NotFound(LookupError):
    """No such document."""


class Conflict(ValueError):
    """A write that the corpus's current shape does not allow (a document id below a file)."""


@dataclass(frozen=True, slots=True)
class Context:
    query: str
    text: str
    tokens: int
    citations: list[Citation]

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "context": self.text, "tokens": self.tokens,
                "citations": [c.as_dict() for c in self.citations]}


@dataclass(frozen=True, slots=True)
class ParagraphText:
    paragraph: int  # within ``page`` in a paged document, else in the file
    char_start: int
    char_end: int
    text: str
    page: int | None = None


@dataclass(frozen=True, slots=True)
class DocumentText:
    """A document as indexed: its decoded text (what every offset refers to) and numbered paragraphs."""

    source: str
    title: str
    sha256: str
    encoding: str
    text: str
    paragraphs: list[ParagraphText]
    pages: int | None = None  # paged formats: the page count
    empty_pages: tuple[int, ...] = ()  # pages without text (scanned, no text layer): not indexed
    published: str | None = None  # the publication date the page declares (HTML), if any

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "title": self.title, "sha256": self.sha256, "encoding": self.encoding,
                "published": self.published, "pages": self.pages, "empty_pages": list(self.empty_pages), "text": self.text, "paragraphs": [
                    {"page": p.page, "paragraph": p.paragraph, "char_start": p.char_start, "char_end": p.char_end,
                     "text": p.text} for p in self.paragraphs]}


FilterSpec = Mapping[str, Any] | Filter | None  # what callers pass as a filter (see service.filters)


class _Live:
    """A view with its retriever: swapped as one object so a call never mixes two states."""

    def __init__(self, view: IndexView, settings: Settings) -> None:
        self.view = view
        self.retriever = Retriever.from_settings(view, settings)
        self._pages: dict[str, PageMap | None] = {}
        self._times_unknown: bool | None = None

    def page_map(self, source: str) -> PageMap | None:
        """Where a paged document's paragraphs sit (None for other documents), read once per view."""
        if not may_be_paged(source):
            return None
        if source not in self._pages:
            rec = self.view.document(source)
            self._pages[source] = page_map(rec.text) if rec is not None and is_paged(source, rec.text) else None
        return self._pages[source]

    def place(self, citations: Sequence[Citation]) -> list[Citation]:
        """Citations of paged documents name their page and the paragraph's number on it."""
        out = []
        for c in citations:
            pages = self.page_map(c.source)
            if pages is not None:
                page, paragraph = pages.place(c.paragraph)
                c = dataclasses.replace(c, page=page, paragraph=paragraph)
            out.append(c)
        return out

    def filtered(self, flt: Filter) -> tuple[IndexView, Retriever]:
        """The view restricted to what ``flt`` admits, and the same retriever over it."""
        if flt.by_time and self.times_unknown():
            raise QueryError("this index was written before documents' modified times were recorded; run "
                             "`python -m service index` once to record them, then filter by time")
        view = self.view.filtered(flt)
        retriever = copy.copy(self.retriever)  # same settings and reranker; only the view differs
        retriever.view = view
        return view, retriever

    def times_unknown(self) -> bool:
        if self._times_unknown is None:
            self._times_unknown = any(t is None for t in self.view.modified_times().values())
        return self._times_unknown


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        index_dir: Path | None = None,
        embedder: Embedder | None = None,
        store: Store | None = None,
    ) -> None:
        """``store``: where searches read (default: what the settings name; with ``ASK_STORE_READ``,
        the replica). The index folder holds local caches either way (the query graph)."""
        self.settings = settings or get_settings()
        self.index_dir = Path(index_dir or self.settings.index)
        self._store = store
        self._embedder = embedder
        # the indexer embeds passages with this one when given, else with its own (ASK_PASSAGE_ENCODER),
        # never with the query encoder: an index's vectors are all of one kind
        self._passage_embedder = embedder
        self._info: ModelInfo | None = embedder.info if embedder else None
        self._live: _Live | None = None
        self._dense: DenseQueries | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writes: Indexer | None = None
        self._generation: Generation | None = None
        self._collections: Collections | None = None

    # -- model and view ----------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            self._info = model_info(self.settings.model, self.settings.offline)
        return self._info

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            onnx = onnx_path_for(self.index_dir, self.info)
            if self.settings.query_backend == "onnx" and onnx.exists():
                self._embedder = OnnxEmbedder(self.info, onnx)
            else:
                if self.settings.query_backend == "onnx":
                    log.warning("no ONNX query encoder at %s; using sentence-transformers (slower start)", onnx)
                self._embedder = TorchEmbedder(self.info, self.settings.bf16, self.settings.embed_batch_size)
        return self._embedder

    @property
    def loaded_embedder(self) -> Embedder | None:
        """The query encoder if this engine has made it already (collections share it)."""
        return self._embedder

    @property
    def dense(self) -> DenseQueries:
        """Query embedding + vector search, batched across concurrent requests."""
        if self._dense is None:
            with self._lock:
                if self._dense is None:
                    self._dense = DenseQueries(self.embedder)
        return self._dense

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.settings, self.index_dir, model_sha256=self.info.sha256,
                                             full_check=self.settings.full_checksums, read=True)
        return self._store

    def _current(self) -> _Live:
        """The live view, re-opened when the store has a newer version (one small read per call)."""
        version = self.store.version()
        live = self._live
        if live is not None and live.view.version == version:
            return live
        with self._lock:
            if self._live is None or self._live.view.version != self.store.version():
                self._live = _Live(self.store.view(), self.settings)
            return self._live

    def has_index(self) -> bool:
        """Whether the store holds an index yet (the entry points build the default one when not)."""
        return self.store.version() is not None

    def sync(self, corpus: Path | None = None, rebuild: bool = False,
             on_commit: Callable[[str, int], None] | None = None) -> IndexReport:
        """Make the index match a corpus folder (``python -m service index``); with ``ASK_DASK``, the
        passages are embedded on that Dask cluster."""
        from .indexer import Indexer

        if self.settings.dask:
            from .distributed import DaskEmbedder

            with DaskEmbedder.from_settings(self.settings.dask, self.settings) as embedder:
                indexer = Indexer(self.settings, self.index_dir, embedder=embedder, on_commit=on_commit)
                report = indexer.sync(corpus, rebuild=rebuild)
        else:
            torch = self.settings.passage_encoder == "torch"  # the float query graph, if loaded, embeds as torch does
            passages = self._passage_embedder or (self._embedder if torch else None)
            indexer = Indexer(self.settings, self.index_dir, embedder=passages, on_commit=on_commit)
            report = indexer.sync(corpus, rebuild=rebuild)
        indexer.store.settle()  # a one-shot run leaves its index compact (a server merges in the background)
        return report

    def load(self) -> None:
        """Open the index, load the query encoder and page the vectors in now (servers call this at
        start-up, so that the first request is as fast as the rest)."""
        self._retrieve("warm up", 1)

    # -- validation ----------------------------------------------------------------------------------
    def _check_query(self, query: str, what: str = "query") -> str:
        if not isinstance(query, str) or not query.strip():
            raise QueryError(f"the {what} is empty")
        if len(query) > self.settings.max_query_chars:
            raise QueryError(
                f"the {what} has {len(query)} characters; the limit is {self.settings.max_query_chars}"
            )
        if "\x00" in query:
            raise QueryError(f"the {what} contains a NUL character")
        return query.strip()

    def _check_filter(self, value: FilterSpec) -> Filter | None:
        """A user's filter, checked (``QueryError`` naming the field); None when it admits everything."""
        try:
            flt = Filter.parse(value, self.settings.extensions)
        except FilterError as exc:
            raise QueryError(str(exc)) from None
        return None if flt.empty else flt

    def _check_k(self, k: int | None) -> int:
        if k is None:
            return self.settings.default_k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.settings.max_k:
            raise QueryError(f"k must be an integer from 1 to {self.settings.max_k}")
        return k

    # -- queries -------------------------------------------------------------------------------------
    def _retrieve(self, query: str, k: int, flt: Filter | None = None
                       ) -> tuple[_Live, np.ndarray, list[Passage]]:
        live = self._current()
        view, retriever = (live.view, live.retriever) if flt is None else live.filtered(flt)
        vector, dense = self.dense(query, view.vectors, retriever.dense_candidates())
        return live, vector, retriever.search(query, vector, k, dense=dense)

    def search(self, query: str, k: int | None = None, filter: FilterSpec = None) -> list[Passage]:
        """``filter``: only passages of the documents it admits (``service.filters``), found inside
        retrieval, so ``k`` come back whenever ``k`` such paragraphs exist."""
        query, k, flt = self._check_query(query), self._check_k(k), self._check_filter(filter)
        return self._retrieve(query, k, flt)[2]

    def search_cited(self, query: str, k: int | None = None, filter: FilterSpec = None) -> list[Citation]:
        """Search results in rank order, each with its best-matching sentence for highlighting."""
        query, k, flt = self._check_query(query), self._check_k(k), self._check_filter(filter)
        live, _vector, passages = self._retrieve(query, k, flt)
        return live.place(highlight(query, passages))

    def ask(self, question: str, k: int | None = None, filter: FilterSpec = None) -> Answer:
        question, k, flt = self._check_query(question, "question"), self._check_k(k), self._check_filter(filter)
        live, vector, passages = self._retrieve(question, k, flt)
        answer = build_answer(question, vector, passages, self.embedder, self.settings.abstain_threshold)
        return dataclasses.replace(answer, citations=live.place(answer.citations))

    def context(self, query: str, max_tokens: int = 2000, filter: FilterSpec = None) -> Context:
        """The best passages, each headed by its citation, packed into ``max_tokens`` tiktoken tokens
        (a passage too long for what is left goes in as its best sentence: ``service.context_budget``)."""
        from .context_budget import pack
        from .tokens import count

        query = self._check_query(query)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not (
            1 <= max_tokens <= self.settings.max_context_tokens
        ):
            raise QueryError(f"max_tokens must be an integer from 1 to {self.settings.max_context_tokens}")
        answer = self.ask(query, self.settings.max_k, filter)
        cache = str(self.settings.cache_dir)
        text, cited = pack(answer.citations, max_tokens, lambda t: count(t, cache))
        return Context(query, text, count(text, cache) if text else 0, cited)

    @property
    def generation(self) -> Generation:
        """Generated answers with checked citations (``service.generation``; needs ``ASK_LLM_BASE_URL``)."""
        if self._generation is None:
            with self._lock:
                if self._generation is None:
                    self._generation = Generation(self)
        return self._generation
    # -- collections (service.collections) -------------------------------------------------------------
    def collection(self, name: str | None) -> Engine:
        """The engine of collection ``name`` (None: this one); ``CollectionNotFound`` when unknown."""
        if name is None:
            return self
        if self._collections is None:
            from .collections import Collections

            with self._lock:
                if self._collections is None:
                    self._collections = Collections(self)
        return self._collections.engine(name)

    def collections(self) -> list[CollectionSummary]:
        """Every configured collection with its counts (the default first)."""
        self.collection("default")  # makes the registry
        assert self._collections is not None
        return self._collections.summaries()

    # -- documents -----------------------------------------------------------------------------------
    def stats(self) -> IndexStats:
        return self._current().view.stats()

    def documents(self) -> list[DocumentSummary]:
        return self._current().view.documents()

    def document(self, source: str) -> DocumentText:
        view = self._current().view
        source = self._check_source(source, view.meta.corpus)
        rec = view.document(source)
        if rec is None:
            raise NotFound(f"no document {source!r} in the index")
        paras = paragraphs(rec.text)
        if not is_paged(source, rec.text):
            return DocumentText(rec.source, rec.title, rec.sha256, rec.encoding, rec.text, [
                ParagraphText(p.number, p.start, p.end, rec.text[p.start : p.end]) for p in paras],
                published=rec.published)
        pages = page_map(rec.text)
        return DocumentText(rec.source, rec.title, rec.sha256, rec.encoding, rec.text, [
            ParagraphText(pages.place(p.number)[1], p.start, p.end, rec.text[p.start : p.end], pages.place(p.number)[0])
            for p in paras], pages.pages, pages.empty_pages, rec.published)

    def _check_source(self, source: str, corpus: str) -> str:
        """A document id is its citation name, ``<corpus folder>/<relative path>``; nothing may escape.

        The id is checked segment by segment as sent: ``a/./b.txt`` is refused rather than read as
        ``a/b.txt``, so one file never has two ids.
        """
        corpus_name = Path(corpus).name
        if not isinstance(source, str) or not source or "\x00" in source or "\\" in source:
            raise QueryError("document ids are paths like 'seeds/article.txt' (no NUL or backslash)")
        parts = source.split("/")
        if source.startswith("/") or any(p in ("..", ".", "") or p.startswith(".") for p in parts):
            raise QueryError(
                f"document id {source!r} is not allowed: no absolute paths, empty, '.' or '..' segments, "
                "or hidden names"
            )
        if len(parts) < 2 or parts[0] != corpus_name:
            raise QueryError(f"document ids start with the corpus folder name: '{corpus_name}/…'")
        for part in parts:
            if len(part.encode("utf-8", "surrogatepass")) > NAME_MAX:
                raise QueryError(f"a segment of document id {source[:80]!r}… is over {NAME_MAX} bytes, "
                                 "the file system's limit for a name")
        return source

    def _corpus_path(self, source: str) -> Path:
        corpus = Path(self._current().view.meta.corpus)
        source = self._check_source(source, str(corpus))
        target = (corpus / Path(*source.split("/")[1:])).resolve()
        if not target.is_relative_to(corpus.resolve()):
            raise QueryError(f"document id {source!r} resolves outside the corpus")
        return target

    def _indexer(self) -> Indexer:
        """The indexer that applies API writes: one per engine, so its store (a database's connection
        pool) and tokenizer are made once. Writes are serialised by ``_write_lock``."""
        if self._writes is None:
            from .indexer import Indexer

            # sentence-transformers' vectors are the float ONNX query graph's: that one serves writes
            torch = self.settings.passage_encoder == "torch"
            embedder = self._passage_embedder or (self.embedder if torch else None)
            with self._lock:
                if self._writes is None:
                    self._writes = Indexer(self.settings, self.index_dir, embedder=embedder, progress=False)
        return self._writes

    def _check_writable_path(self, source: str, target: Path) -> None:
        """409 when the id runs into the corpus's shape: below a file, or onto a folder."""
        corpus = self._corpus_root()
        for folder in reversed(target.parents):
            if folder.is_relative_to(corpus) and folder.exists() and not folder.is_dir():
                rel = folder.relative_to(corpus.parent).as_posix()
                raise Conflict(f"{rel} is a file, so {source!r} cannot be a document below it")
        if target.is_dir():
            raise Conflict(f"{source!r} is a folder in the corpus, not a file")

    def put_document(self, source: str, data: bytes) -> DocumentWritten:
        """Add or replace one document: written into the corpus folder, then indexed, durably.

        The writer lock is taken before the corpus is touched, so a write refused as busy changes
        nothing; a write that fails while indexing puts the previous file back.
        """
        target = self._corpus_path(source)
        if target.suffix.lower() not in self.settings.extensions:
            raise QueryError(f"document ids end in one of {', '.join(self.settings.extensions)}")
        if len(data) > self.settings.max_file_bytes:
            raise QueryError(f"the document is over the {self.settings.max_file_bytes}-byte limit")
        try:
            doc = document_from_bytes(data, source, target.suffix)
        except CorpusError as exc:
            raise QueryError(f"the document cannot be indexed: {exc}") from None
        indexer = self._indexer()
        with self._write_lock, indexer.store.writer() as writer:
            if self._folder_is_truth(indexer):
                self._check_writable_path(source, target)
                with _CorpusChange(target, self._corpus_root()) as change:
                    change.write(data)
                    report = indexer.apply([doc], [], writer)
            else:
                report = indexer.apply([doc], [], writer)
            version = report.snapshot or indexer.store.version() or ""
        return DocumentWritten(source, version, report.chunks_embedded, bool(report.added))

    def delete_document(self, source: str) -> DocumentDeleted:
        """Remove one document from the corpus folder (and folders it leaves empty) and the index."""
        target = self._corpus_path(source)
        indexer = self._indexer()
        with self._write_lock, indexer.store.writer() as writer:
            prev = writer.previous()
            if prev is None or not prev.has_document(source):  # checked under the lock: one delete wins
                raise NotFound(f"no document {source!r} in the index")
            if self._folder_is_truth(indexer):
                with _CorpusChange(target, self._corpus_root()) as change:
                    change.delete()
                    report = indexer.apply([], [source], writer)
            else:
                report = indexer.apply([], [source], writer)
            version = report.snapshot or indexer.store.version() or ""
        return DocumentDeleted(source, version)

    def _corpus_root(self) -> Path:
        return Path(self._current().view.meta.corpus).resolve()

    @staticmethod
    def _folder_is_truth(indexer: Indexer) -> bool:
        """With the local store, the corpus folder is the truth and API writes go into it; a database
        store is shared by servers with no common folder, so API writes go to the database only."""
        return indexer.store.kind == "local"


@dataclass(frozen=True, slots=True)
class DocumentWritten:
    source: str
    snapshot: str  # the snapshot that holds the document now
    chunks: int  # chunks embedded for this write (0 when the content was unchanged)
    created: bool  # the document was not in the index before

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "snapshot": self.snapshot, "chunks": self.chunks, "created": self.created}


@dataclass(frozen=True, slots=True)
class DocumentDeleted:
    source: str
    snapshot: str
    deleted: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "snapshot": self.snapshot, "deleted": self.deleted}


class _CorpusChange:
    """One file of the corpus changed under the writer lock, undone if indexing it fails.

    ``write`` replaces the file atomically (creating missing folders), ``delete`` removes it and the
    folders it leaves empty (never the corpus folder itself). Leaving the block with an exception
    restores the previous bytes, or removes the new file and the folders made for it.
    """

    def __init__(self, target: Path, root: Path) -> None:
        self.target, self.root = target, root
        self.previous: bytes | None = None
        self.made: list[Path] = []

    def __enter__(self) -> _CorpusChange:
        try:
            self.previous = self.target.read_bytes()
        except FileNotFoundError:
            self.previous = None
        return self

    def write(self, data: bytes) -> None:
        missing = [p for p in reversed(self.target.parents) if p.is_relative_to(self.root) and not p.exists()]
        for folder in missing:
            folder.mkdir()
            self.made.append(folder)
        atomic_write(self.target, data)

    def delete(self) -> None:
        if self.previous is not None:
            self.target.unlink()
            fsync_dir(self.target.parent)
        folder = self.target.parent
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
            self.made.append(folder)  # to re-create if the delete is undone
            folder = folder.parent

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        if kind is None:
            return
        if self.previous is not None:
            for folder in sorted(self.made):
                folder.mkdir(exist_ok=True)
            atomic_write(self.target, self.previous)
        else:
            self.target.unlink(missing_ok=True)
            for folder in sorted(self.made, reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()
