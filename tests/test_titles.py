"""Which first lines are titles (glued to every chunk's embedded and BM25 text) and which are body text."""

from __future__ import annotations

import pytest

from service.config import Settings
from service.indexer import Indexer
from service.store.base import ChunkRecord
from service.titles import MAX_TITLE_WORDS, embedding_title, looks_like_title

from .conftest import FakeEmbedder, write


@pytest.mark.parametrize("line", [
    "Super Bowl 50",
    "Chinese state security chief wraps up 10-day tour of Southeast Asia",
    "Induction of myelodysplasia by myeloid-derived suppressor cells.",  # a paper's title ends with a full stop
    "Is coffee good for you?",
    "High Km soluble 5'-nucleotidase from human placenta. Properties and allosteric regulation by IMP and ATP.",
    " ".join(["word"] * MAX_TITLE_WORDS),
])
def test_titles(line: str) -> None:
    assert looks_like_title(line)


@pytest.mark.parametrize("paragraph", [
    "Super Bowl 50 was an American football game. The Broncos won it. It was played in 2016.",  # body text
    "Advertisement\nBelt and Road Initiative\nChinaDiplomacy",  # several lines: page furniture, no title
    " ".join(["word"] * (MAX_TITLE_WORDS + 1)),
    "",
])
def test_not_titles(paragraph: str) -> None:
    assert not looks_like_title(paragraph)


def test_embedding_title_follows_the_first_paragraph() -> None:
    assert embedding_title("Apples\n\nApples are red. They grow.", "Apples") == "Apples"
    body = "Apples are red and grow on trees. Pears are green. Plums are purple.\n\nMore text."
    assert embedding_title(body, body.split("\n")[0]) == ""
    assert embedding_title(body, "Fruit", declared=True) == "Fruit", "a title the format declares is used as is"


def test_indexer_glues_only_real_titles(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "titled.txt", "Pears\n\nPears are green. They are sweet.\n\nApples are red.")
    write(settings.corpus, "untitled.txt", "Plums are purple. They are sour. Figs are not.\n\nCherries are red.")
    indexer = Indexer(settings, embedder=fake_embedder, progress=False)
    indexer.sync(settings.corpus)
    view = indexer.store.view()
    rows = view.chunk_rows(range(view.size))
    assert {r.source.rsplit("/", 1)[1] for r in rows} == {"titled.txt", "untitled.txt"}
    for r in rows:
        doc = view.document(r.source)
        assert doc is not None
        got = indexer.lexical_text(doc, ChunkRecord(0, r.paragraph, r.char_start, r.char_end, 0, r.text))
        if r.source.endswith("/titled.txt") and r.paragraph > 1:
            assert got == f"Pears\n{r.text}"
        else:
            assert got == r.text, "no title is glued to the chunks of a file that starts with body text"
