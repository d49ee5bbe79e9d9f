"""The MCP server through the SDK's own client: over stdio (a real subprocess) and streamable HTTP at /mcp."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from service.api.app import create_app
from service.config import PROJECT_ROOT, Settings
from service.engine import Engine
from tests.live_server import LiveServer

pytestmark = [pytest.mark.anyio, pytest.mark.model]
MYANMAR = "who visited Myanmar?"
SEED_003 = "seeds/003_517cb5bd72187ee7.txt"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(seed_settings: Settings, seed_engine: Engine) -> Iterator[str]:
    with LiveServer(create_app(seed_settings, seed_engine)) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_server(seed_settings: Settings, seed_engine: Engine) -> Iterator[str]:
    with LiveServer(create_app(seed_settings.model_copy(update={"api_key": "mcp-key"}), seed_engine)) as url:
        yield url


def stdio_params(seed_index: Path) -> StdioServerParameters:
    # The SDK gives the child only a minimal environment: pass what the server needs explicitly.
    env = {
        "HF_HUB_OFFLINE": "1",
        "ASK_CORPUS": str(seed_index / "seeds"),
        "ASK_CACHE_DIR": str(seed_index / "cache"),
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(seed_index)),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("XDG_CACHE_HOME", "TMPDIR", "LANG"):
        if name in os.environ:
            env[name] = os.environ[name]
    return StdioServerParameters(command=sys.executable, args=["-m", "service", "mcp", "--index", str(seed_index / "index")],
                                 env=env, cwd=str(PROJECT_ROOT))


async def exercise(session: ClientSession, base_url: str | None) -> None:
    """What every transport must do: the three tools, the Liu Zhongyi passage cited to the 003 file."""
    init = await session.initialize()
    assert init.server_info.name == "ask" and "fetch" in (init.instructions or "")

    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == {"search", "fetch", "ask", "collections"}
    for tool in tools.values():
        assert len(tool.description or "") > 80 and tool.annotations and tool.annotations.read_only_hint
    assert tools["search"].input_schema["required"] == ["query"]
    assert tools["search"].input_schema["properties"]["k"]["default"] == 5
    assert "ctx" not in tools["search"].input_schema["properties"]
    assert tools["fetch"].input_schema["required"] == ["id"]

    # search
    r = await session.call_tool("search", {"query": MYANMAR, "k": 3})
    assert not r.is_error, r.content
    hits = r.structured_content["results"]
    assert 1 <= len(hits) <= 3
    assert all(set(h) >= {"id", "title", "url", "text", "source", "paragraph", "score"} for h in hits)
    top = next(h for h in hits if h["source"] == SEED_003 and "Liu Zhongyi" in h["text"])  # the Liu Zhongyi passage
    assert top["id"] == f"{SEED_003}#p{top['paragraph']}"
    assert json.loads(r.content[0].text) == r.structured_content
    if base_url:
        assert top["url"] == f"{base_url}/#doc={SEED_003}&p={top['paragraph']}"
    else:
        assert top["url"].startswith("file://") and top["url"].endswith(SEED_003)

    # fetch a citation id: the whole paragraph
    r = await session.call_tool("fetch", {"id": top["id"]})
    assert not r.is_error, r.content
    doc = r.structured_content
    assert set(doc) == {"id", "title", "text", "url", "metadata"}
    assert doc["id"] == top["id"] and top["text"] in doc["text"] and "Liu Zhongyi" in doc["text"]
    assert doc["metadata"]["source"] == SEED_003 and doc["metadata"]["paragraph"] == top["paragraph"]

    # fetch a document path: the whole document, paragraphs numbered
    r = await session.call_tool("fetch", {"id": SEED_003})
    assert not r.is_error
    assert r.structured_content["text"].startswith("[¶1] ") and f"[¶{top['paragraph']}] " in r.structured_content["text"]

    # ask
    r = await session.call_tool("ask", {"question": MYANMAR})
    assert not r.is_error, r.content
    answer = r.structured_content
    assert "Liu Zhongyi" in answer["answer"] and answer["reason"] is None
    first = answer["citations"][0]
    assert first["source"] == SEED_003 and first["quote"] == answer["answer"]
    assert first["id"] == f"{SEED_003}#p{first['paragraph']}"
    assert "Liu Zhongyi" in r.content[0].text and f"{SEED_003} ¶{first['paragraph']}" in r.content[0].text

    # errors are tool errors with a message, not protocol failures
    for name, args, needle in [
        ("fetch", {"id": "seeds/../../etc/passwd"}, "not allowed"),
        ("fetch", {"id": "seeds/no_such_file.txt"}, "no document"),
        ("fetch", {"id": f"{SEED_003}#p9999"}, "paragraphs 1 to"),
        ("search", {"query": MYANMAR, "k": 0}, "greater than or equal to 1"),
        ("search", {"query": "   "}, "empty"),
        ("ask", {"question": "x" * 5000}, "at most 2000"),
    ]:
        r = await session.call_tool(name, args)
        assert r.is_error, (name, args)
        assert needle in r.content[0].text, r.content[0].text


async def test_stdio(seed_index: Path) -> None:
    async with stdio_client(stdio_params(seed_index)) as (read, write):
        async with ClientSession(read, write) as session:
            await exercise(session, None)


async def test_stdio_without_an_index_fails_clearly(tmp_path: Path, seed_index: Path) -> None:
    import subprocess

    params = stdio_params(seed_index)
    r = subprocess.run([params.command, *params.args[:-1], str(tmp_path / "missing")], env=params.env,
                       cwd=params.cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and r.stdout == ""
    assert "error:" in r.stderr and str(tmp_path / "missing") in r.stderr


async def test_streamable_http(server: str) -> None:
    async with streamable_http_client(f"{server}/mcp") as (read, write):
        async with ClientSession(read, write) as session:
            await exercise(session, server)


async def test_streamable_http_with_api_key(keyed_server: str) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": "Bearer mcp-key"}, timeout=httpx2.Timeout(60)) as hc:
        async with streamable_http_client(f"{keyed_server}/mcp", http_client=hc) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                r = await session.call_tool("search", {"query": MYANMAR, "k": 1})
                assert r.structured_content["results"][0]["source"] == SEED_003


async def test_http_mcp_path_and_protections(server: str, keyed_server: str) -> None:
    ping: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=60) as c:
        assert (await c.post(f"{server}/mcp/mcp", json=ping, headers=accept)).status_code == 404  # exactly /mcp
        r = await c.post(f"{server}/mcp", json=ping, headers={**accept, "Host": "evil.example.com"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_host"  # DNS rebinding, loopback bind
        r = await c.post(f"{server}/mcp", json=ping, headers={**accept, "Origin": "http://evil.example.com"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_origin"
        r = await c.post(f"{keyed_server}/mcp", json=ping, headers=accept)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = await c.post(f"{keyed_server}/mcp", json=ping, headers={**accept, "X-API-Key": "wrong"})
        assert r.status_code == 401
