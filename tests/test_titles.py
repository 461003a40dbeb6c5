"""Titles of papers known only by their PDF: the metadata title when plausible, else the largest text on page 1."""

from __future__ import annotations

import pymupdf
import pytest

from corpus.ingest.stage import pdf_title
from corpus.ingest.titles import plausible_title

# the papers' titles (shared/fixtures/SOURCES.md; the AASTeX sample and the MNRAS guide as typeset)
FIXTURE_TITLES = {
    "legwork_wagg2022_aastex631_twocol.pdf": "LEGWORK: A python package for computing the evolution and detectability "
                                             "of stellar-origin gravitational-wave sources with space-based detectors",
    "hwobows_vaughan2023_mnras.pdf": "Chasing rainbows and ocean glints: Inner working angle constraints for the "
                                     "Habitable Worlds Observatory",
    "aastex63_sample_article.pdf": "Template AASTEXArticle with Examples: v6.3",
    "corrfunc_sinha2016_elsarticle.pdf": "Cache is King: Presenting Corrfunc– a Suite of Fast Correlation Function Codes",
    "mnras_latex_guide_v3.pdf": "Monthly Notices of the Royal Astronomical Society: LATEX guide for authors",
    "hubble1929_pnas_scanned.pdf": "A relation between distance and radial velocity among extra-galactic nebulae",
}


def test_fixture_titles(fixtures):
    # the first line of text was "Draft version August 4, 2022", "MNRAS 000, 000–000 (0000)", ...
    for name, title in FIXTURE_TITLES.items():
        got, how = pdf_title(str(fixtures / "pdf" / name))
        assert got == title, name
        assert how == ("title_from_pdf_metadata" if name.startswith("hubble") else "title_from_largest_text")


def _first_page(tmp_path, metadata_title: str | None, heads: list[str]) -> str:
    """An MNRAS-like first page: running heads and an arXiv stamp, a two-line title, authors, body text."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for i, head in enumerate(heads):
        page.insert_text((50, 40 + 12 * i), head, fontsize=8, fontname="helv")
    page.insert_text((20, 700), "arXiv:2401.01234v2 [astro-ph.SR] 5 Jan 2024", fontsize=20, fontname="tiro", rotate=90)
    page.insert_text((50, 110), "Rotation periods of solar twins from", fontsize=17, fontname="tibo")
    page.insert_text((50, 132), "ten years of photometry", fontsize=17, fontname="tibo")
    page.insert_text((50, 160), "A. Author, B. Author and C. Author", fontsize=11, fontname="tiro")
    page.insert_textbox(pymupdf.Rect(50, 190, 545, 800), "We measure the rotation periods of solar twins. " * 60,
                        fontsize=10, fontname="tiro")
    if metadata_title is not None:
        doc.set_metadata({"title": metadata_title})
    path = tmp_path / "paper.pdf"
    doc.save(path)
    return str(path)


@pytest.mark.parametrize("meta", [None, "", "main.pdf", "Microsoft Word - paper.docx", "untitled", "0.4.1", "ms"])
def test_implausible_metadata_title_falls_back_to_the_largest_text(tmp_path, meta):
    heads = ["Draft version May 23, 2019", "MNRAS 000, 1–13 (2020) Preprint 5 January 2024"]
    path = _first_page(tmp_path, meta, heads)
    assert pdf_title(path) == ("Rotation periods of solar twins from ten years of photometry", "title_from_largest_text")


def test_plausible_title(tmp_path):
    assert plausible_title("LEGWORK: A python package for gravitational waves")
    for bad in (None, "", "  ", "main.pdf", "C:\\papers\\draft.docx", "Microsoft Word - x", "Untitled", "0.4.1", "x"):
        assert not plausible_title(bad), bad
    path = _first_page(tmp_path, "Rotation periods  of solar twins", ["Draft version May 23, 2019"])
    assert pdf_title(path) == ("Rotation periods of solar twins", "title_from_pdf_metadata")
