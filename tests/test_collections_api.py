"""Collections and filters over real HTTP (uvicorn on loopback), through the MCP SDK's client, and
from the CLI (``ask --server``): the fake embedder, two small collections."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from service import cli
from service.api.app import create_app
from service.config import Settings
from service.engine import Engine
from service.indexer import Indexer
from tests.conftest import FakeEmbedder, write
from tests.live_server import LiveServer

JAN_2024 = datetime(2024, 1, 10, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Engine]:
    root = tmp_path_factory.mktemp("collections")
    settings = Settings(corpus=root / "news", index=root / "index", cache_dir=root / "cache",
                        collections={"papers": {"corpus": root / "papers"}})
    write(settings.corpus, "a.txt", "Harbour\n\nThe harbour reopened after the storm.\n")
    write(settings.corpus, "b.txt", "Market\n\nThe market moved to the old station.\n")
    a = write(root / "papers", "graphene.txt", "Graphene\n\nGraphene conducts heat better than copper.\n")
    write(root / "papers", "solar/perovskite.md", "Perovskite\n\nPerovskite solar cells degrade in humid air.\n\n"
                                                  "Encapsulation slows the damage to the solar cells.\n")
    os.utime(a, (JAN_2024, JAN_2024))
    embedder = FakeEmbedder()
    Indexer(settings, embedder=embedder, progress=False).sync()
    from service.collections import settings_for

    Indexer(settings_for(settings, "papers"), embedder=embedder, progress=False).sync()
    return settings, Engine(settings, embedder=embedder)


@pytest.fixture(scope="module")
def server(setup: tuple[Settings, Engine]) -> Iterator[str]:
    settings, engine = setup
    with LiveServer(create_app(settings, engine)) as url:
        yield url


@pytest.fixture(scope="module")
def keyed(setup: tuple[Settings, Engine]) -> Iterator[str]:
    settings, engine = setup
    with LiveServer(create_app(settings.model_copy(update={"api_key": "k3y"}), engine)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return str(body["error"]["message"])


def test_list_collections(client: httpx.Client) -> None:
    r = client.get("/v1/collections")
    assert r.status_code == 200
    assert r.json() == {"collections": [
        {"name": "default", "default": True, "documents": 2, "chunks": 4, "store": "local", "ready": True},
        {"name": "papers", "default": False, "documents": 2, "chunks": r.json()["collections"][1]["chunks"],
         "store": "local", "ready": True}]}


def test_routes_under_a_collection(client: httpx.Client) -> None:
    base = "/v1/collections/papers"
    r = client.post(f"{base}/search", json={"query": "solar cells humid", "k": 3})
    assert r.status_code == 200 and {h["source"] for h in r.json()["results"]} <= {
        "papers/graphene.txt", "papers/solar/perovskite.md"}
    assert r.json()["results"][0]["source"] == "papers/solar/perovskite.md"
    r = client.get(f"{base}/search", params={"q": "heat copper", "k": 5, "type": "txt"})
    assert {h["source"] for h in r.json()["results"]} == {"papers/graphene.txt"} and len(r.json()["results"]) == 2
    r = client.post(f"{base}/ask", json={"question": "what degrades solar cells?", "filter": {"path": "solar/"}})
    assert r.status_code == 200 and {c["source"] for c in r.json()["citations"]} == {"papers/solar/perovskite.md"}
    r = client.post(f"{base}/context", json={"query": "graphene", "max_tokens": 200,
                                             "filter": {"modified_before": "2024-02-01"}})
    assert r.status_code == 200 and {c["source"] for c in r.json()["citations"]} == {"papers/graphene.txt"}
    docs = client.get(f"{base}/documents").json()["documents"]
    assert [d["source"] for d in docs] == ["papers/graphene.txt", "papers/solar/perovskite.md"]
    assert docs[0]["modified"] == "2024-01-10T00:00:00Z"
    assert client.get(f"{base}/documents/papers/graphene.txt").json()["paragraphs"][1]["text"].startswith("Graphene")
    r = client.put(f"{base}/documents/papers/notes/x.txt", content=b"Notes\n\nA note on superconductors.\n")
    assert r.status_code == 201
    assert client.get(f"{base}/health").json()["documents"] == 3
    assert client.get("/health").json()["documents"] == 2, "the default collection is untouched"
    assert client.delete(f"{base}/documents/papers/notes/x.txt").status_code == 200
    assert client.get(f"{base}/health").json()["documents"] == 2
    # today's routes serve the default collection, and so does its name
    assert {h["source"] for h in client.post("/v1/search", json={"query": "harbour storm"}).json()["results"]} <= {
        "news/a.txt", "news/b.txt"}
    assert client.post("/v1/collections/default/search", json={"query": "harbour storm", "k": 1}).json() == \
        client.post("/v1/search", json={"query": "harbour storm", "k": 1}).json()


def test_unknown_collection_is_404(client: httpx.Client) -> None:
    for method, path, body in [("POST", "/v1/collections/nope/search", {"query": "x"}),
                               ("GET", "/v1/collections/nope/documents", None),
                               ("GET", "/v1/collections/nope/health", None),
                               ("GET", "/v1/collections/Bad%20Name/documents/x/y.txt", None)]:
        message = error(client.request(method, path, json=body), 404, "collection_not_found")
        assert "collections: default, papers" in message


@pytest.mark.parametrize(("flt", "field"), [
    ({"modified_after": "last week"}, "filter.modified_after"),
    ({"modified_after": "2024-02-01", "modified_before": "2024-01-01"}, "filter.modified_before"),
    ({"type": ["exe"]}, "filter.type"),
    ({"path": "../x"}, "filter.path"),
    ({"colour": "red"}, "filter.colour"),
    ({"type": [1]}, "filter.type"),
])
def test_bad_filters_are_422_naming_the_field(client: httpx.Client, flt: dict[str, Any], field: str) -> None:
    for path in ("/v1/search", "/v1/collections/papers/search"):
        message = error(client.post(path, json={"query": "harbour", "filter": flt}), 422, "invalid_request")
        assert message.startswith(field), message
    message = error(client.get("/v1/search", params={"q": "harbour", "modified_after": "nope"}), 422, "invalid_request")
    assert message.startswith("filter.modified_after")


def test_key_and_host_guards_cover_collection_routes(keyed: str) -> None:
    with httpx.Client(base_url=keyed, timeout=60) as c:
        for path in ("/v1/collections", "/v1/collections/papers/health", "/v1/collections/papers/documents"):
            error(c.get(path), 401, "unauthorized")
            assert c.get(path, headers={"X-API-Key": "k3y"}).status_code == 200
        error(c.post("/v1/collections/papers/search", json={"query": "x"}), 401, "unauthorized")
        r = c.get("/v1/collections", headers={"X-API-Key": "k3y", "Host": "evil.example"})
        assert r.status_code == 403
        assert c.get("/health").status_code == 200  # still open


def test_openapi_documents_collection_routes(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/collections", "/v1/collections/{collection}/search", "/v1/collections/{collection}/ask",
            "/v1/collections/{collection}/context", "/v1/collections/{collection}/documents",
            "/v1/collections/{collection}/documents/{path}", "/v1/collections/{collection}/health"} <= set(paths)
    params = paths["/v1/collections/{collection}/search"]["post"]["parameters"]
    assert [p["name"] for p in params] == ["collection"]
    assert "filter" in client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"]["properties"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_mcp_tools_take_a_collection_and_a_filter(server: str) -> None:
    async with streamable_http_client(f"{server}/mcp") as (read, write_), ClientSession(read, write_) as session:
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert {"search", "fetch", "ask", "collections"} <= set(tools)
        assert {"collection", "filter"} <= set(tools["search"].input_schema["properties"])
        r = await session.call_tool("collections", {})
        assert [c["name"] for c in r.structured_content["collections"]] == ["default", "papers"]
        r = await session.call_tool("search", {"query": "solar heat", "collection": "papers",
                                               "filter": {"type": ["md"]}})
        assert not r.is_error, r.content
        assert {h["source"] for h in r.structured_content["results"]} == {"papers/solar/perovskite.md"}
        hit = r.structured_content["results"][0]
        assert hit["url"] == f"{server}/#doc=papers/solar/perovskite.md&p={hit['paragraph']}&c=papers"
        r = await session.call_tool("fetch", {"id": "papers/graphene.txt#p2", "collection": "papers"})
        assert not r.is_error and "copper" in r.structured_content["text"]
        r = await session.call_tool("ask", {"question": "what conducts heat?", "collection": "papers",
                                            "filter": {"path": "graphene.txt"}})
        assert not r.is_error and {c["source"] for c in r.structured_content["citations"]} == {"papers/graphene.txt"}
        for name, args, needle in [("search", {"query": "x", "collection": "nope"}, "no collection 'nope'"),
                                   ("ask", {"question": "x", "filter": {"modified_after": "soon"}},
                                    "filter.modified_after")]:
            r = await session.call_tool(name, args)
            assert r.is_error and needle in r.content[0].text, r.content


def test_cli_sends_collection_and_filter(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--server", server, "--collection", "papers", "--type", "md,txt", "--path", "solar/",
                     "--json", "what degrades solar cells?"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and {c["source"] for c in out["citations"]} == {"papers/solar/perovskite.md"}
    code = cli.main(["--server", server, "--collection", "nope", "--json", "x"])
    assert code == 1 and json.loads(capsys.readouterr().out)["error"]["code"] == "collection_not_found"
    code = cli.main(["--server", server, "--modified-after", "later", "--json", "x"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["error"]["code"] == "invalid_request" and "filter.modified_after" in out["error"]["message"]


def test_cli_collection_settings(setup: tuple[Settings, Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _ = setup
    monkeypatch.setenv("ASK_COLLECTIONS", json.dumps({"papers": {"corpus": str(settings.corpus.parent / "papers")}}))
    monkeypatch.setenv("ASK_INDEX", str(settings.index))
    args = cli.build_parser().parse_args(["index", "--collection", "papers"])
    chosen = cli._settings(args)
    assert chosen.collection == "papers" and chosen.corpus == settings.corpus.parent / "papers"
    assert chosen.index == Path(settings.index) / "collections" / "papers"
    assert cli.admin_main(["index", "--collection", "nope", "--json"]) == 1


@pytest.mark.anyio
async def test_publication_date_in_documents_and_mcp_fetch(server: str) -> None:
    """An HTML page's declared date shows in the document list, the document and MCP fetch metadata."""
    page = (b'<html><head><title>Tide gauges</title><meta property="article:published_time" '
            b'content="2024-05-01T07:00:00+00:00"></head><body><article><h1>Tide gauges</h1>'
            b"<p>The new tide gauges on the quay report the water level every minute to the harbour office.</p>"
            b"<p>Fishermen read the levels on their phones before they leave the harbour at dawn.</p>"
            b"</article></body></html>")
    base = "/v1/collections/papers"
    async with httpx.AsyncClient(base_url=server, timeout=60) as c:
        assert (await c.put(f"{base}/documents/papers/news/tides.html", content=page)).status_code == 201
        try:
            docs = {d["source"]: d for d in (await c.get(f"{base}/documents")).json()["documents"]}
            assert docs["papers/news/tides.html"]["published"] == "2024-05-01"
            assert docs["papers/graphene.txt"]["published"] is None
            got = (await c.get(f"{base}/documents/papers/news/tides.html")).json()
            assert got["published"] == "2024-05-01" and got["title"] == "Tide gauges"
            assert (await c.get(f"{base}/documents/papers/graphene.txt")).json()["published"] is None
            async with streamable_http_client(f"{server}/mcp") as (read, write_), \
                    ClientSession(read, write_) as session:
                await session.initialize()
                r = await session.call_tool("fetch", {"id": "papers/news/tides.html", "collection": "papers"})
                assert not r.is_error and r.structured_content["metadata"]["published"] == "2024-05-01"
                r = await session.call_tool("fetch", {"id": "papers/graphene.txt", "collection": "papers"})
                assert not r.is_error and r.structured_content["metadata"]["published"] is None
        finally:
            assert (await c.delete(f"{base}/documents/papers/news/tides.html")).status_code == 200
