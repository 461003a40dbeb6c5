"""PDF text layer extraction: reading order, cleanup, OCR routing signals and bad input."""

from __future__ import annotations

import random
import re
import signal
import string

import pymupdf
import pytest

from corpus.extract.pdf import PdfError, PdfExtractConfig, extract_pdf, join_pages
from corpus.extract.text_quality import garbled_score, math_glyph_fraction, text_signals

BORN_DIGITAL = [
    "legwork_wagg2022_aastex631_twocol.pdf",
    "hwobows_vaughan2023_mnras.pdf",
    "aastex63_sample_article.pdf",
    "corrfunc_sinha2016_elsarticle.pdf",
    "mnras_latex_guide_v3.pdf",
]

PROSE = (
    "The observed radial velocities of the nebulae increase with their distance from the observer. "
    "This relation was first found for the brightest stars in a few nearby systems, and it has since "
    "been confirmed with much larger samples of galaxies observed with several telescopes. We discuss "
    "the calibration of the distance scale and the uncertainties that remain in the zero point of the "
    "relation, which are dominated by the corrections for absorption within our own Galaxy."
)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _pdf(fixtures, name: str) -> str:
    return str(fixtures / "pdf" / name)


@pytest.fixture(scope="module")
def extracted(fixtures):
    return {name: extract_pdf(_pdf(fixtures, name)) for name in BORN_DIGITAL}


def _text_layer_pdf(pages: list[str]) -> bytes:
    """A PDF whose pages carry exactly these texts as their text layer (Helvetica, A4)."""
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page(width=595, height=842)
        rc = page.insert_textbox(pymupdf.Rect(50, 50, 545, 800), text, fontsize=9, fontname="helv")
        assert rc >= 0, "text did not fit the test page"
    return doc.tobytes()


def _substitute(text: str, seed: int = 7) -> str:
    """A broken font encoding: every letter consistently mapped onto another letter."""
    lower = list(string.ascii_lowercase)
    perm = lower[:]
    random.Random(seed).shuffle(perm)
    table = str.maketrans("".join(lower) + "".join(lower).upper(), "".join(perm) + "".join(perm).upper())
    return text.translate(table)


def _shift(text: str, k: int = 3) -> str:
    """A shifted encoding (glyph codes off by k): 'The' -> 'Wkh'."""
    out = []
    for c in text:
        if "a" <= c <= "z":
            out.append(chr((ord(c) - 97 + k) % 26 + 97))
        elif "A" <= c <= "Z":
            out.append(chr((ord(c) - 65 + k) % 26 + 65))
        else:
            out.append(c)
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# usable born-digital text is never sent to OCR


def test_born_digital_pages_with_text_are_not_flagged(extracted):
    for name, result in extracted.items():
        assert result.n_pages == len(result.pages) > 0
        flagged = [(p.page, p.chars, p.reason, p.garbled) for p in result.pages if p.chars >= 500 and p.needs_ocr]
        assert not flagged, f"{name}: pages with text sent to OCR: {flagged}"


def test_math_heavy_page_is_not_garbled(extracted):
    # LEGWORK pages 7-9 are dense with equations: math glyphs are measured, not counted as garbled
    pages = extracted["legwork_wagg2022_aastex631_twocol.pdf"].pages[6:9]
    for p in pages:
        assert p.math_glyph_fraction > 0.03, p.page
        assert "garbled" not in p.flags and not p.needs_ocr, (p.page, p.garbled)


# --------------------------------------------------------------------------------------------------
# pages without a usable text layer are flagged for OCR


def test_image_only_pages_are_flagged(fixtures, tmp_path):
    src = pymupdf.open(_pdf(fixtures, "hwobows_vaughan2023_mnras.pdf"))
    scan = pymupdf.open()
    for i in (0, 1, 2):
        pix = src[i].get_pixmap(dpi=60)
        page = scan.new_page(width=src[i].rect.width, height=src[i].rect.height)
        page.insert_image(page.rect, pixmap=pix)
    path = tmp_path / "scan.pdf"
    scan.save(path)

    result = extract_pdf(path)
    assert [p.needs_ocr for p in result.pages] == [True, True, True]
    for p in result.pages:
        assert p.reason == "image_only" and "image_only" in p.flags
        assert p.image_coverage > 0.95 and p.chars == 0 and p.garbled == 1.0


def test_blank_page_is_flagged_empty():
    doc = pymupdf.open()
    doc.new_page()
    result = extract_pdf(doc.tobytes(), name="blank.pdf")
    (page,) = result.pages
    assert page.needs_ocr and page.reason == "empty_text_layer" and "empty" in page.flags and page.garbled == 1.0


@pytest.mark.parametrize("broken", [_substitute, _shift], ids=["substituted", "shifted"])
def test_broken_font_encoding_is_flagged_garbled(fixtures, broken):
    # real prose from a fixture page, re-typeset as a text layer: once intact, once with its letters
    # substituted as a broken font encoding would
    prose = extract_pdf(_pdf(fixtures, "hwobows_vaughan2023_mnras.pdf"), pages=range(1, 4)).pages[1].text[:3000]
    result = extract_pdf(_text_layer_pdf([prose, broken(prose)]), name="broken.pdf")
    intact, garbled = result.pages
    assert intact.chars > 1500 and garbled.chars > 1500
    assert not intact.needs_ocr and intact.garbled < 0.2
    assert garbled.needs_ocr and garbled.reason == "garbled_text_layer" and garbled.garbled >= 0.7


def test_page_decision_is_the_routing_decision(fixtures, extracted):
    # one policy: a page's needs_ocr/reason are what route_pages("auto") decides for it
    from corpus.extract.routing import RoutingThresholds, route_pages

    results = list(extracted.values()) + [extract_pdf(_pdf(fixtures, "hubble1929_pnas_scanned.pdf"))]
    for result in results:
        for p, d in zip(result.pages, route_pages(result.pages, "auto")):
            assert (p.needs_ocr, p.reason or "text_layer_ok") == (d.use_ocr, d.reason), (result.path, p.page)
    hubble = results[-1]
    assert all(p.needs_ocr and p.reason == "scanned_ocr_layer" for p in hubble.pages)
    # the thresholds are config, and flow into the flags as well as the decision
    lenient = RoutingThresholds(route_scanned=False, max_garbled=0.99)
    hubble = extract_pdf(_pdf(fixtures, "hubble1929_pnas_scanned.pdf"), PdfExtractConfig(routing=lenient))
    assert not any(p.needs_ocr for p in hubble.pages) and all("scanned" in p.flags for p in hubble.pages)
    assert hubble.pages_needing_ocr() == []
    strict = extract_pdf(_pdf(fixtures, "mnras_latex_guide_v3.pdf"), PdfExtractConfig(routing=RoutingThresholds(min_chars=10**6)))
    assert strict.pages_needing_ocr() == list(range(1, strict.n_pages + 1))
    assert all(p.reason == "empty_text_layer" and "empty" in p.flags for p in strict.pages)


def test_replacement_glyphs_are_garbled():
    soup = "".join("\ufffd" if i % 4 == 0 else c for i, c in enumerate(PROSE))
    assert garbled_score(PROSE) < 0.1
    assert garbled_score(soup) == 1.0


def test_hubble_reprint_is_flagged_scanned_and_its_table_scores_nonwords(fixtures):
    result = extract_pdf(_pdf(fixtures, "hubble1929_pnas_scanned.pdf"))
    assert result.n_pages == 6
    assert all("scanned" in p.flags for p in result.pages)  # an old OCR layer over page images
    table = next(p for p in result.pages if "NSBULAx" in p.text)
    assert table.nonword_fraction > 0  # "NSBULAx WHoss DisTANcEs" are counted as non-words


# --------------------------------------------------------------------------------------------------
# the pure text signals


def test_garbled_score_basics():
    assert garbled_score("") == 1.0
    assert garbled_score("   \n ") == 1.0
    assert garbled_score(PROSE) < 0.1
    assert garbled_score(_substitute(PROSE)) > 0.6
    assert garbled_score(_shift(PROSE)) > 0.6
    # too little text to judge an alphabet: a few axis labels are not evidence of a broken encoding
    assert garbled_score("Phase angle (deg) Flux") < 0.2
    # French prose keeps its function words and is not garbled
    french = (
        "Les vitesses radiales des nébuleuses augmentent avec leur distance, et cette relation est "
        "confirmée par un échantillon de galaxies observées avec plusieurs télescopes dans le ciel du "
        "nord. Nous discutons la calibration de l'échelle des distances et les incertitudes qui restent "
        "sur le point zéro de la relation."
    )
    assert garbled_score(french) < 0.5


def test_math_glyph_fraction_separates_glyph_soup():
    prose_with_math = PROSE + " The strain is h = 4(GM)^{5/3} / (c^4 d) with 𝜑 the phase and 𝛼 the angle."
    soup = " ".join("𝜑∑∫𝛼⊗≤" * 3 for _ in range(30))
    assert math_glyph_fraction(prose_with_math) < 0.05
    assert math_glyph_fraction(soup) > 0.9
    s = text_signals(soup)
    assert s.math_glyph_fraction > 0.9 and s.chars == 30 * 18


# --------------------------------------------------------------------------------------------------
# reading order and cleanup


def test_two_column_sentence_reads_across_the_column_break(extracted):
    # HWObows page 2: the sentence ends the left column and continues at the top of the right column
    page = extracted["hwobows_vaughan2023_mnras.pdf"].pages[1]
    assert "expected to be most prominent at large planetary phase angles. The maximum degree" in _squash(page.text)


def test_left_column_before_right_column(extracted):
    # LEGWORK page 1: the introduction starts at the foot of the left column, goes on at the top of the
    # right one; the whole left column comes first
    text = _squash(extracted["legwork_wagg2022_aastex631_twocol.pdf"].pages[0].text)
    left = text.index("The planned space-based gravitational wave detector")
    right = text.index("However, this frequency regime is also of interest")
    assert left < right
    assert text.index("1. INTRODUCTION") < left


def test_ligatures_expanded_and_hyphenation_rejoined(extracted):
    for name, result in extracted.items():
        assert not re.search("[\ufb00-\ufb06]", result.text), name
    legwork = _squash(extracted["legwork_wagg2022_aastex631_twocol.pdf"].text)
    assert "LEGWORK by calculating" in legwork  # "cal-\nculating" in the PDF
    assert "cal- culating" not in legwork and "calculating" in legwork
    assert "LEG- WORK" not in legwork  # upper-case halves of a word seen whole elsewhere
    aastex = _squash(extracted["aastex63_sample_article.pdf"].text)
    assert "first" in aastex and "figure" in aastex  # "ﬁrst", "ﬁgure" in the raw text layer


def test_sub_and_superscripts_are_set_apart_from_their_base(fixtures, extracted):
    # LEGWORK p.4: "orbital frequency, $f_{\rm orb}$," and "the $n^{\rm th}$ harmonic"; MuPDF alone
    # writes "forb" and "nth", a word that is neither
    legwork = _squash(extracted["legwork_wagg2022_aastex631_twocol.pdf"].text)
    assert "orbital frequency, f_orb, and the semi-major axis" in legwork
    assert "(f_GW = 2f_orb)" in legwork and "the n^th harmonic frequency" in legwork
    assert "forb" not in legwork
    # the AASTeX sample: a footnote marker after a word, "abstract^a)" (MuPDF: "abstracta).")
    aastex = _squash(extracted["aastex63_sample_article.pdf"].text)
    assert "word limit for the abstract^a). If you exceed" in aastex
    # a logo is no superscript: "LaTeX" keeps its raised, kerned A
    assert "LaTEX was written in 1985" in aastex and "^A" not in aastex
    path = _pdf(fixtures, "legwork_wagg2022_aastex631_twocol.pdf")
    spaced = _squash(extract_pdf(path, PdfExtractConfig(scripts="space"), pages=range(3, 6)).text)
    joined = _squash(extract_pdf(path, PdfExtractConfig(scripts="join"), pages=range(3, 6)).text)
    assert "orbital frequency, f orb, and" in spaced
    assert "orbital frequency, forb, and" in joined  # MuPDF's own text


def test_spans_on_one_line_join_as_printed(extracted):
    # a loosely set line: MuPDF ends a span at each wide word gap; the words stay apart, and the
    # spans of one line (roman, link-coloured citation, roman) join without an added space
    aastex = _squash(extracted["aastex63_sample_article.pdf"].text)
    assert "a persistent identifier like a Digital Object Identifier (DOI)" in aastex
    legwork = _squash(extracted["legwork_wagg2022_aastex631_twocol.pdf"].text)
    assert "(Peters & Mathews 1963)" in legwork or "Peters & Mathews (1963)" in legwork
    assert "( ρ" not in legwork and "(ρ = 31.7 → ρ = 50.2)" in legwork


def test_visual_lines_from_span_boxes():
    from corpus.extract.pdf import _visual_lines

    def box(x0, x1, y0=100.0, y1=110.0):  # a span's box; the body text runs from y 100 to 110
        return (x0, y0, x1, y1)

    # a subscript (smaller, lower) and a superscript (smaller, higher) right after their base
    spans = [("the frequency f", box(0, 70)), ("orb", box(70, 82, 104, 111)), (" and x", box(82, 110)),
             ("2", box(110, 114, 97, 104)), (" here", box(114, 140))]
    assert _visual_lines(spans, "mark") == ("the frequency f_orb and x^2 here", False)
    assert _visual_lines(spans, "space") == ("the frequency f orb and x 2 here", False)
    assert _visual_lines(spans, "join") == ("the frequency forb and x2 here", False)
    # a raised small letter that overlaps the letter before it is a kerned logo, not a superscript
    logo = [("L", box(0, 6)), ("A", box(3, 8, 99, 106)), ("TEX is", box(6, 40))]
    assert _visual_lines(logo, "mark") == ("LATEX is", False)
    # the base resumes right after a script: set apart, so the exponent does not run on
    assert _visual_lines([("a", box(0, 5)), ("3", box(5, 9, 97, 104)), ("b c", box(9, 30))]) == ("a^3 b c", False)
    # a wide gap between two spans is a space; a span below the line's band starts a new line;
    # whitespace-only spans (no box) stay in their line
    spans = [("loosely", box(0, 40)), ("set", box(50, 65)), (" ", None), ("line", box(0, 20, 112, 122))]
    assert _visual_lines(spans) == ("loosely set \nline", False)
    # a block that starts with a superscript (a footnote marker)
    assert _visual_lines([("3", box(0, 4, 97, 104)), (" Note that", box(4, 50))]) == ("^3 Note that", True)


def test_block_keeps_mupdf_line_breaks_when_words_do_not_match_its_spans():
    from corpus.extract.pdf import _block_spans, _span_words

    raw = "f\norb\n = 1\n"
    row = lambda x0, y0, x1, y1, w, line, no=0: (x0, y0, x1, y1, w, 0, line, no)  # noqa: E731
    rows = [row(0, 100, 5, 110, "f", 0), row(5, 104, 17, 111, "orb", 1), row(20, 100, 40, 110, "=", 2),
            row(30, 100, 40, 110, "1", 2, 1)]
    assert _block_spans(raw, _span_words(rows), 0, "mark")[0] == "f_orb = 1"
    # another block's words (a line clipped away, a different numbering): no geometry is guessed
    rows[1] = row(5, 104, 17, 111, "xyz", 1)
    assert _block_spans(raw, _span_words(rows), 0, "mark") == (raw, 0.0, False)


def test_footnotes_come_after_the_page_text(fixtures, extracted):
    # HWObows p.1: the corresponding author's footnote sits at the foot of the left column, above the
    # end of the page's text in the right column; it moves after the page's running text
    page = extracted["hwobows_vaughan2023_mnras.pdf"].pages[0]
    assert page.text.rstrip().endswith("sophia.vaughan@physics.ox.ac.uk") or "Correspondence" in page.text.split("\n\n")[-2]
    kept = extract_pdf(_pdf(fixtures, "hwobows_vaughan2023_mnras.pdf"), PdfExtractConfig(footnotes_last=False), pages=[1, 2, 3])
    assert kept.pages[0].text.index("Correspondence") < page.text.index("Correspondence")
    # LEGWORK p.6: footnote 3 after the right column's text; the equation above it stays in place
    p6 = extracted["legwork_wagg2022_aastex631_twocol.pdf"].pages[5].text
    assert p6.split("\n\n")[-1].startswith("^3 Note that this is factor of 2 different")
    assert p6.index("˙f_n = df_n da") < p6.index("We write that the position of the source")


def test_compounds_keep_their_hyphen(extracted):
    text = extracted["legwork_wagg2022_aastex631_twocol.pdf"].text
    assert "semi-major" in text and "semimajor" not in text


def test_running_headers_footers_and_page_numbers_removed(extracted):
    guide = extracted["mnras_latex_guide_v3.pdf"]
    text = guide.text
    assert text.count("MNRAS LATEX guide for authors") <= 1  # the odd-page running head (title aside)
    assert text.count("MNRAS 000, ??–?? (2015)") <= 1  # the footer of every page (first-page line aside)
    assert text.count("K. T. Smith") <= 1  # even-page running head
    for p in guide.pages[1:]:
        assert "header_removed" in p.flags
        assert not re.match(r"\s*\d+\s*$", p.text.split("\n")[0])  # no bare page number left on top
    legwork = extracted["legwork_wagg2022_aastex631_twocol.pdf"]
    assert all(not re.search(r"(^|\n)\d{1,2}(\n|$)", p.text[:5] + p.text[-5:]) for p in legwork.pages)
    assert "page_number_removed" in legwork.pages[1].flags


def test_headers_kept_when_removal_disabled(fixtures):
    result = extract_pdf(_pdf(fixtures, "mnras_latex_guide_v3.pdf"), PdfExtractConfig(remove_headers=False))
    assert result.text.count("MNRAS LATEX guide for authors") >= 4


def test_word_hyphenated_across_a_page_break_moves_to_the_earlier_page():
    pdf = _text_layer_pdf([PROSE + " This page ends with a hyphenated cal-", "culation that continues here."])
    result = extract_pdf(pdf, name="split.pdf")
    first, second = result.pages
    assert first.text.endswith("hyphenated calculation")
    assert second.text.startswith("that continues here.")


# --------------------------------------------------------------------------------------------------
# result shape


def test_join_pages_offsets(extracted):
    result = extracted["aastex63_sample_article.pdf"]
    text, offsets = join_pages(result.pages)
    assert len(offsets) == result.n_pages and text == result.text
    for p, (s, e) in zip(result.pages, offsets):
        assert text[s:e] == p.text


def test_metadata_and_first_line(fixtures, extracted):
    hubble = extract_pdf(_pdf(fixtures, "hubble1929_pnas_scanned.pdf"))
    assert hubble.metadata["title"].startswith("A relation between distance and radial velocity")
    assert extracted["corrfunc_sinha2016_elsarticle.pdf"].first_line.startswith("Cache is King")


def test_bytes_input_and_page_subset(fixtures):
    data = (fixtures / "pdf" / "corrfunc_sinha2016_elsarticle.pdf").read_bytes()
    result = extract_pdf(data, name="corrfunc.pdf", pages=[2, 3, 4])
    assert result.path == "corrfunc.pdf" and result.n_pages == 12
    assert [p.page for p in result.pages] == [2, 3, 4]


# --------------------------------------------------------------------------------------------------
# bad input: a PdfError that names the file and the problem


def _expect(reason: str, source, name=None) -> PdfError:
    with pytest.raises(PdfError) as info:
        extract_pdf(source, name=name)
    err = info.value
    assert err.reason == reason
    label = name or str(source)
    assert err.path == label and label in str(err) and reason in str(err)
    return err


def test_not_a_pdf(tmp_path):
    path = tmp_path / "notes.pdf"
    path.write_text("this is plain text, not a PDF")
    _expect("not_pdf", path)
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    _expect("not_pdf", empty)


def test_corrupt_pdf(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    _expect("corrupt", path)
    good = _text_layer_pdf([PROSE])
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(good[: len(good) // 3])
    _expect("corrupt", truncated)


def test_encrypted_pdf(tmp_path):
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    path = tmp_path / "locked.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    _expect("encrypted", path)


def test_zero_page_pdf():
    data = (
        b"%PDF-1.4\n1 0 obj <</Type/Catalog/Pages 2 0 R>> endobj\n"
        b"2 0 obj <</Type/Pages/Kids[]/Count 0>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
    )
    _expect("zero_pages", data, name="nopages.pdf")


def test_pdf_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(PdfError("a/b.pdf", "encrypted", "a password is needed")))
    assert (err.path, err.reason, err.detail) == ("a/b.pdf", "encrypted", "a password is needed")
    assert str(err) == "a/b.pdf: encrypted (a password is needed)"


def test_missing_file(tmp_path):
    _expect("unreadable", tmp_path / "nowhere.pdf")


def test_time_limit(fixtures):
    path = _pdf(fixtures, "legwork_wagg2022_aastex631_twocol.pdf")
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(PdfError) as info:
        extract_pdf(path, PdfExtractConfig(time_limit_s=1e-6))
    assert info.value.reason == "timeout" and path in str(info.value)
    # the hard limit's alarm is cleared and the previous handler restored
    assert signal.getsignal(signal.SIGALRM) == before
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    assert extract_pdf(path).n_pages == 17  # no stale alarm fires on the next file


def test_hard_time_limit_interrupts_a_stuck_page(fixtures, monkeypatch):
    # a page that never finishes on its own: only the SIGALRM limit can stop it (the between-page check
    # would report "at page N" and only after the loop gave up)
    import corpus.extract.pdf as pdfmod

    def stuck(page, *_):
        deadline = pdfmod.time.monotonic() + 30
        while pdfmod.time.monotonic() < deadline:
            pass
        raise AssertionError("the hard time limit did not fire")

    monkeypatch.setattr(pdfmod, "_read_page", stuck)
    with pytest.raises(PdfError) as info:
        extract_pdf(_pdf(fixtures, "corrfunc_sinha2016_elsarticle.pdf"), PdfExtractConfig(time_limit_s=0.5))
    assert info.value.reason == "timeout" and "at page" not in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("holes (Peters 1964), and", "holes, and"),
    ("LISA (e.g. Begelman et al. 1980; Klein et al. 2016) is", "LISA is"),
    ("as (Robson et al. 2019, Eq. 1) shows", "as shows"),
    ("the code (Astropy Collaboration et al. 2013, 2018).", "the code."),
    ("see (van der Walt et al. 2011)", "see"),
    ("by Peters (1964) and", "by Peters (1964) and"),  # textual citations stay, as on the LaTeX path
    ("(Received August 4, 2022)", "(Received August 4, 2022)"),
    ("in (Table 1) we", "in (Table 1) we"),
    ("at z (2019) x", "at z (2019) x"),
])
def test_parenthetical_citations_are_dropped_like_the_latex_path(text, expected):
    from corpus.extract.pdf import drop_parenthetical_citations

    assert drop_parenthetical_citations(text) == expected


def test_citations_dropped_by_default_kept_on_request(fixtures):
    pdf = fixtures / "pdf" / "legwork_wagg2022_aastex631_twocol.pdf"
    dropped = extract_pdf(pdf).text
    kept = extract_pdf(pdf, PdfExtractConfig(parenthetical_citations="keep")).text
    assert "(Wagg et al. 2022)" in kept and "(Wagg et al. 2022)" not in dropped
    assert "Peters (1964)" in dropped  # a textual citation is prose


def _stellar_table(rows: int = 40, seed: int = 1) -> str:
    """An AASTeX long table of stellar parameters: names, coordinates, values with errors, exponents."""
    rnd = random.Random(seed)
    lines = ["Table 2. Stellar parameters of the sample", "Name RA Dec Teff log g [Fe/H] M L SpT Note",
             "(K) (dex) (dex) (M⊙) (L⊙)"]
    for _ in range(rows):
        lines.append(
            f"HD {rnd.randint(1000, 300000)} {rnd.randint(0, 23):02d} {rnd.randint(0, 59):02d} {rnd.uniform(0, 60):05.2f} "
            f"{rnd.choice('+−')}{rnd.randint(0, 89):02d} {rnd.randint(0, 59):02d} {rnd.uniform(0, 60):04.1f} "
            f"{rnd.randint(3500, 7000)} ± {rnd.randint(20, 150)} {rnd.uniform(3.5, 4.8):.2f} ± {rnd.uniform(0.02, 0.2):.2f} "
            f"{rnd.uniform(-1, 0.4):+.2f} ± 0.{rnd.randint(1, 9)} {rnd.uniform(0.5, 2):.2f}+0.{rnd.randint(1, 9)}−0.{rnd.randint(1, 9)} "
            f"{rnd.uniform(0.1, 9):.2e} {rnd.choice(['G2V', 'K1V', 'F5IV', 'M0V', 'G8III'])} {rnd.choice(['a', 'b', 'c', '', ''])}"
        )
    return "\n".join(lines)


def test_numeric_table_is_not_garbled_but_glyph_soup_still_is(fixtures):
    # a clean table of numbers scored garbled 0.65-0.99 and would have gone to Nougat: its names
    # ("HD 12345"), units and spectral types are not prose, and not evidence of a broken encoding
    doc = pymupdf.open()
    page = doc.new_page(width=842, height=595)  # a landscape table page
    assert page.insert_textbox(pymupdf.Rect(30, 30, 820, 580), _stellar_table(), fontsize=8, fontname="helv") >= 0
    prose = extract_pdf(_pdf(fixtures, "hwobows_vaughan2023_mnras.pdf"), pages=range(1, 4)).pages[1].text[:3000]
    doc.insert_pdf(pymupdf.open(stream=_text_layer_pdf([_substitute(prose), _shift(prose)])))
    table, substituted, shifted = extract_pdf(doc.tobytes(), name="table.pdf").pages
    assert table.chars > 2500 and table.garbled < 0.1 and not table.needs_ocr, table.garbled
    assert substituted.needs_ocr and shifted.needs_ocr and min(substituted.garbled, shifted.garbled) >= 0.7
    assert garbled_score(_stellar_table(rows=10, seed=2)) < 0.1
