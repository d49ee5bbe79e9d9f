"""The flow of a generated answer, for every adapter (REST, the OpenAI-compatible face, CLI, MCP).

1. Retrieve and answer extractively, as ``ask`` does. When that abstains, stop: the answer is
   null with its reason and **no model is called**, so the model never answers from nothing.
2. Pack the cited passages into the prompt (``prompt.build_prompt``) and ask the model, streaming
   or not.
3. Check every marked sentence against its passage (``check.check_citations``); unsupported
   markers are removed, their sentences flagged, and the counts reported.

A model failure raises ``GeneratorError`` carrying the extractive answer, so every adapter can
still hand it out.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..answer import Answer, Citation
from .check import Checked, CheckedSentence, check_citations
from .errors import GeneratorError, GeneratorNotConfigured
from .prompt import build_prompt, clean_condensed, condense_by_rule, condense_messages

if TYPE_CHECKING:
    from ..engine import Engine, FilterSpec
    from .client import ChatClient

CONDENSE_MAX_TOKENS = 96


@dataclass(frozen=True, slots=True)
class Token:
    """One piece of the answer as the model streams it."""

    text: str


@dataclass(frozen=True, slots=True)
class GeneratedAnswer:
    question: str
    extractive: Answer  # what ``ask`` answers; its citations are the passages retrieved
    answer: str | None = None  # the checked answer (unsupported markers removed); None: abstained
    raw: str | None = None  # the model's own text
    citations: list[Citation] = field(default_factory=list)  # [n] is citations[n - 1]
    sentences: list[CheckedSentence] = field(default_factory=list)
    model: str | None = None
    check: dict[str, int] | None = None

    @property
    def generated(self) -> bool:
        return self.raw is not None

    @property
    def reason(self) -> str | None:
        return self.extractive.reason if not self.generated else None

    def as_dict(self) -> dict[str, Any]:
        """The ``ask`` response's fields, plus what generation adds."""
        base = self.extractive.as_dict()
        if not self.generated:
            return {**base, "raw": None, "generated": False, "extractive": self.extractive.answer, "model": None,
                    "check": None, "sentences": []}
        return {**base, "answer": self.answer, "raw": self.raw, "reason": None,
                "citations": [c.as_dict() for c in self.citations], "generated": True,
                "extractive": self.extractive.answer, "model": self.model, "check": self.check,
                "sentences": [s.as_dict() for s in self.sentences]}


class Generation:
    """Generated answers over one engine; the chat client is made on first use."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self._client: ChatClient | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.settings.llm_base_url)

    @property
    def client(self) -> ChatClient:
        if not self.configured:
            raise GeneratorNotConfigured(
                "generated answers need a language model: set ASK_LLM_BASE_URL to an OpenAI-compatible "
                "server (llama.cpp, Ollama, vLLM, OpenAI)")
        if self._client is None:
            from .client import ChatClient

            with self._lock:
                if self._client is None:
                    self._client = ChatClient(self.settings)
        return self._client

    @property
    def model(self) -> str | None:
        """The model's name when one is configured (a server's first model is asked for once)."""
        return self.client.model if self.configured else None

    # -- one answer ------------------------------------------------------------------------------
    def _prepare(self, question: str, k: int | None, filter: FilterSpec = None
                 ) -> tuple[Answer, list[dict[str, str]] | None, list[Citation]]:
        client = self.client  # not configured: refused before any retrieval
        del client
        extractive = self.engine.ask(question, k, filter)
        if extractive.answer is None:
            return extractive, None, []
        try:
            prompt = build_prompt(extractive.question, extractive.citations, self.settings.llm_context_tokens,
                                  str(self.settings.cache_dir))
        except ValueError as exc:
            raise GeneratorError(str(exc), extractive) from None
        return extractive, prompt.messages, prompt.citations

    def _finish(self, extractive: Answer, raw: str, citations: list[Citation], model: str) -> GeneratedAnswer:
        checked: Checked = check_citations(raw, citations, self.engine.embedder, self.settings.llm_support_threshold)
        return GeneratedAnswer(extractive.question, extractive, checked.text, raw, citations, checked.sentences,
                               model, checked.summary())

    def answer(self, question: str, k: int | None = None, filter: FilterSpec = None) -> GeneratedAnswer:
        extractive, messages, citations = self._prepare(question, k, filter)
        if messages is None:
            return GeneratedAnswer(extractive.question, extractive, citations=extractive.citations)
        try:
            reply = self.client.complete(messages)
        except GeneratorError as exc:
            exc.extractive = extractive
            raise
        return self._finish(extractive, reply.text, citations, reply.model)

    def stream(self, question: str, k: int | None = None, filter: FilterSpec = None
               ) -> Generator[Token | GeneratedAnswer, None, None]:
        """``Token``s as the model writes them, then the checked ``GeneratedAnswer``.

        Retrieval, the abstain decision and the model's first piece happen on the first ``next``,
        so an adapter can still answer an error status when the model is down.
        """
        extractive, messages, citations = self._prepare(question, k, filter)
        if messages is None:
            yield GeneratedAnswer(extractive.question, extractive, citations=extractive.citations)
            return
        pieces: list[str] = []
        try:
            for piece in self.client.stream(messages):
                pieces.append(piece)
                yield Token(piece)
        except GeneratorError as exc:
            exc.extractive = extractive
            raise
        yield self._finish(extractive, "".join(pieces), citations, self.client.model)

    # -- conversations ---------------------------------------------------------------------------
    def condense(self, conversation: Sequence[tuple[str, str]], question: str) -> str:
        """``question`` made self-contained from the ``(role, text)`` turns before it: rewritten by
        the model when one is configured (falling back to the rule if it fails), else by the rule
        in ``prompt.condense_by_rule``."""
        previous = [text for role, text in conversation if role == "user" and text.strip()]
        if not previous:
            return question
        max_chars = self.settings.max_query_chars
        if self.configured:
            messages = condense_messages(conversation, question, self.settings.llm_context_tokens,
                                         str(self.settings.cache_dir))
            try:
                rewritten = clean_condensed(self.client.complete(messages, CONDENSE_MAX_TOKENS).text, max_chars)
            except GeneratorError:
                rewritten = None  # the answer's own call reports the failure, with the extractive answer
            if rewritten:
                return rewritten
        return condense_by_rule(previous, question, max_chars)
