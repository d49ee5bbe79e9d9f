"""Format readers (PDF, Word, HTML, Markdown) and page-aware citations, on documents built in the test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from service import store
from service.config import Settings
from service.corpus import CorpusError, document_from_bytes, paragraphs
from service.engine import Engine
from service.formats import extract
from service.indexer import Indexer
from service.pages import citation_id, label, page_map, parse_citation_id

from .conftest import FakeEmbedder, write
from .old_formats import as_older_format
from .paged_docs import (
    BOILERPLATE,
    DOCX_PARAGRAPHS,
    DOCX_TITLE,
    HTML_ARTICLE,
    HTML_TITLE,
    PDF_PAGES,
    PDF_TITLE,
    build_docx,
    build_html,
    build_pdf,
    pdf_paragraph_text,
)


def placed(text: str) -> list[tuple[int, int, str]]:
    """(page, paragraph on the page, text) of every paragraph."""
    pages = page_map(text)
    return [(*pages.place(p.number), text[p.start : p.end]) for p in paragraphs(text)]


# -- PDF --------------------------------------------------------------------------------------------------
def test_pdf_pages_and_paragraphs_rebuilt_from_the_layout() -> None:
    got = extract(build_pdf(), ".pdf")
    assert got.encoding == "pdf" and got.title == PDF_TITLE
    assert got.pages == 5 and got.empty_pages == (4,)
    expected = [(page, i, pdf_paragraph_text(page, i)) for page, paras in enumerate(PDF_PAGES, start=1)
                for i in range(1, len(paras) + 1)]
    assert placed(got.text) == expected
    assert page_map(got.text).empty_pages == (4,)
    for number in range(1, 6):  # page numbers are furniture
        assert f"\n{number}\n" not in got.text


def test_pdf_paragraph_running_across_a_page_break_is_cited_where_it_starts() -> None:
    text = extract(build_pdf(), ".pdf").text
    para = next(p for p in paragraphs(text) if "fleet was" in text[p.start : p.end])
    assert text[p.start : p.end].endswith("reduced by half over the decade.") if (p := para) else False
    assert page_map(text).place(para.number) == (2, 2)
    assert text.count("\f", 0, para.end) == 2  # its end is on page 3


@pytest.mark.parametrize("damage", ["truncated", "garbage", "encrypted", "scanned"])
def test_bad_pdfs_are_refused_with_a_reason(damage: str) -> None:
    from fpdf import FPDF

    if damage == "truncated":
        data = build_pdf()[:400]
    elif damage == "garbage":
        data = b"%PDF-1.7\n" + bytes(range(256)) * 40
    elif damage == "encrypted":
        pdf = FPDF()
        pdf.set_encryption(owner_password="owner", user_password="secret")
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.cell(0, 10, "Top secret minutes")
        data = bytes(pdf.output())
    else:
        pdf = FPDF()
        pdf.add_page()
        pdf.rect(10, 10, 100, 100, style="F")
        data = bytes(pdf.output())
    with pytest.raises(CorpusError) as err:
        document_from_bytes(data, "c/bad.pdf", ".pdf")
    reason = str(err.value)
    assert {"truncated": "PDF", "garbage": "PDF", "encrypted": "password", "scanned": "no text layer"}[damage] in reason


# -- Word ------------------------------------------------------------------------------------------------
def test_docx_paragraphs_headings_tables_and_page_breaks() -> None:
    got = extract(build_docx(), ".docx")
    assert got.title == DOCX_TITLE and got.pages == 2
    pages = page_map(got.text)
    numbered: list[tuple[int, int, str]] = []
    for page, text in DOCX_PARAGRAPHS:
        numbered.append((page, sum(1 for n in numbered if n[0] == page) + 1, text))
    assert [(p, n, t) for p, n, t in placed(got.text)] == numbered
    assert pages.pages == 2 and "**" not in got.text


def test_docx_without_page_breaks_is_cited_by_paragraph() -> None:
    got = extract(build_docx(page_break=False), ".docx")
    assert got.pages is None and "\f" not in got.text
    assert [text for _page, text in DOCX_PARAGRAPHS] == [got.text[p.start : p.end] for p in paragraphs(got.text)]


def test_damaged_docx_is_refused() -> None:
    with pytest.raises(CorpusError, match="Word file"):
        document_from_bytes(build_docx()[:500], "c/bad.docx", ".docx")
    with pytest.raises(CorpusError, match="Word file"):
        document_from_bytes(b"PK\x03\x04 not really a zip", "c/bad.docx", ".docx")


# -- HTML and Markdown -------------------------------------------------------------------------------------
def test_html_main_text_without_boilerplate_title_once_and_date() -> None:
    got = extract(build_html(), ".html")
    assert got.title == HTML_TITLE and got.metadata.get("date") == "2024-05-14"
    texts = [got.text[p.start : p.end] for p in paragraphs(got.text)]
    assert texts[0] == HTML_TITLE and texts.count(HTML_TITLE) == 1  # <title> repeats <h1>: one paragraph
    for para in HTML_ARTICLE:
        assert para in texts
    for noise in BOILERPLATE:
        assert noise not in got.text, noise
    assert "<" not in got.text and "window.dataLayer" not in got.text


def test_markdown_markup_is_not_in_the_text_or_title() -> None:
    md = ("# The *Harbour* Report\n\nSeals were **counted** on the `quay` at [low tide](http://x.org/tide),\n"
          "twice a day.\n\n## Boats\n\n- keep *fifty* metres away\n- slow down\n\n![a seal](seal.png)\n\n"
          "| Site | Seals |\n|---|---|\n| Quay | 11 |\n")
    doc = document_from_bytes(md.encode(), "c/report.md", ".md")
    assert doc.title == doc.declared_title == "The Harbour Report"
    assert [doc.text[p.start : p.end] for p in paragraphs(doc.text)] == [
        "The Harbour Report", "Seals were counted on the quay at low tide, twice a day.", "Boats",
        "keep fifty metres away\nslow down", "a seal", "Site | Seals\nQuay | 11"]
    plain = document_from_bytes(b"no heading here\n\njust text", "c/a.md", ".md")
    assert plain.declared_title is None and plain.title == "no heading here"


def test_citation_labels_and_ids() -> None:
    assert label("c/report.pdf", 3, 2) == "c/report.pdf p. 3 ¶2" and label("c/a.txt", None, 4) == "c/a.txt ¶4"
    for page in (None, 7):
        cid = citation_id("c/x#1.pdf", 2, page)
        assert parse_citation_id(cid) == ("c/x#1.pdf", page, 2)
    assert parse_citation_id("c/a.txt") is None


# -- the indexed folder ------------------------------------------------------------------------------------
@pytest.fixture
def mixed(settings: Settings, fake_embedder: FakeEmbedder) -> Engine:
    corpus = settings.corpus
    write(corpus, "notes.txt", "Notes\n\nThe lighthouse keeper logs the weather at dawn.\n")
    write(corpus, "guide.md", "# Sailing guide\n\nAlways carry a **tide table** and check the forecast.\n")
    write(corpus, "news/seals.html", build_html())
    write(corpus, "reports/2024/fisheries.pdf", build_pdf())
    write(corpus, "minutes/harbour.docx", build_docx())
    report = Indexer(settings, embedder=fake_embedder, progress=False).sync(corpus)
    assert not report.skipped and report.documents_total == 5
    assert report.empty_pages == {"corpus/reports/2024/fisheries.pdf": [4]}
    return Engine(settings, embedder=fake_embedder)


QUERIES = {  # query -> (source, page, paragraph on the page)
    "herring stocks recovered western channel nursery": ("corpus/reports/2024/fisheries.pdf", 3, 1),
    "quotas cut licensed vessels fleet reduced half decade": ("corpus/reports/2024/fisheries.pdf", 2, 2),
    "international cooperation monitoring spawning grounds": ("corpus/reports/2024/fisheries.pdf", 1, 2),
    "salmon farms northern lochs doubled output": ("corpus/reports/2024/fisheries.pdf", 5, 1),
    "dredging channel starts May six weeks": ("corpus/minutes/harbour.docx", 2, 1),
    "mooring fees rise five percent June": ("corpus/minutes/harbour.docx", 1, 4),
    "wardens counted eleven seals mudflats quay": ("corpus/news/seals.html", None, 3),
    "lighthouse keeper logs weather dawn": ("corpus/notes.txt", None, 2),
    "carry tide table check forecast": ("corpus/guide.md", None, 2),
}


def check_citation(engine: Engine, c: object) -> None:
    """A citation's offsets slice the served text, and its page and paragraph are the served ones."""
    source, page, paragraph = c.source, c.page, c.paragraph  # type: ignore[attr-defined]
    doc = engine.document(source)
    assert doc.text[c.char_start : c.char_end] == c.text  # type: ignore[attr-defined]
    assert doc.text[c.quote_start : c.quote_end] == c.quote  # type: ignore[attr-defined]
    holder = next(p for p in doc.paragraphs if p.char_start <= c.char_start and c.char_end <= p.char_end)  # type: ignore[attr-defined]
    assert (holder.page, holder.paragraph) == (page, paragraph)
    assert (page is not None) == source.endswith((".pdf", ".docx"))


@pytest.mark.parametrize("query", sorted(QUERIES))
def test_every_citation_names_page_paragraph_and_offsets(mixed: Engine, query: str) -> None:
    hits = mixed.search_cited(query, 5)
    for c in hits:
        check_citation(mixed, c)
    top = hits[0]
    assert (top.source, top.page, top.paragraph) == QUERIES[query]
    answer = mixed.ask(query, 3)
    for c in answer.citations:
        check_citation(mixed, c)
    context = mixed.context(query, 400)
    first = context.citations[0]
    assert context.text.startswith(f"[1] {label(first.source, first.page, first.paragraph)}\n")


def test_documents_report_pages_and_markup_free_text(mixed: Engine) -> None:
    pdf = mixed.document("corpus/reports/2024/fisheries.pdf")
    assert pdf.pages == 5 and pdf.empty_pages == (4,) and pdf.title == PDF_TITLE
    assert [(p.page, p.paragraph) for p in pdf.paragraphs][:4] == [(1, 1), (1, 2), (1, 3), (2, 1)]
    as_json = pdf.as_dict()
    assert as_json["pages"] == 5 and as_json["empty_pages"] == [4] and as_json["paragraphs"][3]["page"] == 2
    md = mixed.document("corpus/guide.md")
    assert md.title == "Sailing guide" and "**" not in md.text and "#" not in md.text and md.pages is None
    html = mixed.document("corpus/news/seals.html")
    assert html.title == HTML_TITLE and not any(noise in html.text for noise in BOILERPLATE)


def test_old_indexes_are_read_again_by_the_new_readers(settings: Settings, fake_embedder: FakeEmbedder) -> None:
    """An index made before the format readers holds Markdown as raw text: those files are read and
    embedded again; plain-text files, whose reading did not change, keep their chunks and vectors."""
    import json

    write(settings.corpus, "guide.md", "# Sailing guide\n\nAlways carry a **tide table**.\n")
    write(settings.corpus, "notes.txt", "Notes\n\nThe keeper logs the weather at dawn.\n")
    name = Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus).snapshot
    path = settings.index / str(name) / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["chunking"]["readers"]  # as written before this change
    path.write_text(json.dumps(manifest))
    engine = Engine(settings, embedder=fake_embedder)
    # An API write reads one file only: the Markdown file stays due for a new reading.
    engine.put_document("corpus/more.txt", b"More\n\nGulls nest on the roof.\n")
    report = Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus)
    assert report.changed == ["corpus/guide.md"] and report.unchanged == 2
    assert "**" not in engine.document("corpus/guide.md").text
    again = Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus)
    assert again.unchanged == 3 and again.snapshot is None


def test_an_index_without_publication_dates_reads_them_as_unknown_until_html_is_read_again(
        settings: Settings, fake_embedder: FakeEmbedder) -> None:
    """A format-3 snapshot (before dates were kept, HTML reader 1) is read with dates unknown; the next
    run reads its HTML files again (only those) and records their dates."""
    import json

    write(settings.corpus, "news/seals.html", build_html())
    write(settings.corpus, "notes.txt", "Notes\n\nThe keeper logs the weather at dawn.\n")
    name = Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus).snapshot
    engine = Engine(settings, embedder=fake_embedder)
    assert engine.document("corpus/news/seals.html").published == "2024-05-14"
    assert name
    as_older_format(settings.index, 3, "published", Indexer(settings, embedder=fake_embedder, progress=False).lexical_text,
                    readers={".html": 1, ".htm": 1})
    old = Engine(settings, embedder=fake_embedder)
    assert [d.published for d in old.documents()] == [None, None]
    assert old.document("corpus/news/seals.html").as_dict()["published"] is None
    assert old.search_cited("wardens counted seals", 1)[0].source == "corpus/news/seals.html"
    report = Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus)
    assert report.changed == ["corpus/news/seals.html"] and report.unchanged == 1
    assert json.loads((settings.index / str(report.snapshot) / "manifest.json").read_text())["format_version"] == store.FORMAT_VERSION
    assert {d.source: d.published for d in Engine(settings, embedder=fake_embedder).documents()} == {
        "corpus/news/seals.html": "2024-05-14", "corpus/notes.txt": None}


def test_unchanged_files_are_not_read_again(mixed: Engine, settings: Settings, fake_embedder: FakeEmbedder,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run hashes each file's bytes and extracts only those that changed (a PDF costs ms a page)."""
    import service.corpus

    read: list[str] = []

    def counting(data: bytes, suffix: str):  # type: ignore[no-untyped-def]
        read.append(suffix)
        return extract(data, suffix)

    monkeypatch.setattr(service.corpus, "extract", counting)
    report = Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus)
    assert read == [] and report.unchanged == 5 and report.snapshot is None
    write(settings.corpus, "reports/2024/fisheries.pdf", build_pdf() + b"\n% a trailing comment\n")
    report = Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus)
    assert read == [".pdf"] and report.changed == ["corpus/reports/2024/fisheries.pdf"]
    assert mixed.search_cited("herring stocks recovered western channel", 1)[0].page == 3
    rebuilt = Indexer(settings, embedder=fake_embedder, progress=False).sync(settings.corpus, rebuild=True)
    assert len(read) == 6 and rebuilt.documents_total == 5


# -- properties ------------------------------------------------------------------------------------------
_PDF = build_pdf()
_DOCX = build_docx()


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from([".pdf", ".docx"]), edits=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.floats(0.05, 1)))
def test_damaged_binary_files_are_read_or_refused_with_a_reason(which: str, edits: list[tuple[float, bytes]],
                                                                 cut: float | None) -> None:
    """Bytes overwritten or cut anywhere: the file is read, or refused with CorpusError; nothing else."""
    data = bytearray(_PDF if which == ".pdf" else _DOCX)
    for where, junk in edits:
        at = int(where * len(data))
        data[at : at + len(junk)] = junk
    if cut is not None:
        data = data[: max(1, int(cut * len(data)))]
    try:
        doc = document_from_bytes(bytes(data), f"c/x{which}", which)
    except CorpusError as exc:
        assert str(exc)
        return
    for p in paragraphs(doc.text):  # whatever was read is cited consistently
        assert doc.text[p.start : p.end].strip() == doc.text[p.start : p.end]
    if doc.pages is not None:
        assert page_map(doc.text).pages == doc.text.count("\f") + 1


_SEGMENT = st.one_of(st.sampled_from(["<page>", "<rendered>"]),
                     st.from_regex(r"[A-Za-z][a-z]{0,6}( [a-z]{1,6}){0,3}", fullmatch=True), st.just("  "))


@hsettings(max_examples=200, deadline=None)
@given(blocks=st.lists(st.lists(_SEGMENT, max_size=5), max_size=8))
def test_word_page_breaks_place_each_paragraph_on_the_page_where_it_starts(blocks: list[list[str]]) -> None:
    """A model of Word's breaks: a paragraph starts on 1 + the breaks before its first words, where a
    rendered break right after an explicit one (no words between) is the same break."""
    from service.formats.docx import _PAGE, _RENDERED, _assemble

    marks = {"<page>": _PAGE, "<rendered>": _RENDERED}
    page, explicit_open, expected = 1, False, []
    for block in blocks:
        started = False
        for seg in block:
            if seg in marks:
                if seg == "<rendered>" and explicit_open:
                    continue
                explicit_open = seg == "<page>"
                page += 1
            elif seg.strip():
                explicit_open = False
                if not started:
                    expected.append((page, seg))
                    started = True
    text = _assemble(["".join(marks.get(seg, seg) for seg in block) for block in blocks])
    paras = paragraphs(text)
    assert len(paras) == len(expected)
    pages = page_map(text)
    for para, (start_page, first_words) in zip(paras, expected, strict=True):
        assert pages.place(para.number)[0] == start_page
        assert text[para.start : para.end].startswith(first_words)


def test_pdf_paragraphs_by_first_line_indent_without_gaps() -> None:
    """Books and papers mark paragraphs by indenting their first line, with no gap; a list item's
    hanging indent does not start a paragraph."""
    from fpdf import FPDF

    lines = [  # (indent in mm, text): three paragraphs, then a list item wrapped onto two lines
        (8, "The survey began in the spring of the year and covered"),
        (0, "every harbour on the northern coast."),
        (8, "Each vessel was inspected twice, once before the season"),
        (0, "opened and once after it closed."),
        (0, "The results were published in the autumn."),
        (8, "Three findings stand out."),
        (0, "- Nets were replaced more often than the rules"),
        (4, "require, at a cost to the owners."),
    ]
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.set_y(20)
    for indent, text in lines:
        pdf.set_x(20 + indent)
        pdf.cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    text = extract(bytes(pdf.output()), ".pdf").text
    assert [text[p.start : p.end] for p in paragraphs(text)] == [
        "The survey began in the spring of the year and covered every harbour on the northern coast.",
        "Each vessel was inspected twice, once before the season opened and once after it closed. "
        "The results were published in the autumn.",
        "Three findings stand out. - Nets were replaced more often than the rules require, at a cost to the owners.",
    ]
