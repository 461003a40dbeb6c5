"""PDF page layout on synthetic papers: figure text, margin text and running heads out of the prose."""

from __future__ import annotations

import pymupdf
import pytest

from corpus.extract.pdf import PdfExtractConfig, extract_pdf

STAMP = "arXiv:2301.00001v1 [astro-ph.GA] 2 Jan 2023"
BEFORE = ("We measured the transit times of all planets in the sample with the same pipeline and found "
          "that the inner planet transits marginally faster than")
AFTER = ("expected from the ephemeris of the discovery paper, by about two minutes per epoch over the "
         "whole baseline of the observations, which we discuss below.")
CAPTION = "Figure 1. The transit timing residuals of the inner planet."


def _prose(n: int) -> str:
    """A paragraph that differs from page to page, as running text does."""
    return " ".join(
        f"On page {n} the light curves of visit {n}{k} were detrended with a low-order polynomial fitted "
        f"to the out-of-transit data, and residual {k} of page {n} was inspected for flares."
        for k in range(5)
    )


def _plot() -> pymupdf.Document:
    """A plot as a PDF figure: axes, a data curve, tick labels and an axis title."""
    fig = pymupdf.open()
    p = fig.new_page(width=300, height=200)
    p.draw_rect(pymupdf.Rect(40, 10, 290, 160), color=(0, 0, 0), width=0.8)
    p.draw_polyline([(40 + 10 * i, 100 + (30 if i % 3 else -20)) for i in range(25)], color=(0, 0, 1), width=1)
    for i, v in enumerate(("6", "4", "2", "0")):
        p.insert_text((28, 20 + 45 * i), v, fontsize=8)
    for i, v in enumerate(("0", "5", "10", "15", "20")):
        p.insert_text((38 + 60 * i, 172), v, fontsize=8)
    p.insert_text((120, 190), "relative flux [ppt]", fontsize=8)
    return fig


def _ruled_table(p: pymupdf.Page, x: float, y: float) -> None:
    """A table typeset on the page, with a frame and rules: its numbers are text, not figure labels."""
    p.draw_rect(pymupdf.Rect(x, y, x + 290, y + 70), width=0.5)
    for dy in (20, 45):
        p.draw_line((x, y + dy), (x + 290, y + dy), width=0.5)
    for r, row in enumerate(("Star Teff logg", "HD 1 5730 4.44", "HD 2 6100 4.30")):
        p.insert_text((x + 15, y + 15 + 25 * r), row, fontsize=9)


def _paper() -> bytes:
    """Three pages: page 1 carries arXiv's margin stamp, a sentence broken by a figure (plotted as a
    PDF figure, placed as a form XObject, as pdfLaTeX includes one) and its caption, a margin note
    beside that sentence and a ruled table below; pages 2 and 3 carry MNRAS-style alternating running heads
    (``2 Author et al.``, ``A Title of the Paper 3``), each shown once, and a footer shown twice."""
    doc = pymupdf.open()
    for n in (1, 2, 3):
        page = doc.new_page(width=612, height=792)
        if n == 1:
            page.insert_text((30, 600), STAMP.replace(" ", "  "), fontsize=18, rotate=90, color=(0.5, 0.5, 0.5))
            page.insert_textbox(pymupdf.Rect(72, 80, 540, 200), _prose(n), fontsize=10)
            page.insert_textbox(pymupdf.Rect(72, 210, 540, 260), BEFORE, fontsize=10)
            page.insert_textbox(pymupdf.Rect(552, 215, 600, 260), "a margin note", fontsize=7)
            page.show_pdf_page(pymupdf.Rect(150, 270, 450, 470), _plot(), 0)
            page.insert_textbox(pymupdf.Rect(72, 480, 540, 520), CAPTION, fontsize=9)
            page.insert_textbox(pymupdf.Rect(72, 530, 540, 580), AFTER, fontsize=10)
            _ruled_table(page, 155, 595)
            page.insert_textbox(pymupdf.Rect(72, 680, 540, 740), _prose(9)[:300], fontsize=10)
            continue
        if n == 2:
            page.insert_text((72, 50), "2 Author et al.", fontsize=9)
        else:
            page.insert_text((420, 50), "A Title of the Paper 3", fontsize=9)
        page.insert_text((72, 760), "MNRAS 000, 1–3 (2025)", fontsize=9)
        page.insert_textbox(pymupdf.Rect(72, 80, 540, 740), _prose(n) + "\n\n" + _prose(n + 10), fontsize=10)
    return doc.tobytes()


@pytest.fixture(scope="module")
def paper() -> bytes:
    return _paper()


def test_figure_text_is_left_out_and_its_caption_moved_after_the_running_text(paper):
    page = extract_pdf(paper).pages[0]
    paragraphs = page.text.split("\n\n")
    assert "relative flux" not in page.text
    assert not {"6", "4", "2", "0", "0 5 10 15 20"} & set(paragraphs)  # no tick label left
    assert BEFORE + "\n\n" + AFTER in page.text  # nothing between the two halves of the sentence
    assert CAPTION in paragraphs and page.text.index(CAPTION) > page.text.index(AFTER)
    assert "HD 1 5730 4.44" in page.text  # a ruled table is not a figure
    assert "figure_text_removed" in page.flags
    kept = extract_pdf(paper, PdfExtractConfig(figure_text="keep")).pages[0].text
    assert "relative flux [ppt]" in kept and kept.index(CAPTION) < kept.index(AFTER)


def test_arxiv_stamp_exposed_and_margin_note_moved_out_of_the_sentence(paper):
    result = extract_pdf(paper)
    assert result.arxiv_stamp == STAMP
    assert "arXiv" not in result.text
    page = result.pages[0]
    assert {"arxiv_stamp_removed", "margin_note_moved"} <= set(page.flags)
    assert page.text.rstrip().endswith("a margin note")
    assert extract_pdf(_text_pdf(["no stamp here " * 40])).arxiv_stamp is None


def test_running_heads_shown_once_and_footers_shown_twice_are_removed(paper):
    result = extract_pdf(paper)
    for furniture in ("Author et al.", "Title of the Paper", "MNRAS 000"):
        assert furniture not in result.text
    assert all("header_removed" in p.flags for p in result.pages[1:])
    assert "On page 2 the light curves" in result.pages[1].text  # the running text stays


def _text_pdf(pages: list[str]) -> bytes:
    doc = pymupdf.open()
    for text in pages:
        doc.new_page(width=612, height=792).insert_textbox(pymupdf.Rect(72, 72, 540, 720), text, fontsize=10)
    return doc.tobytes()


def test_footer_set_in_one_block_with_the_last_lines_is_removed():
    # ARA&A-style footers alternate between even ("2 Aigrain & Foreman-Mackey") and odd pages
    # ("www.annualreviews.org • GPR for Astronomy 3") and sit close enough under the text that MuPDF
    # reads them as the last line of the page's last block
    doc = pymupdf.open()
    for n in range(1, 7):
        page = doc.new_page(width=612, height=792)
        footer = f"{n} Aigrain & Foreman-Mackey" if n % 2 == 0 else f"www.annualreviews.org • GPR for Astronomy {n}"
        assert page.insert_textbox(pymupdf.Rect(72, 620, 540, 745), _prose(n)[:600] + "\n" + footer, fontsize=10) >= 0
    pdf = doc.tobytes()
    kept = extract_pdf(pdf, PdfExtractConfig(remove_headers=False))
    assert all(len(p.text.split("\n\n")) == 1 for p in kept.pages)  # one block: footer and text together
    result = extract_pdf(pdf)
    assert "Aigrain" not in result.text and "annualreviews" not in result.text
    assert all("header_removed" in p.flags for p in result.pages)
    assert all(p.text.startswith(f"On page {p.page} the light curves") for p in result.pages)


def test_repeated_lines_counts_text_lines_not_markup():
    from corpus.extract.layout_measures import repeated_lines

    text = "\n".join(["Schwarz et al. 12", "Schwarz et al. 13", "Schwarz et al. 14",  # a running head, digits masked
                      "|Data|Data|Data|", "|Data|Data|Data|", "|Data|Data|Data|",  # a table's rows with words
                      "|---|---|---|"] * 1 + ["|---|---|---|"] * 3 + ["<!-- Start of picture text -->"] * 3
                     + ["123 456 789 000"] * 3 + ["once only line"])
    assert dict(repeated_lines(text)) == {"Schwarz et al. #": 3, "|Data|Data|Data|": 3}
