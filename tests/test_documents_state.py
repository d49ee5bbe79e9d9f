"""A stateful property test of the documents API: random PUT / DELETE / re-PUT / search sequences.

Hypothesis drives a ``RuleBasedStateMachine`` against the real app served by uvicorn on a loopback
port (``LiveServer``), over a small corpus folder ``docs/`` indexed with the fast ``FakeEmbedder``
(no real model). A model, ``id -> bytes``, says what the corpus should hold; every request goes
over real HTTP (``http.client``, so odd paths reach the server byte for byte, un-normalised).

Rules:

* ``put`` / ``delete`` of ids from a small pool (unicode, spaces, 240- and 255-byte names, deep
  nesting, and a pair where one id is a folder of the other) with contents from a small set, so
  re-PUTs of identical bytes are frequent: 201 when created, 200 when replaced (also when the bytes
  are unchanged: ``created: false``, ``chunks: 0``), 200/404 for DELETE, 409 (or 422) for a path
  below an existing file or onto an existing folder; every write names the live snapshot.
* ``parallel``: 2-4 PUT/DELETE on one id at once (identical PUTs, PUT + DELETE, several DELETEs),
  of an absent or a present document. The statuses must be those of SOME serial order of the
  operations, and the state left behind that order's final state.
* ``refused`` / ``conflicting`` / ``unindexable``: ids that must be refused (``.``/``..`` segments,
  raw or percent-encoded, ``%2F``, empty segments, hidden names, a segment over 255 bytes, a wrong
  extension or corpus prefix: 422; below an existing document or onto a folder: 409 or 422) and
  bodies that cannot be indexed (422), all changing nothing.
* ``search`` for a version's marker word: every hit cites a current document, its text is the
  current bytes' slice ``[char_start:char_end]``, no hit shows a deleted document or an old version,
  and a marker that is current is found.
* ``read``: ``GET /v1/documents/{id}`` returns the current text, or 404.

After every step (the invariant): the files under the corpus folder (recursively, hidden names
excluded) are the model, byte for byte; ``GET /v1/documents`` lists exactly the model's ids with the
sha256 of their bytes; no folder is left without a document. The model changes only on a 2xx, so this
also checks that a 4xx or 503 changed neither the disk nor the listing. On every response: no 5xx
but 503, and every error body is exactly ``{"error": {"code": str, "message": str}}``.

A race the server loses only sometimes fails only sometimes: Hypothesis may then report its Flaky
error, with the failing check chained to it. Runs are derandomized (the same sequences every time).

Why: the API writes into a folder users also edit by hand and promises a durable, atomic, consistent
view; these sequences (re-PUT unchanged, racing DELETEs, aliases such as ``docs/a/./x.txt`` that
name one file twice) are where that promise broke before, one status code or stray file at a time.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from service.api.app import create_app
from service.config import Settings
from service.engine import Engine
from service.indexer import Indexer
from service.store.local import LocalStore
from tests.conftest import FakeEmbedder
from tests.live_server import LiveServer

CORPUS = "docs"  # the corpus folder's name: the first segment of every document id

# The corpus as indexed before each run; never written by the rules (they only test conflicts with it).
INITIAL: dict[str, bytes] = {
    "docs/initial.txt": b"Initial notes\n\nThe harbour office opens at nine. Boats queue at the pier.\n",
    "docs/guide/intro.md": b"# Guide\n\nRead the chapters in order. Each one ends with exercises.\n",
    "docs/folder.txt/inside.txt": b"Inside\n\nA folder may be named like a file. This one holds a note.\n",
}

# Versions: distinct sentences, each with a marker word found in no other text (one is not ASCII).
MARKERS = ("zorblax", "quindle", "vorpique", "frumwick")
CONTENTS: tuple[bytes, ...] = (
    b"Lantern notes\n\nThe zorblax lantern glows over the water at night. Sailors steer by its light.\n\n"
    b"Gulls sleep on the breakwater until dawn.\n",
    b"Orchard notes\n\nThe quindle orchard grows pears and apples on the hill. Bees visit in spring.\n\n"
    b"Pickers arrive in September with ladders.\n",
    "Café notes\n\nThe vorpique café serves crème brûlée and ñandú biscuits. Its façade is blue.\n\n"
    "Regulars sit outside when the weather is fine.\n".encode(),
    b"Glacier notes\n\nThe frumwick glacier retreats a little every summer. Climbers measure it.\n\n"
    b"Meltwater feeds a milky lake below.\n",
)

LONG_NAME = "docs/" + "L" * 236 + ".txt"  # a 240-character file name: valid
LONGEST = "docs/" + "M" * 251 + ".txt"  # 255 bytes, the file system's limit for a name: valid
DEEP = "docs/d1/d2/d3/d4/d5/d6/d7/d8/deep.txt"
IDS = (  # valid ids; docs/n.txt and docs/n.txt/inner.txt exclude each other (a file or a folder)
    "docs/a.txt", "docs/b.md", "docs/sub/c.txt", "docs/a/dup.txt", "docs/n.txt", "docs/n.txt/inner.txt",
    "docs/café/ñandú.txt", "docs/with space/a b.txt", LONG_NAME, LONGEST, DEEP,
)

SOURCES = st.one_of(st.sampled_from(IDS[:3]), st.sampled_from(IDS))  # often the same few: more re-PUTs

# Raw request targets below /v1/documents/ (sent as is), bad ids whatever the state:
# PUT answers 422; DELETE and GET 422 or 404 (no document has such an id).
BAD_TARGETS = (
    "docs/a/./dup.txt",  # a '.' segment: an alias of docs/a/dup.txt
    "docs/./a.txt",
    "docs/a/%2e/dup.txt",  # the same, percent-encoded
    "docs/a/../a.txt",
    "docs/%2e%2e/docs/a.txt",
    "docs/a//b.txt",  # empty segment
    "docs/sub/",  # trailing slash
    "docs/.x.txt",  # hidden names
    "docs/.hidden/x.txt",
    "docs/" + "c" * 260 + ".txt",  # a segment over 255 bytes
    "docs/" + "c" * 252 + ".txt",  # 256 bytes
    "docs/" + quote("é" * 128) + ".txt",  # 132 characters, 260 bytes
    "docs/a.exe",  # wrong or no extension
    "docs/noext",
    "docs%2Fa.txt",  # percent-encoded separators
    "docs/sub%2Fc.txt",
    "other/a.txt",  # wrong corpus prefix
    "a.txt",
    "docs/a%00b.txt",  # NUL, backslash
    "docs/a%5Cb.txt",
)
# Ids that always conflict with the initial documents: below a file, or onto a folder.
CONFLICTS = ("docs/initial.txt/x.txt", "docs/guide/intro.md/deeper/x.txt", "docs/folder.txt")
# Bodies that cannot be indexed: refused with 422 (or 409 on a conflicting id); a file stays as it was.
BAD_BODIES = (b"", b"  \n\t\n", b"\x00\x01\x02binary\x00")

Op = tuple[str, bytes | None]  # ("PUT", content) or ("DELETE", None)


# -- HTTP -----------------------------------------------------------------------------------------------
class ServerErrors(logging.Handler):
    """Keeps the server's unexpected-error log lines (quietly: rendering each traceback is slow), so
    that a failing check can say which exception the server raised."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        self.lines.append(f"{message}: {type(exc).__name__}: {exc}" if exc else message)


class _KeepTracebacks(logging.Filter):
    """On uvicorn's logger: records with a traceback go to ``SERVER_ERRORS`` instead of stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            SERVER_ERRORS.emit(record)
            return False
        return True


SERVER_ERRORS = ServerErrors()
KEEP_TRACEBACKS = _KeepTracebacks()


@contextmanager
def quiet_server_errors() -> Iterator[None]:
    errors_log, uvicorn_log = logging.getLogger("service.api.errors"), logging.getLogger("uvicorn.error")
    propagate = errors_log.propagate
    errors_log.addHandler(SERVER_ERRORS)
    errors_log.propagate = False
    uvicorn_log.addFilter(KEEP_TRACEBACKS)
    try:
        yield
    finally:
        errors_log.removeHandler(SERVER_ERRORS)
        errors_log.propagate = propagate
        uvicorn_log.removeFilter(KEEP_TRACEBACKS)


@dataclass(frozen=True)
class Reply:
    method: str
    target: str
    status: int
    body: Any

    def __str__(self) -> str:
        return f"{self.method} {self.target[:120]} -> {self.status} {json.dumps(self.body)[:300]}"


def doc_target(source: str) -> str:
    return "/v1/documents/" + quote(source, safe="/")


def send(conn: http.client.HTTPConnection, method: str, target: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    """One request, the target byte for byte; checks that hold for every response: no 5xx, JSON, and
    errors of exactly one shape."""
    seen = len(SERVER_ERRORS.lines)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    reply = Reply(method, target, response.status, parsed)
    assert reply.status < 500 or reply.status == 503, f"{reply}; server: {SERVER_ERRORS.lines[seen:]}"
    assert isinstance(parsed, dict), f"not a JSON object: {reply}"
    if reply.status >= 400:
        error = parsed.get("error")
        assert set(parsed) == {"error"} and isinstance(error, dict), f"bad error shape: {reply}"
        assert set(error) == {"code", "message"}, f"bad error shape: {reply}"
        assert isinstance(error["code"], str) and isinstance(error["message"], str), f"bad error: {reply}"
    return reply


def expect(reply: Reply, statuses: dict[int, str | None]) -> None:
    """The status is one of ``statuses``; for an error, with the error code given there."""
    assert reply.status in statuses, f"expected {sorted(statuses)}: {reply}"
    code = statuses[reply.status]
    if code is not None:
        assert reply.body["error"]["code"] == code, f"expected code {code!r}: {reply}"


def served(source: str, data: bytes) -> str:
    """The text a document is served and cited by: its format's reader's output (Markdown loses its
    markup; the readers have tests of their own in tests/test_formats.py)."""
    from service.corpus import document_from_bytes

    return document_from_bytes(data, source, Path(source).suffix).text


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def conflicts(source: str, files: dict[str, bytes]) -> bool:
    """True when ``source`` is below an existing file, or names a folder that holds files."""
    parts = source.split("/")
    below_a_file = any("/".join(parts[:i]) in files for i in range(2, len(parts)))
    return below_a_file or any(f.startswith(source + "/") for f in files)


def serial_outcomes(state: bytes | None, ops: list[Op], statuses: list[int],
                    conflict: bool) -> list[bytes | None]:
    """The final states of the serial orders of ``ops`` that would answer with ``statuses``
    (an op answered 503 is taken as not done)."""
    finals: list[bytes | None] = []
    for order in itertools.permutations(range(len(ops))):
        current, fits = state, True
        for i in order:
            method, content = ops[i]
            status = statuses[i]
            if status == 503:
                continue
            if conflict:
                fits = status in ((409, 422) if method == "PUT" else (404, 409, 422))
            elif method == "PUT":
                fits, current = status == (201 if current is None else 200), content
            else:
                fits, current = status == (200 if current is not None else 404), None
            if not fits:
                break
        if fits:
            finals.append(current)
    return finals


@st.composite
def parallel_ops(draw: st.DrawFn) -> list[Op]:
    """2-4 operations: identical PUTs and DELETEs mostly, sometimes PUTs of different contents."""
    same = draw(st.sampled_from(CONTENTS))
    if draw(st.booleans()):
        op = st.sampled_from([("PUT", same), ("DELETE", None)])
    else:
        op = st.one_of(st.sampled_from(CONTENTS).map(lambda c: ("PUT", c)), st.just(("DELETE", None)))
    return draw(st.lists(op, min_size=2, max_size=4))


# -- the state machine ------------------------------------------------------------------------------------
class DocumentsMachine(RuleBasedStateMachine):
    """Each run starts from a copy of ``template`` (the initial corpus, indexed) at ``workspace``, with a
    fresh engine, app and server; the test function sets both folders (see ``test_documents_api``)."""

    workspace: ClassVar[Path]  # where a run's corpus and index live: docs/, index/, cache/
    template: ClassVar[Path]  # the same, indexed once, copied into place before each run

    @classmethod
    def prepare(cls, tmp: Path) -> None:
        """Index the initial corpus once, at the path where every run will use it (the index records it)."""
        cls.workspace, cls.template = tmp / "live", tmp / "template"
        for source, data in INITIAL.items():
            path = cls.workspace / source
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        Indexer(cls.config(), embedder=FakeEmbedder(), progress=False).sync(cls.workspace / CORPUS)
        shutil.copytree(cls.workspace, cls.template, symlinks=True)

    @classmethod
    def config(cls) -> Settings:
        return Settings(corpus=cls.workspace / CORPUS, index=cls.workspace / "index",
                        cache_dir=cls.workspace / "cache", checkpoint_seconds=3600)

    def __init__(self) -> None:
        super().__init__()
        shutil.rmtree(self.workspace, ignore_errors=True)
        shutil.copytree(self.template, self.workspace, symlinks=True)
        self.corpus = self.workspace / CORPUS
        config = self.config()
        self.server = LiveServer(create_app(config, Engine(config, embedder=FakeEmbedder())))
        self.server.__enter__()
        self.model: dict[str, bytes] = dict(INITIAL)
        self.last: Reply | None = None  # the last write or refused request, for the invariants' messages

    def teardown(self) -> None:
        self.server.__exit__(None, None, None)
        # The server's commits started background merges in this process: let them finish before
        # the next run deletes the workspace under them.
        LocalStore(self.workspace / "index").settle()

    # -- helpers ---------------------------------------------------------------------------------------
    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)

    def call(self, method: str, target: str, body: bytes | None = None) -> Reply:
        headers = {"Content-Type": "application/octet-stream"} if method == "PUT" else {}
        return send(self.conn(), method, target, body, headers)

    def disk(self) -> dict[str, bytes]:
        """Every file under the corpus folder, hidden names excluded, by document id."""
        found: dict[str, bytes] = {}
        for folder, dirs, files in os.walk(self.corpus):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                path = Path(folder, name)
                rel = path.relative_to(self.corpus).as_posix()
                if not hidden(rel):
                    found[f"{CORPUS}/{rel}"] = path.read_bytes()
        return found

    def listing(self) -> dict[str, str]:
        reply = self.call("GET", "/v1/documents")
        expect(reply, {200: None})
        docs = reply.body["documents"]
        listed = {d["source"]: d["sha256"] for d in docs}
        assert len(listed) == len(docs), f"an id is listed twice: {reply}"
        return listed

    def live_snapshot(self) -> str:
        reply = self.call("GET", "/health")
        expect(reply, {200: None})
        return reply.body["snapshot"]

    def observed(self) -> tuple[dict[str, bytes], dict[str, str]]:
        return self.disk(), self.listing()

    def unavailable(self, reply: Reply) -> bool:
        """A 503 (another writer holds the index, or no usable index): allowed, if nothing changed."""
        if reply.status != 503:
            return False
        assert reply.body["error"]["code"] in ("index_busy", "index_unavailable"), str(reply)
        return True

    def write(self, method: str, source: str, body: bytes | None = None) -> Reply:
        self.last = self.call(method, doc_target(source), body)
        return self.last

    # -- rules ----------------------------------------------------------------------------------------
    @rule(source=SOURCES, content=st.sampled_from(CONTENTS))
    def put(self, source: str, content: bytes) -> None:
        reply = self.write("PUT", source, content)
        if self.unavailable(reply):
            return
        if conflicts(source, self.model):
            expect(reply, {409: "conflict", 422: "invalid_request"})
            return
        old = self.model.get(source)
        expect(reply, {201: None} if old is None else {200: None})
        body = reply.body
        assert body["source"] == source and body["created"] is (old is None), str(reply)
        if old == content:
            assert body["chunks"] == 0, f"an unchanged re-PUT embedded chunks: {reply}"
        else:
            assert body["chunks"] > 0, str(reply)
        assert body["snapshot"] == self.live_snapshot(), f"not the live snapshot: {reply}"
        self.model[source] = content

    @rule(source=SOURCES)
    def delete(self, source: str) -> None:
        reply = self.write("DELETE", source)
        if self.unavailable(reply):
            return
        if source not in self.model:
            conflict = conflicts(source, self.model)
            expect(reply, {404: "not_found", 409: "conflict", 422: "invalid_request"} if conflict
                   else {404: "not_found"})
            return
        expect(reply, {200: None})
        assert reply.body["source"] == source and reply.body["deleted"] is True, str(reply)
        assert reply.body["snapshot"] == self.live_snapshot(), f"not the live snapshot: {reply}"
        del self.model[source]

    @rule(source=SOURCES, ops=parallel_ops(), present=st.booleans())
    def parallel(self, source: str, ops: list[Op], present: bool) -> None:
        """``ops`` on ``source`` at once (after a plain PUT of it when ``present``)."""
        if present and source not in self.model:
            self.put(source, CONTENTS[-1])
        state, conflict = self.model.get(source), conflicts(source, self.model)
        barrier = threading.Barrier(len(ops))

        def fire(op: Op) -> Reply:
            conn = self.conn()
            conn.connect()
            barrier.wait(timeout=30)
            method, content = op
            headers = {"Content-Type": "application/octet-stream"} if method == "PUT" else {}
            return send(conn, method, doc_target(source), content, headers)

        with ThreadPoolExecutor(len(ops)) as pool:
            replies = list(pool.map(fire, ops))
        shown = "; ".join(str(r) for r in replies)
        self.last = Reply("PARALLEL", shown, 0, None)
        for reply in replies:
            if reply.method == "PUT" and reply.status in (200, 201):
                assert reply.body["created"] is (reply.status == 201), shown
        disk, listed = self.observed()
        final = disk.get(source)
        assert listed.get(source) == (None if final is None else sha(final)), (
            f"disk and listing disagree on {source}: {shown}")
        finals = serial_outcomes(state, ops, [r.status for r in replies], conflict)
        assert finals, f"no serial order of the parallel requests answers so: {shown}"
        assert final in finals, f"no serial order answering so leaves {source} as it is: {shown}"
        if final is None:
            self.model.pop(source, None)
        else:
            self.model[source] = final

    @rule(method=st.sampled_from(["PUT", "DELETE", "GET"]), bad=st.sampled_from(BAD_TARGETS),
          content=st.sampled_from(CONTENTS))
    def refused(self, method: str, bad: str, content: bytes) -> None:
        reply = self.last = self.call(method, "/v1/documents/" + bad, content if method == "PUT" else None)
        if method == "PUT":
            expect(reply, {422: "invalid_request"})
        else:  # no document has a bad id: "not found" is fine too
            expect(reply, {400: None, 404: "not_found", 422: "invalid_request"} if method == "GET"
                   else {404: "not_found", 422: "invalid_request"})

    @rule(method=st.sampled_from(["PUT", "DELETE"]), source=st.sampled_from(CONFLICTS),
          content=st.sampled_from(CONTENTS))
    def conflicting(self, method: str, source: str, content: bytes) -> None:
        reply = self.write(method, source, content if method == "PUT" else None)
        statuses: dict[int, str | None] = {409: "conflict", 422: "invalid_request"}
        if method == "DELETE":
            statuses[404] = "not_found"
        expect(reply, statuses)

    @rule(source=SOURCES, body=st.sampled_from(BAD_BODIES))
    def unindexable(self, source: str, body: bytes) -> None:
        reply = self.write("PUT", source, body)
        expect(reply, {409: "conflict", 422: "invalid_request"} if conflicts(source, self.model)
               else {422: "invalid_request"})

    @rule(source=SOURCES)
    def read(self, source: str) -> None:
        reply = self.call("GET", doc_target(source))
        if source not in self.model:
            expect(reply, {404: "not_found"})
            return
        expect(reply, {200: None})
        assert reply.body["source"] == source and reply.body["sha256"] == sha(self.model[source]), str(reply)
        assert reply.body["text"] == served(source, self.model[source]), str(reply)

    @rule(marker=st.sampled_from(MARKERS))
    def search(self, marker: str) -> None:
        reply = send(self.conn(), "POST", "/v1/search", json.dumps({"query": marker, "k": 50}).encode(),
                     {"Content-Type": "application/json"})
        expect(reply, {200: None})
        hits = reply.body["results"]
        for hit in hits:
            source = hit["source"]
            assert source in self.model, f"a hit cites {source!r}, which is not a document now: {hit}"
            text = served(source, self.model[source])
            assert text[hit["char_start"]:hit["char_end"]] == hit["text"], f"stale or misplaced hit: {hit}"
            quote_ = text[hit["quote_start"]:hit["quote_end"]]
            assert quote_ == hit["quote"], f"stale or misplaced quote: {hit}"
        holders = {s for s, data in self.model.items() if marker in served(s, data)}
        found = {h["source"] for h in hits if marker in h["text"]}
        assert found <= holders, f"hits show {marker!r} in {sorted(found - holders)}, which no longer hold it"
        if holders:
            assert found, f"{marker!r} is in {sorted(holders)} but no hit shows it: {reply}"

    # -- invariants (checked after every step; the model changes only on a 2xx, so they also check that
    # a 4xx or 503 changed nothing) ----------------------------------------------------------------------
    @invariant()
    def corpus_and_listing_are_the_model(self) -> None:
        disk, listed = self.observed()
        after = f"after {self.last}" if self.last else "at the start"
        assert disk == self.model, f"corpus folder != model {after}: {describe(self.model, disk)}"
        expected = {source: sha(data) for source, data in self.model.items()}
        assert listed == expected, f"GET /v1/documents != model {after}: {describe(expected, listed)}"
        holding = {folder for source in disk for folder in parents(source)}
        folders: set[str] = set()
        for folder, dirs, _files in os.walk(self.corpus):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            folders.update(Path(folder, d).relative_to(self.corpus).as_posix() for d in dirs)
        assert folders <= holding, f"folders left without documents {after}: {sorted(folders - holding)}"


def parents(source: str) -> Iterator[str]:
    """The folders holding ``source`` below the corpus folder: docs/a/b/c.txt -> a, a/b."""
    parts = source.split("/")[1:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def describe(expected: dict[str, Any], got: dict[str, Any]) -> str:
    def short(key: str) -> str:
        return key if len(key) <= 60 else key[:50] + f"…({len(key)} chars)"

    missing = sorted(short(k) for k in expected.keys() - got.keys())
    extra = sorted(short(k) for k in got.keys() - expected.keys())
    differ = sorted(short(k) for k in expected.keys() & got.keys() if expected[k] != got[k])
    return f"missing {missing}, unexpected {extra}, different {differ}"


SETTINGS = settings(max_examples=20, stateful_step_count=15, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_documents_api(tmp_path: Path) -> None:
    class Machine(DocumentsMachine):
        pass

    Machine.prepare(tmp_path)
    with quiet_server_errors():
        run_state_machine_as_test(Machine, settings=SETTINGS)
