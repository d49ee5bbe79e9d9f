"""A client for any OpenAI-compatible chat-completions server (llama.cpp, Ollama, vLLM, OpenAI).

It is the official ``openai`` library with retries off and explicit timeouts: a connect timeout
(``ASK_LLM_CONNECT_TIMEOUT``) and a read timeout (``ASK_LLM_TIMEOUT``) on every wait, plus, for a
streamed reply, a deadline on the whole answer, so a server that trickles tokens forever is cut
off too. Every failure becomes a ``GeneratorError`` that says what happened and where.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .errors import GeneratorError, GeneratorTimeout, GeneratorUnavailable

if TYPE_CHECKING:
    from openai import OpenAI

    from ..config import Settings

Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatClient:
    """One connection pool per service; thread-safe (the ``openai`` client is)."""

    def __init__(self, settings: Settings) -> None:
        import httpx2
        from openai import OpenAI

        if not settings.llm_base_url:
            raise ValueError("no ASK_LLM_BASE_URL")
        self.base_url = settings.llm_base_url.rstrip("/")
        self.timeout = settings.llm_timeout
        self.max_tokens = settings.llm_max_tokens
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "unused"
        self._client: OpenAI = OpenAI(
            base_url=self.base_url, api_key=key, max_retries=0,
            timeout=httpx2.Timeout(settings.llm_timeout, connect=settings.llm_connect_timeout),
        )
        self._model = settings.llm_model
        self._model_lock = threading.Lock()

    @property
    def model(self) -> str:
        """The configured model, or the first one the server lists (asked once)."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    models = self._call(lambda: [m.id for m in self._client.models.list()])
                    if not models:
                        raise GeneratorUnavailable(f"the language model server at {self.base_url} lists no model; "
                                                   "set ASK_LLM_MODEL")
                    self._model = models[0]
        return self._model

    def complete(self, messages: list[Message], max_tokens: int | None = None) -> Completion:
        model = self.model
        reply = self._call(lambda: self._client.chat.completions.create(
            model=model, messages=cast(Any, messages), max_tokens=max_tokens or self.max_tokens, temperature=0,
            stream=False))
        try:
            text = reply.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise GeneratorUnavailable(f"the language model at {self.base_url} sent a reply without a message") from None
        if not text.strip():
            raise GeneratorUnavailable(f"the language model at {self.base_url} sent an empty answer")
        usage = getattr(reply, "usage", None)
        return Completion(text, getattr(reply, "model", None) or model,
                          getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))

    def stream(self, messages: list[Message], max_tokens: int | None = None) -> Iterator[str]:
        """The answer's pieces as the server sends them; raises ``GeneratorError`` at any point."""
        model = self.model
        deadline = time.monotonic() + self.timeout
        chunks = self._call(lambda: self._client.chat.completions.create(
            model=model, messages=cast(Any, messages), max_tokens=max_tokens or self.max_tokens, temperature=0,
            stream=True))
        wrote = False
        try:
            iterator = iter(chunks)
            while True:
                piece = self._call(lambda: next(iterator, None))
                if piece is None:
                    break
                if time.monotonic() > deadline:
                    raise GeneratorTimeout(f"the language model at {self.base_url} did not finish its answer "
                                           f"within {self.timeout:g} s (ASK_LLM_TIMEOUT)")
                choices = getattr(piece, "choices", None) or []
                delta = getattr(choices[0], "delta", None) if choices else None
                text = getattr(delta, "content", None) if delta is not None else None
                if text:
                    wrote = True
                    yield text
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if not wrote:
            raise GeneratorUnavailable(f"the language model at {self.base_url} sent an empty answer")

    def _call(self, fn: Any) -> Any:
        """Run one request (or one read of a stream), translating the library's errors."""
        import httpx2
        import openai

        try:
            return fn()
        except GeneratorError:
            raise
        except (openai.APITimeoutError, httpx2.TimeoutException):  # a stream's reads raise httpx2's own
            raise GeneratorTimeout(f"the language model at {self.base_url} did not answer within "
                                   f"{self.timeout:g} s (ASK_LLM_TIMEOUT)") from None
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            cause = exc.__cause__ or exc
            raise GeneratorUnavailable(f"cannot reach the language model at {self.base_url}: {cause}") from None
        except openai.APIStatusError as exc:
            detail = _short(exc.message)
            raise GeneratorUnavailable(f"the language model at {self.base_url} answered {exc.status_code}: "
                                       f"{detail}") from None
        except (openai.OpenAIError, ValueError, KeyError, TypeError) as exc:
            raise GeneratorUnavailable(f"the language model at {self.base_url} sent a reply that is not an "
                                       f"OpenAI chat completion ({_short(str(exc))})") from None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
