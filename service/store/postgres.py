"""The index in PostgreSQL + pgvector: one database shared by every server, replicas for reads.

Tables (schema migrations are numbered and applied when a store first connects):

    ask_meta       one row: generation (bumped by every commit), corpus, model, chunking, BM25 totals
    ask_documents  source, sha256, encoding, title, text
    ask_chunks     citation fields, the window flag, the vector (HNSW index, inner product)
    ask_terms      BM25 document frequency of every term
    ask_postings   (term, chunk) → term frequency and the chunk's length in terms

Lexical ranking happens in the database and is BM25 as the local store computes it (Lucene's
formula, ``service.lexical``'s k1 and b, the same analyzer), with collection statistics kept exact by every
commit, so a document's score does not depend on when it was written. A commit is one transaction
that touches only the rows of the documents it adds, replaces or deletes (and the counts of their
terms): its cost follows the change, not the index. Readers see a document's old rows or its new
ones, never a mix. Writers are serialised by an advisory lock; a lost connection is reported as
``StoreUnavailable`` (HTTP 503), and a read is retried once on a fresh connection first.

Portable to any PostgreSQL >= 15 with the ``vector`` extension (pgvector >= 0.5).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from .. import lexical
from ..layout import ChunkPlace, RowsLayout, window_flags
from ..lexical import analyze, posting_terms, query_terms, term_weights
from .base import (
    ChunkRow,
    DocRecord,
    DocumentSummary,
    DocumentUpsert,
    IndexBusy,
    IndexIncompatible,
    IndexMeta,
    IndexMissing,
    IndexStats,
    IndexWriteFailed,
    RestrictedView,
    StoreError,
    StoreUnavailable,
    WriteResult,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    from ..filters import Filter

log = logging.getLogger(__name__)

T = TypeVar("T")
WRITER_LOCK = 0x61736B  # pg advisory lock key: "ask"
PARAGRAPH_BITS = 24  # paragraph key = document id << 24 | paragraph number
MAX_EF_SEARCH = 1000  # pgvector's limit
EXACT_FILTERED_ROWS = 20_000  # a filter admitting at most this many chunks is searched exactly

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE ask_meta (
        id int PRIMARY KEY CHECK (id = 1),
        generation bigint NOT NULL,
        created timestamptz NOT NULL DEFAULT now(),
        corpus text NOT NULL,
        model jsonb NOT NULL,
        chunking jsonb NOT NULL,
        n_chunks bigint NOT NULL DEFAULT 0,
        total_terms bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE ask_documents (
        id bigserial PRIMARY KEY,
        source text NOT NULL UNIQUE,
        sha256 text NOT NULL,
        encoding text NOT NULL,
        title text NOT NULL,
        text text NOT NULL,
        n_chunks int NOT NULL
    );
    CREATE TABLE ask_chunks (
        id bigserial PRIMARY KEY,
        doc_id bigint NOT NULL REFERENCES ask_documents(id) ON DELETE CASCADE,
        paragraph int NOT NULL,
        char_start int NOT NULL,
        char_end int NOT NULL,
        n_tokens int NOT NULL,
        text text NOT NULL,
        is_window boolean NOT NULL,
        embedding vector NOT NULL
    );
    CREATE INDEX ask_chunks_paragraph ON ask_chunks (doc_id, paragraph);
    CREATE TABLE ask_terms (
        term text PRIMARY KEY,
        df bigint NOT NULL
    );
    CREATE TABLE ask_postings (
        term text NOT NULL,
        chunk_id bigint NOT NULL REFERENCES ask_chunks(id) ON DELETE CASCADE,
        tf int NOT NULL,
        dl int NOT NULL,
        PRIMARY KEY (term, chunk_id)
    );
    CREATE INDEX ask_postings_chunk ON ask_postings (chunk_id);
    """,
    # 2: each document's modified time (seconds since the epoch; NULL for documents written before)
    """
    ALTER TABLE ask_documents ADD COLUMN modified double precision;
    """,
    # 3: the publication date a page declares (HTML, ``2024-05-01``; NULL: none, or written before)
    """
    ALTER TABLE ask_documents ADD COLUMN published text;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _version_name(generation: int) -> str:
    return f"gen-{generation:06d}"


class PostgresStore:
    """A ``Store`` in a PostgreSQL database (``postgresql://user:pass@host:port/db``)."""

    kind = "postgresql"

    def __init__(self, url: str, model_sha256: str | None = None, pool_size: int = 8, ef_search: int = 400,
                 namespace: str | None = None) -> None:
        """``namespace``: a collection's name; its tables live in the schema ``ask_<namespace>``
        (None: the default collection, in the database's default schema)."""
        self.url = url
        self.namespace = namespace
        self.schema = f"ask_{namespace}" if namespace else None
        self.iterative_scan = False  # pgvector >= 0.8: filtered HNSW scans go on until enough rows match
        self.model_sha256 = model_sha256
        self.pool_size = pool_size
        self.ef_search = ef_search
        self._pool: ConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()

    # -- connections ---------------------------------------------------------------------------------
    @property
    def pool(self) -> ConnectionPool[Any]:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = self._open_pool()
        return self._pool

    def _open_pool(self) -> ConnectionPool[Any]:
        import psycopg
        from psycopg_pool import ConnectionPool

        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                self.enter_namespace(conn, create=True)
                migrate(conn)
                version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
                self.iterative_scan = version is not None and _version_tuple(version[0]) >= (0, 8)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to {redact(self.url)}: {_first_line(exc)}") from exc

        def configure(conn: psycopg.Connection[Any]) -> None:
            from pgvector.psycopg import register_vector

            self.enter_namespace(conn)
            register_vector(conn)
            conn.execute(f"SET hnsw.ef_search = {int(self.ef_search)}")

        pool: ConnectionPool[Any] = ConnectionPool(
            self.url, min_size=1, max_size=self.pool_size, kwargs={"autocommit": True, "connect_timeout": 5},
            configure=configure, check=ConnectionPool.check_connection, open=False, name="ask", timeout=5,
        )
        pool.open(wait=True, timeout=30)
        return pool

    def run(self, fn: Callable[[psycopg.Connection[Any]], T], retry: bool = True) -> T:
        """``fn`` on a pooled connection; a lost connection is retried once (reads), then 503."""
        import psycopg
        from psycopg_pool import PoolTimeout

        for attempt in (1, 2):
            try:
                with self.pool.connection() as conn:
                    return fn(conn)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if attempt == 2 or not retry:
                    raise StoreUnavailable(f"the database {redact(self.url)} is unavailable: "
                                           f"{_first_line(exc)}") from exc
                log.warning("database connection lost (%s); retrying once", _first_line(exc))
            except psycopg.errors.UndefinedTable as exc:
                raise IndexMissing(f"no index in {redact(self.url)}; build one with "
                                   "`python -m service index --corpus DIR --store URL`") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- Store ---------------------------------------------------------------------------------------
    def version(self) -> str | None:
        row = self.run(lambda c: c.execute("SELECT generation FROM ask_meta WHERE id = 1").fetchone())
        return _version_name(row[0]) if row else None

    def view(self) -> PostgresView:
        row = self.run(lambda c: c.execute(
            "SELECT generation, corpus, model, chunking, created, n_chunks, total_terms FROM ask_meta WHERE id = 1"
        ).fetchone())
        if row is None:
            raise IndexMissing(f"no index in {redact(self.url)}; build one with "
                               "`python -m service index --corpus DIR --store URL`")
        generation, corpus, model, chunking, created, n_chunks, total_terms = row
        if self.model_sha256 is not None and model["sha256"] != self.model_sha256:
            raise IndexIncompatible(
                f"the index in {redact(self.url)} was built with model {model['name']!r} (weights sha256 "
                f"{model['sha256'][:12]}…), but the configured model has weights {self.model_sha256[:12]}…; "
                "rebuild with `python -m service index --rebuild` or configure the same model")
        meta = IndexMeta(corpus=corpus, model=model, chunking=chunking)
        return PostgresView(self, _version_name(generation), meta, created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            int(n_chunks), int(total_terms))

    @contextmanager
    def writer(self) -> Iterator[PostgresWriter]:
        """The advisory lock, held on a connection of its own for as long as the writer lives."""
        import psycopg

        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to {redact(self.url)}: {_first_line(exc)}") from exc
        try:
            from pgvector.psycopg import register_vector

            self.enter_namespace(conn, create=True)
            migrate(conn)
            register_vector(conn)
            locked = conn.execute(f"SELECT pg_try_advisory_lock({self._lock_key})").fetchone()
            if not locked or not locked[0]:
                raise IndexBusy(f"another process is writing the index in {redact(self.url)}; wait for it to finish")
            try:
                yield PostgresWriter(self, conn)
            finally:
                conn.execute(f"SELECT pg_advisory_unlock({self._lock_key})")
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"lost the connection to {redact(self.url)} while writing: "
                                   f"{_first_line(exc)}; the commit in progress, if any, was rolled back") from exc
        finally:
            conn.close()

    def describe(self) -> str:
        return redact(self.url) + (f" (schema {self.schema})" if self.schema else "")

    def settle(self) -> None:
        """Nothing to finish: the database maintains its own tables and indexes."""

    @property
    def _lock_key(self) -> str:
        """The writer lock's key: one per namespace (the default keeps the one-number key)."""
        if self.schema is None:
            return str(WRITER_LOCK)
        return f"{WRITER_LOCK}, {zlib.crc32(self.schema.encode()) - (1 << 31)}"

    def enter_namespace(self, conn: psycopg.Connection[Any], create: bool = False) -> None:
        """Put this store's schema first on the connection's search path (``create``: make it when
        missing; pgvector is created first, in the default schema, so every namespace shares it)."""
        if self.schema is None:
            return
        from psycopg import sql

        if create and conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone() is None:
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
                migrate_extension(conn)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        shown = conn.execute("SHOW search_path").fetchone()
        rest = sql.SQL(shown[0]) if shown and shown[0] else sql.SQL("public")
        conn.execute(sql.SQL("SET search_path TO {}, ").format(sql.Identifier(self.schema)) + rest)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _schema_version(conn: psycopg.Connection[Any]) -> int:
    # In the connection's own schema (a collection's namespace), not wherever the search path finds one.
    exists = conn.execute("SELECT to_regclass(quote_ident(current_schema()) || '.ask_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT version FROM ask_schema").fetchone()
    return int(row[0]) if row else 0


def migrate_extension(conn: psycopg.Connection[Any]) -> None:
    """``CREATE EXTENSION vector`` when missing, with the messages a user can act on."""
    import psycopg

    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise IndexMissing("this database is read-only (a replica) and has no index schema yet; index into "
                           "the primary first (`python -m service index --store PRIMARY_URL`)") from exc
    except psycopg.Error as exc:
        raise IndexIncompatible(f"the database has no pgvector extension, which this store needs: "
                                f"{_first_line(exc)} (install pgvector; then CREATE EXTENSION vector)") from exc


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Create or upgrade the schema (numbered migrations, under an advisory lock); refuse a newer one.

    Nothing is written when the schema is current, so a read-only replica opens as well.
    """
    has_vector = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    current = _schema_version(conn)
    if current > SCHEMA_VERSION:
        raise IndexIncompatible(f"the database schema is version {current}, newer than this program's "
                                f"{SCHEMA_VERSION}; upgrade the program")
    if has_vector and current == SCHEMA_VERSION:
        return current
    migrate_extension(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK + 1,))
        conn.execute("CREATE TABLE IF NOT EXISTS ask_schema (version int NOT NULL)")
        current = _schema_version(conn)  # again, under the lock: another process may have migrated
        for number in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[number - 1].encode())
            log.info("database schema migrated to version %d", number)
        if conn.execute("SELECT 1 FROM ask_schema").fetchone() is None:
            conn.execute("INSERT INTO ask_schema VALUES (%s)", (SCHEMA_VERSION,))
        else:
            conn.execute("UPDATE ask_schema SET version = %s", (SCHEMA_VERSION,))
    return SCHEMA_VERSION


# -- reading ------------------------------------------------------------------------------------------------
class PgVectors:
    """Nearest chunks by inner product, through the HNSW index (``hnsw.ef_search`` per connection)."""

    def __init__(self, store: PostgresStore, size: int, docs: list[int] | None = None) -> None:
        """``docs``: search only the chunks of these documents (a filter's), exactly when they are
        few, else through the HNSW index scanning on until enough rows match (pgvector >= 0.8)."""
        self._store, self.size, self._docs = store, size, docs

    @property
    def ntotal(self) -> int:
        return self.size

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(queries), n), -1, np.int64)
        scores = np.zeros((len(queries), n), np.float32)

        docs = self._docs
        exact = docs is not None and (self.size <= EXACT_FILTERED_ROWS or not self._store.iterative_scan)
        if docs is None:
            statement = "SELECT id, -(embedding <#> %(q)s) FROM ask_chunks ORDER BY embedding <#> %(q)s LIMIT %(n)s"
        elif exact:  # ordering by an expression the HNSW index cannot serve: every admitted row is scored
            statement = ("SELECT id, -(embedding <#> %(q)s) AS s FROM ask_chunks WHERE doc_id = ANY(%(docs)s) "
                         "ORDER BY s DESC, id LIMIT %(n)s")
        else:
            statement = ("SELECT id, -(embedding <#> %(q)s) FROM ask_chunks WHERE doc_id = ANY(%(docs)s) "
                         "ORDER BY embedding <#> %(q)s LIMIT %(n)s")

        def search_all(conn: psycopg.Connection[Any]) -> None:
            for row, q in enumerate(np.asarray(queries, np.float32)):
                found = conn.execute(statement, {"q": q, "n": n, "docs": docs}).fetchall()
                for col, (cid, score) in enumerate(found):
                    ids[row, col], scores[row, col] = cid, score

        def run(conn: psycopg.Connection[Any]) -> None:
            widen = n > self._store.ef_search
            iterate = docs is not None and not exact
            if not widen and not iterate:
                search_all(conn)
                return
            with conn.transaction():
                if widen:  # an HNSW scan returns at most ef_search rows: widen it for this search alone
                    conn.execute(f"SET LOCAL hnsw.ef_search = {min(int(n), MAX_EF_SEARCH)}")
                if iterate:  # keep scanning the graph until n admitted rows are found
                    conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
                search_all(conn)

        if n > 0:
            self._store.run(run)
        return ids, scores


class PgLexical:
    """BM25 in SQL, with the collection's live statistics."""

    def __init__(self, store: PostgresStore, n_chunks: int, total_terms: int, docs: list[int] | None = None) -> None:
        """``docs``: candidates only among these documents' chunks (statistics stay the whole index's)."""
        self._store = store
        self._n = n_chunks
        self._avgdl = total_terms / n_chunks if n_chunks else 1.0
        self._docs = docs

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        words, pairs = query_terms(query)
        terms = term_weights(words, pairs)
        if not words or not self._n or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        admitted = "" if self._docs is None else "JOIN ask_chunks c ON c.id = p.chunk_id AND c.doc_id = ANY(%(docs)s)"
        rows = self._store.run(lambda c: c.execute(
            f"""
            SELECT p.chunk_id,
                   sum(q.n * ln(1 + (%(N)s - t.df + 0.5) / (t.df + 0.5))
                       * p.tf / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.dl / %(avgdl)s))) AS score
            FROM unnest(%(terms)s::text[], %(counts)s::float8[]) AS q(term, n)
            JOIN ask_terms t ON t.term = q.term
            JOIN ask_postings p ON p.term = q.term
            {admitted}
            GROUP BY p.chunk_id
            ORDER BY score DESC, p.chunk_id
            LIMIT %(n)s
            """,
            {"N": self._n, "k1": lexical.BM25_K1, "b": lexical.BM25_B, "avgdl": self._avgdl, "terms": list(terms),
             "counts": [float(v) for v in terms.values()], "n": n, "docs": self._docs}).fetchall())
        return (np.array([r[0] for r in rows], np.int64),
                np.array([r[1] for r in rows], np.float32))


class PostgresView:
    """The index at one generation. Each read is its own statement: a document's rows change in one
    transaction, so a read sees all of its old rows or all of its new ones."""

    def __init__(self, store: PostgresStore, version: str, meta: IndexMeta, created: str, n_chunks: int,
                 total_terms: int) -> None:
        self._store = store
        self.version, self.meta, self._created = version, meta, created
        self.size = n_chunks
        self._total_terms = total_terms
        self.vectors = PgVectors(store, n_chunks)
        self.lexical = PgLexical(store, n_chunks, total_terms)
        self._lock = threading.Lock()
        self._table: list[tuple[int, str, float | None, int]] | None = None  # (id, source, modified, chunks)
        self._selections: dict[tuple[Any, ...], RestrictedView] = {}

    def _documents_table(self) -> list[tuple[int, str, float | None, int]]:
        """Every document's id, source, modified time and chunk count, read once per view (a filter
        is evaluated in Python, by the same ``Filter.admits`` as the local store)."""
        if self._table is None:
            rows = self._store.run(lambda c: c.execute(
                "SELECT id, source, modified, n_chunks FROM ask_documents ORDER BY id").fetchall())
            self._table = [(int(r[0]), r[1], r[2], int(r[3])) for r in rows]
        return self._table

    def modified_times(self) -> dict[str, float | None]:
        return {source: modified for _id, source, modified, _n in self._documents_table()}

    def filtered(self, flt: Filter) -> RestrictedView:
        with self._lock:
            found = self._selections.get(flt.key)
        if found is not None:
            return found
        admitted = [(i, n) for i, source, modified, n in self._documents_table() if flt.admits(source, modified)]
        docs = [i for i, _n in admitted]
        size = sum(n for _i, n in admitted)
        view = RestrictedView(self, PgVectors(self._store, size, docs),
                              PgLexical(self._store, self.size, self._total_terms, docs), size)
        with self._lock:
            if len(self._selections) >= 64:
                self._selections.pop(next(iter(self._selections)))
            self._selections[flt.key] = view
        return view

    def layout(self, candidates: np.ndarray) -> RowsLayout:
        ids = sorted({int(i) for i in np.asarray(candidates).reshape(-1)})
        rows = self._store.run(lambda c: c.execute(
            "SELECT id, doc_id, paragraph, char_start, char_end, is_window FROM ask_chunks WHERE id = ANY(%s)",
            (ids,)).fetchall()) if ids else []
        places = {r[0]: ChunkPlace((r[1] << PARAGRAPH_BITS) | r[2], r[3], r[4], r[5]) for r in rows}

        def windows_of(key: int) -> list[tuple[int, int, int]]:
            doc, paragraph = key >> PARAGRAPH_BITS, key & ((1 << PARAGRAPH_BITS) - 1)
            return [(r[0], r[1], r[2]) for r in self._store.run(lambda c: c.execute(
                "SELECT id, char_start, char_end FROM ask_chunks WHERE doc_id = %s AND paragraph = %s AND is_window "
                "ORDER BY char_start, id", (doc, paragraph)).fetchall())]

        return RowsLayout(places, windows_of)

    def similarity(self, query_vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, np.float32)
        found = dict(self._store.run(lambda c: c.execute(
            "SELECT id, -(embedding <#> %s) FROM ask_chunks WHERE id = ANY(%s)",
            (np.asarray(query_vector, np.float32), [int(i) for i in ids])).fetchall()))
        return np.array([found.get(int(i), 0.0) for i in ids], np.float32)

    def chunk_rows(self, ids: Sequence[int]) -> list[ChunkRow]:
        if not len(ids):
            return []
        rows = self._store.run(lambda c: c.execute(
            "SELECT c.id, d.source, d.title, c.paragraph, c.char_start, c.char_end, c.text "
            "FROM ask_chunks c JOIN ask_documents d ON d.id = c.doc_id WHERE c.id = ANY(%s)",
            ([int(i) for i in ids],)).fetchall())
        by_id = {r[0]: ChunkRow(*r) for r in rows}
        return [by_id[int(i)] for i in ids if int(i) in by_id]

    def stats(self) -> IndexStats:
        documents = self._store.run(lambda c: c.execute("SELECT count(*) FROM ask_documents").fetchone())
        m = self.meta.model
        return IndexStats(
            documents=int(documents[0]) if documents else 0, chunks=self.size, model=m["name"],
            model_sha256=m["sha256"], dimension=int(m["dim"]), version=self.version, created=self._created,
            vector_index="hnsw (pgvector)", corpus=self.meta.corpus, store="postgresql",
        )

    def has_document(self, source: str) -> bool:
        return self._store.run(lambda c: c.execute(
            "SELECT 1 FROM ask_documents WHERE source = %s", (source,)).fetchone()) is not None

    def document(self, source: str) -> DocRecord | None:
        row = self._store.run(lambda c: c.execute(
            "SELECT source, sha256, encoding, title, text, modified, published FROM ask_documents WHERE source = %s",
            (source,)).fetchone())
        return DocRecord(*row) if row else None

    def documents(self) -> list[DocumentSummary]:
        rows = self._store.run(lambda c: c.execute(
            "SELECT source, title, sha256, n_chunks, length(text), modified, published FROM ask_documents "
            "ORDER BY source"
        ).fetchall())
        return [DocumentSummary(*r) for r in rows]

    def hashes(self) -> dict[str, str]:
        return dict(self._store.run(lambda c: c.execute("SELECT source, sha256 FROM ask_documents").fetchall()))


# -- writing ------------------------------------------------------------------------------------------------
class PostgresWriter:
    """Applies changes in one transaction on the connection that holds the writer lock."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any]) -> None:
        self._store, self._conn = store, conn

    def previous(self) -> PostgresView | None:
        try:
            return self._store.view()
        except IndexMissing:
            return None

    def apply(self, meta: IndexMeta, upserts: Sequence[DocumentUpsert], deletes: Sequence[str],
              replace_all: bool = False, touch: Mapping[str, float] | None = None) -> WriteResult:
        import psycopg

        conn = self._conn
        started = time.monotonic()
        try:
            with conn.transaction():
                self._ensure_vector_index(int(meta.model["dim"]))
                conn.execute(  # the first commit makes the row (readers see it once this transaction commits)
                    "INSERT INTO ask_meta (id, generation, corpus, model, chunking) VALUES (1, 0, '', '{}', '{}') "
                    "ON CONFLICT (id) DO NOTHING")
                if replace_all:
                    conn.execute("TRUNCATE ask_postings, ask_chunks, ask_documents, ask_terms")
                    conn.execute("UPDATE ask_meta SET n_chunks = 0, total_terms = 0")
                for source in {*deletes, *(u.doc.source for u in upserts)}:
                    self._delete(source)
                for upsert in upserts:
                    self._insert(upsert)
                if touch:
                    conn.execute(
                        "UPDATE ask_documents d SET modified = t.modified FROM unnest(%s::text[], %s::float8[]) "
                        "AS t(source, modified) WHERE d.source = t.source", (list(touch), list(touch.values())))
                row = conn.execute(
                    """
                    UPDATE ask_meta SET generation = generation + 1, created = now(),
                        corpus = %(corpus)s, model = %(model)s, chunking = %(chunking)s
                    WHERE id = 1 RETURNING generation, n_chunks
                    """,
                    {"corpus": meta.corpus, "model": json.dumps(meta.model), "chunking": json.dumps(meta.chunking)},
                ).fetchone()
                documents = conn.execute("SELECT count(*) FROM ask_documents").fetchone()
        except psycopg.OperationalError:
            raise  # the writer context turns it into StoreUnavailable
        except psycopg.Error as exc:
            raise IndexWriteFailed(f"could not write the index in {redact(self._store.url)}: {_first_line(exc)}; "
                                   "the previous index is intact") from exc
        assert row is not None and documents is not None
        log.info("committed generation %d in %.2fs", row[0], time.monotonic() - started)
        return WriteResult(_version_name(row[0]), int(documents[0]), int(row[1]))

    def _ensure_vector_index(self, dim: int) -> None:
        """The vector column gets its dimension and HNSW index with the first write (pgvector needs both)."""
        conn = self._conn
        exists = conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'ask_chunks_embedding' "
                              "AND schemaname = current_schema()").fetchone()
        if exists:
            typmod = conn.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'ask_chunks'::regclass AND attname = 'embedding'"
            ).fetchone()
            if typmod and typmod[0] != dim:
                raise IndexIncompatible(f"the database holds {typmod[0]}-dimensional vectors, the model makes {dim}; "
                                        "rebuild with `python -m service index --rebuild`")
            return
        conn.execute(f"ALTER TABLE ask_chunks ALTER COLUMN embedding TYPE vector({int(dim)})")
        conn.execute("CREATE INDEX ask_chunks_embedding ON ask_chunks USING hnsw (embedding vector_ip_ops) "
                     "WITH (m = 16, ef_construction = 128)")

    def _delete(self, source: str) -> None:
        conn = self._conn
        doc = conn.execute("SELECT id FROM ask_documents WHERE source = %s", (source,)).fetchone()
        if doc is None:
            return
        conn.execute(
            """
            WITH gone AS (
                SELECT p.term, count(*) AS df
                FROM ask_postings p JOIN ask_chunks c ON c.id = p.chunk_id WHERE c.doc_id = %(doc)s
                GROUP BY p.term
            ), counted AS (
                UPDATE ask_terms t SET df = t.df - gone.df FROM gone WHERE t.term = gone.term RETURNING 1
            ), lengths AS (  -- each chunk's length in terms (its word pairs are postings, not length)
                SELECT DISTINCT p.chunk_id, p.dl
                FROM ask_postings p JOIN ask_chunks c ON c.id = p.chunk_id WHERE c.doc_id = %(doc)s
            )
            UPDATE ask_meta SET total_terms = total_terms - (SELECT coalesce(sum(dl), 0) FROM lengths),
                                n_chunks = n_chunks - (SELECT count(*) FROM ask_chunks WHERE doc_id = %(doc)s)
            """, {"doc": doc[0]})
        conn.execute("DELETE FROM ask_terms WHERE df <= 0")
        conn.execute("DELETE FROM ask_documents WHERE id = %s", (doc[0],))  # chunks and postings cascade

    def _insert(self, u: DocumentUpsert) -> None:
        conn = self._conn
        d = u.doc
        doc_id = conn.execute(
            "INSERT INTO ask_documents (source, sha256, encoding, title, text, n_chunks, modified, published) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (d.source, d.sha256, d.encoding, d.title, d.text, len(u.chunks), d.modified, d.published)).fetchone()
        assert doc_id is not None
        if not u.chunks:
            return
        flags = window_flags([(c.paragraph, c.char_start, c.char_end) for c in u.chunks])
        ids = conn.execute(
            "SELECT nextval(pg_get_serial_sequence('ask_chunks', 'id')) FROM generate_series(1, %s)",
            (len(u.chunks),)).fetchall()
        chunk_ids = [r[0] for r in ids]
        vectors = np.asarray(u.vectors, np.float32)
        with conn.cursor().copy(
            "COPY ask_chunks (id, doc_id, paragraph, char_start, char_end, n_tokens, text, is_window, embedding) "
            "FROM STDIN"
        ) as copy:
            for cid, c, flag, vec in zip(chunk_ids, u.chunks, flags, vectors, strict=True):
                copy.write_row((cid, doc_id[0], c.paragraph, c.char_start, c.char_end, c.n_tokens, c.text, flag, vec))
        postings: list[tuple[str, int, int, int]] = []
        df: Counter[str] = Counter()
        total = 0
        for cid, text in zip(chunk_ids, u.lexical, strict=True):
            tokens = analyze(text)
            counts = Counter(posting_terms(tokens))  # the length counts the terms only
            total += len(tokens)
            df.update(counts.keys())
            postings += [(term, cid, tf, len(tokens)) for term, tf in counts.items()]
        with conn.cursor().copy("COPY ask_postings (term, chunk_id, tf, dl) FROM STDIN") as copy:
            for posting in postings:
                copy.write_row(posting)
        if df:
            conn.execute(
                "INSERT INTO ask_terms (term, df) SELECT * FROM unnest(%s::text[], %s::bigint[]) "
                "ON CONFLICT (term) DO UPDATE SET df = ask_terms.df + EXCLUDED.df",
                (list(df), list(df.values())))
        conn.execute("UPDATE ask_meta SET n_chunks = n_chunks + %s, total_terms = total_terms + %s",
                     (len(u.chunks), total))


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore", "PostgresView", "PostgresWriter", "StoreError", "migrate",
           "redact"]
