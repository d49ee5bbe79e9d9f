"""Command line: ``ask QUESTION`` and ``python -m service index|serve|mcp|ask``.

Kept light on imports: a cold ``ask`` loads the index and the ONNX query encoder, never torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

EXIT_ERROR = 1


def _settings(args: argparse.Namespace):  # noqa: ANN202 - Settings
    from .config import Settings

    overrides: dict[str, Any] = {}
    for field in ("index", "corpus", "host", "port", "server"):
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    return Settings(**overrides)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _print_answer(result: dict[str, Any]) -> None:
    width = 100
    if result["answer"] is not None:
        print(textwrap.fill(result["answer"], width))
    else:
        print(textwrap.fill(f"No answer: {result['reason']}", width))
        if result["citations"]:
            print("\nClosest passages:")
    print()
    for i, c in enumerate(result["citations"], start=1):
        print(f"[{i}] {c['source']} ¶{c['paragraph']}")
        print(textwrap.fill(f"“{c['quote']}”", width, initial_indent="    ", subsequent_indent="    "))


def _ask_remote(server: str, question: str, k: int | None) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    body = json.dumps({"question": question, **({"k": k} if k else {})}).encode()
    req = urllib.request.Request(server.rstrip("/") + "/v1/ask", body, {"Content-Type": "application/json"})
    key = os.environ.get("ASK_API_KEY")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", {}).get("message", exc.reason)
        except ValueError:
            detail = exc.reason
        raise RuntimeError(f"{server} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(f"cannot reach {server}: {getattr(exc, 'reason', exc)}") from None


def run_ask(args: argparse.Namespace) -> int:
    question = " ".join(args.question)
    server = args.server or os.environ.get("ASK_SERVER")
    if server:  # the fast path: no settings, no index, no model in this process
        try:
            result = _ask_remote(server, question, args.k)
        except RuntimeError as exc:
            return _fail(str(exc))
    else:
        settings = _settings(args)
        from . import store
        from .engine import Engine, QueryError

        if store.current_name(settings.index) is None:
            if args.index is not None:
                return _fail(
                    f"no index in {settings.index}; build it with "
                    f"`python -m service index --corpus DIR --index {settings.index}`"
                )
            print(f"No index in {settings.index} yet: building it from {settings.corpus} first…", file=sys.stderr)
            code = _index(settings, corpus=None, rebuild=False, as_json=False)
            if code:
                return code
        try:
            # A one-shot question checks file sizes and edges, not every byte (servers hash it all).
            quick = settings.model_copy(update={"full_checksums": False}) if "ASK_FULL_CHECKSUMS" not in os.environ else settings
            result = Engine(quick).ask(question, args.k).as_dict()
        except (QueryError, store.StoreError) as exc:
            return _fail(str(exc))
    if args.json:
        json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        _print_answer(result)
    return 0


def _index(settings: Any, corpus: Path | None, rebuild: bool, as_json: bool) -> int:
    from .corpus import CorpusError
    from .indexer import Indexer
    from .store import StoreError

    def committed(name: str, documents: int) -> None:
        print(f"committed {name}: {documents} documents", file=sys.stderr, flush=True)

    try:
        report = Indexer(settings, on_commit=committed).sync(corpus, rebuild=rebuild)
    except (CorpusError, StoreError) as exc:
        return _fail(str(exc))
    if as_json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(report.summary(), file=sys.stderr)
    return 0


def run_index(args: argparse.Namespace) -> int:
    return _index(_settings(args), args.corpus, args.rebuild, args.json)


def run_serve(args: argparse.Namespace) -> int:
    from .api.server import serve
    from .runtime import limit_malloc_arenas

    limit_malloc_arenas()  # before the server starts its threads
    return serve(_settings(args))


def run_mcp(args: argparse.Namespace) -> int:
    from .mcp import run_stdio
    from .runtime import limit_malloc_arenas

    limit_malloc_arenas()
    return run_stdio(_settings(args))


def _ask_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("question", nargs="+", help="the question, in plain language")
    parser.add_argument("--k", type=int, default=None, help="how many paragraphs to cite (default 5)")
    parser.add_argument("--index", type=Path, default=None, help="index folder (default: index/)")
    parser.add_argument("--json", action="store_true", help='print {"question", "answer", "citations"} as JSON')
    parser.add_argument("--server", default=None, help="ask a running service at this URL (env ASK_SERVER)")
    parser.set_defaults(func=run_ask)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description="Cited answers from a folder of articles.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    _ask_parser(sub.add_parser("ask", help="answer a question with citations"))
    p = sub.add_parser("index", help="build or refresh an index from a corpus folder")
    p.add_argument("--corpus", type=Path, default=None, help="folder of articles (default: the index's own, or seeds/)")
    p.add_argument("--index", type=Path, default=None, help="index folder (default: index/)")
    p.add_argument("--rebuild", action="store_true", help="ignore the existing index and build from scratch")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_index)
    p = sub.add_parser("serve", help="run the REST API, MCP over HTTP and the search page")
    p.add_argument("--index", type=Path, default=None)
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.set_defaults(func=run_serve)
    p = sub.add_parser("mcp", help="run the MCP server over stdio (for Claude Desktop, Cursor, …)")
    p.add_argument("--index", type=Path, default=None)
    p.set_defaults(func=run_mcp)
    return parser


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


def admin_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging(args.verbose)
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """The ``ask`` console script."""
    parser = _ask_parser(argparse.ArgumentParser(prog="ask", description="Answer a question from the indexed articles, with citations."))
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    args = parser.parse_args(argv)
    _logging(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
