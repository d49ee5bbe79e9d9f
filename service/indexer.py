"""Sync a corpus folder into the store by content hash: add, change, delete, with progress.

Unchanged files keep their chunks and vectors from the previous snapshot, so a re-run over an
unchanged corpus does no model work at all (the model is not even loaded). Long runs commit a
snapshot every ``checkpoint_seconds``; a run that is killed loses at most the work since the
last commit, and the embeddings computed since then sit in the embedding cache for the next run.
"""

from __future__ import annotations

import contextlib
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

from .blocks import Host, block_hosts
from .chunking import Chunk, chunk_document, window_hosts
from .config import Settings
from .corpus import CorpusError, Document, Skipped, load_document, title_of, walk
from .embed_cache import EmbeddingCache
from .embedding import (
    PASSAGE_GRAPH_VERSION,
    Embedder,
    ModelInfo,
    PassageEncoder,
    Pool,
    TorchEmbedder,
    WordPieces,
    model_info,
    onnx_path_for,
    passage_path_for,
)
from .files import temp_name
from .formats import READER_VERSIONS, stale_suffixes, suffix_of
from .lexical import PAIRS_VERSION
from .store import open_store, write_error
from .store.base import ChunkRecord, DocRecord, DocumentUpsert, IndexMeta, IndexView, IndexWriter, Store
from .titles import embedding_title

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNKER_VERSION = 4  # 2: sentences of split paragraphs are chunks too; 3: a title only when it looks like one;
# 4: dotted initials ("E.F. Hutton") do not end a sentence
FLUSH_TEXTS = 256  # model runs gathered across documents before one embedding call
# A pooled sentence vector averages the title line's word-pieces and [CLS]/[SEP] with the sentence's,
# as the sentence's own run ("title\nsentence") would. On SQuAD (weighted fusion) hit@1 0.8318 with
# them, 0.8337 with the sentence's word-pieces alone: the same within noise (95% interval ±0.007).
POOL_TITLE = True
POOL_SPECIAL_TOKENS = True
# A block holds windows of one paragraph (service.blocks): across paragraphs, one seed question lost its
# paragraph from the top 3 (float32, blocks of 512), the neighbours' context leaking into its vectors.
BLOCKS_CROSS_PARAGRAPHS = False
BLOCK_LAYOUT = 2  # how blocks are laid out (``_vectors``): a change re-embeds indexes built with blocks
INT8_KIND = f"int8-v{PASSAGE_GRAPH_VERSION}"  # how int8 vectors are recorded: the graph's version


@dataclass
class IndexReport:
    corpus: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    empty_pages: dict[str, list[int]] = field(default_factory=dict)  # pages without text (scanned), skipped
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
        if self.empty_pages:
            what += f", {sum(map(len, self.empty_pages.values()))} pages without text skipped"
        state = f"snapshot {self.snapshot}" if self.snapshot else "index already up to date"
        return (
            f"{self.documents_total} documents, {self.chunks_total} chunks ({what}; "
            f"{self.chunks_embedded} chunks embedded) in {self.seconds:.1f}s: {state}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus, "added": self.added, "changed": self.changed, "deleted": self.deleted,
            "unchanged": self.unchanged, "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "empty_pages": self.empty_pages,
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
        store: Store | None = None,
    ) -> None:
        """``store``: where the index goes (default: what the settings name, ``open_store``); the
        index folder holds the local caches (embeddings in progress, the query graph) either way."""
        self.settings = settings
        self.index_dir = Path(index_dir or settings.index)
        self.info: ModelInfo = embedder.info if embedder else model_info(settings.model, settings.offline)
        self._embedder = embedder
        self.pieces = WordPieces(self.info.path, self.info.max_seq_length)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.on_commit = on_commit
        self._titles: dict[tuple[str, int], str] = {}  # (title, hash of text) -> title to embed
        self.store: Store = store or open_store(settings, self.index_dir, model_sha256=self.info.sha256,
                                                lexical_text=self.lexical_text)

    # -- model ------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The passage encoder the settings name (``ASK_PASSAGE_ENCODER``), unless one was given.
        With ``ASK_DASK`` it is sentence-transformers whatever the setting, as on the workers, so
        that API writes and local runs add vectors of the index's kind."""
        if self._embedder is None:
            s = self.settings
            if s.passage_encoder == "torch" or s.dask:
                self._embedder = TorchEmbedder(self.info, s.bf16, s.embed_batch_size)
            else:
                precision = "int8" if s.passage_encoder == "onnx-int8" else "fp32"
                path = self._passage_graph(precision)
                self._embedder = PassageEncoder(self.info, path, precision, batch_size=s.embed_batch_size,
                                                max_length=self._vectors()["block_tokens"] or None)
        return self._embedder

    def _passage_graph(self, precision: str) -> Path:
        """The exported passage encoder, made once per machine in the cache folder (torch is
        imported for that export only; later runs load the file)."""
        path = passage_path_for(Path(self.settings.cache_dir) / "models", self.info, precision)
        if not path.exists():
            log.info("exporting the passage encoder (%s) to %s", precision, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            TorchEmbedder(self.info, "off").export_passage_onnx(path, precision)
        return path

    def _vectors(self) -> dict[str, Any]:
        """How vectors are made, recorded with the chunking: an index made another way is re-embedded.

        ``sentence_vectors``: "pooled" (from the window's run) or "separate"; ``precision``: "int8-v2"
        for the quantised encoder (graph version 2, fused: its vectors differ from version 1's "int8"),
        "float" for float32 or bf16 runs (their vectors agree to 1e-4); ``block_tokens``: the length of
        the runs chunks are pooled from (``service.blocks``), 0 for a run per window; ``block_layout``:
        with blocks only: 2 since a block of paragraph 1 has no title line in front (before, it had
        the glued line there once that line held more than paragraph 1's own text; none recorded)."""
        s, given = self.settings, self._embedder
        if given is not None:
            pooled = s.sentence_vectors == "pooled" and isinstance(given, PassageEncoder)
            precision = INT8_KIND if getattr(given, "precision", "") == "int8" else "float"
        else:
            torch = s.passage_encoder == "torch" or bool(s.dask)
            pooled = s.sentence_vectors == "pooled" and not torch
            precision = INT8_KIND if s.passage_encoder == "onnx-int8" and not torch else "float"
        # runs shared by chunks (service.blocks), as long as the encoder's runs may be
        longest = given.max_length if isinstance(given, PassageEncoder) else self.info.max_positions
        blocks = min(s.block_tokens, longest) if pooled else 0
        return {"sentence_vectors": "pooled" if pooled and s.sentence_chunks else "separate", "precision": precision,
                "block_tokens": blocks, **({"block_layout": BLOCK_LAYOUT} if blocks else {})}

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
            embedder = self._embedder
            if not isinstance(embedder, TorchEmbedder):
                from .distributed import DaskEmbedder

                if embedder is not None and not isinstance(embedder, PassageEncoder | DaskEmbedder):
                    return  # a test double: no weights to export
                # the passages were embedded by onnxruntime or on a cluster: export the same weights
                # (checked by sha256) here
                embedder = TorchEmbedder(self.info, self.settings.bf16, self.settings.embed_batch_size)
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
            "context_terms": s.context_terms,
            "lexical_pairs": PAIRS_VERSION,  # consecutive term pairs in the BM25 postings (service.lexical)
            "readers": READER_VERSIONS,  # how files become text, by suffix (service.formats)
            **self._vectors(),
        }

    def _same_chunking(self, view: IndexView) -> bool:
        """Whether ``view`` was chunked (and its vectors made) as these settings do (indexes written
        before sentence chunks became a setting have them: chunker version 2 always made them; before
        vector kinds were recorded, sentences were embedded separately in float). Readers are compared
        by suffix elsewhere (``_current_hashes``)."""
        old = {"sentences": True, "sentence_vectors": "separate", "precision": "float", "block_tokens": 0,
               "block_layout": 0, "context_terms": 0, "lexical_pairs": 0}
        mine = {k: v for k, v in self._chunking().items() if k != "readers"}
        return {**old, **{k: v for k, v in view.meta.chunking.items() if k != "readers"}} == {**old, **mine}

    @staticmethod
    def _current_hashes(view: IndexView) -> dict[str, str]:
        """Indexed documents' hashes, less those of formats whose reader changed since (read again)."""
        stale = stale_suffixes(view.meta.chunking.get("readers", {}))
        return {s: h for s, h in view.hashes().items() if suffix_of(s) not in stale}

    def _meta(self, corpus: Path) -> IndexMeta:
        i = self.info
        return IndexMeta(
            corpus=str(corpus.resolve()),
            model={"name": i.name, "sha256": i.sha256, "dim": i.dim, "max_seq_length": i.max_seq_length},
            chunking=self._chunking(),
        )

    def lexical_text(self, doc: DocRecord, chunk: ChunkRecord) -> str:
        """What a kept chunk is BM25-indexed by (the local store rebuilds its postings with it)."""
        return embed_text(self._title(doc.title, doc.text), chunk.text, chunk.paragraph, self.settings.embed_title)

    # -- public -------------------------------------------------------------------------------
    def resolve_corpus(self, corpus: Path | None) -> Path:
        if corpus is not None:
            return Path(corpus).resolve()
        if self.store.version() is not None:
            return Path(self.store.view().meta.corpus)
        return Path(self.settings.corpus).resolve()

    def sync(self, corpus: Path | None = None, rebuild: bool = False) -> IndexReport:
        """Make the index match the corpus folder."""
        started = time.monotonic()
        root = self.resolve_corpus(corpus)
        if not root.is_dir():
            raise CorpusError(f"corpus folder {root} does not exist or is not a folder")
        report = IndexReport(corpus=str(root))
        with self.store.writer() as writer:
            docs: list[Document] = []
            prev = None if rebuild else writer.previous()
            indexed = self._current_hashes(prev) if prev is not None and self._same_chunking(prev) else {}
            modified: dict[str, float] = {}  # each file's modification time, recorded for filters
            for item in walk(root, self.settings.extensions, self.settings.external_symlinks):
                if isinstance(item, Skipped):
                    self._skip(report, item)
                    continue
                path, source = item
                try:
                    docs.append(load_document(path, source, self.settings.max_file_bytes, indexed.get(source)))
                except CorpusError as exc:
                    self._skip(report, Skipped(source, str(exc)))
                    continue
                try:
                    modified[source] = path.stat().st_mtime
                except OSError:  # gone since it was read: the time of this run stands in
                    modified[source] = time.time()
                if docs[-1].empty_pages:
                    report.empty_pages[source] = list(docs[-1].empty_pages)
                    log.warning("%s: pages %s have no text layer (scanned?) and are skipped", source,
                                ", ".join(map(str, docs[-1].empty_pages)))
            self._commit_changes(writer, root, docs, None, report, rebuild=rebuild, modified=modified)
        report.seconds = time.monotonic() - started
        return report

    def apply(self, upserts: Sequence[Document], deletes: Sequence[str],
              writer: IndexWriter | None = None) -> IndexReport:
        """Add or replace some documents and delete others, keeping the rest (used by the API).

        ``writer``: a writer the caller holds already (the engine takes it before touching the corpus).
        """
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            if writer is None:
                writer = stack.enter_context(self.store.writer())
            prev = writer.previous()
            root = Path(prev.meta.corpus) if prev else Path(self.settings.corpus).resolve()
            report = IndexReport(corpus=str(root))
            self._commit_changes(writer, root, list(upserts), list(deletes), report, rebuild=False)
        report.seconds = time.monotonic() - started
        return report

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _skip(report: IndexReport, item: Skipped) -> None:
        log.warning("skipped %s: %s", item.path, item.reason)
        report.skipped.append(item)

    def _commit_changes(
        self,
        writer: IndexWriter,
        root: Path,
        docs: list[Document],
        deletes: list[str] | None,
        report: IndexReport,
        rebuild: bool,
        modified: dict[str, float] | None = None,
    ) -> None:
        """Embed what changed and commit it through ``writer``. ``deletes`` None: ``docs`` is the whole
        corpus, and indexed documents missing from it are deleted.

        ``modified``: the documents' modification times (default: now, as for an API write). A
        document whose content is unchanged but whose time differs from the recorded one (touched,
        or indexed before times were recorded) gets its new time without being embedded again."""
        full_listing = deletes is None
        now = time.time()
        modified = modified if modified is not None else {}
        prev = None if rebuild else writer.previous()
        same_chunking = prev is not None and self._same_chunking(prev)
        if prev is not None and not same_chunking:
            log.warning("chunking settings changed since the last run: every document is chunked again")
        indexed = prev.hashes() if prev is not None else {}
        current = self._current_hashes(prev) if prev is not None else {}
        todo: list[Document] = []
        for doc in docs:
            if same_chunking and current.get(doc.source) == doc.sha256:
                report.unchanged += 1
                continue
            if doc.unread:  # only made when the hash matched under this same writer: cannot happen
                raise RuntimeError(f"{doc.source} was not read but needs indexing")
            (report.changed if doc.source in indexed else report.added).append(doc.source)
            todo.append(doc)
        if deletes is None:
            present = {d.source for d in docs}
            deletes = [s for s in sorted(indexed) if s not in present]
        report.deleted = [s for s in deletes if s in indexed]
        touch: dict[str, float] = {}
        if prev is not None and modified:
            recorded = prev.modified_times()
            queued = {d.source for d in todo}
            touch = {s: t for s, t in modified.items() if s in indexed and s not in queued and recorded.get(s) != t}
            if touch:
                log.info("recording the modified time of %d unchanged documents", len(touch))
        meta = self._meta(root)
        # Until the last commit of a whole-folder run, the index records the readers it had: a run
        # stopped half-way (or an API write, which reads one file) leaves the files of a changed reader
        # to be read again, rather than keep some of them as the old reader read them.
        interim = meta
        if prev is not None and same_chunking and prev.meta.chunking.get("readers") != meta.chunking["readers"]:
            old_readers = prev.meta.chunking.get("readers")
            chunking = {k: v for k, v in meta.chunking.items() if k != "readers"}
            interim = IndexMeta(meta.corpus, meta.model, {**chunking, **({"readers": old_readers} if old_readers else {})})
        corpus_moved = prev is not None and prev.meta.corpus != meta.corpus
        if prev is not None and not todo and not report.deleted and not corpus_moved and not touch:
            stats = prev.stats()
            report.documents_total, report.chunks_total = stats.documents, stats.chunks
            if full_listing:
                self._finish_cache()
            return
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)  # local caches, whatever the store
        except OSError as exc:
            raise write_error(self.index_dir, exc) from exc
        kind = self._vectors()
        cache = EmbeddingCache(self.index_dir / "embed-cache.sqlite",
                               f"{self.info.sha256}:{kind['sentence_vectors']}:{kind['precision']}", self.info.dim)
        try:
            last_commit = time.monotonic()
            # A rebuild replaces everything at its first commit; deletions go with the first commit too.
            # Documents being re-indexed keep their old chunks until their new version is committed:
            # an intermediate commit never loses a document that is still in the folder.
            replace_all, first_deletes, first_touch = rebuild, list(report.deleted), touch
            done: list[DocumentUpsert] = []
            pending: list[tuple[Document, list[Chunk], list[str], list[Host | None]]] = []
            pending_runs = 0
            bar = self._progress_bar(len(todo))
            bar_started = time.monotonic()

            def flush() -> None:
                # One encode call over many documents: the model sorts by length and batches well.
                nonlocal pending_runs
                texts = [t for p in pending for t in p[2]]
                hosts = [h for p in pending for h in p[3]]
                vectors = self._embed(texts, hosts, cache)
                offset = 0
                for doc, chunks, ts, _hs in pending:
                    rec = DocRecord(doc.source, doc.sha256, doc.encoding, doc.title, doc.text,
                                    modified.get(doc.source, now), doc.metadata.get("date"))
                    records = [ChunkRecord(0, c.paragraph, c.char_start, c.char_end, c.n_tokens, c.text)
                               for c in chunks]
                    done.append(DocumentUpsert(rec, records, vectors[offset : offset + len(ts)], ts))
                    offset += len(ts)
                report.chunks_embedded += len(texts)
                if bar is not None:
                    rate = report.chunks_embedded / max(time.monotonic() - bar_started, 1e-9)
                    bar.set_postfix_str(f"{report.chunks_embedded} chunks, {rate:.0f} chunks/s", refresh=False)
                    bar.update(len(pending))
                pending.clear()
                pending_runs = 0

            def commit(last: bool = False) -> None:
                nonlocal replace_all, first_deletes, first_touch
                result = writer.apply(meta if last else interim, done, first_deletes, replace_all=replace_all,
                                      touch=first_touch)
                replace_all, first_deletes, first_touch = False, [], {}
                done.clear()
                report.snapshot = result.version
                report.documents_total, report.chunks_total = result.documents, result.chunks
                log.info("committed %s: %d documents, %d chunks", result.version, result.documents, result.chunks)
                if self.on_commit is not None:
                    self.on_commit(result.version, result.documents)

            for position, doc in enumerate(todo, start=1):
                chunks = self._chunk(doc)
                title = self._title(doc.title, doc.text)
                texts = [embed_text(title, c.text, c.paragraph, self.settings.embed_title) for c in chunks]
                hosts = self._hosts(doc, chunks, texts, title)
                pending.append((doc, chunks, texts, hosts))
                # pooled chunks cost no run of their own
                pending_runs += len({t if h is None else h[0] for t, h in zip(texts, hosts, strict=True)})
                if pending_runs >= FLUSH_TEXTS or position == len(todo):
                    flush()
                    if time.monotonic() - last_commit > self.settings.checkpoint_seconds and position < len(todo):
                        commit()
                        last_commit = time.monotonic()
            if bar is not None:
                bar.close()
            commit(last=full_listing)  # an API write reads no other file: it cannot vouch for them
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

    def _hosts(self, doc: Document, chunks: Sequence[Chunk], texts: Sequence[str], title: str) -> list[Host | None]:
        """Where each chunk's vector comes from: None, its own run; else the text whose run it is pooled
        from and its spans there (a sentence from its window's run, or any chunk from its block's)."""
        kind = self._vectors()
        if kind["block_tokens"]:
            return list(block_hosts(doc.text, chunks, title, self.settings.embed_title, self.pieces.offsets,
                                    kind["block_tokens"], BLOCKS_CROSS_PARAGRAPHS))
        if kind["sentence_vectors"] == "pooled":
            return _pool_hosts(chunks, texts)
        return [None] * len(chunks)

    def _title(self, title: str, text: str) -> str:
        """The line glued to a document's chunks: its title (none when the first line is not one) and its
        most used words (``service.titles``)."""
        key = (title, hash(text))
        if key not in self._titles:
            if len(self._titles) > 1024:
                self._titles.clear()
            # A title that is not the text's first line was declared by the format (PDF metadata,
            # HTML <title>): it stands as it is; a first line must look like a title (service.titles).
            declared = bool(title) and title.strip() != title_of(text, "")
            line = embedding_title(text, title, declared, self.settings.context_terms)
            self._titles[key] = self.pieces.truncate(line, self.settings.title_tokens)
        return self._titles[key]

    def _embed(self, texts: list[str], hosts: Sequence[Host | None], cache: EmbeddingCache) -> np.ndarray:
        """Vectors of ``texts``; ``hosts[i]`` (text, spans): text i's vector is pooled over those
        character spans of that text's model run. Each distinct text runs once; what the cache holds
        (keyed by the text, or by the host text and spans) is not computed again."""
        keys = [texts[i] if h is None else _pool_key(h[0], h[1]) for i, h in enumerate(hosts)]
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        cached = cache.get_many(keys)
        for i, vec in cached.items():
            out[i] = vec
        missing = [i for i in range(len(texts)) if i not in cached]
        if not missing:
            return out
        runs: dict[str, set[Pool]] = {}  # distinct texts to run, with the spans to pool from each
        for i in missing:
            h = hosts[i]
            if h is None:
                runs.setdefault(texts[i], set())
            else:
                runs.setdefault(h[0], set()).add(h[1])
        found: dict[str, np.ndarray] = {}
        run_texts = list(runs)
        embedder = self.embedder
        if isinstance(embedder, PassageEncoder):
            spans = [sorted(runs[t]) for t in run_texts]
            vectors, pooled = embedder.embed_pooled(run_texts, spans, special=POOL_SPECIAL_TOKENS)
            for t, ss, pv in zip(run_texts, spans, pooled, strict=True):
                found.update((_pool_key(t, pool), v) for pool, v in zip(ss, pv, strict=True))
        else:
            vectors = embedder.embed(run_texts)
        found.update(zip(run_texts, vectors, strict=True))
        # a span the model's length cut off (no word-piece left) is embedded on its own
        # (and, with an encoder that cannot pool, every sentence)
        alone = [i for i in missing if keys[i] not in found or not np.isfinite(found[keys[i]]).all()]
        if alone:
            for i, vec in zip(alone, embedder.embed([texts[i] for i in alone]), strict=True):
                found[keys[i]] = vec
        for i in missing:
            out[i] = found[keys[i]]
        cache.put_many([keys[i] for i in missing], out[missing])
        return out


def _pool_key(text: str, pool: Pool) -> str:
    """The embedding cache's key of a pooled vector: the text that ran, and the spans pooled."""
    return text + "".join(f"\0{a}:{b}" for a, b in pool) + ("\0special" if POOL_SPECIAL_TOKENS else "")


def _pool_hosts(chunks: Sequence[Chunk], texts: Sequence[str]) -> list[Host | None]:
    """For each chunk inside a window (a sentence), (the window's embedded text, the character spans in
    the window's embedded text to pool: the sentence's, and with ``POOL_TITLE`` the title line's,
    as the sentence's own embedded text would have had it); None for the others."""
    out: list[Host | None] = []
    for c, host in zip(chunks, window_hosts(chunks), strict=True):
        if host is None:
            out.append(None)
            continue
        w = chunks[host]
        at = texts[host].rfind(w.text)  # the window's own text sits after any title line
        if at < 0:
            out.append(None)
            continue
        sentence = (at + c.char_start - w.char_start, at + c.char_end - w.char_start)
        title = (0, at - 1) if POOL_TITLE and at > 1 else None
        out.append((texts[host], (title, sentence) if title else (sentence,)))
    return out
