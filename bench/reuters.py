"""A news benchmark nobody tuned on: 70 Reuters-21578 articles, with headlines, and questions written
for them by hand (``bench/data/reuters-questions.jsonl``).

No question-answering set of news installs from the registries, but Debian ships real Reuters-21578
articles as test texts of the R package ``tm``: ``texts/acq`` (50 articles on acquisitions) and
``texts/crude`` (20 on crude oil) in ``r-cran-tm``. At bench time (never at service run time)
:func:`fetch` downloads that package with ``apt-get download`` into ``bench/.cache/reuters/`` and
unpacks it with ``dpkg -x`` (nothing is installed); :func:`reuters` writes each article as
``reuters/<topic>-<NNNNN>.txt``: the headline as paragraph 1, then the body's paragraphs, the
dateline ("COMMACK, N.Y., Feb 26 -") leading the first, as the wire printed it.

The questions were written from the article text alone, before any retrieval was run on them; each
names its gold paragraph(s) and an answer span copied exactly from the text. ``"source": null``
marks a question the articles do not cover (the engine should abstain).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from service.config import PROJECT_ROOT
from service.corpus import paragraphs

from .datasets import OUT, sync_folder

PACKAGE = "r-cran-tm"
CACHE = PROJECT_ROOT / "bench" / ".cache" / "reuters"
QUESTIONS = PROJECT_ROOT / "bench" / "data" / "reuters-questions.jsonl"
TOPICS = ("acq", "crude")
_TEXTS = Path("usr/lib/R/site-library/tm/texts")
# In the wire format a paragraph starts on a new line indented by spaces; wrapped lines are not indented.
_PARAGRAPH_START = re.compile(r"\n[ \t]+(?=\S)")
_SIGN_OFF = re.compile(r"\s*\bReuter\s*$")


@dataclass(frozen=True, slots=True)
class Article:
    headline: str
    paragraphs: tuple[str, ...]  # body paragraphs, the dateline leading the first

    def text(self) -> str:
        return "\n\n".join([self.headline, *self.paragraphs]) + "\n"


@dataclass(frozen=True, slots=True)
class NewsQuestion:
    id: str
    text: str
    gold: tuple[tuple[str, int], ...]  # (citation name, paragraph number); empty: not covered
    answers: tuple[str, ...]
    kind: str  # who / which / when / how much / why ... (as the annotator labelled it)


@dataclass(frozen=True, slots=True)
class Reuters:
    corpus: Path
    questions: list[NewsQuestion]
    articles: list[str]
    package: str  # the .deb the articles came from (name_version_arch)


def _clean(s: str) -> str:
    return " ".join(s.split())


def read_article(xml: str) -> Article:
    """One Reuters-21578 ``<REUTERS>`` record (the ``tm`` package's XML) as headline + paragraphs."""
    root = ET.fromstring(xml)
    text = root.find("TEXT")
    if text is None:
        raise ValueError("no <TEXT> element")
    headline = _clean(text.findtext("TITLE") or "")
    dateline = _clean(text.findtext("DATELINE") or "")
    body = _SIGN_OFF.sub("", text.findtext("BODY") or "")
    paras = [_clean(p) for p in _PARAGRAPH_START.split(body)]
    paras = [p for p in paras if p]
    if not headline or not paras:
        raise ValueError("an article needs a headline and a body")
    if dateline:
        paras[0] = f"{dateline} {paras[0]}"
    return Article(headline, tuple(paras))


def fetch(cache: Path = CACHE) -> tuple[Path, str]:
    """The unpacked ``texts`` folder of ``r-cran-tm`` (downloaded once, then reused) and the .deb's name."""
    texts = cache / "x" / _TEXTS
    debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    if not (debs and texts.is_dir()):
        cache.mkdir(parents=True, exist_ok=True)
        if not debs:
            # apt-get download writes into the working directory; no root, nothing installed.
            subprocess.run(["apt-get", "download", PACKAGE], cwd=cache, check=True, capture_output=True)
            debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
        shutil.rmtree(cache / "x", ignore_errors=True)
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(cache / "x")], check=True)
    return texts, debs[-1].stem


def read_questions(path: Path = QUESTIONS, folder: str = "reuters") -> list[NewsQuestion]:
    out: list[NewsQuestion] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        gold = tuple((f"{folder}/{g['file']}", int(g["paragraph"])) for g in d.get("gold", []))
        out.append(NewsQuestion(d["id"], d["question"], gold, tuple(d.get("answers", [])), d.get("kind", "")))
    return out


def articles_from(texts: Path) -> dict[str, Article]:
    """File name (``acq-00001.txt``) -> article, for every XML file of the topics."""
    out: dict[str, Article] = {}
    for topic in TOPICS:
        for path in sorted((texts / topic).glob("*.xml")):
            out[f"{topic}-{path.stem.removeprefix('reut-')}.txt"] = read_article(path.read_text(encoding="utf-8"))
    return out


def check_questions(articles: dict[str, Article], questions: list[NewsQuestion], folder: str = "reuters") -> None:
    """Every gold paragraph exists and holds one of the question's answer spans, exactly as written."""
    for q in questions:
        for source, number in q.gold:
            art = articles.get(source.removeprefix(f"{folder}/"))
            if art is None:
                raise ValueError(f"{q.id}: no article {source}")
            text = art.text()
            paras = paragraphs(text)
            if not 1 <= number <= len(paras):
                raise ValueError(f"{q.id}: {source} has no paragraph {number}")
            p = text[paras[number - 1].start : paras[number - 1].end]
            if not any(a in p for a in q.answers):
                raise ValueError(f"{q.id}: no answer span in {source} paragraph {number}: {p[:80]!r}")


def reuters(out: Path = OUT, cache: Path = CACHE, questions: Path = QUESTIONS, folder: str = "reuters") -> Reuters:
    texts, package = fetch(cache)
    articles = articles_from(texts)
    files: dict[str, str] = {}
    for name, art in articles.items():
        text = art.text()
        paras = paragraphs(text)  # paragraph n of the file is headline (1), then body paragraph n - 1
        if len(paras) != len(art.paragraphs) + 1:
            raise ValueError(f"{name} does not split into its own paragraphs")
        files[name] = text
    qs = read_questions(questions, folder)
    check_questions(articles, qs, folder)
    corpus = out / folder
    sync_folder(corpus, files)
    return Reuters(corpus, qs, [f"{folder}/{n}" for n in articles], package)
