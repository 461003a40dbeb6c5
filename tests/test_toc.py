"""Tables of contents (dot leaders and page numbers) are dropped from PDF text and by ``curate clean``."""

from __future__ import annotations

import re

import pymupdf

from corpus.curate.clean import clean_text
from corpus.extract.pdf import extract_pdf
from corpus.toc import drop_toc_lines

DOT_RUN = re.compile(r"(?:\.[ \t]?){5,}|…{2,}")
PROSE = (
    "Gaussian processes are a flexible tool for modelling time series in astronomy. We review their use "
    "for stellar variability, exoplanet transits and gravitational waves, and the methods that make "
    "them fast enough for large data sets."
)
ENTRIES = [("1. Introduction", "3"), ("2. Gaussian processes", "5"), ("2.1 Kernels", "7"),
           ("2.2 Fast methods for large data sets", "12"), ("3. Applications", "15"), ("Appendix A", "xii")]


def test_toc_lines_are_dropped_and_prose_with_dots_is_kept():
    toc = "\n".join(
        ["Contents", "", "1. Introduction . . . . . . . . . . 3", "2. Methods and a very long title that",
         "wraps onto a second line ........................ 12", "2.1 Data ........ 13", "Appendix A …… xii"])
    prose = "The rate rises . . . . and falls. We take x_1, . . . , x_n and 1, 2, . . . 10 stars in 4 . . . 5 fields."
    flowed = "1 Introduction . . . . . . 3 2 Methods . . . . . . 5 2.1 Data . . . . . . . 7"
    text, n = drop_toc_lines(f"Abstract.\n\n{toc}\n\n{prose}\n\n{flowed}")
    assert (text, n) == (f"Abstract.\n\n{prose}", 7)
    assert drop_toc_lines(prose) == (prose, 0)


def test_pdf_table_of_contents_is_dropped_and_flagged():
    # a review's contents page set as LaTeX does: title, leader dots across the column, page number flush right
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 80), "Contents", fontsize=14, fontname="helv")
    for i, (title, number) in enumerate(ENTRIES):
        y = 110 + 16 * i
        page.insert_text((72, y), title, fontsize=10, fontname="helv")
        x = 72 + pymupdf.get_text_length(title, "helv", 10) + 8
        while x < 500:
            page.insert_text((x, y), ".", fontsize=10, fontname="helv")
            x += 7
        page.insert_text((510, y), number, fontsize=10, fontname="helv")
    page.insert_textbox(pymupdf.Rect(72, 260, 523, 400), PROSE, fontsize=10, fontname="helv")
    (result,) = extract_pdf(doc.tobytes(), name="review.pdf").pages
    assert not DOT_RUN.search(result.text), result.text
    assert "Introduction" not in result.text and "Contents" not in result.text
    assert "Gaussian processes are a flexible tool" in result.text
    assert "toc_removed:6" in result.flags


def test_clean_drops_toc_lines_of_any_extractor():
    ocr = f"## Contents\n\n1 Introduction ........ 3\n2 Kernels ........ 7\n\n{PROSE}"
    text, changes = clean_text(ocr, extractor="nougat")
    assert text == PROSE and "toc_removed:2" in changes
