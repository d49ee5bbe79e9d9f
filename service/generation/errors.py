"""What can go wrong with the language model, each with the HTTP status the API answers with.

The extractive answer is computed before the model is called, so every failure carries it
(``extractive``): a client still gets the cited sentence when the model server is down or slow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..answer import Answer


class GeneratorError(RuntimeError):
    """The model server failed; ``status`` and ``code`` are what the REST API answers with."""

    status = 502
    code = "generator_unavailable"

    def __init__(self, message: str, extractive: Answer | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extractive = extractive


class GeneratorUnavailable(GeneratorError):
    """Unreachable, an error status, or a reply that is not a chat completion: 502."""


class GeneratorTimeout(GeneratorError):
    """No reply (or no next piece of a streamed reply) within ``ASK_LLM_TIMEOUT``: 504."""

    status = 504
    code = "generator_timeout"


class GeneratorNotConfigured(ValueError):
    """``generate`` was asked for, but ``ASK_LLM_BASE_URL`` is not set."""
