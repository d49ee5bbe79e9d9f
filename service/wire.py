"""The JSON shape of a citation, one model for REST and MCP.

A cited passage reads the same wherever it is sent: the REST responses (`/v1/search`, `/v1/ask`,
`/v1/context`) and the MCP tools (`search`, `ask`) list ``CitedPassage`` objects; MCP adds the
link a chat client shows (``url``). Field descriptions are written once, here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .answer import Citation
from .pages import citation_id

__all__ = ["CITED_EXAMPLE", "CitedPassage", "citation_id", "cited"]

SOURCE_EXAMPLE = "seeds/003_517cb5bd72187ee7.txt"
PASSAGE_EXAMPLE = (
    "Liu Zhongyi, China's vice minister of public security, visited Tak province in Thailand as well as "
    "Myawaddy in Myanmar, where hundreds of scam centre workers are thought to be awaiting repatriation."
)


class CitedPassage(BaseModel):
    id: str = Field(description="Citation id `<source>#p<paragraph>`, or `<source>#page<page>.p<paragraph>` in a "
                                "paged document (MCP `fetch` reads it).")
    source: str = Field(description="The file, relative to the corpus folder's parent: a document id.")
    page: int | None = Field(None, description="Paged formats (PDF, Word with page breaks): the page where the "
                                               "paragraph starts; null for other files.")
    paragraph: int = Field(description="Paragraph number from 1: within `page` when there is one, else in the file "
                                       "(¶1 is the title line).")
    title: str = Field("", description="The document's title (its first line).")
    text: str = Field(description="The passage: exactly `document text[char_start:char_end]`.")
    char_start: int = Field(description="Offset of `text` in the document's text (GET /v1/documents/{id}).")
    char_end: int
    score: float = Field(description="Rank score (fused); higher is better, comparable within one response.")
    quote: str = Field(description="The passage's sentence that best matches the query: highlight it.")
    quote_start: int = Field(description="Offset of `quote` in the document (subtract `char_start` for `text`).")
    quote_end: int


class AnswerContext(BaseModel):
    """The sentence before an answer that refers back to it ("They agreed …"), shown beside the answer."""

    text: str = Field(description="The sentence before the answer in its passage: what the answer refers to.")
    start: int = Field(description="Offset of `text` in the document (the answer's own quote offsets are unchanged).")
    end: int


CONTEXT_DESCRIPTION = ("The sentence before the answer when the answer opens with a pronoun or \"the …\" "
                       "(\"They agreed …\"); null otherwise.")


def cited(c: Citation) -> dict[str, Any]:
    """A citation as ``CitedPassage`` fields (plain data: the adapters validate on the way out)."""
    return {"id": citation_id(c.source, c.paragraph, c.page), **c.as_dict()}


CITED_EXAMPLE: dict[str, Any] = {
    "id": f"{SOURCE_EXAMPLE}#p4", "source": SOURCE_EXAMPLE, "page": None, "paragraph": 4, "title": "Latest news with #LiuZhongyi",
    "text": PASSAGE_EXAMPLE, "char_start": 11123, "char_end": 11321, "score": 0.0325,
    "quote": PASSAGE_EXAMPLE, "quote_start": 11123, "quote_end": 11321,
}
