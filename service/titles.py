"""Whether a document's first line is a title, for files whose format declares none.

The indexer prepends a document's title to the embedded and BM25-indexed text of every chunk, so
that a chunk deep in an article still knows what the article is about. That only helps when the
first line *is* a title. Many plain-text files start with body text instead; gluing the first
words of that sentence to every chunk of the file drags every chunk toward the opening paragraph's
topic (SQuAD with its title lines removed: paragraph hit@1 0.835 falls to 0.806).

A first paragraph looks like a title when it is one line of at most ``MAX_TITLE_WORDS`` words
holding at most ``MAX_TITLE_SENTENCES`` sentences. Full stops are allowed: scientific titles end
with one (58% of SciFact's) and 87 of SciFact's 5,183 have a subtitle after one ("… from human
placenta. Properties and allosteric regulation …"); with these limits 12 of them lose their title,
while none of SQuAD's 48 opening paragraphs (42 words and more) and 39 of its 2,067 paragraphs
would pass for one. Formats that declare their title (Markdown ``#``, HTML ``<title>``, PDF metadata) do not
need this guess; ``embedding_title`` takes such a title as it is.

A title is not the only way to say what a document is about: the words it uses most say it too
(:func:`document_terms`). They follow the title in the glued line (``ASK_CONTEXT_TERMS``), and a
file without a title gets them alone, so that it retrieves as well as the same file with its title
(SQuAD paragraph hit@1, articles without their title line: 0.8245 with nothing glued, 0.8382 with
their four most used words; with their title line: 0.8369 with the title alone, 0.8377 with both).
"""

from __future__ import annotations

import re
from collections import Counter

from .chunking import sentence_spans
from .config import Settings
from .corpus import paragraphs
from .lexical import QUERY_STOPWORDS, STOPWORDS_EN

MAX_TITLE_WORDS = 40  # the longest SciFact title has 40 words; body paragraphs run far longer
MAX_TITLE_SENTENCES = 2  # a title and its subtitle


def looks_like_title(paragraph: str) -> bool:
    """A short single line of at most two sentences (a headline, a paper's title and subtitle)."""
    text = paragraph.strip()
    if not text or "\n" in text or "\r" in text:
        return False
    if len(text.split()) > MAX_TITLE_WORDS:
        return False
    return len(sentence_spans(text)) <= MAX_TITLE_SENTENCES


CONTEXT_TERMS = Settings.model_fields["context_terms"].default  # ASK_CONTEXT_TERMS: see the module docstring
CONTEXT_MIN_COUNT = 3  # a word the document uses fewer times says little about what it is about
# An abstract under its title line (SciFact: every document) is not glued its most used words: they
# are in its one body paragraph already, and on SciFact's 12 abstracts whose first line is no title
# they made distractors of them (nDCG@10 0.7352 -> 0.7340, none of the 12 is a gold document).
MIN_CONTEXT_PARAGRAPHS = 3
_CONTEXT_WORD = re.compile(r"[^\W\d_][\w\-]*(?:['\u2019][^\W\d_]+)*")
_POSSESSIVE = re.compile(r"['\u2019]s$", re.IGNORECASE)
_CONTEXT_STOPWORDS = STOPWORDS_EN | QUERY_STOPWORDS | frozenset("""
also about above after again against all any because before below between both can could during each
few first from further here however into its just later many more most much new now off once only
other over own same several since some still than those through thus under until very well while
""".split())


def document_terms(text: str, n: int = CONTEXT_TERMS, min_count: int = CONTEXT_MIN_COUNT) -> list[str]:
    """What a document is about, from its own text alone: its ``n`` most used words that it uses at
    least ``min_count`` times (stop words and words under three letters aside, a possessive counted
    with its word), each written as the document most often writes it, in the order it first uses
    them ("Tesla electrical Westinghouse Electric" for SQuAD's article on Nikola Tesla)."""
    if n <= 0:
        return []
    counts: Counter[str] = Counter()
    forms: dict[str, Counter[str]] = {}
    for word in _CONTEXT_WORD.findall(text):
        word = _POSSESSIVE.sub("", word)
        key = word.lower()
        if len(key) < 3 or key in _CONTEXT_STOPWORDS:
            continue
        counts[key] += 1
        forms.setdefault(key, Counter())[word] += 1
    top = {w for w, c in counts.most_common(n) if c >= min_count}
    # ``forms`` holds the words in the order of their first use (dicts keep insertion order).
    return [f.most_common(1)[0][0] for w, f in forms.items() if w in top]


def embedding_title(text: str, title: str, declared: bool = False, terms: int = CONTEXT_TERMS) -> str:
    """The line to glue to a document's chunks: its title (when the format declared it, or when the
    first paragraph of ``text`` looks like one), then, in a document of ``MIN_CONTEXT_PARAGRAPHS``
    paragraphs or more, its ``terms`` most used words that the title does not hold (:func:`document_terms`); a document
    without a title gets those words alone."""
    paras = paragraphs(text)
    if not declared and not (paras and looks_like_title(text[paras[0].start : paras[0].end])):
        title = ""
    if len(paras) < MIN_CONTEXT_PARAGRAPHS:
        return title
    have = {w.lower() for w in _CONTEXT_WORD.findall(title)}
    extra = [w for w in document_terms(text, terms) if w.lower() not in have]
    return " ".join([title, *extra]).strip()
