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
"""

from __future__ import annotations

from .chunking import sentence_spans
from .corpus import paragraphs

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


def embedding_title(text: str, title: str, declared: bool = False) -> str:
    """The title to glue to a document's chunks: ``title`` when the format declared it or when the
    first paragraph of ``text`` looks like one, else nothing."""
    if declared:
        return title
    first = paragraphs(text)[:1]
    if not first or not looks_like_title(text[first[0].start : first[0].end]):
        return ""
    return title
