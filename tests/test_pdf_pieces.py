"""PDF path: the blocks MuPDF splits a display equation, a table and a reference entry into, joined
(corpus/extract/pieces.py) while the prose around them stays as it was."""

from __future__ import annotations

import pymupdf

from corpus.extract.layout_measures import paragraphs, short_paragraph_share
from corpus.extract.pdf import extract_pdf

PROSE_1 = ("The energy radiated into each harmonic of an eccentric binary follows from the Fourier "
           "decomposition of the quadrupole moment, which we write out here in full for later use:")
PROSE_2 = ("where the sum runs over all harmonics and the weights are the Bessel functions of the first "
           "kind, evaluated at the eccentricity of the orbit for every harmonic we consider below.")


def _page_with(draw) -> bytes:
    """A one-page paper: a prose paragraph, what ``draw(page, y)`` sets from height ``y`` on, another paragraph."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_textbox(pymupdf.Rect(72, 100, 540, 160), PROSE_1, fontsize=10)
    y = draw(page, 180)
    page.insert_textbox(pymupdf.Rect(72, y + 14, 540, y + 80), PROSE_2, fontsize=10)
    return doc.tobytes()


def _equation(page: pymupdf.Page, y: float) -> float:
    """A display the way TeX sets one: left side, a stacked fraction, a sum with limits above and
    below, a bracket with a superscript, the equation number at the right margin, each piece apart."""
    page.insert_text((200, y + 22), "g(n, e) =", fontsize=10)
    page.insert_text((252, y + 14), "n^4 + 1", fontsize=7)  # numerator
    page.draw_line((250, y + 18), (285, y + 18))
    page.insert_text((260, y + 30), "32", fontsize=7)  # denominator
    page.insert_text((294, y + 8), "inf", fontsize=6)  # upper limit
    page.insert_text((292, y + 25), "SUM", fontsize=12)
    page.insert_text((293, y + 38), "k=1", fontsize=6)  # lower limit
    page.insert_text((322, y + 22), "[ J(ne) + 2eJ(ne) ]", fontsize=10)
    page.insert_text((424, y + 16), "2", fontsize=7)  # superscript
    page.insert_text((515, y + 24), "(20)", fontsize=10)
    return y + 42


def _table(page: pymupdf.Page, y: float) -> float:
    """A 3-column numeric table written column by column, so that MuPDF makes every cell its own block."""
    rows = [("0.10", "1.25", "37.5"), ("0.20", "2.50", "41.0"), ("0.40", "5.00", "44.5")]
    for c in range(3):
        for r, row in enumerate(rows):
            page.insert_text((150 + 140 * c, y + 12 + 16 * r), row[c], fontsize=10)
    return y + 12 + 16 * 2


def test_display_equation_is_one_paragraph_with_its_number_last_and_prose_intact():
    pars = paragraphs(extract_pdf(_page_with(_equation)).text)
    assert pars[0] == PROSE_1 and pars[-1] == PROSE_2
    assert len(pars) == 3, pars
    eq = pars[1]
    assert eq.endswith("(20)")
    for piece in ("g(n, e) =", "n^4 + 1", "32", "inf", "SUM", "k=1", "[ J(ne) + 2eJ(ne) ]"):
        assert piece in eq
    assert eq.index("n^4 + 1") < eq.index("32") < eq.index("[ J(ne)")  # numerator before denominator


def test_table_cells_become_one_paragraph_per_row_left_to_right():
    pars = paragraphs(extract_pdf(_page_with(_table)).text)
    assert pars == [PROSE_1, "0.10 1.25 37.5", "0.20 2.50 41.0", "0.40 5.00 44.5", PROSE_2]


def test_reference_continuation_stays_with_its_entry():
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    entries = [("Barack, L., & Cutler, C. 2004, PhRvD, 69, 082005,", "doi: 10.1103/PhysRevD.69.082005"),
               ("Bartolo, N., Caprini, C., Domcke, V., et al. 2016, JCAP,", "2016, 026, doi: 10.1088/1475-7516/2016/12/026"),
               ("Peters, P. C. 1964, PhRv, 136, 1224.", "Some Title")]
    y = 100.0
    for head, cont in entries:
        page.insert_text((72, y), head, fontsize=9)
        page.insert_text((81, y + 13.2), cont, fontsize=9)
        y += 26.8
    pars = paragraphs(extract_pdf(doc.tobytes()).text)
    assert pars[:2] == [" ".join(entries[0]), " ".join(entries[1])]
    assert pars[2:] == list(entries[2])  # an entry that ends a sentence is not continued


def test_legwork_display_equations_leave_few_fragments(fixtures):
    # 254 of 524 paragraphs were of <= 3 words before the pieces were joined (pymupdf4llm: 38 of 232);
    # what is left are 29 gutter line numbers of one page, two footnote URLs and three doi lines
    text = extract_pdf(fixtures / "pdf" / "legwork_wagg2022_aastex631_twocol.pdf").text
    share, short, counted = short_paragraph_share(text)
    assert share < 0.15, (short, counted)
