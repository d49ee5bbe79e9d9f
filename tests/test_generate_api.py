"""Generated answers end to end over the seed index (real embedding model): ``/v1/ask`` with
``generate``/``stream``, the OpenAI-compatible endpoints through the official ``openai`` client,
``ask --generate``, and the MCP ``ask`` tool, against a scripted OpenAI-compatible server."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI

from service.api.app import create_app
from service.config import Settings
from service.engine import Engine
from tests.live_server import LiveServer
from tests.llm_server import Reply, ScriptedLLM

pytestmark = pytest.mark.model
MYANMAR = "who visited Myanmar?"
OFF_TOPIC = "How long should I boil an egg for a soft yolk?"
SEED_003 = "seeds/003_517cb5bd72187ee7.txt"
SUPPORTED = "Liu Zhongyi, China's vice minister of public security, visited Myawaddy in Myanmar [1]."
UNSUPPORTED = "The visit was paid for by the Vatican bank in 1990 [1]."
ANSWER = f"{SUPPORTED} {UNSUPPORTED}"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@contextlib.contextmanager
def serve(seed_settings: Settings, seed_engine: Engine, **update: Any) -> Iterator[str]:
    """The app over the shared seed index (same store and encoder), with these settings changed."""
    settings = seed_settings.model_copy(update=update)
    engine = Engine(settings, embedder=seed_engine.embedder, store=seed_engine.store)
    with LiveServer(create_app(settings, engine)) as url:
        yield url


@pytest.fixture(scope="module")
def gen(seed_settings: Settings, seed_engine: Engine, llm: ScriptedLLM) -> Iterator[str]:
    with serve(seed_settings, seed_engine, llm_base_url=llm.url, llm_timeout=5.0) as url:
        yield url


@pytest.fixture(scope="module")
def plain(seed_settings: Settings, seed_engine: Engine) -> Iterator[str]:
    with serve(seed_settings, seed_engine) as url:
        yield url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sse(response: httpx.Response) -> list[tuple[str, Any]]:
    events, event = [], "message"
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            events.append((event, json.loads(line[5:].strip())))
    return events


def check_generated(body: dict[str, Any]) -> None:
    """The scripted answer, checked: the first sentence supported by ¶ of Liu's visit, the second's marker gone."""
    assert body["generated"] is True and body["raw"] == ANSWER and body["model"] == ScriptedLLM.model
    assert body["answer"] == f"{SUPPORTED} The visit was paid for by the Vatican bank in 1990."
    assert body["check"] == {"sentences": 2, "cited": 2, "supported": 1, "flagged": 1, "markers": 2,
                             "markers_removed": 1}
    first, second = body["sentences"]
    assert first["supported"] and not first["flagged"] and second["flagged"] and not second["supported"]
    (evidence,) = first["evidence"]
    cited = body["citations"][0]
    assert cited["source"] == SEED_003 and cited["id"] == f"{SEED_003}#p{cited['paragraph']}"
    assert "Liu Zhongyi" in evidence["quote"]
    # The evidence's offsets are document offsets inside the cited passage, as the extractive quote's are.
    offset = evidence["quote_start"] - cited["char_start"]
    assert cited["text"][offset : offset + len(evidence["quote"])] == evidence["quote"]
    assert body["extractive"] and "Liu Zhongyi" in body["extractive"]


# -- /v1/ask ---------------------------------------------------------------------------------------------
def test_generated_answer_with_checked_citations(gen: str, llm: ScriptedLLM, seed_settings: Settings) -> None:
    llm.set_script(Reply(ANSWER))
    r = httpx.post(f"{gen}/v1/ask", json={"question": MYANMAR, "generate": True}, timeout=60)
    assert r.status_code == 200, r.text
    check_generated(r.json())
    (sent,) = llm.chat_requests
    assert sent.body is not None and sent.body["stream"] is False and sent.body["temperature"] == 0
    (user,) = sent.body["messages"]  # the instructions lead the one user turn (some templates drop "system")
    assert user["role"] == "user" and user["content"].startswith("You answer questions using only")
    assert "Passages:\n\n[1] " in user["content"] and user["content"].endswith(
        f"Question: {MYANMAR}\nAnswer with citations:")
    assert f"[1] {r.json()['citations'][0]['source']} ¶{r.json()['citations'][0]['paragraph']}" in user["content"]
    from service.tokens import count

    tokens = sum(count(m["content"], str(seed_settings.cache_dir)) for m in sent.body["messages"])
    assert tokens <= Settings().llm_context_tokens


def test_abstaining_retrieval_calls_no_model(gen: str, llm: ScriptedLLM) -> None:
    llm.set_script(Reply("Boil it for six minutes [1]."))
    for stream in (False, True):
        r = httpx.post(f"{gen}/v1/ask", json={"question": OFF_TOPIC, "generate": True, "stream": stream}, timeout=60)
        assert r.status_code == 200
        body = sse(r)[-1][1] if stream else r.json()
        assert body["answer"] is None and "threshold" in body["reason"] and body["generated"] is False
        assert body["citations"]  # the closest passages are still listed, as today
    assert llm.chat_requests == []


def test_ask_streams_tokens_then_the_checked_answer(gen: str, llm: ScriptedLLM) -> None:
    llm.set_script(Reply(ANSWER))
    with httpx.stream("POST", f"{gen}/v1/ask", json={"question": MYANMAR, "generate": True, "stream": True},
                      timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse(r)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "answer" and set(kinds[:-1]) == {"token"} and len(kinds) > 5
    assert "".join(d["text"] for e, d in events if e == "token") == ANSWER
    check_generated(events[-1][1])
    assert llm.chat_requests[0].body["stream"] is True  # type: ignore[index]


def test_generate_without_a_model_is_refused_and_plain_ask_is_unchanged(plain: str, seed_engine: Engine) -> None:
    r = httpx.post(f"{plain}/v1/ask", json={"question": MYANMAR, "generate": True}, timeout=60)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert "ASK_LLM_BASE_URL" in r.json()["error"]["message"]
    r = httpx.post(f"{plain}/v1/ask", json={"question": MYANMAR}, timeout=60)
    assert r.status_code == 200 and set(r.json()) == {"question", "answer", "reason", "confidence", "citations", "context"}
    assert r.json()["answer"] == seed_engine.ask(MYANMAR).answer
    r = httpx.post(f"{plain}/v1/ask", json={"question": MYANMAR, "generate": "yes"}, timeout=60)
    assert r.status_code == 422


# -- failures ----------------------------------------------------------------------------------------------
def assert_failure(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "extractive"} and body["error"]["code"] == code
    assert "Liu Zhongyi" in body["extractive"]["answer"] and body["extractive"]["citations"][0]["id"]


def test_unreachable_slow_and_erroring_models_give_502_and_504(seed_settings: Settings, seed_engine: Engine,
                                                               llm: ScriptedLLM) -> None:
    ask = {"question": MYANMAR, "generate": True}
    with serve(seed_settings, seed_engine, llm_base_url=f"http://127.0.0.1:{closed_port()}/v1") as url:
        for stream in (False, True):
            r = httpx.post(f"{url}/v1/ask", json={**ask, "stream": stream}, timeout=60)
            assert_failure(r, 502, "generator_unavailable")
            assert "cannot reach the language model" in r.json()["error"]["message"]
    with serve(seed_settings, seed_engine, llm_base_url=llm.url, llm_timeout=1.0) as url:
        llm.set_script(Reply(status=500))
        assert_failure(httpx.post(f"{url}/v1/ask", json=ask, timeout=60), 502, "generator_unavailable")
        llm.set_script(Reply(raw=b"]]not json"))
        assert_failure(httpx.post(f"{url}/v1/ask", json=ask, timeout=60), 502, "generator_unavailable")
        llm.set_script(Reply(ANSWER, delay=30))
        r = httpx.post(f"{url}/v1/ask", json=ask, timeout=60)
        assert_failure(r, 504, "generator_timeout")
        assert "ASK_LLM_TIMEOUT" in r.json()["error"]["message"]
        # A stream that stalls after its first pieces ends with an error event holding the extractive answer.
        llm.set_script(Reply(ANSWER, stall_after=3))
        with httpx.stream("POST", f"{url}/v1/ask", json={**ask, "stream": True}, timeout=60) as r:
            events = sse(r)
        assert [e for e, _ in events] == ["token"] * 3 + ["error"]
        assert events[-1][1]["error"]["code"] == "generator_timeout"
        assert "Liu Zhongyi" in events[-1][1]["extractive"]["answer"]
        # The OpenAI-compatible face says the same, not a 500.
        llm.set_script(Reply(status=503))
        r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": MYANMAR}]},
                       timeout=60)
        assert_failure(r, 502, "generator_unavailable")


# -- the OpenAI-compatible face -----------------------------------------------------------------------------
def test_openai_client_without_a_model_gets_the_extractive_answer(plain: str, seed_engine: Engine) -> None:
    client = OpenAI(base_url=f"{plain}/v1", api_key="none", max_retries=0)
    assert [m.id for m in client.models.list()] == ["ask"]
    expected = seed_engine.ask(MYANMAR)
    reply = client.chat.completions.create(model="ask", messages=[{"role": "user", "content": MYANMAR}])
    text = reply.choices[0].message.content or ""
    assert text.startswith(f"{expected.answer} [1]\n\nSources:\n[1] {expected.citations[0].source} ¶")
    extra = reply.model_extra or {}
    assert extra["citations"][0]["source"] == expected.citations[0].source
    assert extra["ask"]["generated"] is False and extra["ask"]["question"] == MYANMAR
    chunks = list(client.chat.completions.create(model="ask", messages=[{"role": "user", "content": MYANMAR}],
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (chunks[-1].model_extra or {})["citations"] == extra["citations"]


def test_openai_client_with_a_model(gen: str, llm: ScriptedLLM) -> None:
    client = OpenAI(base_url=f"{gen}/v1", api_key="none", max_retries=0)
    llm.set_script(Reply(ANSWER))
    reply = client.chat.completions.create(model="ask", messages=[{"role": "user", "content": MYANMAR}])
    text = reply.choices[0].message.content or ""
    extra = reply.model_extra or {}
    check_generated({**extra["ask"], "citations": extra["citations"]})
    assert text.startswith(f"{SUPPORTED} The visit was paid for by the Vatican bank in 1990.\n\n(1 sentence ")
    assert text.endswith(f"Sources:\n[1] {extra['citations'][0]['source']} ¶{extra['citations'][0]['paragraph']}")

    llm.set_script(Reply(ANSWER))
    chunks = list(client.chat.completions.create(model="ask", messages=[{"role": "user", "content": MYANMAR}],
                                                 stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed.startswith(ANSWER) and streamed.endswith(text[len(extra["ask"]["answer"]):])
    last = chunks[-1].model_extra or {}
    check_generated({**last["ask"], "citations": last["citations"]})


def test_follow_up_questions_are_made_self_contained(gen: str, plain: str, llm: ScriptedLLM) -> None:
    conversation = [{"role": "user", "content": MYANMAR}, {"role": "assistant", "content": "Liu Zhongyi [1]."},
                    {"role": "user", "content": "Which armed group controls the area he visited?"}]
    # By the model: its rewrite is what is retrieved and answered.
    llm.set_script(Reply("Which armed group controls the area Liu Zhongyi visited in Myanmar?"), Reply(ANSWER))
    r = httpx.post(f"{gen}/v1/chat/completions", json={"model": "ask", "messages": conversation}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["ask"]["question"] == "Which armed group controls the area Liu Zhongyi visited in Myanmar?"
    rewrite, answer = llm.chat_requests
    assert "Which armed group controls the area he visited?" in rewrite.body["messages"][0]["content"]  # type: ignore[index]
    assert MYANMAR in rewrite.body["messages"][0]["content"]  # type: ignore[index]
    assert "Question: Which armed group controls the area Liu Zhongyi visited in Myanmar?" in \
        answer.body["messages"][0]["content"]  # type: ignore[index]
    # Without a model: the documented rule (the follow-up refers back, so the previous question goes first).
    r = httpx.post(f"{plain}/v1/chat/completions", json={"model": "ask", "messages": conversation}, timeout=60)
    assert r.json()["ask"]["question"] == f"{MYANMAR} Which armed group controls the area he visited?"


def test_chat_requests_are_validated(plain: str) -> None:
    url = f"{plain}/v1/chat/completions"
    for body in ({"messages": []}, {"model": "ask"}, {"messages": [{"role": "assistant", "content": "hi"}]},
                 {"messages": [{"role": "user", "content": "   "}]}, {"messages": [{"role": "user", "content": "q"}],
                                                                     "stream": "yes"},
                 {"messages": [{"role": "user", "content": "x" * 5000}]}):
        r = httpx.post(url, json=body, timeout=60)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", (body, r.text)
    r = httpx.post(url, content=b"{", headers=JSON, timeout=60)
    assert r.status_code == 400
    # Content parts, as some front-ends send them: the text parts are the question.
    r = httpx.post(url, json={"messages": [{"role": "user", "content": [{"type": "text", "text": MYANMAR}]}]},
                   timeout=60)
    assert r.status_code == 200 and "Liu Zhongyi" in r.json()["choices"][0]["message"]["content"]


def test_key_and_host_guard_cover_the_new_routes(seed_settings: Settings, seed_engine: Engine) -> None:
    with serve(seed_settings, seed_engine, api_key="chat-key") as url:
        chat = {"messages": [{"role": "user", "content": MYANMAR}]}
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.post(f"{url}/v1/chat/completions", json=chat).status_code == 401
        assert httpx.post(f"{url}/v1/chat/completions", json=chat, headers={"Authorization": "Bearer wrong"}
                          ).status_code == 401
        client = OpenAI(base_url=f"{url}/v1", api_key="chat-key", max_retries=0)
        assert [m.id for m in client.models.list()] == ["ask"]
        assert "Liu Zhongyi" in (client.chat.completions.create(
            model="ask", messages=[{"role": "user", "content": MYANMAR}]).choices[0].message.content or "")
        evil = {"Host": "evil.example", "Authorization": "Bearer chat-key"}
        assert httpx.get(f"{url}/v1/models", headers=evil).status_code == 403
        assert httpx.post(f"{url}/v1/chat/completions", json=chat, headers=evil).status_code == 403


# -- CLI and MCP -----------------------------------------------------------------------------------------------
def test_cli_generate_prints_as_it_streams(seed_index: Any, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from service import cli

    monkeypatch.setenv("ASK_CACHE_DIR", str(seed_index / "cache"))
    monkeypatch.delenv("ASK_LLM_BASE_URL", raising=False)
    assert cli.main(["--index", str(seed_index / "index"), "--generate", MYANMAR]) == 1
    assert "set ASK_LLM_BASE_URL" in capsys.readouterr().err
    monkeypatch.setenv("ASK_LLM_BASE_URL", llm.url)
    llm.set_script(Reply(ANSWER))
    assert cli.main(["--index", str(seed_index / "index"), "--generate", MYANMAR]) == 0
    out = capsys.readouterr().out
    assert out.startswith(ANSWER + "\n")
    assert "Citations checked: 1 of 2 cited sentences supported by their passage; 1 unsupported marker removed" in out
    assert f"[1] {SEED_003} ¶" in out and "“Liu Zhongyi" in out
    # The model down: the reason on stderr, the extractive answer on stdout, exit status 1.
    monkeypatch.setenv("ASK_LLM_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    assert cli.main(["--index", str(seed_index / "index"), "--generate", MYANMAR]) == 1
    captured = capsys.readouterr()
    assert "cannot reach the language model" in captured.err and "Liu Zhongyi" in captured.out


def test_cli_generate_through_a_server(gen: str, llm: ScriptedLLM, capsys: pytest.CaptureFixture[str]) -> None:
    from service import cli

    llm.set_script(Reply(ANSWER))
    assert cli.main(["--server", gen, "--generate", MYANMAR]) == 0
    out = capsys.readouterr().out
    assert out.startswith(ANSWER + "\n") and "Citations checked: 1 of 2" in out
    llm.set_script(Reply(ANSWER))
    assert cli.main(["--server", gen, "--generate", "--json", MYANMAR]) == 0
    check_generated(json.loads(capsys.readouterr().out))


@pytest.mark.anyio
async def test_mcp_ask_tool_generates(gen: str, llm: ScriptedLLM) -> None:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    llm.set_script(Reply(ANSWER))
    async with streamable_http_client(f"{gen}/mcp") as (read, write, *_), ClientSession(read, write) as session:
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert tools["ask"].input_schema["properties"]["generate"]["default"] is False
        r = await session.call_tool("ask", {"question": MYANMAR, "generate": True})
        assert not r.is_error, r.content
        result = r.structured_content
        assert result["generated"] is True and result["check"]["supported"] == 1
        assert result["answer"].startswith(SUPPORTED) and result["citations"][0]["url"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
