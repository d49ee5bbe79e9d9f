"""Generated answers over HTTP: ``/v1/ask`` with ``generate``/``stream``, and the OpenAI-compatible
face (``GET /v1/models``, ``POST /v1/chat/completions``) that chat front-ends such as Open WebUI and
LibreChat, or the official ``openai`` client, add as a model.

Citations travel twice: inline (``[n]`` markers in the text and a "Sources" list under it) and as
data (``citations``, plus ``ask`` with the check, as extra fields of the completion; in a stream,
on its last chunk). With no model configured, the assistant message is the extractive answer.

A model failure before anything was streamed is a 502 (unreachable, error status, bad reply) or a
504 (timeout) whose body carries the extractive answer (``extractive``) beside the usual
``error``; after streaming began it is an ``error`` event (``/v1/ask``) or a last chunk saying so.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.
import json
import time
import uuid
from collections.abc import AsyncIterator, Generator
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ..engine import (
    Answer,
    Citation,
    Engine,
    GeneratedAnswer,
    GeneratorError,
    GeneratorNotConfigured,
    Token,
)
from ..wire import cited
from .deps import EngineDep, QueryThreads, ThreadsDep
from .errors import error_body, error_response
from .schemas import QUESTION, error_responses

SERVED_MODEL = "ask"  # the one model this service offers: its index, answering
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# -- /v1/ask with generate ------------------------------------------------------------------------------
def ask_dict(result: GeneratedAnswer | Answer) -> dict[str, Any]:
    """A generated or extractive answer as the ``/v1/ask`` response (citations with their ids)."""
    body = result.as_dict()
    body["citations"] = [cited(c) for c in result.citations]
    return body


def _failure(exc: GeneratorError) -> JSONResponse:
    body = error_body(exc.code, exc.message)
    body["extractive"] = ask_dict(exc.extractive) if exc.extractive is not None else None
    return JSONResponse(body, status_code=exc.status)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


_END = object()


async def _first(threads: QueryThreads, events: Generator[Any, None, None]) -> Any:
    return await threads(next, events, _END)


async def ask_generated(engine: Engine, threads: QueryThreads, question: str, k: int | None,
                        stream: bool, filter: Any = None) -> Any:
    """``POST /v1/ask`` with ``generate``: JSON, or server-sent events ``token`` … ``answer``."""
    generation = engine.generation
    if not generation.configured:
        return error_response(422, "invalid_request", str(_not_configured()))
    if not stream:
        try:
            # A JSONResponse: the route's response model (the extractive shape) would drop the added fields.
            return JSONResponse(ask_dict(await threads(generation.answer, question, k, filter)))
        except GeneratorError as exc:
            return _failure(exc)
    events = generation.stream(question, k, filter)
    try:
        first = await _first(threads, events)
    except GeneratorError as exc:
        return _failure(exc)

    async def body() -> AsyncIterator[str]:
        event = first
        try:
            while event is not _END:
                if isinstance(event, Token):
                    yield _sse("token", {"text": event.text})
                else:
                    yield _sse("answer", ask_dict(event))
                event = await _first(threads, events)
        except GeneratorError as exc:
            failure = error_body(exc.code, exc.message)
            failure["extractive"] = ask_dict(exc.extractive) if exc.extractive is not None else None
            yield _sse("error", failure)
        finally:
            await threads(events.close)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


def _not_configured() -> GeneratorNotConfigured:
    return GeneratorNotConfigured("generate: this service has no language model configured (set ASK_LLM_BASE_URL "
                                  "to an OpenAI-compatible server); without it /v1/ask answers extractively")


# -- the OpenAI-compatible face ---------------------------------------------------------------------------
class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None

    model_config = ConfigDict(extra="allow")

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if isinstance(self.content, list):  # content parts: only the text ones count
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return ""


class ChatRequest(BaseModel):
    """An OpenAI chat-completions request. Sampling options a front-end sends are accepted and ignored:
    the answer comes from the index (and the configured model)."""

    model: str = Field(SERVED_MODEL, description=f"Any name; this service serves one model, `{SERVED_MODEL}`.")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation; the last message is the "
                                                                  "user's question.")
    stream: StrictBool = False
    k: Annotated[int | None, Field(ge=1, description="Passages to retrieve (default ASK_DEFAULT_K).")] = None

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "model": SERVED_MODEL, "messages": [{"role": "user", "content": QUESTION}]}]})


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def sources_text(citations: list[Citation], numbers: list[int]) -> str:
    lines = [f"[{n}] {citations[n - 1].source} ¶{citations[n - 1].paragraph}" for n in numbers
             if 1 <= n <= len(citations)]
    return "Sources:\n" + "\n".join(lines) if lines else ""


def assistant_text(result: GeneratedAnswer | Answer) -> str:
    """The assistant message: the answer with inline markers, then the sources it cites."""
    if isinstance(result, GeneratedAnswer) and result.generated:
        cited_numbers = sorted({e.citation for s in result.sentences for e in s.evidence if e.supported})
        text = result.answer or ""
        flagged = sum(s.flagged for s in result.sentences)
        note = (f"\n\n({flagged} sentence{'s' if flagged != 1 else ''} cited a passage that does not support "
                "it; those markers were removed.)") if flagged else ""
        sources = sources_text(result.citations, cited_numbers)
        return text + note + (f"\n\n{sources}" if sources else "")
    answer = result.extractive if isinstance(result, GeneratedAnswer) else result
    if answer.answer is None:
        closest = sources_text(answer.citations, list(range(1, len(answer.citations) + 1)))
        return f"No answer in the indexed articles: {answer.reason}." + (
            f"\n\nClosest passages:\n{closest.removeprefix('Sources:' + chr(10))}" if closest else "")
    return f"{answer.answer} [1]\n\n{sources_text(answer.citations, list(range(1, len(answer.citations) + 1)))}"


def _structured(result: GeneratedAnswer | Answer, query: str) -> dict[str, Any]:
    """What travels beside the text: the citations, and how the answer was made and checked."""
    body = ask_dict(result)
    if isinstance(result, Answer):
        body.update(generated=False, extractive=result.answer, model=None, check=None, sentences=[])
    citations = body.pop("citations")
    body["question"] = query
    return {"citations": citations, "ask": body}


def _completion(cid: str, created: int, text: str, extra: dict[str, Any], prompt_tokens: int,
                completion_tokens: int) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": created, "model": SERVED_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}, **extra}


def _chunk(cid: str, created: int, delta: dict[str, Any], finish: str | None = None,
           extra: dict[str, Any] | None = None) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": SERVED_MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def chat_router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["chat"])

    @r.get("/models", response_model=ModelList, responses=error_responses(401),
           summary="Models (OpenAI-compatible): the one this service serves")
    async def list_models() -> dict[str, Any]:
        """For chat front-ends: this service is one model, `ask`, answering from the index."""
        return {"object": "list", "data": [{"id": SERVED_MODEL, "object": "model", "created": 0,
                                             "owned_by": "ask-service"}]}

    @r.post("/chat/completions", responses={**error_responses(401, 400, 413, 415, 422, 503),
                                             502: {"description": "The language model failed (body: `error` "
                                                                  "and the `extractive` answer)."},
                                             504: {"description": "The language model timed out (body: "
                                                                  "`error` and the `extractive` answer)."}},
            summary="Chat completions (OpenAI-compatible), with citations")
    async def chat(body: ChatRequest, engine: EngineDep, threads: ThreadsDep) -> Any:
        """The last user message, made self-contained from the conversation, answered from the index:
        by the configured model with checked citations, or extractively. `stream: true` sends
        `chat.completion.chunk` events, the last one carrying `citations` and `ask`."""
        turns = [(m.role, m.text) for m in body.messages]
        role, question = turns[-1]
        if role != "user" or not question.strip():
            return error_response(422, "invalid_request", "messages: the last message must be the user's question")
        try:
            question.encode("utf-8")
        except UnicodeEncodeError:
            return error_response(422, "invalid_request", "messages: the question contains an invalid Unicode surrogate")
        if body.k is not None and body.k > engine.settings.max_k:
            return error_response(422, "invalid_request", f"k must be an integer from 1 to {engine.settings.max_k}")
        generation = engine.generation
        query = await threads(generation.condense, turns[:-1], question.strip())
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not generation.configured:
            answer = await threads(engine.ask, query, body.k)
            text = assistant_text(answer)
            if not body.stream:
                return _completion(cid, created, text, _structured(answer, query), 0, 0)
            return StreamingResponse(_one_shot(cid, created, text, _structured(answer, query)),
                                     media_type="text/event-stream", headers=SSE_HEADERS)
        if not body.stream:
            try:
                result = await threads(generation.answer, query, body.k)
            except GeneratorError as exc:
                return _failure(exc)
            return _completion(cid, created, assistant_text(result), _structured(result, query), 0, 0)
        events = generation.stream(query, body.k)
        try:
            first = await _first(threads, events)
        except GeneratorError as exc:
            return _failure(exc)
        return StreamingResponse(_chat_stream(cid, created, first, events, threads, query),
                                 media_type="text/event-stream", headers=SSE_HEADERS)

    return r


async def _one_shot(cid: str, created: int, text: str, extra: dict[str, Any]) -> AsyncIterator[str]:
    yield _chunk(cid, created, {"role": "assistant", "content": ""})
    yield _chunk(cid, created, {"content": text})
    yield _chunk(cid, created, {}, "stop", extra)
    yield "data: [DONE]\n\n"


async def _chat_stream(cid: str, created: int, first: Any, events: Generator[Any, None, None], threads: QueryThreads,
                       query: str) -> AsyncIterator[str]:
    yield _chunk(cid, created, {"role": "assistant", "content": ""})
    event = first
    try:
        while event is not _END:
            if isinstance(event, Token):
                yield _chunk(cid, created, {"content": event.text})
            else:
                # The client has the model's text as written; the note and the checked sources follow it.
                full = assistant_text(event)
                suffix = full[len(event.answer or ""):] if event.generated else full
                yield _chunk(cid, created, {"content": suffix})
                yield _chunk(cid, created, {}, "stop", _structured(event, query))
            event = await _first(threads, events)
    except GeneratorError as exc:
        failure = error_body(exc.code, exc.message)
        failure["extractive"] = ask_dict(exc.extractive) if exc.extractive is not None else None
        yield _chunk(cid, created, {"content": f"\n\n[error: {exc.message}]"}, "stop", failure)
    finally:
        await threads(events.close)
    yield "data: [DONE]\n\n"

