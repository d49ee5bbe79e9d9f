"""The documents API's write path and the service's edges, each case a regression test of a bug seen.

A live server (uvicorn on loopback) over a small corpus indexed with the fake embedder: the write
path's logic does not depend on the model, and each test gets its own corpus to change.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import store
from service.api.app import create_app
from service.config import Settings
from service.engine import Engine
from service.indexer import Indexer
from service.store import local
from tests.conftest import FakeEmbedder, write
from tests.live_server import LiveServer

A = "docs/a.txt"
A_TEXT = b"Alpha report\n\nThe alpha committee met on Tuesday about harbour lights.\n"


class Site:
    """A running server over its own corpus folder ``<tmp>/docs``."""

    def __init__(self, url: str, settings: Settings, engine: Engine) -> None:
        self.url, self.settings, self.engine = url, settings, engine
        self.corpus = settings.corpus

    def files(self) -> dict[str, bytes]:
        return {p.relative_to(self.corpus.parent).as_posix(): p.read_bytes()
                for p in sorted(self.corpus.rglob("*")) if p.is_file() and not p.name.startswith(".")}

    def folders(self) -> list[str]:
        return sorted(p.relative_to(self.corpus).as_posix() for p in self.corpus.rglob("*") if p.is_dir())

    def listing(self) -> dict[str, str]:
        r = httpx.get(f"{self.url}/v1/documents", timeout=60)
        assert r.status_code == 200, r.text
        return {d["source"]: d["sha256"] for d in r.json()["documents"]}

    def state(self) -> tuple[dict[str, bytes], list[str], dict[str, str]]:
        return self.files(), self.folders(), self.listing()


def make_site(tmp_path: Path, **overrides: Any) -> tuple[Settings, Engine]:
    settings = Settings(corpus=tmp_path / "docs", index=tmp_path / "index", cache_dir=tmp_path / "cache",
                        checkpoint_seconds=3600, **overrides)
    write(settings.corpus, "a.txt", A_TEXT)
    write(settings.corpus, "sub/b.txt", "Beta notes\n\nThe beta team counted gulls on the breakwater.\n")
    embedder = FakeEmbedder()
    Indexer(settings, embedder=embedder, progress=False).sync(settings.corpus)
    return settings, Engine(settings, embedder=embedder)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    settings, engine = make_site(tmp_path)
    with LiveServer(create_app(settings, engine)) as url:
        yield Site(url, settings, engine)


def raw(url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Send ``path`` exactly as written (no client-side normalisation of ``/./`` or ``%2F``)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        import json

        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def assert_error(status_body: tuple[int, Any], status: int, code: str | None = None) -> None:
    got, body = status_body
    assert got == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    if code:
        assert body["error"]["code"] == code, body


# -- 1. re-PUT of unchanged content ------------------------------------------------------------------------
def test_reput_of_unchanged_content_is_200_with_the_live_snapshot(site: Site) -> None:
    before = store.current_name(site.settings.index)
    r = httpx.put(f"{site.url}/v1/documents/{A}", content=A_TEXT, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == {"source": A, "snapshot": before, "chunks": 0, "created": False}
    assert store.current_name(site.settings.index) == before


# -- 2. concurrent writes to one document --------------------------------------------------------------------
def test_concurrent_deletes_of_one_document_one_wins(site: Site) -> None:
    for _round in range(3):
        httpx.put(f"{site.url}/v1/documents/docs/c.txt", content=b"Gamma\n\nGamma text here.\n", timeout=60)
        with ThreadPoolExecutor(3) as pool:
            statuses = sorted(pool.map(lambda _: httpx.delete(f"{site.url}/v1/documents/docs/c.txt",
                                                              timeout=60).status_code, range(3)))
        assert statuses == [200, 404, 404]
        assert "docs/c.txt" not in site.listing() and not (site.corpus / "c.txt").exists()


def test_concurrent_identical_puts_create_once(site: Site) -> None:
    for n in range(3):
        path = f"docs/new-{n}.txt"
        url = f"{site.url}/v1/documents/{path}"
        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(lambda u: httpx.put(u, content=b"Delta\n\nDelta text.\n", timeout=60), [url] * 3))
        assert sorted(r.status_code for r in responses) == [200, 200, 201], [r.text for r in responses]
        assert sum(r.json()["created"] for r in responses) == 1
        assert site.listing()[path] == hashlib.sha256(b"Delta\n\nDelta text.\n").hexdigest()


# -- 3. long names -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "status"), [
    ("c" * 250 + ".txt", 201),  # 254 bytes: the longest a file system takes (the temporary name is short)
    ("é" * 125 + ".txt", 201),  # 254 bytes in UTF-8
    ("c" * 252 + ".txt", 422),  # 256 bytes
    ("é" * 126 + ".txt", 422),
])
def test_long_names_work_up_to_the_file_system_limit(site: Site, name: str, status: int) -> None:
    before = site.state()
    r = httpx.put(f"{site.url}/v1/documents/docs/{name}", content=b"Long\n\nA long name.\n", timeout=60)
    assert r.status_code == status, r.text
    if status == 201:
        assert (site.corpus / name).read_bytes() == b"Long\n\nA long name.\n"
        assert f"docs/{name}" in site.listing()
    else:
        assert r.json()["error"]["code"] == "invalid_request" and "255" in r.json()["error"]["message"]
        assert site.state() == before


# -- 4. a path below an existing file, or onto a folder ------------------------------------------------------
@pytest.mark.parametrize("path", [f"{A}/x.txt", f"{A}/deeper/x.txt", "docs/sub/b.txt/x.txt"])
def test_path_below_a_file_is_409_and_changes_nothing(site: Site, path: str) -> None:
    before = site.state()
    assert_error(raw(site.url, "PUT", f"/v1/documents/{path}", b"x\n\ny\n"), 409, "conflict")
    assert site.state() == before


def test_path_onto_a_folder_is_409(site: Site) -> None:
    (site.corpus / "folder.txt").mkdir()
    before = site.state()
    assert_error(raw(site.url, "PUT", "/v1/documents/docs/folder.txt", b"x\n\ny\n"), 409, "conflict")
    assert site.state() == before


# -- 5. one file, one id ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["docs/a/./dup.txt", "docs/./a.txt", "docs/sub/../a.txt", "docs//a.txt",
                                  "docs/a/", "docs/sub/./b.txt", "docs%2Fa.txt", "docs/sub%2fb.txt", "docs/sub%5Cb.txt"])
def test_dot_and_empty_segments_are_refused_not_aliased(site: Site, path: str) -> None:
    before = site.state()
    for method in ("PUT", "DELETE", "GET"):
        assert_error(raw(site.url, method, f"/v1/documents/{path}", b"Dup\n\nDuplicate text.\n"), 422,
                     "invalid_request")
    assert site.state() == before


# -- 6. a refused or failed write changes nothing ------------------------------------------------------------
def hold_writer_lock(index: Path) -> int:
    """Take the index's writer lock as another process would (a separate open file description)."""
    fd = os.open(index / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_busy_index_is_503_before_the_corpus_is_touched(site: Site) -> None:
    before = site.state()
    fd = hold_writer_lock(site.settings.index)
    try:
        r = httpx.put(f"{site.url}/v1/documents/docs/busy.txt", content=b"Busy\n\nBusy text.\n", timeout=60)
        assert r.status_code == 503 and r.json()["error"]["code"] == "index_busy" and r.headers["retry-after"]
        r = httpx.put(f"{site.url}/v1/documents/{A}", content=b"Changed\n\nChanged text.\n", timeout=60)
        assert r.status_code == 503
        r = httpx.delete(f"{site.url}/v1/documents/docs/sub/b.txt", timeout=60)
        assert r.status_code == 503
        assert site.state() == before
    finally:
        os.close(fd)
    assert httpx.put(f"{site.url}/v1/documents/docs/busy.txt", content=b"Busy\n\nBusy text.\n",
                     timeout=60).status_code == 201


def test_a_write_that_fails_to_commit_puts_the_corpus_back(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(index_dir: Path, *args: Any, **kwargs: Any) -> str:
        raise store.write_error(index_dir, OSError(28, "No space left on device"))

    monkeypatch.setattr(local, "commit_manifest", full_disk)
    before = site.state()
    for method, path, body in [("PUT", "docs/new/deep/n.txt", b"New\n\nNew text.\n"),
                               ("PUT", A, b"Changed\n\nChanged text.\n"), ("DELETE", "docs/sub/b.txt", b"")]:
        status, body_json = raw(site.url, method, f"/v1/documents/{path}", body)
        assert status == 503 and "disk is full" in body_json["error"]["message"], body_json
        assert site.state() == before, (method, path)


# -- 9. DNS rebinding ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("headers", "code"), [
    ({"Host": "evil.example"}, "forbidden_host"),
    ({"Host": "127.0.0.1.evil.example"}, "forbidden_host"),
    ({"Origin": "http://evil.example"}, "forbidden_origin"),
    ({"Origin": "null"}, "forbidden_origin"),
])
def test_foreign_host_or_origin_is_refused_on_every_route(site: Site, headers: dict[str, str], code: str) -> None:
    before = site.state()
    for method, path in [("PUT", "/v1/documents/docs/evil.txt"), ("DELETE", f"/v1/documents/{A}"),
                         ("GET", "/v1/documents"), ("GET", "/health"), ("GET", "/")]:
        assert_error(raw(site.url, method, path, b"Evil\n\nEvil text.\n", headers), 403, code)
    assert site.state() == before


def test_loopback_names_and_allowed_hosts_are_served(tmp_path: Path) -> None:
    settings, engine = make_site(tmp_path, allowed_hosts=("ask.example.org",))
    with LiveServer(create_app(settings, engine)) as url:
        port = url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "ask.example.org", "ASK.example.org:443"):
            status, _body = raw(url, "GET", "/health", headers={"Host": host})
            assert status == 200, host
        status, _body = raw(url, "GET", "/health", headers={"Origin": f"http://localhost:{port}"})
        assert status == 200


# -- 10. the API key covers the docs and the schema; the page's files stay public --------------------------------
def test_api_key_covers_docs_and_schema_but_not_the_page(tmp_path: Path) -> None:
    settings, engine = make_site(tmp_path, api_key="k3y")
    with LiveServer(create_app(settings, engine)) as url:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/v1/documents", "/metrics",
                     "/static-offline-docs/redoc.standalone.js", "/no-such-route"):
            assert_error(raw(url, "GET", path), 401, "unauthorized")
        assert httpx.get(f"{url}/openapi.json", headers={"X-API-Key": "k3y"}).status_code == 200
        assert httpx.get(f"{url}/docs", headers={"Authorization": "Bearer k3y"}).status_code == 200
        # Public: /health, and the page's static files, the same bytes for everyone.
        assert httpx.get(f"{url}/health").status_code == 200
        for path in ("/", "/static/app.js", "/static/style.css"):
            r = httpx.get(f"{url}{path}")
            assert r.status_code == 200
            assert b"alpha committee" not in r.content and b"k3y" not in r.content


# -- 11. smaller edges ---------------------------------------------------------------------------------------
def test_validation_errors_name_the_field(site: Site) -> None:
    r = httpx.post(f"{site.url}/v1/search", json={}, timeout=60)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("query: "), r.text
    r = httpx.post(f"{site.url}/v1/search", json={"query": "   "}, timeout=60)
    assert r.json()["error"]["message"].startswith("query: "), r.text
    r = httpx.post(f"{site.url}/v1/ask", json={"question": "x", "k": 0}, timeout=60)
    assert r.json()["error"]["message"].startswith("k: "), r.text
    r = httpx.get(f"{site.url}/v1/search", params={"q": "x", "k": "51"}, timeout=60)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("k: "), r.text


def test_schema_limits_and_threshold_come_from_settings(tmp_path: Path) -> None:
    settings, engine = make_site(tmp_path, max_k=7, max_query_chars=123, max_context_tokens=999,
                                 abstain_threshold=0.37)
    with LiveServer(create_app(settings, engine)) as url:
        schema = httpx.get(f"{url}/openapi.json").json()
        models = schema["components"]["schemas"]
        assert models["SearchRequest"]["properties"]["query"]["maxLength"] == 123
        assert models["SearchRequest"]["properties"]["k"]["anyOf"][0]["maximum"] == 7
        assert models["ContextRequest"]["properties"]["max_tokens"]["maximum"] == 999
        assert "0.37" in models["AskResponse"]["properties"]["confidence"]["description"]
        get_params = {p["name"]: p["schema"] for p in schema["paths"]["/v1/search"]["get"]["parameters"]}
        assert get_params["q"]["maxLength"] == 123 and get_params["k"]["anyOf"][0]["maximum"] == 7
        assert httpx.post(f"{url}/v1/search", json={"query": "x", "k": 8}).status_code == 422
        assert httpx.post(f"{url}/v1/search", json={"query": "x" * 124}).status_code == 422
        assert httpx.post(f"{url}/v1/search", json={"query": "alpha", "k": 7}).status_code == 200


def test_mcp_ask_describes_the_configured_threshold(tmp_path: Path) -> None:
    import json

    from service.mcp import build_server

    settings, engine = make_site(tmp_path, abstain_threshold=0.37)
    server = build_server(engine)
    tools = {t.name: t for t in server._tool_manager.list_tools()}
    schema = json.dumps(tools["ask"].output_schema)
    assert "0.37" in schema and "0.35" not in schema


def test_write_examples_name_documents_that_do_not_exist(site: Site) -> None:
    schema = httpx.get(f"{site.url}/openapi.json").json()
    path = schema["paths"]["/v1/documents/{path}"]
    for method in ("put", "delete"):
        example = path[method]["parameters"][0]["examples"][0] if "examples" in path[method]["parameters"][0] else None
        example = example or path[method]["parameters"][0]["schema"]["examples"][0]
        assert not (Path(__file__).resolve().parent.parent / example).exists(), example
        assert example.startswith("seeds/")


def test_redoc_cannot_fetch_from_a_cdn(site: Site) -> None:
    for page in ("/redoc", "/docs", "/"):
        r = httpx.get(f"{site.url}{page}")
        csp = r.headers["content-security-policy"]
        assert "img-src 'self' data:;" in csp and "default-src 'self'" in csp
        assert "cdn" not in r.text.lower()


def test_delete_removes_folders_it_leaves_empty(site: Site) -> None:
    for path in ("docs/x/y/z/deep.txt", "docs/x/y/other.txt"):
        assert httpx.put(f"{site.url}/v1/documents/{path}", content=b"D\n\nDeep.\n").status_code == 201
    assert httpx.delete(f"{site.url}/v1/documents/docs/x/y/z/deep.txt").status_code == 200
    assert site.folders() == ["sub", "x", "x/y"]
    assert httpx.delete(f"{site.url}/v1/documents/docs/x/y/other.txt").status_code == 200
    assert site.folders() == ["sub"]
    assert httpx.delete(f"{site.url}/v1/documents/docs/sub/b.txt").status_code == 200
    assert site.folders() == [] and site.corpus.is_dir()  # never the corpus folder itself


def test_symlinks_out_of_the_corpus_are_a_setting(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret.txt", "Secret\n\nThe outside secret mentions walruses.\n")
    write(outside, "folder/inner.txt", "Inner\n\nInner text about otters.\n")
    settings = Settings(corpus=tmp_path / "docs", index=tmp_path / "index", cache_dir=tmp_path / "cache")
    write(settings.corpus, "a.txt", A_TEXT)
    write(settings.corpus, "inside/target.txt", "Target\n\nInside target.\n")
    (settings.corpus / "link.txt").symlink_to(outside / "secret.txt")
    (settings.corpus / "linked").symlink_to(outside / "folder")
    (settings.corpus / "internal.txt").symlink_to(settings.corpus / "inside" / "target.txt")
    embedder = FakeEmbedder()
    with caplog.at_level("WARNING"):
        report = Indexer(settings, embedder=embedder, progress=False).sync(settings.corpus)
    indexed = set(report.added)
    assert indexed == {"docs/a.txt", "docs/inside/target.txt", "docs/internal.txt"}
    assert {s.path for s in report.skipped} == {"docs/link.txt", "docs/linked"}
    assert all("outside the corpus" in s.reason for s in report.skipped)
    assert "docs/link.txt" in caplog.text

    followed = settings.model_copy(update={"external_symlinks": True})
    report = Indexer(followed, embedder=embedder, progress=False).sync(settings.corpus)
    assert set(report.added) == {"docs/link.txt", "docs/linked/inner.txt"} and not report.skipped


def test_token_counting_on_an_empty_cache_from_many_threads(tmp_path: Path) -> None:
    """The first /v1/context requests of a fresh server seed tiktoken's cache together (it was a 500)."""
    from service import tokens

    cache = str(tmp_path / "fresh-cache")
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda _: tokens.count("who visited Myanmar?", cache), range(8)))
    assert len(set(counts)) == 1 and counts[0] > 0
    assert not [p for p in (tmp_path / "fresh-cache" / "tiktoken").iterdir() if p.name.startswith(".tmp")]
