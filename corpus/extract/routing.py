"""Which pages go to Nougat, and how OCR output and text-layer pages merge into one document.

``route_pages`` decides per page from signals the PDF text-layer extractor already computes
(``corpus.extract.pdf.PdfPage``: characters, garbled score, image coverage, math-glyph fraction,
flags); it depends only on the small ``PageSignals`` record, built from any object with those
attributes by ``PageSignals.from_page``. This module is the one place where the thresholds live:
the extractor itself calls :func:`signal_flags` and :func:`decide` to set a page's flags and its
``needs_ocr``/``reason``, so a ``PdfPage`` and ``route_pages(..., "auto")`` always agree (given
the same ``RoutingThresholds``). The policy is one setting:

* ``never``  - every page keeps its text layer;
* ``always`` - every page goes to Nougat (the reference recipe);
* ``auto``   - a page goes to Nougat when its text layer is missing (``image_only``, ``empty``),
  unreadable (``garbled``, ``error``), an old scan's OCR layer (``scanned``), math glyph soup
  (``math_glyph_soup``) or holds many characters no English text has (``bad_glyphs``: U+FFFD,
  private use, CJK in a paper that is not CJK; see :mod:`corpus.glyphs`); the rest keep the text
  layer (``text_layer_ok``).

Thresholds were measured on the fixture PDFs (74 pages: five born-digital papers, one 1929 scan)
with ``corpus.extract.pdf`` defaults: born-digital pages have ``garbled`` <= 0.07 (table rows are not
scored; permuted or shifted encodings of the same pages >= 0.71) and ``math_glyph_fraction`` <= 0.08
(equation-dense LEGWORK pages); rasterised pages have 0 characters and image coverage 1.0; the
scan's pages have image coverage >= 0.97 under a text layer that runs words together. Born-digital
pages hold up to 9 bad glyphs (icons, pieces of big delimiters), a page whose font has no Unicode
map for its glyphs dozens to hundreds (an erratum's underbrace drawn from glyphs: 100).
``RoutingThresholds`` defaults sit between those populations.

``merge_pages`` then takes the text-layer pages, the routing decisions and Nougat's per-page results
and gives the final text, extractor and reason of every page: OCR text where Nougat succeeded, the
text layer (recorded as a fallback, with Nougat's status) where it did not. ``document_pages`` turns
that into the document text and ``pages`` rows of ``schemas.tables.DOCUMENT``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from corpus.pages import join_texts

__all__ = [
    "FLAG_REASONS",
    "MergedPage",
    "PageSignals",
    "Policy",
    "RouteDecision",
    "RoutingThresholds",
    "decide",
    "document_extractor",
    "document_pages",
    "merge_pages",
    "route_pages",
    "routing_stats",
    "signal_flags",
]

Policy = Literal["never", "auto", "always"]
POLICIES: tuple[str, ...] = ("never", "auto", "always")

TEXT_EXTRACTOR = "pymupdf"
OCR_EXTRACTOR = "nougat"


@dataclass(frozen=True)
class PageSignals:
    """What routing needs to know about one page's text layer."""

    page: int
    """1-based page number"""
    chars: int
    """non-space characters in the text layer"""
    garbled: float | None = None
    """0..1, 1 = not language (None when unknown)"""
    image_coverage: float = 0.0
    """fraction of the page area covered by images"""
    math_glyph_fraction: float | None = None
    """fraction of characters that are math glyphs (None when unknown)"""
    flags: tuple[str, ...] = ()
    """extractor flags, e.g. 'error', 'image_only', 'scanned', 'math_dense'"""
    bad_glyphs: int = 0
    """characters no English text holds, removed from the text layer (corpus.glyphs.fix_glyphs)"""

    @classmethod
    def from_page(cls, page: Any) -> PageSignals:
        """Build from any object with ``page`` and ``chars`` (e.g. ``PdfPage``); other fields optional."""
        return cls(
            page=int(page.page),
            chars=int(page.chars),
            garbled=getattr(page, "garbled", None),
            image_coverage=float(getattr(page, "image_coverage", 0.0) or 0.0),
            math_glyph_fraction=getattr(page, "math_glyph_fraction", None),
            flags=tuple(getattr(page, "flags", ()) or ()),
            bad_glyphs=int(getattr(page, "bad_glyphs", 0) or 0),
        )


@dataclass(frozen=True)
class RoutingThresholds:
    """When ``auto`` sends a page to Nougat (see the module docstring for the measurements)."""

    min_chars: int = 20
    """fewer non-space characters than this is an empty text layer"""
    image_only_coverage: float = 0.5
    """image coverage at or above which a page with few characters is a scan without text"""
    image_only_chars: int = 200
    """'few characters' for image_only"""
    max_garbled: float = 0.5
    """garbled score at or above which the text layer is unusable"""
    scanned_coverage: float = 0.85
    """image coverage at or above which a page with text is a scan under an old OCR layer"""
    route_scanned: bool = True
    """send scans with an old OCR layer to Nougat (their layers often run words together)"""
    max_math_glyph_fraction: float = 0.2
    """math-glyph fraction at or above which the text layer is glyph soup"""
    max_bad_glyphs: int = 20
    """bad glyphs at or above which the page goes to OCR: a font without a Unicode map, not a few
    stray symbols (those are removed and the page flagged, its text layer kept)"""


@dataclass(frozen=True)
class RouteDecision:
    page: int
    use_ocr: bool
    reason: str


FLAG_REASONS: dict[str, str] = {
    "error": "text_layer_error",
    "image_only": "image_only",
    "empty": "empty_text_layer",
    "garbled": "garbled_text_layer",
    "scanned": "scanned_ocr_layer",
    "math_dense": "math_glyph_soup",
    "bad_glyphs": "bad_glyphs",
}
"""Each condition flag (as the extractor writes it into a page's flags) and the routing reason it gives,
in the order ``decide`` checks them."""


def signal_flags(s: PageSignals, t: RoutingThresholds) -> list[str]:
    """The conditions a page's text layer meets, as flags: at most one of ``image_only`` (little text
    over a mostly-image page), ``empty`` (almost no text) and ``garbled`` (not language), the first
    that holds; then ``scanned`` (text over a near full-page image), ``math_dense`` (math glyph
    soup) and ``bad_glyphs`` (many characters no English text holds). ``s.flags`` is not read: an
    ``error`` flag is the extractor's own."""
    out: list[str] = []
    if s.image_coverage >= t.image_only_coverage and s.chars < t.image_only_chars:
        out.append("image_only")
    elif s.chars < t.min_chars:
        out.append("empty")
    elif s.garbled is not None and s.garbled >= t.max_garbled:
        out.append("garbled")
    if s.chars and s.image_coverage >= t.scanned_coverage:
        out.append("scanned")
    if s.math_glyph_fraction is not None and s.math_glyph_fraction >= t.max_math_glyph_fraction:
        out.append("math_dense")
    if s.bad_glyphs >= t.max_bad_glyphs:
        out.append("bad_glyphs")
    return out


def decide(s: PageSignals, t: RoutingThresholds) -> tuple[bool, str]:
    """Whether ``auto`` sends this page to OCR, and why (``text_layer_ok`` when it does not)."""
    if "error" in s.flags:
        return True, FLAG_REASONS["error"]
    for flag in signal_flags(s, t):
        if flag == "scanned" and not t.route_scanned:
            continue
        return True, FLAG_REASONS[flag]
    return False, "text_layer_ok"


def route_pages(
    pages: Iterable[PageSignals | Any],
    policy: Policy = "auto",
    thresholds: RoutingThresholds | None = None,
) -> list[RouteDecision]:
    """One decision per page, in input order. ``pages`` are ``PageSignals`` or ``PdfPage``-like objects."""
    if policy not in POLICIES:
        raise ValueError(f"routing policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    t = thresholds or RoutingThresholds()
    out = []
    for p in pages:
        s = p if isinstance(p, PageSignals) else PageSignals.from_page(p)
        if policy == "never":
            out.append(RouteDecision(s.page, False, "policy_never"))
        elif policy == "always":
            out.append(RouteDecision(s.page, True, "policy_always"))
        else:
            use, why = decide(s, t)
            out.append(RouteDecision(s.page, use, why))
    return out


def routing_stats(decisions: Sequence[RouteDecision]) -> dict[str, Any]:
    """Pages, pages routed to OCR, the routed fraction and the count per reason (for run stats)."""
    n = len(decisions)
    routed = sum(d.use_ocr for d in decisions)
    return {
        "pages": n,
        "routed": routed,
        "routed_fraction": routed / n if n else 0.0,
        "reasons": dict(Counter(d.reason for d in decisions)),
    }


@dataclass(frozen=True)
class MergedPage:
    """A page's final text and where it came from, in the shape of ``schemas.tables.PAGE``."""

    page: int
    text: str
    extractor: str
    """'nougat', 'pymupdf' or 'none' (no text from either)"""
    reason: str
    chars: int
    garbled: float | None
    flags: tuple[str, ...] = field(default=())


def _visible(text: str) -> int:
    return len(text) - sum(text.count(c) for c in " \t\n\r")


def merge_pages(
    text_pages: Sequence[Any],
    decisions: Sequence[RouteDecision],
    ocr: Mapping[int, Any],
) -> list[MergedPage]:
    """Final per-page text: Nougat's where it was asked and succeeded, else the text layer.

    ``text_pages``: ``PdfPage``-like (``page``, ``text``, optional ``garbled``, ``flags``);
    ``decisions``: from ``route_pages``; ``ocr``: page number -> ``PageOCRResult`` for routed pages.
    Every page gets a reason: the routing reason, plus Nougat's status and the fallback when OCR
    failed (``"image_only; nougat loop: ...; kept text layer"``); a routed page with no OCR result
    is a fallback with ``nougat not run``. A page left with no text is extractor ``none``.
    """
    by_page = {d.page: d for d in decisions}
    out: list[MergedPage] = []
    for tp in text_pages:
        page = int(tp.page)
        layer = getattr(tp, "text", "") or ""
        garbled = getattr(tp, "garbled", None)
        flags = list(getattr(tp, "flags", ()) or ())
        d = by_page.get(page)
        if d is None:
            raise ValueError(f"page {page} has no routing decision")
        if not d.use_ocr:
            extractor = TEXT_EXTRACTOR if _visible(layer) else "none"
            reason = d.reason if extractor != "none" else f"{d.reason}; empty text layer"
            out.append(MergedPage(page, layer, extractor, reason, _visible(layer), garbled, tuple(flags)))
            continue
        res = ocr.get(page)
        if res is not None and res.text is not None and res.status in ("ok", "loop_retried_ok"):
            flags.append("ocr")
            if res.retried:
                flags.append("ocr_retried")
            flags.extend(res.flags)
            out.append(MergedPage(page, res.text, OCR_EXTRACTOR, d.reason, _visible(res.text), None, tuple(flags)))
            continue
        status = res.status if res is not None else "not_run"
        why = f"{d.reason}; nougat {status}: {res.reason}" if res is not None else f"{d.reason}; nougat not run"
        flags += ["ocr_fallback", f"ocr_{status}"]
        if _visible(layer):
            out.append(MergedPage(page, layer, TEXT_EXTRACTOR, f"{why}; kept text layer", _visible(layer), garbled, tuple(flags)))
        else:
            out.append(MergedPage(page, "", "none", f"{why}; no text layer", 0, garbled, tuple(flags + ["missing_page"])))
    return out


def document_pages(pages: Sequence[MergedPage], sep: str = "\n\n") -> tuple[str, list[dict[str, Any]]]:
    """Document text (pages joined by ``sep``) and its ``pages`` rows (``schemas.tables.PAGE``)."""
    text, offsets = join_texts([p.text for p in pages], sep)
    rows = [
        {"page": p.page, "extractor": p.extractor, "start": start, "end": end, "chars": p.chars,
         "garbled": p.garbled, "reason": p.reason, "flags": list(p.flags)}
        for p, (start, end) in zip(pages, offsets)
    ]
    return text, rows


def document_extractor(pages: Sequence[MergedPage]) -> tuple[str, str]:
    """The ``DOCUMENT.extractor`` value ('pdf', 'nougat', 'mixed' or 'none') and a reason."""
    used = Counter(p.extractor for p in pages if p.extractor != "none")
    if not used:
        return "none", "no page has text from the text layer or Nougat"
    if set(used) == {TEXT_EXTRACTOR}:
        return "pdf", "text layer on every page with text"
    if set(used) == {OCR_EXTRACTOR}:
        return "nougat", "nougat on every page with text"
    return "mixed", f"{used[OCR_EXTRACTOR]} pages nougat, {used[TEXT_EXTRACTOR]} pages text layer"
