"""Sync a corpus folder into the store by content hash: add, change, delete, with progress.

Unchanged files keep their chunks and vectors from the previous snapshot, so a re-run over an
unchanged corpus does no model work at all (the model is not even loaded). Long runs commit a
snapshot every ``checkpoint_seconds``; a run that is killed loses at most the work since the
last commit, and the embeddings computed since then sit in the embedding cache for the next run.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import store
from .chunking import Chunk, chunk_document
from .config import Settings
from .corpus import CorpusError, Document, Skipped, load_document, walk
from .embed_cache import EmbeddingCache
from .embedding import Embedder, ModelInfo, TorchEmbedder, WordPieces, model_info, onnx_path_for
from .files import temp_name

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNKER_VERSION = 2  # 2: sentences of split paragraphs are chunks too
FLUSH_TEXTS = 256  # chunks gathered across documents before one embedding call


@dataclass
class IndexReport:
    corpus: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_total: int = 0
    documents_total: int = 0
    snapshot: str | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        what = (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.deleted)} deleted, "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped"
        )
        state = f"snapshot {self.snapshot}" if self.snapshot else "index already up to date"
        return (
            f"{self.documents_total} documents, {self.chunks_total} chunks ({what}; "
            f"{self.chunks_embedded} chunks embedded) in {self.seconds:.1f}s: {state}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus, "added": self.added, "changed": self.changed, "deleted": self.deleted,
            "unchanged": self.unchanged, "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "chunks_embedded": self.chunks_embedded, "chunks_total": self.chunks_total,
            "documents_total": self.documents_total, "snapshot": self.snapshot, "seconds": round(self.seconds, 3),
        }


def embed_text(title: str, chunk_text: str, paragraph: int, with_title: bool) -> str:
    """The text that is embedded and BM25-indexed for a chunk: title line, then the chunk."""
    if with_title and paragraph != 1 and title:
        return f"{title}\n{chunk_text}"
    return chunk_text


class Indexer:
    def __init__(
        self,
        settings: Settings,
        index_dir: Path | None = None,
        embedder: Embedder | None = None,
        progress: bool | None = None,
        on_commit: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.index_dir = Path(index_dir or settings.index)
        self.info: ModelInfo = embedder.info if embedder else model_info(settings.model, settings.offline)
        self._embedder = embedder
        self.pieces = WordPieces(self.info.path, self.info.max_seq_length)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.on_commit = on_commit

    # -- model ------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = TorchEmbedder(self.info, self.settings.bf16, self.settings.embed_batch_size)
        return self._embedder

    def ensure_query_encoder(self) -> None:
        """Put the ONNX query encoder next to the index if it is not there yet.

        It is exported once per machine into the cache folder (a few seconds, torch needed) and
        hard-linked (or copied) into each index, so an index folder is self-contained.
        """
        target = onnx_path_for(self.index_dir, self.info)
        if target.exists():
            return
        cached = onnx_path_for(Path(self.settings.cache_dir) / "models", self.info)
        if not cached.exists():
            embedder = self.embedder
            if not isinstance(embedder, TorchEmbedder):
                return
            log.info("exporting the query encoder to %s", cached)
            cached.parent.mkdir(parents=True, exist_ok=True)
            embedder.export_onnx(cached)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(target)
        try:
            os.link(cached, tmp)
        except OSError:
            shutil.copyfile(cached, tmp)
        os.replace(tmp, target)

    # -- manifest -----------------------------------------------------------------------------
    def _chunking(self) -> dict[str, Any]:
        s = self.settings
        budget = min(s.chunk_tokens, self.info.max_seq_length - 2 - (s.title_tokens + 1 if s.embed_title else 0))
        return {
            "version": CHUNKER_VERSION, "chunk_tokens": budget, "overlap_sentences": s.chunk_overlap_sentences,
            "title_tokens": s.title_tokens, "embed_title": s.embed_title, "sentences": s.sentence_chunks,
        }

    def _same_chunking(self, snap: store.Snapshot) -> bool:
        """Whether ``snap`` was chunked as these settings chunk (indexes written before sentence
        chunks became a setting have them: chunker version 2 always made them)."""
        return {"sentences": True, **snap.manifest.get("chunking", {})} == self._chunking()

    def _manifest(self, corpus: Path) -> dict[str, Any]:
        i = self.info
        return {
            "corpus": str(corpus.resolve()),
            "model": {"name": i.name, "sha256": i.sha256, "dim": i.dim, "max_seq_length": i.max_seq_length},
            "chunking": self._chunking(),
        }

    def _previous(self, rebuild: bool) -> store.Snapshot | None:
        if rebuild or store.current_name(self.index_dir) is None:
            return None
        snap = store.open_snapshot(self.index_dir, self.info.sha256)
        if not self._same_chunking(snap):
            log.warning("chunking settings changed since the last run: every document is chunked again")
        return snap

    # -- public -------------------------------------------------------------------------------
    def resolve_corpus(self, corpus: Path | None) -> Path:
        if corpus is not None:
            return Path(corpus).resolve()
        if store.current_name(self.index_dir) is not None:
            _name, manifest = store.read_manifest(self.index_dir)
            return Path(manifest["corpus"])
        return Path(self.settings.corpus).resolve()

    def sync(self, corpus: Path | None = None, rebuild: bool = False) -> IndexReport:
        """Make the index match the corpus folder."""
        started = time.monotonic()
        root = self.resolve_corpus(corpus)
        if not root.is_dir():
            raise CorpusError(f"corpus folder {root} does not exist or is not a folder")
        report = IndexReport(corpus=str(root))
        with store.writer_lock(self.index_dir):
            prev = self._previous(rebuild)
            docs: list[Document] = []
            for item in walk(root, self.settings.extensions, self.settings.external_symlinks):
                if isinstance(item, Skipped):
                    self._skip(report, item)
                    continue
                path, source = item
                try:
                    docs.append(load_document(path, source, self.settings.max_file_bytes))
                except CorpusError as exc:
                    self._skip(report, Skipped(source, str(exc)))
            present = {d.source for d in docs}
            deleted = [s for s in (prev.doc_sources if prev else []) if s not in present]
            self._commit_changes(prev, root, docs, deleted, report, full_listing=True)
        report.seconds = time.monotonic() - started
        return report

    def apply(self, upserts: Sequence[Document], deletes: Sequence[str]) -> IndexReport:
        """Add or replace some documents and delete others, keeping the rest (used by the API)."""
        started = time.monotonic()
        with store.writer_lock(self.index_dir):
            prev = self._previous(rebuild=False)
            root = Path(prev.manifest["corpus"]) if prev else Path(self.settings.corpus).resolve()
            report = IndexReport(corpus=str(root))
            self._commit_changes(prev, root, list(upserts), list(deletes), report, full_listing=False)
        report.seconds = time.monotonic() - started
        return report

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _skip(report: IndexReport, item: Skipped) -> None:
        log.warning("skipped %s: %s", item.path, item.reason)
        report.skipped.append(item)

    def _commit_changes(
        self,
        prev: store.Snapshot | None,
        root: Path,
        docs: list[Document],
        deleted: list[str],
        report: IndexReport,
        full_listing: bool,
    ) -> None:
        same_chunking = prev is not None and self._same_chunking(prev)
        kept: dict[str, tuple[store.DocRecord, list[store.ChunkRecord], np.ndarray]] = {}
        if prev is not None:
            kept = _by_document(prev)
        todo: list[Document] = []
        for doc in docs:
            old = kept.get(doc.source)
            if old is not None and same_chunking and old[0].sha256 == doc.sha256:
                report.unchanged += 1
                continue
            (report.changed if old is not None else report.added).append(doc.source)
            todo.append(doc)
        report.deleted = [s for s in deleted if s in kept]
        for source in report.deleted:
            kept.pop(source, None)
        # Documents being re-indexed keep their old chunks in checkpoint snapshots until their new
        # version is committed: an intermediate snapshot never loses a document.
        corpus_moved = prev is not None and prev.manifest.get("corpus") != str(root)
        if prev is not None and not todo and not report.deleted and not corpus_moved:
            report.documents_total, report.chunks_total = len(kept), prev.size
            if full_listing:
                self._finish_cache()
            return
        manifest = self._manifest(root)
        cache = EmbeddingCache(self.index_dir / "embed-cache.sqlite", self.info.sha256, self.info.dim)
        try:
            last_commit = time.monotonic()
            done: list[tuple[Document, list[Chunk], np.ndarray]] = []
            pending: list[tuple[Document, list[Chunk], list[str]]] = []
            bar = self._progress_bar(len(todo))

            def flush() -> None:
                # One encode call over many documents: the model sorts by length and batches well.
                texts = [t for _doc, _chunks, ts in pending for t in ts]
                vectors = self._embed(texts, cache)
                offset = 0
                for doc, chunks, ts in pending:
                    done.append((doc, chunks, vectors[offset : offset + len(ts)]))
                    offset += len(ts)
                report.chunks_embedded += len(texts)
                if bar is not None:
                    bar.update(len(pending))
                    bar.set_postfix(chunks=report.chunks_embedded, refresh=False)
                pending.clear()

            for position, doc in enumerate(todo, start=1):
                chunks = self._chunk(doc)
                title = self._title(doc.title)
                pending.append((doc, chunks, [embed_text(title, c.text, c.paragraph, self.settings.embed_title)
                                              for c in chunks]))
                if sum(len(p[2]) for p in pending) >= FLUSH_TEXTS or position == len(todo):
                    flush()
                    if time.monotonic() - last_commit > self.settings.checkpoint_seconds and position < len(todo):
                        self._commit(manifest, kept, done, report)
                        last_commit = time.monotonic()
            if bar is not None:
                bar.close()
            self._commit(manifest, kept, done, report)
            self.ensure_query_encoder()
            cache.clear()
        finally:
            cache.close()

    def _finish_cache(self) -> None:
        path = self.index_dir / "embed-cache.sqlite"
        if path.exists():
            path.unlink()
        for extra in ("-wal", "-shm"):
            Path(str(path) + extra).unlink(missing_ok=True)
        self.ensure_query_encoder()

    def _progress_bar(self, files: int) -> tqdm[Any] | None:
        if not self.progress or not files:
            return None
        from tqdm import tqdm

        return tqdm(total=files, unit="file", desc="indexing", file=sys.stderr, dynamic_ncols=True)

    def _chunk(self, doc: Document) -> list[Chunk]:
        c = self._chunking()
        return chunk_document(doc, self.pieces.count, self.pieces.offsets, c["chunk_tokens"], c["overlap_sentences"],
                              c["sentences"])

    def _title(self, title: str) -> str:
        return self.pieces.truncate(title, self.settings.title_tokens)

    def _embed(self, texts: list[str], cache: EmbeddingCache) -> np.ndarray:
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        cached = cache.get_many(texts)
        for i, vec in cached.items():
            out[i] = vec
        missing = [i for i in range(len(texts)) if i not in cached]
        if missing:
            vectors = self.embedder.embed([texts[i] for i in missing])
            cache.put_many([texts[i] for i in missing], vectors)
            out[missing] = vectors
        return out

    def _commit(
        self,
        manifest: dict[str, Any],
        kept: dict[str, tuple[store.DocRecord, list[store.ChunkRecord], np.ndarray]],
        done: list[tuple[Document, list[Chunk], np.ndarray]],
        report: IndexReport,
    ) -> None:
        entries: dict[str, tuple[store.DocRecord, list[tuple[int, int, int, int, str]], np.ndarray]] = {}
        for source, (rec, old_chunks, vecs) in kept.items():
            entries[source] = (rec, [(c.paragraph, c.char_start, c.char_end, c.n_tokens, c.text) for c in old_chunks],
                               vecs)
        for doc, new_chunks, vecs in done:
            rec = store.DocRecord(doc.source, doc.sha256, doc.encoding, doc.title, doc.text)
            entries[doc.source] = (rec, [(c.paragraph, c.char_start, c.char_end, c.n_tokens, c.text) for c in new_chunks],
                                   vecs)
        docs: list[store.DocRecord] = []
        chunk_records: list[store.ChunkRecord] = []
        lexical: list[str] = []
        blocks: list[np.ndarray] = []
        for position, source in enumerate(sorted(entries)):
            rec, rows, vecs = entries[source]
            docs.append(rec)
            title = self._title(rec.title)
            for paragraph, start, end, n_tokens, text in rows:
                chunk_records.append(store.ChunkRecord(position, paragraph, start, end, n_tokens, text))
                lexical.append(embed_text(title, text, paragraph, self.settings.embed_title))
            blocks.append(np.asarray(vecs, dtype=np.float32).reshape(-1, self.info.dim))
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, self.info.dim), np.float32)
        name = store.write_snapshot(
            self.index_dir, manifest, docs, chunk_records, vectors, lexical, self.settings.hnsw_threshold
        )
        report.snapshot = name
        report.documents_total, report.chunks_total = len(docs), len(chunk_records)
        log.info("committed %s: %d documents, %d chunks", name, len(docs), len(chunk_records))
        if self.on_commit is not None:
            self.on_commit(name, len(docs))


def _by_document(
    snap: store.Snapshot,
) -> dict[str, tuple[store.DocRecord, list[store.ChunkRecord], np.ndarray]]:
    docs, chunks, vectors = snap.all_records()
    rows: dict[int, list[int]] = {}
    for i, c in enumerate(chunks):
        rows.setdefault(c.doc, []).append(i)
    return {
        d.source: (d, [chunks[i] for i in rows.get(pos, [])], np.asarray(vectors[rows.get(pos, [])]))
        for pos, d in enumerate(docs)
    }
