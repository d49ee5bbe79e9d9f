"""The "done when" folder: txt, md, html, pdf and docx in subfolders, indexed with the real model and
cited from the CLI (text and --json), REST (search, ask, context, documents, PUT of PDF and Word
bytes) and MCP (search, fetch, ask), every citation checked: page, paragraph and offsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from service.api.app import create_app
from service.config import PROJECT_ROOT, Settings
from service.engine import Engine
from tests.live_server import LiveServer

from .conftest import write
from .paged_docs import BOILERPLATE, HTML_TITLE, PDF_TITLE, build_docx, build_html, build_pdf

pytestmark = pytest.mark.model
PDF = "docs/reports/2024/fisheries.pdf"
DOCX = "docs/minutes/harbour.docx"
HERRING = "how did herring stocks do in the western channel?"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("realfolder")
    corpus = root / "docs"
    write(corpus, "notes.txt", "Lighthouse notes\n\nThe lighthouse keeper logs the weather at dawn every day.\n")
    write(corpus, "guides/sailing.md", "# Sailing guide\n\nAlways carry a **tide table** and check the forecast.\n")
    write(corpus, "news/seals.html", build_html())
    write(corpus, "reports/2024/fisheries.pdf", build_pdf())
    write(corpus, "minutes/harbour.docx", build_docx())
    settings = Settings(corpus=corpus, index=root / "index", cache_dir=root / "cache")
    r = cli("index", "--corpus", str(corpus), "--index", str(settings.index), "--json", settings=settings)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["documents_total"] == 5 and report["skipped"] == []
    assert report["empty_pages"] == {PDF: [4]} and "page" in r.stderr and "4" in r.stderr
    return settings


def cli(*args: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ASK_CACHE_DIR": str(settings.cache_dir)}
    for name in ("ASK_SERVER", "ASK_API_KEY"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "service", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=PROJECT_ROOT)


def check(doc: dict[str, Any], c: dict[str, Any]) -> None:
    """A citation JSON against GET /v1/documents/{id}: offsets slice the text; page and paragraph match."""
    assert doc["text"][c["char_start"] : c["char_end"]] == c["text"]
    assert doc["text"][c["quote_start"] : c["quote_end"]] == c["quote"]
    holder = next(p for p in doc["paragraphs"] if p["char_start"] <= c["char_start"] and c["char_end"] <= p["char_end"])
    assert (holder["page"], holder["paragraph"]) == (c["page"], c["paragraph"])
    paged = c["source"].endswith((".pdf", ".docx"))
    assert (c["page"] is not None) == paged
    suffix = f"#page{c['page']}.p{c['paragraph']}" if paged else f"#p{c['paragraph']}"
    assert c.get("id", c["source"] + suffix) == c["source"] + suffix


def test_cli_cites_pages_in_text_and_json(folder: Settings) -> None:
    r = cli("ask", "--index", str(folder.index), "--json", HERRING, settings=folder)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    first = result["citations"][0]
    assert "Herring stocks recovered" in result["answer"]
    assert (first["source"], first["page"], first["paragraph"]) == (PDF, 3, 1)
    assert all("page" in c for c in result["citations"])
    r = cli("ask", "--index", str(folder.index), HERRING, settings=folder)
    assert r.returncode == 0 and f"[1] {PDF} p. 3 ¶1\n" in r.stdout, r.stdout


@pytest.fixture(scope="module")
def server(folder: Settings) -> Iterator[str]:
    engine = Engine(folder)
    engine.load()
    with LiveServer(create_app(folder, engine)) as url:
        yield url


QUESTIONS = {
    HERRING: (PDF, 3, 1),
    "were quotas cut and how many vessels were licensed in the fleet?": (PDF, 2, 2),
    "when does dredging of the channel start?": (DOCX, 2, 1),
    "how much do mooring fees rise?": (DOCX, 1, 4),
    "how many seals did the wardens count on the mudflats?": ("docs/news/seals.html", None, 3),
    "when does the lighthouse keeper log the weather?": ("docs/notes.txt", None, 2),
    "what should sailors always carry?": ("docs/guides/sailing.md", None, 2),
}


def test_rest_citations_name_pages_and_slice_the_served_text(server: str) -> None:
    with httpx.Client(base_url=server, timeout=120) as client:
        docs: dict[str, dict[str, Any]] = {}

        def doc(source: str) -> dict[str, Any]:
            if source not in docs:
                r = client.get(f"/v1/documents/{source}")
                assert r.status_code == 200
                docs[source] = r.json()
            return docs[source]

        for question, expected in QUESTIONS.items():
            found = client.post("/v1/search", json={"query": question, "k": 5}).json()["results"]
            answered = client.post("/v1/ask", json={"question": question, "k": 3}).json()
            packed = client.post("/v1/context", json={"query": question, "max_tokens": 600}).json()
            for c in found + answered["citations"] + packed["citations"]:
                check(doc(c["source"]), c)
            top = answered["citations"][0]
            assert (top["source"], top["page"], top["paragraph"]) == expected, (question, top)
            first = packed["citations"][0]
            where = f"p. {first['page']} ¶{first['paragraph']}" if first["page"] else f"¶{first['paragraph']}"
            assert packed["context"].startswith(f"[1] {first['source']} {where}\n")

        pdf = doc(PDF)
        assert pdf["pages"] == 5 and pdf["empty_pages"] == [4] and pdf["title"] == PDF_TITLE
        html = doc("docs/news/seals.html")
        assert html["title"] == HTML_TITLE and html["pages"] is None
        assert not any(noise in html["text"] for noise in BOILERPLATE)
        md = doc("docs/guides/sailing.md")
        assert md["title"] == "Sailing guide" and "**" not in md["text"] and "#" not in md["text"]


def test_put_pdf_and_docx_bytes(server: str, folder: Settings) -> None:
    with httpx.Client(base_url=server, timeout=300) as client:
        for name, data in [("docs/uploads/copy.pdf", build_pdf()), ("docs/uploads/copy.docx", build_docx())]:
            r = client.put(f"/v1/documents/{name}", content=data, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
            assert (folder.corpus / "uploads" / Path(name).name).read_bytes() == data
            got = client.get(f"/v1/documents/{name}").json()
            assert got["pages"] == (5 if name.endswith(".pdf") else 2)
        hits = client.post("/v1/search", json={"query": "dredging of the channel starts in May", "k": 5}).json()
        upload = next(c for c in hits["results"] if c["source"] == "docs/uploads/copy.docx")
        assert (upload["page"], upload["paragraph"]) == (2, 1)
        check(client.get("/v1/documents/docs/uploads/copy.docx").json(), upload)
        bad = client.put("/v1/documents/docs/uploads/broken.pdf", content=build_pdf()[:300])
        assert bad.status_code == 422 and "PDF" in bad.json()["error"]["message"]
        assert not (folder.corpus / "uploads" / "broken.pdf").exists()
        for name in ("docs/uploads/copy.pdf", "docs/uploads/copy.docx"):
            assert client.delete(f"/v1/documents/{name}").status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_ids_and_fetch_by_page(server: str) -> None:
    async with streamable_http_client(f"{server}/mcp") as (read, write_), ClientSession(read, write_) as session:
        await session.initialize()
        r = await session.call_tool("search", {"query": HERRING, "k": 3})
        top = r.structured_content["results"][0]
        assert (top["source"], top["page"], top["paragraph"]) == (PDF, 3, 1)
        assert top["id"] == f"{PDF}#page3.p1" and top["url"].endswith("&pg=3&p=1")
        r = await session.call_tool("fetch", {"id": top["id"]})
        assert not r.is_error, r.content
        fetched = r.structured_content
        assert fetched["text"].startswith("Herring stocks recovered") and fetched["metadata"]["citation"] == f"{PDF} p. 3 ¶1"
        r = await session.call_tool("fetch", {"id": PDF})
        whole = r.structured_content
        assert "[p. 3 ¶1] Herring stocks" in whole["text"] and whole["metadata"]["empty_pages"] == [4]
        r = await session.call_tool("fetch", {"id": f"{PDF}#page3.p9"})
        assert r.is_error and "page 3" in r.content[0].text
        r = await session.call_tool("ask", {"question": HERRING, "k": 2})
        assert f"{PDF} p. 3 ¶1" in r.content[0].text
