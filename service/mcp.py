"""MCP server over the engine: ``search``, ``fetch`` (the pair ChatGPT connectors require) and ``ask``.

``python -m service mcp`` serves it over stdio (for Claude Desktop, Cursor, …); the REST app serves
the same tools over streamable HTTP at ``/mcp``. Tools are a few lines each over ``Engine``.

Ids: a search hit's ``id`` is a citation id, ``<source>#p<paragraph>`` (``seeds/003_x.txt#p4``);
``fetch`` takes one of those (the paragraph) or a bare document path (the whole document).
"""

# No ``from __future__ import annotations``: the SDK reads the tools' annotations at definition time,
# and some of them refer to values local to build_server.
import logging
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, create_model

from .config import Settings
from .engine import (
    Citation,
    CollectionNotFound,
    Engine,
    GeneratedAnswer,
    GeneratorError,
    GeneratorNotConfigured,
    NotFound,
    QueryError,
    StoreError,
)
from .filters import FilterModel
from .pages import label, parse_citation_id
from .wire import CONTEXT_DESCRIPTION, AnswerContext, CitedPassage, citation_id, cited

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
This server searches a private collection of articles and cites them to the paragraph.
- `search` finds the passages most relevant to a query. Each result has an `id` such as
  `seeds/003_517cb5bd72187ee7.txt#p4` (file + paragraph; `report.pdf#page3.p2` in a PDF or Word file:
  page + paragraph on that page) and a `quote`: the sentence that matches best.
- `fetch` reads one result in full: pass a result `id` for its paragraph, or a document path
  (`seeds/003_517cb5bd72187ee7.txt`) for the whole article with numbered paragraphs.
- `ask` answers a factual question with one extractive sentence and the passages behind it; its
  `answer` is null when the articles hold no good evidence (say so rather than guessing).
- `search` and `ask` take an optional `filter` (`path` prefix or glob, file `type`s, `modified_after`,
  `modified_before`); every tool takes an optional `collection` (`collections` lists them).
Cite what you use as `source ¶paragraph` (for example `seeds/003_517cb5bd72187ee7.txt ¶4`), or
`source p. page ¶paragraph` when a result has a `page` (`report.pdf p. 3 ¶2`)."""

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


# -- output models (their field descriptions become the tools' output schemas) ------------------------
class LinkedCitation(CitedPassage):
    """A cited passage (the model REST uses too) with a link a chat client can show."""

    url: str = Field(description="Link to the paragraph in the search page (or to the file, over stdio).")


class SearchResults(BaseModel):
    query: str
    results: list[LinkedCitation] = Field(description="Best first, at most one per paragraph.")


class FetchedDocument(BaseModel):
    id: str = Field(description="The id that was fetched.")
    title: str
    text: str = Field(description="The paragraph's full text, or the whole document with `[¶N]` paragraph marks.")
    url: str
    metadata: dict[str, Any] = Field(description="source, paragraph (for a citation id), offsets, counts.")


class CollectionEntry(BaseModel):
    name: str = Field(description="Pass it as `collection` to the other tools.")
    default: bool = Field(description="The collection used when a tool is given none.")
    documents: int
    chunks: int
    store: str
    ready: bool = Field(description="Whether it has an index yet.")


class CollectionListing(BaseModel):
    collections: list[CollectionEntry]


class AskResultBase(BaseModel):
    question: str
    answer: str | None = Field(description="The sentence that answers, quoted from the articles; null if none does.")
    reason: str | None = Field(description="Why `answer` is null.")
    citations: list[LinkedCitation] = Field(description="Supporting passages, the one holding the answer first.")
    generated: bool = Field(False, description="Written by the language model (`generate`); its [n] markers "
                                               "refer to `citations` and were checked.")
    check: dict[str, int] | None = Field(None, description="With `generate`: sentences, cited, supported, flagged, "
                                                           "markers_removed.")
    context: AnswerContext | None = Field(None, description=CONTEXT_DESCRIPTION)


def ask_result_model(threshold: float) -> type[AskResultBase]:
    """``AskResult`` whose ``confidence`` description states the configured threshold."""
    return create_model(
        "AskResult", __base__=AskResultBase,
        confidence=(float, Field(description=f"Score of the answer sentence; answers under {threshold} "
                                             "(ASK_ABSTAIN_THRESHOLD) are withheld.")),
    )


# -- helpers -------------------------------------------------------------------------------------------
def _base_url(ctx: Context | None) -> str | None:
    """The service's own URL when the call came over HTTP (from the request's Host header)."""
    try:
        headers = ctx.headers if ctx is not None else None
    except ValueError:  # no request context
        return None
    if not headers:
        return None
    host = headers.get("x-forwarded-host") or headers.get("host")
    if not host:
        return None
    proto = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
    return f"{proto}://{host.split(',')[0].strip()}"


def _url(engine: Engine, base: str | None, source: str, paragraph: int | None, page: int | None = None) -> str:
    if base:
        url = f"{base}/#doc={quote(source, safe='/')}"
        url = f"{url}&pg={page}" if page is not None else url  # the page's own hash keys
        url = f"{url}&p={paragraph}" if paragraph else url
        collection = engine.settings.collection  # the page names a collection other than the default "c"
        return f"{url}&c={quote(collection, safe='')}" if collection else url
    corpus = Path(engine.stats().corpus)
    return (corpus.parent / source).resolve().as_uri()


def _linked(engine: Engine, base: str | None, c: Citation) -> LinkedCitation:
    return LinkedCitation(**cited(c), url=_url(engine, base, c.source, c.paragraph, c.page))


def _tool_error(exc: Exception) -> ToolError:
    return ToolError(str(exc.args[0]) if isinstance(exc, NotFound | CollectionNotFound) and exc.args else str(exc))


def _filter(value: FilterModel | None) -> dict[str, Any] | None:
    return value.spec() if value is not None else None


CollectionArg = Annotated[str | None, Field(
    description="Which collection to use (`collections` lists them); default: the default collection.",
    max_length=48)]
FilterArg = Annotated[FilterModel | None, Field(
    description="Only passages of documents matching all given keys: `path` (prefix like `reports/` or glob like "
                "`reports/**/*.pdf`), `type` (list like [\"pdf\", \"md\"]), `modified_after` / `modified_before` "
                "(ISO 8601 date or time).")]


# -- the server ----------------------------------------------------------------------------------------
def build_server(engine: Engine) -> MCPServer:
    """An MCP server whose tools call ``engine``; one per transport (a session manager runs once)."""
    max_k = engine.settings.max_k
    max_chars = engine.settings.max_query_chars
    default_k = engine.settings.default_k
    AskResult = ask_result_model(engine.settings.abstain_threshold)
    mcp = MCPServer(
        "ask",
        title="Ask: cited answers from your articles",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        log_level="WARNING",
    )

    @mcp.tool(title="Search the articles", annotations=READ_ONLY)
    def search(
        query: Annotated[str, Field(
            description="What to look for, in plain language or keywords (a question works well).",
            min_length=1, max_length=max_chars,
        )],
        ctx: Context,
        k: Annotated[int, Field(description="How many passages to return (at most one per paragraph).",
                                ge=1, le=max_k)] = default_k,
        filter: FilterArg = None,
        collection: CollectionArg = None,
    ) -> SearchResults:
        """Search the article collection for passages relevant to a query (semantic + keyword search).

        Returns up to `k` passages, best first, each with a citation `id` (`<file>#p<paragraph>`),
        the passage `text`, and the `quote` sentence that matches best. Pass an `id` to `fetch` to
        read the whole paragraph, or the `source` to read the whole article.
        """
        try:
            target = engine.collection(collection)
            found = target.search_cited(query, k, _filter(filter))
        except (QueryError, NotFound, CollectionNotFound, StoreError) as exc:
            raise _tool_error(exc) from None
        base = _base_url(ctx)
        return SearchResults(query=query, results=[_linked(target, base, c) for c in found])

    @mcp.tool(title="Fetch a paragraph or document", annotations=READ_ONLY)
    def fetch(
        id: Annotated[str, Field(
            description="A citation id from `search` or `ask` (`seeds/003_517cb5bd72187ee7.txt#p4`) for that "
                        "paragraph, or a document path (`seeds/003_517cb5bd72187ee7.txt`) for the whole document.",
            min_length=1,
        )],
        ctx: Context,
        collection: CollectionArg = None,
    ) -> FetchedDocument:
        """Read the full text behind a search result: one paragraph (citation id) or a whole document (path).

        A whole document comes back with each paragraph headed `[¶N]`, so any part of it can be cited
        as `source ¶N`.
        """
        parsed = parse_citation_id(id.strip())
        source, page, number = parsed if parsed else (id.strip(), None, None)
        try:
            target = engine.collection(collection)
            doc = target.document(source)
        except (QueryError, NotFound, CollectionNotFound, StoreError) as exc:
            raise _tool_error(exc) from None
        base = _base_url(ctx)
        paragraphs = doc.paragraphs
        if number is None:
            text = "\n\n".join(f"[{label('', p.page, p.paragraph).strip()}] {p.text}" for p in paragraphs)
            return FetchedDocument(
                id=source, title=doc.title, text=text, url=_url(target, base, source, None),
                metadata={"source": source, "paragraphs": len(paragraphs), "characters": len(doc.text),
                          "sha256": doc.sha256, "encoding": doc.encoding, "published": doc.published,
                          "pages": doc.pages,
                          "empty_pages": list(doc.empty_pages)},
            )
        found = [p for p in paragraphs if (p.page, p.paragraph) == (page, number)]
        if not found:
            on = [p.paragraph for p in paragraphs if p.page == page]
            where = f"page {page} of {source}" if page is not None else source
            if doc.pages is not None and page is None:
                raise ToolError(f"{source} is cited by page: use an id like {citation_id(source, 1, 1)}")
            raise ToolError(f"{where} has paragraphs 1 to {len(on)}; there is no ¶{number}" if on
                            else f"{source} has no page {page} with text")
        p = found[0]
        return FetchedDocument(
            id=citation_id(source, number, page), title=doc.title, text=p.text,
            url=_url(target, base, source, number, page),
            metadata={"source": source, "page": page, "paragraph": number, "char_start": p.char_start,
                      "char_end": p.char_end, "paragraphs": len(paragraphs), "citation": label(source, page, number)},
        )

    @mcp.tool(title="Answer a question with citations", annotations=READ_ONLY)
    def ask(
        question: Annotated[str, Field(description="A factual question about the articles, in plain language.",
                                       min_length=1, max_length=max_chars)],
        ctx: Context,
        k: Annotated[int, Field(description="How many supporting passages to cite.", ge=1, le=max_k)] = default_k,
        generate: Annotated[bool, Field(description="Have the service's language model write the answer from the "
                                                    "passages, with [n] markers checked against them (needs "
                                                    "ASK_LLM_BASE_URL).")] = False,
        filter: FilterArg = None,
        collection: CollectionArg = None,
    ) -> Annotated[CallToolResult, AskResult]:
        """Answer a question from the articles: the single sentence that answers it, quoted verbatim,
        plus the cited passages behind it (`source ¶paragraph`, each with a citation `id` for `fetch`).

        `answer` is null when no passage answers well enough; `reason` says why and the closest
        passages are still listed. Prefer `search` for browsing a topic; use `ask` for a direct question.
        """
        try:
            target = engine.collection(collection)
            flt = _filter(filter)
            result = target.generation.answer(question, k, flt) if generate else target.ask(question, k, flt)
        except (QueryError, NotFound, CollectionNotFound, StoreError, GeneratorNotConfigured) as exc:
            raise _tool_error(exc) from None
        except GeneratorError as exc:  # the extractive answer still goes back, in the error's text
            found = exc.extractive.answer if exc.extractive else None
            raise ToolError(f"{exc.message}. The extractive answer: {found or 'none'}") from None
        base = _base_url(ctx)
        out = AskResult.model_validate({
            **result.as_dict(), "confidence": round(result.extractive.confidence if isinstance(
                result, GeneratedAnswer) else result.confidence, 4),
            "citations": [_linked(target, base, c) for c in result.citations],
        })
        lines = [out.answer if out.answer is not None else f"No answer: {out.reason}", ""]
        for i, c in enumerate(out.citations, start=1):
            lines.append(f"[{i}] {label(c.source, c.page, c.paragraph)} (id {c.id}): “{c.quote}”")
        return CallToolResult(content=[TextContent(type="text", text="\n".join(lines).strip())],
                              structured_content=out.model_dump(mode="json"))

    @mcp.tool(title="List the collections", annotations=READ_ONLY)
    def collections() -> CollectionListing:
        """The collections this server searches (each a separate set of articles), with their sizes.
        Pass a `name` as `collection` to `search`, `fetch` or `ask`."""
        try:
            found = engine.collections()
        except StoreError as exc:
            raise _tool_error(exc) from None
        return CollectionListing(collections=[CollectionEntry(**c.as_dict()) for c in found])

    return mcp


def run_stdio(settings: Settings) -> int:
    """``python -m service mcp``: serve the tools over stdin/stdout until the client closes them."""
    engine = Engine(settings)
    try:
        engine.load()
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    server = build_server(engine)
    server.run("stdio")
    return 0
