"""Which first lines are titles (glued to every chunk's embedded and BM25 text) and which are body text."""

from __future__ import annotations

import pytest

from service.config import Settings
from service.indexer import Indexer
from service.store.base import ChunkRecord
from service.titles import MAX_TITLE_WORDS, document_terms, embedding_title, looks_like_title

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


TESLA = ("He was born in Smiljan. His father was a priest. Tesla's mother made tools.\n\n"
         "Tesla moved to New York and worked for Edison. He later sold his patents to Westinghouse.\n\n"
         "Westinghouse paid Tesla royalties. Tesla's motors ran on alternating current, as Westinghouse wanted.\n")


def test_document_terms_are_its_most_used_words_in_the_order_it_uses_them() -> None:
    # "Tesla" four times (possessives count with the word), "Westinghouse" three; "was" and "his" are
    # stop words, "He" too short; a word used fewer than three times says little.
    assert document_terms(TESLA) == ["Tesla", "Westinghouse"]
    assert document_terms(TESLA, n=1) == ["Tesla"]
    assert document_terms(TESLA, n=0) == []
    assert document_terms(TESLA, min_count=2) == ["Tesla", "Westinghouse"]
    assert document_terms("the the the of of of and and and") == []
    assert document_terms("NASA nasa Nasa NASA") == ["NASA"], "written as the document most often writes it"


def test_a_document_without_a_title_gets_its_own_words_and_a_titled_one_gets_them_after_the_title() -> None:
    assert embedding_title(TESLA, TESLA.split("\n")[0]) == "Tesla Westinghouse"
    titled = "Nikola Tesla\n\n" + TESLA
    assert embedding_title(titled, "Nikola Tesla") == "Nikola Tesla Westinghouse", "no word twice"
    assert embedding_title(TESLA, "Inventors", declared=True) == "Inventors Tesla Westinghouse"
    assert embedding_title(titled, "Nikola Tesla", terms=0) == "Nikola Tesla", "ASK_CONTEXT_TERMS=0: the title alone"
    assert embedding_title(TESLA, TESLA.split("\n")[0], terms=0) == ""
    # Under three paragraphs (an abstract under its title line): nothing is added.
    one = "Tesla\n\nTesla met Westinghouse. Westinghouse paid Tesla. Tesla and Westinghouse sold motors."
    assert embedding_title(one, "Tesla") == "Tesla"
    two = "Tesla met Westinghouse. Westinghouse paid Tesla. Tesla sold motors.\n\nWestinghouse built them."
    assert document_terms(two) == ["Tesla", "Westinghouse"]
    assert embedding_title(two, two.split("\n")[0]) == ""


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


def test_indexer_glues_a_documents_own_words_and_reembeds_when_the_setting_changes(
        settings: Settings, fake_embedder: FakeEmbedder) -> None:
    write(settings.corpus, "tesla.txt", TESLA)
    indexer = Indexer(settings, embedder=fake_embedder, progress=False)
    indexer.sync(settings.corpus)
    view = indexer.store.view()
    assert view.meta.chunking["context_terms"] == settings.context_terms == 4
    doc = view.document(view.chunk_rows([0])[0].source)
    assert doc is not None
    for r in view.chunk_rows(range(view.size)):
        got = indexer.lexical_text(doc, ChunkRecord(0, r.paragraph, r.char_start, r.char_end, 0, r.text))
        assert got == (r.text if r.paragraph == 1 else f"Tesla Westinghouse\n{r.text}")
    assert indexer.sync(settings.corpus).chunks_embedded == 0
    plain = settings.model_copy(update={"context_terms": 0})
    again = Indexer(plain, embedder=fake_embedder, progress=False)
    report = again.sync(settings.corpus)
    assert report.chunks_embedded == report.chunks_total > 0, "chunks glued another way are embedded again"
    assert again.store.view().meta.chunking["context_terms"] == 0
