"""Page routing (which pages go to Nougat) and the merge of OCR output with text-layer pages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from corpus.extract.routing import (
    PageSignals,
    RoutingThresholds,
    document_extractor,
    document_pages,
    merge_pages,
    route_pages,
    routing_stats,
)


@dataclass
class FakeOCR:  # the fields merge_pages reads from a PageOCRResult
    text: str | None
    status: str
    reason: str
    retried: bool = False
    flags: tuple[str, ...] = ()


@dataclass
class LayerPage:  # the fields merge_pages reads from a PdfPage
    page: int
    text: str
    garbled: float | None = 0.05
    flags: tuple[str, ...] = ()


SIGNALS = [
    PageSignals(1, chars=3000, garbled=0.04, image_coverage=0.0, math_glyph_fraction=0.01),
    PageSignals(2, chars=0, garbled=1.0, image_coverage=1.0),
    PageSignals(3, chars=5, garbled=1.0, image_coverage=0.0),
    PageSignals(4, chars=1500, garbled=0.7),
    PageSignals(5, chars=2000, garbled=0.03, image_coverage=0.97, flags=("scanned",)),
    PageSignals(6, chars=2400, garbled=0.09, math_glyph_fraction=0.35),
    PageSignals(7, chars=0, garbled=None, flags=("error",)),
    PageSignals(8, chars=1800, garbled=0.05, image_coverage=0.35),  # a figure page with text
]


def test_auto_routes_each_signal_with_its_reason():
    got = {d.page: (d.use_ocr, d.reason) for d in route_pages(SIGNALS, "auto")}
    assert got == {
        1: (False, "text_layer_ok"),
        2: (True, "image_only"),
        3: (True, "empty_text_layer"),
        4: (True, "garbled_text_layer"),
        5: (True, "scanned_ocr_layer"),
        6: (True, "math_glyph_soup"),
        7: (True, "text_layer_error"),
        8: (False, "text_layer_ok"),
    }


def test_never_and_always():
    assert not any(d.use_ocr for d in route_pages(SIGNALS, "never"))
    assert all(d.use_ocr for d in route_pages(SIGNALS, "always"))
    assert {d.reason for d in route_pages(SIGNALS, "always")} == {"policy_always"}


def test_thresholds_are_config():
    t = RoutingThresholds(route_scanned=False, max_math_glyph_fraction=0.5)
    got = {d.page: d.use_ocr for d in route_pages(SIGNALS, "auto", t)}
    assert got[5] is False and got[6] is False


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="never, auto, always"):
        route_pages(SIGNALS, "sometimes")  # type: ignore[arg-type]


def test_routing_stats_reports_the_routed_fraction():
    stats = routing_stats(route_pages(SIGNALS, "auto"))
    assert stats["pages"] == 8 and stats["routed"] == 6
    assert stats["routed_fraction"] == pytest.approx(6 / 8)
    assert stats["reasons"]["text_layer_ok"] == 2


def test_merge_uses_ocr_text_falls_back_and_records_why():
    layer = [LayerPage(1, "Born-digital text."), LayerPage(2, ""), LayerPage(3, "old ocr layer"), LayerPage(4, "")]
    decisions = route_pages(
        [PageSignals(1, 3000, 0.04), PageSignals(2, 0, 1.0, 1.0), PageSignals(3, 2000, 0.03, 0.97), PageSignals(4, 0, 1.0, 1.0)],
        "auto",
    )
    ocr = {
        2: FakeOCR("## Nougat text $x$", "loop_retried_ok", "retried", retried=True),
        3: FakeOCR(None, "loop", "repetition loop (hit max_new_tokens=32)", retried=True),
        4: FakeOCR(None, "missing_page", "model output [MISSING_PAGE_EMPTY:4]"),
    }
    merged = merge_pages(layer, decisions, ocr)
    p1, p2, p3, p4 = merged
    assert (p1.extractor, p1.reason, p1.text) == ("pymupdf", "text_layer_ok", "Born-digital text.")
    assert (p2.extractor, p2.text) == ("nougat", "## Nougat text $x$")
    assert "ocr_retried" in p2.flags and p2.reason == "image_only"
    assert p3.extractor == "pymupdf" and p3.text == "old ocr layer"
    assert "nougat loop" in p3.reason and "kept text layer" in p3.reason and "ocr_fallback" in p3.flags
    assert p4.extractor == "none" and p4.text == "" and "MISSING_PAGE_EMPTY" in p4.reason
    assert "missing_page" in p4.flags

    text, rows = document_pages(merged)
    for row, page in zip(rows, merged):
        assert text[row["start"]:row["end"]] == page.text
        assert row["reason"]
    assert document_extractor(merged)[0] == "mixed"


def test_routed_page_without_ocr_result_is_a_recorded_fallback():
    merged = merge_pages([LayerPage(1, "")], route_pages([PageSignals(1, 0, 1.0, 1.0)], "auto"), {})
    assert merged[0].extractor == "none" and "nougat not run" in merged[0].reason


def test_document_extractor_values():
    only_text = merge_pages([LayerPage(1, "abc")], route_pages([PageSignals(1, 3000, 0.0)], "auto"), {})
    assert document_extractor(only_text)[0] == "pdf"
    nothing = merge_pages([LayerPage(1, "")], route_pages([PageSignals(1, 0, 1.0, 1.0)], "never"), {})
    assert document_extractor(nothing)[0] == "none"


def test_fixture_pdfs_route_as_measured(fixtures, tmp_path):
    pdf = pytest.importorskip("corpus.extract.pdf")
    from corpus.extract.render import rasterize_pages

    # born-digital papers keep their text layer on every page
    for name in ("legwork_wagg2022_aastex631_twocol.pdf", "hwobows_vaughan2023_mnras.pdf", "mnras_latex_guide_v3.pdf"):
        decisions = route_pages(pdf.extract_pdf(fixtures / "pdf" / name).pages, "auto")
        assert not any(d.use_ocr for d in decisions), (name, [d for d in decisions if d.use_ocr])
    # the 1929 scan goes to OCR (its old OCR layer runs words together)
    scan = route_pages(pdf.extract_pdf(fixtures / "pdf" / "hubble1929_pnas_scanned.pdf").pages, "auto")
    assert all(d.use_ocr and d.reason == "scanned_ocr_layer" for d in scan)
    # rasterised pages of a born-digital paper go to OCR as image_only, the others stay
    out = tmp_path / "guide_img.pdf"
    rasterize_pages(fixtures / "pdf" / "mnras_latex_guide_v3.pdf", out, [0, 3], dpi=72)
    got = {d.page: d for d in route_pages(pdf.extract_pdf(out).pages, "auto")}
    assert {p for p, d in got.items() if d.use_ocr} == {1, 4}
    assert got[1].reason == got[4].reason == "image_only"
