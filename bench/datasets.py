"""Evaluation sets written as corpus folders the service indexes like any other.

The raw sets are read from ``../shared/data`` (``ASK_BENCH_DATA`` overrides it) and never copied
into the project; the derived article files go under ``bench/.data/`` (git-ignored).

* SciFact (BEIR test split): each abstract becomes ``scifact/<doc id>.txt`` holding its title line,
  a blank line, then the abstract, so the document id of a citation is its file name.
* SQuAD v1.1 dev: each of the 48 articles becomes ``squad/<NN>_<title>.txt``: the title on the
  first line, then the article's paragraphs separated by blank lines. The title is paragraph 1, so
  SQuAD paragraph ``i`` (0-based) is cited as paragraph ``i + 2``; :func:`squad` checks this against
  the service's own paragraph rule for every paragraph it writes. ``squad(titled=False)`` writes
  the same articles without their title line (``squad-untitled/``), as plain files often come.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from service.config import PROJECT_ROOT
from service.corpus import paragraphs

DATA = Path(os.environ.get("ASK_BENCH_DATA", PROJECT_ROOT.parent / "shared" / "data"))
OUT = PROJECT_ROOT / "bench" / ".data"


@dataclass(frozen=True, slots=True)
class Query:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class SquadQuestion:
    id: str
    text: str
    source: str  # citation name of the article file, e.g. "squad/03_Nikola_Tesla.txt"
    paragraph: int  # paragraph number in that file (the title is paragraph 1)
    answers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SciFact:
    corpus: Path  # folder of article files
    queries: list[Query]
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


@dataclass(frozen=True, slots=True)
class Squad:
    corpus: Path
    questions: list[SquadQuestion]
    articles: list[str]  # citation names, in the data set's order


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def sync_folder(folder: Path, files: dict[str, str]) -> None:
    """Make ``folder`` hold exactly ``files`` (name -> text), rewriting only what differs."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        _write_if_changed(folder / name, text)
    for extra in folder.iterdir():
        if extra.name not in files and extra.is_file():
            extra.unlink()


def scifact(out: Path = OUT, data: Path = DATA) -> SciFact:
    root = data / "scifact"
    files: dict[str, str] = {}
    with (root / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            title = " ".join(d["title"].split())
            files[f"{d['_id']}.txt"] = f"{title}\n\n{d['text'].strip()}\n"
    corpus = out / "scifact"
    sync_folder(corpus, files)
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    queries: list[Query] = []
    with (root / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["_id"] in qrels:
                queries.append(Query(d["_id"], d["text"]))
    return SciFact(corpus, queries, qrels)


def _file_name(i: int, title: str) -> str:
    return f"{i:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', title)}.txt"


def squad(out: Path = OUT, data: Path = DATA, folder: str = "squad", articles: slice | None = None,
          titled: bool = True) -> Squad:
    """SQuAD dev as article files; ``articles`` selects a subset of the 48 (for calibration).

    ``titled=False`` writes the articles without their title line, as many real files come: the
    first paragraph is body text, SQuAD paragraph ``i`` is cited as ``i + 1``."""
    raw = json.loads((data / "squad-v1.1-dev" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    chosen = list(enumerate(raw))[articles or slice(None)]
    files: dict[str, str] = {}
    questions: list[SquadQuestion] = []
    names: list[str] = []
    for i, article in chosen:
        name = _file_name(i, article["title"])
        title = article["title"].replace("_", " ")
        contexts = [p["context"].strip() for p in article["paragraphs"]]
        head = [title] if titled else []
        text = "\n\n".join([*head, *contexts]) + "\n"
        # The numbering must follow the service's paragraph rule exactly: check every paragraph.
        paras = paragraphs(text)
        if len(paras) != len(contexts) + len(head) or any(
            text[p.start : p.end] != c for p, c in zip(paras[len(head):], contexts, strict=True)
        ):
            raise ValueError(f"SQuAD article {article['title']!r} does not split into its own paragraphs")
        files[name] = text
        source = f"{folder}/{name}"
        names.append(source)
        for j, p in enumerate(article["paragraphs"]):
            for qa in p["qas"]:
                answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                questions.append(SquadQuestion(qa["id"], qa["question"].strip(), source, j + 1 + len(head), answers))
    corpus = out / folder
    sync_folder(corpus, files)
    return Squad(corpus, questions, names)
