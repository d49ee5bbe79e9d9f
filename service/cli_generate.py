"""``ask --generate``: the answer written by the configured language model, printed as it streams,
then the result of the citation check and the sources it cites.

Locally it runs the engine's generation; with ``--server`` it reads ``/v1/ask``'s server-sent
events. A model that fails prints why on stderr and the extractive answer on stdout (exit 1).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

WIDTH = 100


def print_checked(result: dict[str, Any], streamed: bool) -> None:
    """After the streamed text: the check's counts, the checked text when it differs, the sources."""
    if not result.get("generated"):
        return
    check = result["check"]
    if not streamed:
        print(textwrap.fill(result["answer"], WIDTH))
    print()
    removed = check["markers_removed"]
    print(f"Citations checked: {check['supported']} of {check['cited']} cited sentences supported by their "
          f"passage" + (f"; {removed} unsupported marker{'s' if removed != 1 else ''} removed" if removed else ""))
    if streamed and removed:
        print("\nThe answer without them:")
        print(textwrap.fill(result["answer"], WIDTH))
    print()
    shown: set[int] = set()
    for sentence in result["sentences"]:
        for e in sentence["evidence"]:
            n = e["citation"]
            if not e["supported"] or n in shown:
                continue
            shown.add(n)
            c = result["citations"][n - 1]
            print(f"[{n}] {c['source']} ¶{c['paragraph']}")
            print(textwrap.fill(f"“{e['quote']}”", WIDTH, initial_indent="    ", subsequent_indent="    "))


def _local(settings: Any, question: str, k: int | None, flt: dict[str, Any] | None
           ) -> Iterator[tuple[str, Any]]:
    from .engine import Engine, GeneratorError, Token

    engine = Engine(settings)
    try:
        for event in engine.generation.stream(question, k, flt):
            if isinstance(event, Token):
                yield "token", event.text
            else:
                yield "answer", event.as_dict()
    except GeneratorError as exc:
        yield "error", {"error": {"code": exc.code, "message": exc.message},
                        "extractive": exc.extractive.as_dict() if exc.extractive else None}


def _remote(server: str, question: str, k: int | None, collection: str | None, flt: dict[str, Any] | None
            ) -> Iterator[tuple[str, Any]]:
    import urllib.error
    import urllib.request

    from .cli import CliError, _server_url, ask_request

    server = _server_url(server)
    req = ask_request(server, {"question": question, "generate": True, "stream": True, **({"k": k} if k else {}),
                               **({"filter": flt} if flt else {})}, collection)
    try:
        resp = urllib.request.urlopen(req, timeout=300)
    except urllib.error.HTTPError as exc:
        try:
            failure = json.loads(exc.read())
        except ValueError:
            failure = {}
        if exc.code in (502, 504) and "extractive" in failure:
            yield "error", failure
            return
        message = failure.get("error", {}).get("message", exc.reason)
        raise CliError(f"{server} answered {exc.code}: {message}", failure.get("error", {}).get("code", "error")) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot reach {server}: {getattr(exc, 'reason', exc)}", "unreachable") from None
    with resp:
        event = "message"
        for line in resp:
            text = line.decode("utf-8").rstrip("\r\n")
            if text.startswith("event:"):
                event = text[6:].strip()
            elif text.startswith("data:"):
                data = json.loads(text[5:].strip())
                yield event, data["text"] if event == "token" else data


def run(args: Any, settings: Any, question: str, server: str | None, flt: dict[str, Any] | None = None) -> int:
    """Stream the answer to stdout; 1 when the model failed (the extractive answer is printed instead)."""
    from .cli import _print_answer

    collection = args.collection or os.environ.get("ASK_COLLECTION")
    events = _remote(server, question, args.k, collection, flt) if server else _local(settings, question, args.k, flt)
    streamed = False
    for kind, data in events:
        if kind == "token":
            if not args.json:
                sys.stdout.write(data)
                sys.stdout.flush()
            streamed = True
        elif kind == "answer":
            if args.json:
                json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
                print()
            else:
                if streamed:
                    print()
                print_checked(data, streamed)
                if not data.get("generated"):
                    _print_answer(data)
        elif kind == "error":
            if streamed and not args.json:
                print()
            print(f"error: {data['error']['message']}", file=sys.stderr)
            extractive = data.get("extractive")
            if extractive is not None:
                if args.json:
                    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
                    print()
                else:
                    print("The extractive answer instead:\n", file=sys.stderr)
                    _print_answer(extractive)
            return 1
    return 0
