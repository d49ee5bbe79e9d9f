"""MCP server over the engine: ``search``, ``fetch`` (the pair ChatGPT connectors require) and ``ask``.

``python -m service mcp`` serves it over stdio (for Claude Desktop, Cursor, …); the REST app serves
the same tools over streamable HTTP at ``/mcp``. Tools are a few lines each over ``Engine``.

Ids: a search hit's ``id`` is a citation id, ``<source>#p<paragraph>`` (``seeds/003_x.txt#p4``);
``fetch`` takes one of those (the paragraph) or a bare document path (the whole document).
"""

# No ``from __future__ import annotations``: the SDK reads the tools' annotations at definition time,
# and some of them refer to values local to build_server.
import logging
import re
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, create_model

from .config import Settings
from .engine import Citation, Engine, NotFound, QueryError, StoreError
from .wire import CONTEXT_DESCRIPTION, AnswerContext, CitedPassage, citation_id, cited

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
This server searches a private collection of articles and cites them to the paragraph.
- `search` finds the passages most relevant to a query. Each result has an `id` such as
  `seeds/003_517cb5bd72187ee7.txt#p4` (file + paragraph) and a `quote`: the sentence that matches best.
- `fetch` reads one result in full: pass a result `id` for its paragraph, or a document path
  (`seeds/003_517cb5bd72187ee7.txt`) for the whole article with numbered paragraphs.
- `ask` answers a factual question with one extractive sentence and the passages behind it; its
  `answer` is null when the articles hold no good evidence (say so rather than guessing).
Cite what you use as `source ¶paragraph` (for example `seeds/003_517cb5bd72187ee7.txt ¶4`)."""

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
_CITATION_ID = re.compile(r"^(?P<source>.+?)#p?(?P<paragraph>\d+)$")


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


class AskResultBase(BaseModel):
    question: str
    answer: str | None = Field(description="The sentence that answers, quoted from the articles; null if none does.")
    reason: str | None = Field(description="Why `answer` is null.")
    citations: list[LinkedCitation] = Field(description="Supporting passages, the one holding the answer first.")
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


def _url(engine: Engine, base: str | None, source: str, paragraph: int | None) -> str:
    if base:
        url = f"{base}/#doc={quote(source, safe='/')}"
        return f"{url}&p={paragraph}" if paragraph else url
    corpus = Path(engine.stats().corpus)
    return (corpus.parent / source).resolve().as_uri()


def _linked(engine: Engine, base: str | None, c: Citation) -> LinkedCitation:
    return LinkedCitation(**cited(c), url=_url(engine, base, c.source, c.paragraph))


def _tool_error(exc: Exception) -> ToolError:
    return ToolError(str(exc.args[0]) if isinstance(exc, NotFound) and exc.args else str(exc))


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
    ) -> SearchResults:
        """Search the article collection for passages relevant to a query (semantic + keyword search).

        Returns up to `k` passages, best first, each with a citation `id` (`<file>#p<paragraph>`),
        the passage `text`, and the `quote` sentence that matches best. Pass an `id` to `fetch` to
        read the whole paragraph, or the `source` to read the whole article.
        """
        try:
            found = engine.search_cited(query, k)
        except (QueryError, NotFound, StoreError) as exc:
            raise _tool_error(exc) from None
        base = _base_url(ctx)
        return SearchResults(query=query, results=[_linked(engine, base, c) for c in found])

    @mcp.tool(title="Fetch a paragraph or document", annotations=READ_ONLY)
    def fetch(
        id: Annotated[str, Field(
            description="A citation id from `search` or `ask` (`seeds/003_517cb5bd72187ee7.txt#p4`) for that "
                        "paragraph, or a document path (`seeds/003_517cb5bd72187ee7.txt`) for the whole document.",
            min_length=1,
        )],
        ctx: Context,
    ) -> FetchedDocument:
        """Read the full text behind a search result: one paragraph (citation id) or a whole document (path).

        A whole document comes back with each paragraph headed `[¶N]`, so any part of it can be cited
        as `source ¶N`.
        """
        m = _CITATION_ID.match(id.strip())
        source, number = (m["source"], int(m["paragraph"])) if m else (id.strip(), None)
        try:
            doc = engine.document(source)
        except (QueryError, NotFound, StoreError) as exc:
            raise _tool_error(exc) from None
        base = _base_url(ctx)
        paragraphs = doc.paragraphs
        if number is None:
            text = "\n\n".join(f"[¶{p.paragraph}] {p.text}" for p in paragraphs)
            return FetchedDocument(
                id=source, title=doc.title, text=text, url=_url(engine, base, source, None),
                metadata={"source": source, "paragraphs": len(paragraphs), "characters": len(doc.text),
                          "sha256": doc.sha256, "encoding": doc.encoding},
            )
        if not 1 <= number <= len(paragraphs):
            raise ToolError(f"{source} has paragraphs 1 to {len(paragraphs)}; there is no ¶{number}")
        p = paragraphs[number - 1]
        return FetchedDocument(
            id=citation_id(source, number), title=doc.title, text=p.text, url=_url(engine, base, source, number),
            metadata={"source": source, "paragraph": number, "char_start": p.char_start, "char_end": p.char_end,
                      "paragraphs": len(paragraphs), "citation": f"{source} ¶{number}"},
        )

    @mcp.tool(title="Answer a question with citations", annotations=READ_ONLY)
    def ask(
        question: Annotated[str, Field(description="A factual question about the articles, in plain language.",
                                       min_length=1, max_length=max_chars)],
        ctx: Context,
        k: Annotated[int, Field(description="How many supporting passages to cite.", ge=1, le=max_k)] = default_k,
    ) -> Annotated[CallToolResult, AskResult]:
        """Answer a question from the articles: the single sentence that answers it, quoted verbatim,
        plus the cited passages behind it (`source ¶paragraph`, each with a citation `id` for `fetch`).

        `answer` is null when no passage answers well enough; `reason` says why and the closest
        passages are still listed. Prefer `search` for browsing a topic; use `ask` for a direct question.
        """
        try:
            result = engine.ask(question, k)
        except (QueryError, NotFound, StoreError) as exc:
            raise _tool_error(exc) from None
        base = _base_url(ctx)
        out = AskResult.model_validate({
            "question": result.question, "answer": result.answer, "reason": result.reason,
            "confidence": round(result.confidence, 4),
            "citations": [_linked(engine, base, c) for c in result.citations],
            "context": result.context.as_dict() if result.context else None,
        })
        lines = [out.answer if out.answer is not None else f"No answer: {out.reason}", ""]
        for i, c in enumerate(out.citations, start=1):
            lines.append(f"[{i}] {c.source} ¶{c.paragraph} (id {c.id}): “{c.quote}”")
        return CallToolResult(content=[TextContent(type="text", text="\n".join(lines).strip())],
                              structured_content=out.model_dump(mode="json"))

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
