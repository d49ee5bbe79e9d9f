"""Generated answers: a language model writes the answer from the retrieved passages, and every
citation it writes is checked against the passage it points to.

Off by default (``ASK_LLM_BASE_URL`` unset): the extractive answer stays the answer. The modules:
``client`` (any OpenAI-compatible chat server, with timeouts), ``prompt`` (the passages packed
under a tiktoken budget, and follow-up questions made self-contained), ``check`` (each cited
sentence's supporting span located in its passage), ``answering`` (the flow, streaming or not).
"""

from .answering import GeneratedAnswer, Generation, Token
from .check import CheckedSentence, Evidence
from .errors import GeneratorError, GeneratorNotConfigured, GeneratorTimeout, GeneratorUnavailable

__all__ = ["CheckedSentence", "Evidence", "GeneratedAnswer", "Generation", "GeneratorError",
           "GeneratorNotConfigured", "GeneratorTimeout", "GeneratorUnavailable", "Token"]
