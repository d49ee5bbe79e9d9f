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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Settings

EXIT_ERROR = 1


def _settings(args: argparse.Namespace) -> Settings:
    from .config import Settings

    overrides: dict[str, Any] = {}
    for field in ("index", "corpus", "host", "port", "server", "store", "store_read", "dask"):
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    settings = Settings(**overrides)
    name = getattr(args, "collection", None) or settings.collection
    if name is None:
        return settings
    from .collections import CollectionNotFound, settings_for

    try:  # the collection's corpus and index, unless the command line names them
        chosen = settings_for(Settings(**{k: v for k, v in overrides.items() if k not in ("index", "corpus")}), name)
    except CollectionNotFound as exc:
        raise CliError(str(exc), "collection_not_found") from None
    return chosen.model_copy(update={k: v for k, v in overrides.items() if k in ("index", "corpus")})


def _filter_spec(args: argparse.Namespace) -> dict[str, Any] | None:
    """The filter flags as the engine (and the REST body) take them; None when none is given."""
    types = [t.strip() for value in (args.type or []) for t in value.split(",") if t.strip()]
    spec = {"path": args.path, "type": types or None, "modified_after": args.modified_after,
            "modified_before": args.modified_before}
    return {k: v for k, v in spec.items() if v is not None} or None


class CliError(Exception):
    """A failure to report in one line (``error: …``), or as ``{"error": …}`` with ``--json``."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: str = "error", as_json: bool = False) -> int:
    if as_json:
        json.dump({"error": {"code": code, "message": message}}, sys.stdout, ensure_ascii=False)
        print()
    else:
        print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {number})")
    return number


def _server_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"--server needs the service's URL, like http://127.0.0.1:8000 (got {value!r})", "bad_server")
    return value.strip()


def _print_answer(result: dict[str, Any]) -> None:
    from .pages import label

    width = 100
    if result["answer"] is not None:
        print(textwrap.fill(result["answer"], width))
        if result.get("context"):  # what "they"/"he" in the answer refers to
            print(textwrap.fill(f"(context: {result['context']['text']})", width))
    else:
        print(textwrap.fill(f"No answer: {result['reason']}", width))
        if result["citations"]:
            print("\nClosest passages:")
    print()
    for i, c in enumerate(result["citations"], start=1):
        print(f"[{i}] {label(c['source'], c.get('page'), c['paragraph'])}")
        print(textwrap.fill(f"“{c['quote']}”", width, initial_indent="    ", subsequent_indent="    "))


def ask_request(server: str, body: dict[str, Any], collection: str | None) -> Any:
    """A POST of ``body`` to a running service's ask route (a collection's when named), with the key
    from ``ASK_API_KEY`` when one is set."""
    import urllib.request
    from urllib.parse import quote

    route = f"/v1/collections/{quote(collection, safe='')}/ask" if collection else "/v1/ask"
    req = urllib.request.Request(server.rstrip("/") + route, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    key = os.environ.get("ASK_API_KEY")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    return req


def _ask_remote(server: str, question: str, k: int | None, collection: str | None = None,
                filter: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST the question to a running service; the key, if any, comes from ``ASK_API_KEY``."""
    import urllib.error
    import urllib.request

    server = _server_url(server)
    req = ask_request(server, {"question": question, **({"k": k} if k else {}), **({"filter": filter} if filter else {})},
                      collection)
    key = os.environ.get("ASK_API_KEY")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read()).get("error", {})
            detail, code = error.get("message", exc.reason), error.get("code", f"http_{exc.code}")
        except (ValueError, AttributeError):
            detail, code = exc.reason, f"http_{exc.code}"
        if exc.code == 401:
            detail += " (set ASK_API_KEY to the service's key)" if not key else " (check ASK_API_KEY)"
        raise CliError(f"{server} answered {exc.code}: {detail}", code) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CliError(f"cannot reach {server}: {getattr(exc, 'reason', exc)}", "unreachable") from None


def ensure_default_index(settings: Any, explicit_index: bool) -> None:
    """Build ``index/`` from ``seeds/`` on first use, as every entry point does with the defaults.

    An index folder named on the command line that holds no index is the user's to build: it is
    never filled from the default corpus.
    """
    from .engine import Engine

    if settings.store:  # a database is configured on purpose: `index --store` fills it
        return
    if Engine(settings).has_index():
        return
    if explicit_index and Path(settings.index).resolve() != Path(type(settings)().index).resolve():
        return  # the command reports it (ask, mcp) or serves until it exists (serve)
    print(f"No index in {settings.index} yet: building it from {settings.corpus} first…", file=sys.stderr)
    _index(settings, corpus=None, rebuild=False, as_json=False)


def run_ask(args: argparse.Namespace) -> int:
    question = " ".join(args.question)
    server = args.server or os.environ.get("ASK_SERVER")
    flt = _filter_spec(args)
    if args.generate:  # written by the language model, printed as it streams (cli_generate)
        from . import cli_generate

        settings = None if server else _settings(args)
        if settings is not None:
            ensure_default_index(settings, args.index is not None)
            if "ASK_FULL_CHECKSUMS" not in os.environ:
                settings = settings.model_copy(update={"full_checksums": False})
        return cli_generate.run(args, settings, question, server, flt)
    if server:  # the fast path: no settings, no index, no model in this process
        result = _ask_remote(server, question, args.k, args.collection or os.environ.get("ASK_COLLECTION"), flt)
    else:
        settings = _settings(args)
        from .engine import Engine

        ensure_default_index(settings, args.index is not None)
        # A one-shot question checks file sizes and edges, not every byte (servers hash it all).
        quick = settings.model_copy(update={"full_checksums": False}) if "ASK_FULL_CHECKSUMS" not in os.environ else settings
        result = Engine(quick).ask(question, args.k, flt).as_dict()
    if args.json:
        json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        _print_answer(result)
    return 0


def _index(settings: Any, corpus: Path | None, rebuild: bool, as_json: bool, one_line: bool = False) -> None:
    from .engine import Engine

    def committed(name: str, documents: int) -> None:
        print(f"committed {name}: {documents} documents", file=sys.stderr, flush=True)

    report = Engine(settings).sync(corpus, rebuild=rebuild, on_commit=committed)
    if as_json:
        json.dump(report.as_dict(), sys.stdout, indent=None if one_line else 2)
        print(flush=True)
    else:
        print(report.summary(), file=sys.stderr)


def run_index(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _index(settings, args.corpus, args.rebuild, args.json, one_line=args.watch)  # --watch --json: JSON lines
    if not args.watch:
        return 0
    from .watch import watch_folder

    print("watching for changes (Ctrl-C stops)…", file=sys.stderr, flush=True)
    return watch_folder(settings, args.corpus, _watch_reporter(args.json))


def _watch_reporter(as_json: bool) -> Any:
    """``--watch``: one line per sync that committed (JSON on stdout with ``--json``, else on stderr)."""

    def report(r: Any) -> None:
        if r.snapshot is None:
            return
        if as_json:
            print(json.dumps(r.as_dict()), flush=True)
        else:
            print(f"watch: {r.summary()}", file=sys.stderr, flush=True)

    return report


def run_serve(args: argparse.Namespace) -> int:
    from .api.server import serve
    from .runtime import limit_malloc_arenas

    settings = _settings(args)
    ensure_default_index(settings, args.index is not None)
    limit_malloc_arenas()  # before the server starts its threads
    return serve(settings, watch=_watch_reporter(False) if args.watch else None)


def run_mcp(args: argparse.Namespace) -> int:
    from .mcp import run_stdio
    from .runtime import limit_malloc_arenas

    settings = _settings(args)
    ensure_default_index(settings, args.index is not None)  # progress goes to stderr: stdout is the protocol
    limit_malloc_arenas()
    return run_stdio(settings)


def _ask_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("question", nargs="+", help="the question, in plain language")
    parser.add_argument("--k", type=_positive_int, default=None,
                        help="how many paragraphs to cite (default ASK_DEFAULT_K, at most ASK_MAX_K)")
    parser.add_argument("--index", type=Path, default=None, help="index folder (default: index/)")
    _store_args(parser)
    _collection_arg(parser)
    filters = parser.add_argument_group("filters", "cite only documents that match all of these")
    filters.add_argument("--path", default=None, metavar="PREFIX_OR_GLOB",
                         help="path inside the corpus folder: a folder prefix ('reports/') or a glob ('reports/**/*.pdf')")
    filters.add_argument("--type", action="append", default=None, metavar="EXT",
                         help="file type without the dot (repeat, or comma-separated: --type pdf,md)")
    filters.add_argument("--modified-after", default=None, metavar="ISO8601",
                         help="modified at or after this date or time (2024-05-01, 2024-05-01T12:00Z; UTC)")
    filters.add_argument("--modified-before", default=None, metavar="ISO8601", help="modified before this date or time")
    parser.add_argument("--json", action="store_true",
                        help='print {"question", "answer", "citations"} as JSON (errors as {"error": …})')
    parser.add_argument("--generate", action="store_true",
                        help="have the language model at ASK_LLM_BASE_URL write the answer from the passages, "
                             "printed as it streams, its citations checked")
    parser.add_argument("--server", default=None,
                        help="ask a running service at this URL (env ASK_SERVER); its API key, if it has one, "
                             "comes from the environment variable ASK_API_KEY")
    parser.set_defaults(func=run_ask)
    return parser


def _store_args(parser: argparse.ArgumentParser, read: bool = True) -> None:
    parser.add_argument("--store", default=None, metavar="URL",
                        help="a postgresql:// URL: the index lives in that database (env ASK_STORE)")
    if read:
        parser.add_argument("--store-read", default=None, metavar="URL",
                            help="a postgresql:// URL of a streaming replica for searches (env ASK_STORE_READ)")


def _collection_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", default=None, metavar="NAME",
                        help="a collection of ASK_COLLECTIONS instead of the default (env ASK_COLLECTION)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description="Cited answers from a folder of articles.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    _ask_parser(sub.add_parser("ask", help="answer a question with citations"))
    p = sub.add_parser("index", help="build or refresh an index from a corpus folder")
    p.add_argument("--corpus", type=Path, default=None, help="folder of articles (default: the index's own, or seeds/)")
    p.add_argument("--index", type=Path, default=None, help="index folder (default: index/; with --store: caches)")
    _store_args(p, read=False)
    _collection_arg(p)
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="embed on a Dask cluster, e.g. tcp://127.0.0.1:8786 (env ASK_DASK)")
    p.add_argument("--rebuild", action="store_true", help="ignore the existing index and build from scratch")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--watch", action="store_true",
                   help="then keep watching the folder and sync each batch of changes until Ctrl-C")
    p.set_defaults(func=run_index)
    p = sub.add_parser("serve", help="run the REST API, MCP over HTTP and the search page")
    p.add_argument("--index", type=Path, default=None)
    _store_args(p)
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--watch", action="store_true",
                   help="watch every collection's corpus folder and index each batch of changes while serving")
    p.set_defaults(func=run_serve)
    p = sub.add_parser("mcp", help="run the MCP server over stdio (for Claude Desktop, Cursor, …)")
    p.add_argument("--index", type=Path, default=None)
    _store_args(p)
    p.set_defaults(func=run_mcp)
    return parser


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


def _known_error(exc: Exception) -> str | None:
    """The error code of an exception a user can act on (its message says how), else None.

    Imported here, after the fact: ``ask --server`` loads none of the engine's modules.
    """
    from .engine import (
        CollectionNotFound,
        Conflict,
        CorpusError,
        GeneratorNotConfigured,
        NotFound,
        QueryError,
        StoreError,
    )

    codes: tuple[tuple[type[Exception], str], ...] = (
        (QueryError, "invalid_request"), (GeneratorNotConfigured, "not_configured"), (NotFound, "not_found"),
        (Conflict, "conflict"), (CollectionNotFound, "collection_not_found"),
        (StoreError, "index_unavailable"), (CorpusError, "corpus_error"), (OSError, "os_error"),
    )
    return next((code for kind, code in codes if isinstance(exc, kind)), None)


def _run(args: argparse.Namespace) -> int:
    """Run a command: what a user can act on is one line (or a JSON error with ``--json``), never a
    traceback; an unexpected error says how to see one (``-v``)."""
    as_json = bool(getattr(args, "json", False))
    try:
        code: int = args.func(args)
        return code
    except CliError as exc:
        return _fail(str(exc), exc.code, as_json)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        known = _known_error(exc)
        if known == "os_error" and isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            return _fail(f"{exc.strerror or exc}{where}", known, as_json)
        if known is not None:
            return _fail(str(exc), known, as_json)
        if args.verbose:
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)", "internal_error",
                     as_json)


def admin_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging(args.verbose)
    return _run(args)


def main(argv: list[str] | None = None) -> int:
    """The ``ask`` console script."""
    parser = _ask_parser(argparse.ArgumentParser(prog="ask", description="Answer a question from the indexed articles, with citations."))
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    args = parser.parse_args(argv)
    _logging(args.verbose)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
