"""Generated answers, the parts that need no index: the citation check, the prompt budget, follow-up
questions, and the chat client against a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.answer import Citation
from service.config import Settings
from service.generation import GeneratorTimeout, GeneratorUnavailable
from service.generation.check import check_citations, markers, split_sentences
from service.generation.client import ChatClient
from service.generation.prompt import (
    build_prompt,
    clean_condensed,
    condense_by_rule,
    refers_back,
)
from service.tokens import count
from tests.conftest import FakeEmbedder
from tests.llm_server import Reply, ScriptedLLM

PREFIX = "Title line\n\n"
P1 = ("Liu Zhongyi, China's vice minister of public security, visited Myawaddy in Myanmar. "
      "Hundreds of scam centre workers are awaiting repatriation there.")
P2 = "Thailand cut electricity and fuel supplies to the scam areas. The flights left from Mae Sot."
DOC1 = PREFIX + P1
DOC2 = PREFIX + "Intro paragraph.\n\n" + P2


def cite(doc: str, passage: str, source: str, paragraph: int) -> Citation:
    start = doc.index(passage)
    return Citation(source, paragraph, passage, start, start + len(passage), 0.5, passage, start,
                    start + len(passage), "Title line")


CITATIONS = [cite(DOC1, P1, "c/a.txt", 2), cite(DOC2, P2, "c/b.txt", 3)]
DOCS = {"c/a.txt": DOC1, "c/b.txt": DOC2}


# -- the check -----------------------------------------------------------------------------------------
def test_markers_and_sentences() -> None:
    assert markers("a [2] b [1, 3][2] c") == [2, 1, 3]
    text = "Liu visited Myanmar. [1] Thailand cut fuel [2]. No marker here."
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == ["Liu visited Myanmar. [1]", "Thailand cut fuel [2].", "No marker here."]


def test_supported_markers_stay_with_the_span_located_in_the_document() -> None:
    answer = ("Liu Zhongyi visited Myawaddy in Myanmar [1]. "
              "Thailand cut electricity and fuel supplies to the scam areas [2].")
    checked = check_citations(answer, CITATIONS, FakeEmbedder(), 0.5)
    assert checked.text == answer
    assert checked.summary() == {"sentences": 2, "cited": 2, "supported": 2, "flagged": 0, "markers": 2,
                                 "markers_removed": 0}
    for sentence, n in zip(checked.sentences, (1, 2), strict=True):
        (e,) = sentence.evidence
        assert e.citation == n and e.supported
        doc = DOCS[CITATIONS[n - 1].source]
        assert doc[e.quote_start : e.quote_end] == e.quote  # offsets into the cited document
        assert CITATIONS[n - 1].char_start <= e.quote_start < e.quote_end <= CITATIONS[n - 1].char_end
    assert checked.sentences[0].evidence[0].quote.startswith("Liu Zhongyi")
    assert checked.sentences[1].evidence[0].quote.startswith("Thailand cut")


def test_unsupported_and_unknown_markers_are_removed_and_flagged() -> None:
    answer = ("Liu Zhongyi visited Myawaddy in Myanmar [1][2]. "
              "The United Nations paid for the rescue flights to Beijing [1]. Something else [7].")
    checked = check_citations(answer, CITATIONS, FakeEmbedder(), 0.5)
    first, second, third = checked.sentences
    assert first.flagged and not first.supported and [e.supported for e in first.evidence] == [True, False]
    assert second.flagged and not second.evidence[0].supported
    assert third.evidence[0].citation == 7 and not third.evidence[0].supported and third.evidence[0].quote == ""
    assert checked.text == ("Liu Zhongyi visited Myawaddy in Myanmar [1]. "
                            "The United Nations paid for the rescue flights to Beijing. Something else.")
    summary = checked.summary()
    assert (summary["cited"], summary["supported"], summary["flagged"], summary["markers_removed"]) == (3, 0, 3, 3)


def test_an_answer_without_markers_has_nothing_checked() -> None:
    checked = check_citations("The sources do not say.", CITATIONS, FakeEmbedder(), 0.5)
    assert checked.text == "The sources do not say." and checked.summary()["cited"] == 0
    assert not checked.sentences[0].supported and not checked.sentences[0].flagged


@given(st.text(alphabet=st.sampled_from(list("ab [],.12390 Liu Myanmar")), max_size=80))
@settings(max_examples=150, deadline=None)
def test_the_check_never_invents_markers(answer: str) -> None:
    checked = check_citations(answer, CITATIONS, FakeEmbedder(), 0.5)
    kept = markers(checked.text)
    assert all(1 <= n <= len(CITATIONS) for n in kept)
    supported = {e.citation for s in checked.sentences for e in s.evidence if e.supported}
    assert set(kept) <= supported


# -- the prompt ----------------------------------------------------------------------------------------
def passages(n: int, words: int) -> list[Citation]:
    out = []
    for i in range(n):
        text = " ".join(f"word{i}x{j}" for j in range(words)) + "."
        doc = PREFIX + text
        out.append(cite(doc, text, f"c/{i}.txt", 2))
    return out


def test_prompt_numbers_the_passages_and_fits_the_budget(tmp_path: Path) -> None:
    cache = str(tmp_path)
    cites = passages(6, 60)
    prompt = build_prompt("who visited Myanmar?", cites, 700, cache)
    assert 1 <= len(prompt.citations) < 6 and prompt.citations == cites[: len(prompt.citations)]
    (message,) = prompt.messages
    assert message["role"] == "user"
    user = message["content"]
    for i, c in enumerate(prompt.citations, start=1):
        assert f"[{i}] {c.source} ¶{c.paragraph} (Title line)\n{c.text}" in user
    assert "Question: who visited Myanmar?" in user
    assert prompt.tokens <= 700
    assert sum(count(m["content"], cache) for m in prompt.messages) + 8 == prompt.tokens


@given(budget=st.integers(min_value=150, max_value=3000), n=st.integers(1, 8), words=st.integers(1, 400))
@settings(max_examples=40, deadline=None)
def test_prompt_never_exceeds_the_budget(tmp_path_factory: pytest.TempPathFactory, budget: int, n: int,
                                         words: int) -> None:
    cache = str(tmp_path_factory.getbasetemp())
    prompt = build_prompt("what happened?", passages(n, words), budget, cache)
    assert prompt.tokens <= budget and prompt.citations  # the best passage is always there, cut if need be


def test_prompt_budget_too_small_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ASK_LLM_CONTEXT_TOKENS"):
        build_prompt("who visited Myanmar?", passages(1, 5), 60, str(tmp_path))


# -- follow-up questions ---------------------------------------------------------------------------------
def test_condense_rule() -> None:
    previous = ["Who visited Myanmar?"]
    assert condense_by_rule(previous, "Why did he go there?", 2000) == "Who visited Myanmar? Why did he go there?"
    assert condense_by_rule(previous, "And Thailand?", 2000) == "Who visited Myanmar? And Thailand?"
    standalone = "Which company does security expert Lu Wei work for?"
    assert condense_by_rule(previous, standalone, 2000) == standalone
    assert condense_by_rule([], "Why did he go?", 2000) == "Why did he go?"
    assert len(condense_by_rule(["x" * 100], "Why did he go?", 40)) <= 40
    assert refers_back("What did they agree?") and not refers_back("What did China and Belarus agree?")


def test_clean_condensed() -> None:
    assert clean_condensed('Rewritten question: "Why did Liu Zhongyi visit Myanmar?"\nextra', 2000) == \
        "Why did Liu Zhongyi visit Myanmar?"
    assert clean_condensed("   \n", 2000) is None
    assert clean_condensed("x" * 50, 10) is None


# -- the client against a scripted server ------------------------------------------------------------------
def llm_settings(tmp_path: Path, url: str, **extra: object) -> Settings:
    return Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache", llm_base_url=url, **extra)  # type: ignore[arg-type]


def test_client_request_shape_and_model_discovery(tmp_path: Path) -> None:
    with ScriptedLLM([Reply("An answer [1].")]) as llm:
        client = ChatClient(llm_settings(tmp_path, llm.url, llm_api_key="sekret", llm_max_tokens=123))
        reply = client.complete([{"role": "user", "content": "hi"}])
        assert reply.text == "An answer [1]." and reply.model == ScriptedLLM.model
        assert [r.path for r in llm.requests] == ["/v1/models", "/v1/chat/completions"]
        sent = llm.chat_requests[0]
        assert sent.headers["authorization"] == "Bearer sekret"
        assert sent.body == {"model": ScriptedLLM.model, "messages": [{"role": "user", "content": "hi"}],
                             "max_tokens": 123, "temperature": 0, "stream": False}
        assert "".join(client.stream([{"role": "user", "content": "hi"}])) == "An answer [1]."
        assert llm.chat_requests[1].body is not None and llm.chat_requests[1].body["stream"] is True
        assert [r.path for r in llm.requests].count("/v1/models") == 1  # asked once


def test_client_uses_the_configured_model(tmp_path: Path) -> None:
    with ScriptedLLM([Reply("ok")]) as llm:
        ChatClient(llm_settings(tmp_path, llm.url, llm_model="gemma")).complete([{"role": "user", "content": "q"}])
        assert [r.path for r in llm.requests] == ["/v1/chat/completions"]
        assert llm.chat_requests[0].body["model"] == "gemma"  # type: ignore[index]
        assert "authorization" not in llm.chat_requests[0].headers or \
            llm.chat_requests[0].headers["authorization"] == "Bearer unused"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MESSAGES = [{"role": "user", "content": "q"}]


def test_client_failures_are_clear(tmp_path: Path) -> None:
    down = ChatClient(llm_settings(tmp_path, f"http://127.0.0.1:{closed_port()}/v1", llm_model="m"))
    with pytest.raises(GeneratorUnavailable, match="cannot reach the language model"):
        down.complete(MESSAGES)
    with ScriptedLLM([Reply(status=500)]) as llm:
        client = ChatClient(llm_settings(tmp_path, llm.url, llm_model="m", llm_timeout=1.0))
        with pytest.raises(GeneratorUnavailable, match="answered 500"):
            client.complete(MESSAGES)
        llm.set_script(Reply(raw=b"<html>not json</html>"))
        with pytest.raises(GeneratorUnavailable, match="not an OpenAI chat completion|without a message"):
            client.complete(MESSAGES)
        llm.set_script(Reply(""))
        with pytest.raises(GeneratorUnavailable, match="empty answer"):
            client.complete(MESSAGES)
        llm.set_script(Reply("late", delay=30))
        with pytest.raises(GeneratorTimeout, match="did not answer within 1 s"):
            client.complete(MESSAGES)
        llm.set_script(Reply("one two three four", stall_after=2))
        got: list[str] = []
        with pytest.raises(GeneratorTimeout):
            got.extend(client.stream(MESSAGES))
        assert got == ["one ", "two "]  # what came before the stall was handed on
