"""Test documents built in the test: a PDF (fpdf2) and a Word file (python-docx) with known pages and
paragraphs, and a saved news page with boilerplate around its article."""

from __future__ import annotations

import io

# Page by page, the paragraphs a reader sees (page 4 is a scanned image: no text layer). The last
# paragraph of page 2 runs on into page 3; "inter-/national" is hyphenated at a line end.
PDF_TITLE = "Annual Fisheries Report"
PDF_PAGES: list[list[str]] = [
    [
        "Annual Fisheries Report",
        "The committee met in March to review the catches of the northern fleet and recommended inter-\n"
        "national cooperation on the monitoring of spawning grounds.",
        "Observers were placed on every trawler longer than twenty metres during the spring season.",
    ],
    [
        "Catches of cod fell by a third compared with the previous year, the lowest figure since records began.",
        "To protect the remaining stock, quotas were cut and the number of licensed vessels in the fleet was",
    ],
    [
        "Herring stocks recovered strongly in the western channel after the closure of the nursery areas.",
    ],
    [],
    [
        "Appendix: salmon farms in the northern lochs doubled their output.",
    ],
]
PDF_CONTINUATION = "reduced by half over the decade."  # first line of page 3, ending page 2's last paragraph


def build_pdf() -> bytes:
    from fpdf import FPDF

    class Report(FPDF):
        def header(self) -> None:  # a running head: furniture, not indexed
            if self.page_no() != 4:
                self.set_font("Helvetica", style="I", size=8)
                self.set_xy(20, 8)
                self.cell(0, 4, f"Fisheries Review 2024 - section {self.page_no()}")

    pdf = Report(format="A4")
    pdf.set_title(PDF_TITLE)
    pdf.set_auto_page_break(False)
    for number, paras in enumerate(PDF_PAGES, start=1):
        pdf.add_page()
        if not paras:  # a scanned page: an image, no text
            pdf.set_fill_color(90, 90, 90)
            pdf.rect(20, 20, 170, 250, style="F")
            continue
        pdf.set_y(20)
        if number == 3:
            pdf.set_font("Helvetica", size=11)
            pdf.multi_cell(120, 6, PDF_CONTINUATION, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(8)
        for i, para in enumerate(paras):
            heading = number == 1 and i == 0
            pdf.set_font("Helvetica", style="B" if heading else "", size=18 if heading else 11)
            pdf.multi_cell(120, 10 if heading else 6, para, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(8)
        pdf.set_font("Helvetica", size=9)
        pdf.set_xy(100, 285)
        pdf.cell(10, 5, str(number))  # the page number: furniture, not indexed
    return bytes(pdf.output())


def pdf_paragraph_text(page: int, paragraph: int) -> str:
    """What a cited paragraph reads as, lines joined (hyphenated words whole again)."""
    text = PDF_PAGES[page - 1][paragraph - 1].replace("inter-\nnational", "international")
    if (page, paragraph) == (2, 2):
        text += " \f" + PDF_CONTINUATION
    return text


DOCX_TITLE = "Harbour Minutes"


def build_docx(page_break: bool = True) -> bytes:
    from docx import Document

    d = Document()
    d.core_properties.title = DOCX_TITLE
    d.add_heading(DOCX_TITLE, level=0)
    d.add_paragraph("The harbour master opened the meeting and welcomed the new pilots.")
    d.add_heading("Moorings", level=1)
    p = d.add_paragraph("Mooring fees rise by ")
    p.add_run("five percent").bold = True
    p.add_run(" from June.")
    table = d.add_table(rows=2, cols=2)
    for r, row in enumerate([("Berth", "Fee"), ("A1", "40 pounds")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_paragraph("")  # an empty paragraph: no paragraph of its own
    if page_break:
        d.add_page_break()
    d.add_paragraph("Dredging of the channel starts in May and lasts six weeks.")
    d.add_paragraph("The meeting closed at nine.")
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


# Page 1: title, opening, heading, fees, two table rows; page 2: dredging, closing.
DOCX_PARAGRAPHS = [
    (1, DOCX_TITLE), (1, "The harbour master opened the meeting and welcomed the new pilots."), (1, "Moorings"),
    (1, "Mooring fees rise by five percent from June."), (1, "Berth | Fee"), (1, "A1 | 40 pounds"),
    (2, "Dredging of the channel starts in May and lasts six weeks."), (2, "The meeting closed at nine."),
]

HTML_TITLE = "Harbour seals return to the estuary"
HTML_ARTICLE = [
    "Harbour seals have returned to the Tamar estuary for the first time in forty years, wildlife wardens "
    "said on Tuesday, after a decade of work to clean the river.",
    "The wardens counted eleven seals hauled out on the mudflats below the old quay at low tide, among them "
    "two pups born this spring, which suggests that the colony is breeding again.",
    "Cleaner water has brought back the flounder and grey mullet that the seals feed on, according to the "
    "river trust, which monitored the fish population for the last six years.",
    "Boat operators have been asked to keep at least fifty metres from the haul-out sites during the "
    "pupping season, which lasts until the end of August.",
]
BOILERPLATE = ["cookies", "Accept all", "Subscribe", "Related stories", "Gulls steal chips", "Home", "Sport",
               "All rights reserved", "Most read", "Advertisement"]


def build_html() -> bytes:
    paras = "".join(f"<p>{p}</p>" for p in HTML_ARTICLE)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{HTML_TITLE} | The Coast Gazette</title>
<meta property="og:title" content="{HTML_TITLE}">
<meta property="article:published_time" content="2024-05-14T08:30:00+00:00">
<script>window.dataLayer = [];</script><style>body {{ font-family: serif; }}</style>
</head><body>
<div id="cookie-banner" class="cookie-consent"><p>We use cookies to improve your experience on our site.
<button>Accept all cookies</button></p></div>
<header class="site-header"><nav class="main-nav"><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li>
<li><a href="/sport">Sport</a></li><li><a href="/weather">Weather</a></li></ul></nav>
<a class="subscribe" href="/subscribe">Subscribe for £1 a week</a></header>
<div class="ad-slot">Advertisement</div>
<main><article class="article">
<h1 class="headline">{HTML_TITLE}</h1>
<div class="byline">By Ann Lee, <time datetime="2024-05-14">14 May 2024</time></div>
<div class="article-body">{paras}</div>
</article>
<aside class="related"><h2>Related stories</h2><ul>
<li><a href="/a">Gulls steal chips from tourists on the promenade</a></li>
<li><a href="/b">Ferry timetable changes for the summer</a></li></ul></aside>
<section class="most-read"><h2>Most read</h2><ol><li><a href="/c">Storm warning for the weekend</a></li></ol></section>
</main>
<footer><p>© 2024 The Coast Gazette. All rights reserved.</p><a href="/privacy">Privacy</a></footer>
</body></html>""".encode()
