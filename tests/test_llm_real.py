"""Opt-in (``make test-llm``): the generate path with a real small model, offline — Gemma 3 270M from
PyPI served by llama.cpp's OpenAI-compatible server (``bench/llama.py``). Skipped unless
``ASK_TEST_LLM_PYTHON`` names the interpreter that has ``llama-cpp-python[server]``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from bench.llama import LlamaServer, llm_python
from service.api.app import create_app
from service.config import Settings
from service.engine import Engine
from tests.live_server import LiveServer

pytestmark = [pytest.mark.llm, pytest.mark.model,
              pytest.mark.skipif(not llm_python(), reason="opt-in: `make test-llm` runs a real model")]
MYANMAR = "who visited Myanmar?"


@pytest.fixture(scope="module")
def llama() -> Iterator[str]:
    python = llm_python()
    assert python
    with LlamaServer(python) as url:
        yield url


def test_ask_generate_streams_an_answer_whose_citations_are_checked(llama: str, seed_index: Path) -> None:
    env = {**os.environ, "ASK_LLM_BASE_URL": llama, "ASK_CACHE_DIR": str(seed_index / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "service", "ask", "--index", str(seed_index / "index"),
                             "--generate", MYANMAR], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    first = proc.stdout.read(1)  # the first streamed character arrives while the model is still writing
    rest = proc.stdout.read()
    assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else ""
    out = (first + rest).decode()
    print(out)
    assert "Citations checked: " in out and "cited sentences supported by their passage" in out


def test_openai_client_gets_the_same_through_chat_completions(llama: str, seed_settings: Settings,
                                                              seed_engine: Engine) -> None:
    settings = seed_settings.model_copy(update={"llm_base_url": llama})
    engine = Engine(settings, embedder=seed_engine.embedder, store=seed_engine.store)
    with LiveServer(create_app(settings, engine)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
        chunks = list(client.chat.completions.create(
            model="ask", messages=[{"role": "user", "content": MYANMAR}], stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        final = chunks[-1].model_extra or {}
        print(text, final["ask"]["check"])
        assert text.strip() and final["ask"]["generated"] is True and final["ask"]["model"] == "gemma-3-270m"
        assert final["ask"]["check"]["sentences"] >= 1 and final["citations"]
        reply = client.chat.completions.create(model="ask", messages=[{"role": "user", "content": MYANMAR}])
        assert (reply.model_extra or {})["ask"]["generated"] is True
