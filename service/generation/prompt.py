"""What the model is sent: the retrieved passages, numbered, under a tiktoken budget; and how a
follow-up question in a conversation is made self-contained before retrieval.

Everything goes in one user message, the instructions first: some chat templates have no system
role (llama.cpp's ``gemma`` format drops system messages), and every server accepts a user turn.

The budget (``ASK_LLM_CONTEXT_TOKENS``) counts the whole prompt, instructions and question
included, in tiktoken's ``cl100k_base`` tokens (the model's own tokenizer is not available to a
generic client; cl100k is within a few percent of most). Passages go in rank order, whole, while
they fit; the first one is cut to fit when even it alone would not, so the model always has the
best evidence. The passages that made it in are the citations ``[1]``…``[n]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..answer import Citation
from ..tokens import count, encoding

INSTRUCTIONS = """\
You answer questions using only the numbered passages the user gives you.
Write a short answer: one to three sentences.
End every sentence with the number of the passage that states it, in square brackets, like [1] or [2].
Use only facts written in the passages. If they do not answer the question, say that the sources do not say."""

CONDENSE = """\
Rewrite the user's last question so that it can be understood without the conversation: replace
pronouns and references with the names they refer to. Reply with the rewritten question only."""


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: list[dict[str, str]]
    citations: list[Citation]  # [1] is citations[0]
    tokens: int


def passage_block(number: int, c: Citation, text: str | None = None) -> str:
    title = f" ({c.title})" if c.title else ""
    return f"[{number}] {c.source} ¶{c.paragraph}{title}\n{c.text if text is None else text}\n\n"


def build_prompt(question: str, citations: Sequence[Citation], budget: int, cache_dir: str) -> Prompt:
    """The chat messages for ``question`` over ``citations`` (best first), in at most ``budget`` tokens."""
    head = f"{INSTRUCTIONS}\n\nPassages:\n\n"
    tail = f"Question: {question}\nAnswer with citations:"
    fixed = count(head + tail, cache_dir) + 8  # 8: the chat template's wrapping
    room = budget - fixed
    if room < 32:
        raise ValueError(f"ASK_LLM_CONTEXT_TOKENS ({budget}) leaves no room for a passage after the "
                         f"instructions and the question ({fixed} tokens)")
    blocks: list[str] = []
    used: list[Citation] = []
    for c in citations:
        block = passage_block(len(used) + 1, c)
        n = count(block, cache_dir)
        if n > room:
            if used:
                break  # later passages are weaker: stop rather than skip to a smaller one
            enc = encoding(cache_dir)
            header = count(passage_block(1, c, ""), cache_dir)
            cut = enc.decode(enc.encode(c.text, disallowed_special=())[: max(room - header - 2, 1)])
            block = passage_block(1, c, cut + "…")
            n = count(block, cache_dir)
        blocks.append(block)
        used.append(c)
        room -= n
    user = head + "".join(blocks) + tail
    return Prompt([{"role": "user", "content": user}], used, count(user, cache_dir) + 8)


# -- follow-up questions ----------------------------------------------------------------------------
# The documented rule used when no model is configured (README, "Chat front-ends"): a question that
# refers back (one of these words) or is very short is read together with the previous question.
REFERS_BACK = frozenset("""he she it they him her them his hers its their theirs this that these those
there then such same former latter other else one ones""".split())
SHORT_WORDS = 3
_WORD = re.compile(r"[\w']+")


def refers_back(question: str) -> bool:
    words = [w.lower() for w in _WORD.findall(question)]
    return len(words) <= SHORT_WORDS or any(w in REFERS_BACK for w in words)


def condense_by_rule(previous_questions: Sequence[str], question: str, max_chars: int) -> str:
    """The follow-up made self-contained without a model: the previous question is prepended when
    the follow-up refers back to it (a pronoun, ``that``, ``there``…) or has three words or fewer."""
    if not previous_questions or not refers_back(question):
        return question
    previous = previous_questions[-1].strip()
    room = max_chars - len(question) - 1
    if room <= 0:
        return question
    return f"{previous[-room:].lstrip()} {question}" if len(previous) > room else f"{previous} {question}"


def condense_messages(conversation: Sequence[tuple[str, str]], question: str, budget: int,
                      cache_dir: str) -> list[dict[str, str]]:
    """The messages that ask the model to rewrite ``question``; the latest turns that fit the budget."""
    turns: list[str] = []
    room = budget - count(CONDENSE, cache_dir) - count(question, cache_dir) - 32
    for role, text in reversed(conversation):
        line = f"{role}: {text}"
        n = count(line, cache_dir)
        if n > room:
            break
        turns.append(line)
        room -= n
    transcript = "\n".join(reversed(turns))
    return [{"role": "user", "content": f"{CONDENSE}\n\nConversation:\n{transcript}\n\nLast question: {question}\n"
                                        "Rewritten question:"}]


def clean_condensed(text: str, max_chars: int) -> str | None:
    """The model's rewrite as a question, or None when it is not usable (empty, too long)."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(rewritten question|question)\s*:\s*", "", line, flags=re.I).strip().strip('"“”\'`').strip()
    if not line or len(line) > max_chars or "\x00" in line:
        return None
    return line
