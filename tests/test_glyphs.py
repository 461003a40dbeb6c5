"""Characters no English paper holds: repaired (math italics written as Hangul), routed to OCR (many),
or removed and flagged (a few, or when the page is not routed); in the PDF path and in ``curate clean``."""

from __future__ import annotations

import re

import pymupdf

from corpus.curate.clean import clean_text
from corpus.extract.document import ExtractOptions, extract_paper
from corpus.extract.pdf import extract_pdf
from corpus.extract.routing import route_pages
from corpus.extract.text_quality import text_signals
from corpus.glyphs import fix_glyphs, is_cjk

PROSE = (
    "The observed radial velocities of the nebulae increase with their distance from the observer. "
    "This relation was first found for the brightest stars in a few nearby systems, and it has since "
    "been confirmed with much larger samples of galaxies observed with several telescopes. "
)
HANGUL_OR_PUA = re.compile("[\uac00-\ud7af\ue000-\uf8ff\ufffd]")


def _mapped_pdf(pages: list[str], mapping: dict[str, str]) -> bytes:
    """A PDF whose text layer says ``mapping[c]`` where the page shows the ASCII character ``c``: a
    font whose ToUnicode map is wrong, as the PDFs behind these faults have (Helvetica, A4)."""
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page(width=595, height=842)
        assert page.insert_textbox(pymupdf.Rect(50, 50, 545, 800), text, fontsize=9, fontname="helv") >= 0
    entries = [f"<{c:02X}> <{mapping.get(chr(c), chr(c)).encode('utf-16-be').hex().upper()}>" for c in range(32, 127)]
    cmap = ("/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Broken def "
            "1 begincodespacerange <00> <FF> endcodespacerange\n"
            f"{len(entries)} beginbfchar\n" + "\n".join(entries) + "\nendbfchar endcmap "
            "CMapName currentdict /CMap defineresource pop end end")
    xref = doc.get_new_xref()
    doc.update_object(xref, "<<>>")
    doc.update_stream(xref, cmap.encode())
    for font in {f[0] for i in range(doc.page_count) for f in doc[i].get_fonts()}:
        doc.xref_set_key(font, "ToUnicode", f"{xref} 0 R")
    return doc.tobytes()


def test_math_italics_written_as_hangul_are_repaired_not_routed():
    # an MNRAS paper's math italics came out as Hangul syllables: "(푇_eff= 5730K)", "푃_rot/3", "훼 Cen A"
    # (U+1D447 𝑇 with its top bit lost is U+D447 푇); the placeholders {, } and | stand for them here
    sentence = "The star has ({_eff= 5730K) and a period }_rot/3 like | Cen A. "
    data = _mapped_pdf([(PROSE + sentence * 12) * 2], {"{": "\ud447", "}": "\ud443", "|": "\ud6fc"})
    assert "\ud447" in pymupdf.open(stream=data)[0].get_text()  # the text layer does say Hangul
    (page,) = extract_pdf(data, name="mnras.pdf").pages
    assert not page.needs_ocr and page.bad_glyphs == 0
    assert "(𝑇_eff= 5730K)" in page.text and "𝑃_rot/3" in page.text and "𝛼 Cen A" in page.text
    assert not HANGUL_OR_PUA.search(page.text)
    assert "math_glyphs_repaired:72" in page.flags


def test_many_bad_glyphs_route_the_page_a_few_are_removed_and_flagged(tmp_path):
    # an erratum's underbrace drawn with 100 glyphs that have no Unicode value (here: private-use
    # codes) on a page that scores garbled under 0.5, and a page with three stray icons
    underbrace = "The density is rho c u_nu " + "~" * 100 + " as corrected here. "
    data = _mapped_pdf([PROSE * 12 + underbrace, PROSE * 3 + "See the repository ~ and the data ~~ online."],
                       {"~": "\ue03f"})
    soup, stray = extract_pdf(data, name="erratum.pdf").pages
    assert soup.garbled < 0.5 and soup.needs_ocr and soup.reason == "bad_glyphs" and "bad_glyphs" in soup.flags
    assert soup.bad_glyphs == 100 and "bad_glyphs_removed:100" in soup.flags
    assert not stray.needs_ocr and stray.bad_glyphs == 3 and "bad_glyphs_removed:3" in stray.flags
    assert "repository and the data online" in stray.text
    # never kept silently: a routed page without a model, or with OCR off, keeps its text layer cleaned
    path = tmp_path / "erratum.pdf"
    path.write_bytes(data)
    for policy in ("auto", "never"):
        doc = extract_paper(pdf=str(path), options=ExtractOptions(ocr_policy=policy))
        assert not HANGUL_OR_PUA.search(doc.text), policy
        first = doc.pages[0]
        assert "bad_glyphs_removed:100" in first["flags"]
        assert first["reason"] == ("bad_glyphs; nougat not run; kept text layer" if policy == "auto" else "policy_never")
    assert [d.reason for d in route_pages([soup, stray], "auto")] == ["bad_glyphs", "text_layer_ok"]


def test_cjk_is_removed_from_a_paper_that_is_not_cjk_and_kept_in_one_that_is():
    english = PROSE + "The galaxy 銀河 and ア were labelled in the figure."
    fixed = fix_glyphs(english)
    assert fixed.removed == 3 and "The galaxy and were labelled" in fixed.text
    chinese = "我们研究了星系的形成和演化。银河系中有很多恒星。 We use 12 stars."
    assert is_cjk(chinese) and fix_glyphs(chinese).text == chinese
    korean = "우리는 은하를 연구한다. 하늘의 별은 많다. 한국어 논문입니다."  # syllables above U+D400 too
    assert fix_glyphs(korean) == fix_glyphs(korean, cjk=True) and fix_glyphs(korean).text == korean
    # a page of a CJK document is judged by the document: its Latin-only pages keep their CJK words
    assert clean_text("Table 1 中文 names", cjk=True)[0] == "Table 1 中文 names"
    assert clean_text("Table 1 中文 names", cjk=False)[0] == "Table 1 names"


def test_clean_removes_replacement_glyphs_and_repairs_hangul_math():
    text = "We find 𝜌𝑐𝑢_𝜈 \ufffd \ufffd\ufffd\ufffd\ufffd \ufffd\ufffd in the data.\n\nWith (\ud447_eff= 5730K) as before\x07."
    new, changes = clean_text(text)
    assert new == "We find 𝜌𝑐𝑢_𝜈 in the data.\n\nWith (𝑇_eff= 5730K) as before."
    assert "bad_glyphs_removed:8" in changes and "math_glyphs_repaired:1" in changes
    assert clean_text(PROSE.strip())[1] == []


def test_removed_glyphs_still_count_in_the_garbled_score():
    # a short page that was mostly replacement glyphs is still unusable once they are taken out
    fixed = fix_glyphs("Flux \ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd of the source")
    assert text_signals(fixed.text).garbled < 0.5
    assert text_signals(fixed.text, fixed.removed).garbled == 1.0
