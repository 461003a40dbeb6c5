"""The text layer of a PDF, page by page, with PyMuPDF.

``extract_pdf(path)`` returns one :class:`PdfPage` per page: the page's text in reading order
(two-column layouts read left column, then right column, footnotes after the page's running text),
with sub- and superscripts set apart from their base word (``f_orb``, ``n^th`` rather than MuPDF's
``forb``, ``nth``), ligatures expanded, words hyphenated at line ends rejoined, and running headers,
footers and page numbers removed; plus measured signals that tell whether the page's text layer is
usable or the page must go to OCR. The flags and the decision
(``needs_ocr``, ``reason``) come from :mod:`corpus.extract.routing` (``signal_flags``, ``decide``)
under ``config.routing``, the same policy the extract stage routes pages by:

* ``image_only`` - little or no text over a page mostly covered by images (a scan without OCR layer);
* ``empty`` - (almost) no text and no image;
* ``garbled`` - the text layer is not language (broken font encoding, replacement glyphs), measured by
  :func:`corpus.extract.text_quality.garbled_score`;
* ``scanned`` - a text layer over a full-page image: an old OCR layer (routed unless
  ``route_scanned`` is off);
* ``math_dense`` - many math glyphs: glyph soup;
* ``bad_glyphs`` - many characters no English text holds (U+FFFD, private use, CJK in a paper that
  is not CJK);

with the numbers behind them (``garbled``, ``image_coverage``, ``math_glyph_fraction``,
``bad_glyphs``). Those characters are taken out of every page's text (:func:`corpus.glyphs.fix_glyphs`:
math italics that came out as Hangul are repaired instead), flagged ``bad_glyphs_removed:<n>`` and
``math_glyphs_repaired:<n>``; table-of-contents lines (dot leaders, :mod:`corpus.toc`) are dropped,
flagged ``toc_removed:<n>``.

Bad input raises :class:`PdfError` naming the file and a short ``reason``: ``not_pdf``, ``corrupt``,
``encrypted``, ``zero_pages``, ``timeout``. A page that MuPDF cannot read is not fatal: it comes back
flagged ``error`` with ``needs_ocr`` set (only a file whose every page fails is ``corrupt``).

Time limit: ``config.time_limit_s`` is checked between pages, and, when called in the main thread of
a POSIX process (as a worker process of a pool is), also enforced by ``SIGALRM``: Python runs the
handler as soon as the current MuPDF call returns, so a single pathological page can overrun the
limit by its own parse time, but the file cannot continue past it. Outside the main thread only the
between-page check applies. Either way the result is ``PdfError(reason="timeout")``.

Pure per-item logic: nothing here knows about datasets, executors or progress bars.
"""

from __future__ import annotations

import operator
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import pymupdf

from corpus.extract.figures import figure_areas, figure_text, placed_forms
from corpus.extract.pieces import body_size, join_pieces
from corpus.extract.routing import FLAG_REASONS, PageSignals, RoutingThresholds, decide, signal_flags
from corpus.extract.text_quality import text_signals
from corpus.glyphs import fix_glyphs, is_cjk
from corpus.pages import join_texts
from corpus.toc import drop_toc_lines


_LIGATURES = str.maketrans(
    {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"}
)
# MuPDF flags: no TEXT_PRESERVE_LIGATURES (MuPDF expands them), no TEXT_DEHYPHENATE (we decide per
# word), images kept as blocks so their area can be measured without a second pass over the page, and
# TEXT_PRESERVE_SPANS: every span (a run of one font, size and baseline) becomes its own stext line, so
# that the words' boxes tell where a sub- or superscript starts (see _visual_lines). The dict
# extraction would say so directly, but costs more than the page's own parse and encodes every image.
_TEXT_FLAGS = (
    pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP | pymupdf.TEXT_PRESERVE_IMAGES
    | pymupdf.TEXT_PRESERVE_SPANS
)

_LIGATURE_CHARS = re.compile("[\ufb00-\ufb06]")
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"[ \t\u00a0]+")
_PAGE_NUMBER = re.compile(r"^\s*(?:page\s+)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:/|of)\s*\d{1,4})?\s*$", re.I)


class PdfError(Exception):
    """A PDF that cannot be extracted. ``reason`` is short and machine-readable, ``path`` names the file."""

    REASONS = ("not_pdf", "corrupt", "encrypted", "zero_pages", "timeout", "unreadable")

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):  # survives pickling, so a worker process can hand it back as a result
        return (type(self), (self.path, self.reason, self.detail))


@dataclass
class PdfExtractConfig:
    """How :func:`extract_pdf` reads a PDF and when it flags a page for OCR."""

    routing: RoutingThresholds = field(default_factory=RoutingThresholds)
    """The thresholds behind each page's flags and ``needs_ocr`` (corpus.extract.routing: the same
    policy that routes pages in the extract stage). Born-digital fixture pages with 300+ characters
    have garbled <= 0.07 and math-glyph fraction <= 0.1; broken font encodings score 0.71-1.0."""
    time_limit_s: float | None = 120.0
    """Per-file limit (seconds); ``None`` for none. See the module docstring for how it is enforced."""
    remove_headers: bool = True
    """Remove running headers/footers (repeated margin lines) and page numbers."""
    margin_fraction: float = 0.12
    """Top and bottom bands (fraction of page height) where headers, footers and page numbers live."""
    header_min_pages: int = 3
    """A margin block counts as running header/footer when (digits ignored) it repeats on this many pages
    (or on every page of a document shorter than this, if that is at least 2 pages)."""
    reading_order: bool = True
    """Order text blocks by columns (left column, then right) instead of the PDF's content order."""
    scripts: Literal["mark", "space", "join"] = "mark"
    """How sub- and superscripts that MuPDF runs into their base word appear: ``"mark"`` writes them
    ``f_orb``, ``a^3``, ``abstract^a)``; ``"space"`` sets them apart with a space (``f orb``);
    ``"join"`` keeps MuPDF's text (``forb``)."""
    figure_text: Literal["drop", "keep"] = "drop"
    """``"drop"`` leaves out the text inside figure areas (tick labels, axis titles, legends, panel
    labels; see :mod:`corpus.extract.figures`) and moves each figure's caption after the page's
    running text, so that neither splits a sentence; the page is flagged ``figure_text_removed``.
    ``"keep"`` reads figure text and captions in place."""
    footnotes_last: bool = True
    """Move footnotes (small text that starts with a superscript marker, at the foot of a column with
    nothing of body size below it) to the end of the page's text, so they do not split the sentence
    running on into the next column."""
    parenthetical_citations: Literal["drop", "keep"] = "drop"
    """``"drop"`` removes author-year citations in parentheses -- ``(Peters 1964)``, ``(e.g. Moore et
    al. 2015; Robson et al. 2019, Eq. 1)`` -- with the blank before them, as the LaTeX path drops
    ``\\citep`` (``corpus.extract.latex``), so both paths give the same prose; textual citations
    (``Peters (1964)``) stay. ``"keep"`` leaves them."""
    join_pieces: bool = True
    """Join the blocks MuPDF splits a displayed equation into (one block, equation number last), a
    table's cells (one block per row) and a reference entry's indented continuation lines (``doi: …``)
    into the blocks they belong to (see :mod:`corpus.extract.pieces`), after the reading order."""
    dehyphenate: bool = True
    """Rejoin words hyphenated at line ends (keeping the hyphen where the document writes the
    compound with one elsewhere, e.g. ``two-\\ncolumn`` when ``two-column`` occurs inline)."""
    drop_toc: bool = True
    """Drop table-of-contents lines (entries ending in a dot leader and a page number; corpus.toc)."""


@dataclass
class PdfPage:
    """One page's text layer and the signals that route it."""

    page: int
    """1-based page number"""
    text: str
    chars: int
    """non-space characters of ``text``"""
    garbled: float
    """0..1, 1 = empty or unusable (see text_quality.garbled_score)"""
    flags: list[str] = field(default_factory=list)
    """e.g. empty, image_only, garbled, scanned, math_dense, bad_glyphs, header_removed,
    page_number_removed, error, bad_glyphs_removed:<n>, math_glyphs_repaired:<n>, toc_removed:<n>"""
    needs_ocr: bool = False
    """what ``corpus.extract.routing.decide`` says under ``config.routing`` (policy ``auto``)"""
    reason: str | None = None
    """why ``needs_ocr`` (a routing reason: image_only, empty_text_layer, garbled_text_layer,
    scanned_ocr_layer, math_glyph_soup, text_layer_error: <detail>), else None"""
    image_coverage: float = 0.0
    """fraction of the page area covered by images (0..1)"""
    math_glyph_fraction: float = 0.0
    nonword_fraction: float = 0.0
    bad_char_fraction: float = 0.0
    bad_glyphs: int = 0
    """characters no English text holds, removed from ``text`` (corpus.glyphs.fix_glyphs)"""


@dataclass
class PdfResult:
    path: str
    n_pages: int
    pages: list[PdfPage]
    metadata: dict[str, str]
    """non-empty PDF metadata fields: title, author, subject, keywords, creator, producer, ..."""
    first_line: str | None
    """first non-empty line of the extracted text (a title guess when metadata has none)"""
    arxiv_stamp: str | None = None
    """the identifier line arXiv stamps in the left margin of the PDFs it serves, spaces normalised
    (``arXiv:2301.00001v1 [astro-ph.GA] 2 Jan 2023``), taken out of the page text (the page is flagged
    ``arxiv_stamp_removed``); None when the PDF has none. Parse the id with
    ``corpus.arxiv_ids.parse_arxiv_id``."""

    @property
    def text(self) -> str:
        return join_pages(self.pages)[0]

    def pages_needing_ocr(self) -> list[int]:
        return [p.page for p in self.pages if p.needs_ocr]


def join_pages(pages: Sequence[PdfPage], sep: str = "\n\n") -> tuple[str, list[tuple[int, int]]]:
    """The document text and each page's ``[start, end)`` offsets into it (empty pages get start == end)."""
    return join_texts([p.text for p in pages], sep)


# ----------------------------------------------------------------------------------------------------
# opening


def _open(source: str | Path | bytes, name: str) -> pymupdf.Document:
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:1024])
    else:
        try:
            with open(source, "rb") as fh:
                head = fh.read(1024)
        except OSError as e:
            raise PdfError(name, "unreadable", e.strerror or str(e)) from e
    if not head:
        raise PdfError(name, "not_pdf", "empty file")
    if b"%PDF-" not in head:
        raise PdfError(name, "not_pdf", f"no %PDF- header; starts with {head[:16]!r}")
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            doc = pymupdf.open(stream=bytes(source), filetype="pdf")
        else:
            doc = pymupdf.open(str(source), filetype="pdf")
    except Exception as e:  # MuPDF raises FileDataError / RuntimeError with its own message
        raise PdfError(name, "corrupt", str(e)) from e
    if doc.needs_pass:
        doc.close()
        raise PdfError(name, "encrypted", "a password is needed to open it")
    if doc.page_count == 0:
        doc.close()
        raise PdfError(name, "zero_pages", "the document has no pages")
    return doc


# ----------------------------------------------------------------------------------------------------
# layout


@dataclass
class _Block:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    size: float = 0.0
    """height of the block's longest span's box (its text size, roughly); 0 when unknown"""
    marked: bool = False
    """the block starts with a superscript (a footnote's marker)"""
    aside: bool = False
    """moved after the page's running text: a figure's caption (next to a figure area), a margin note"""


def _order_blocks(blocks: list[_Block], width: float) -> list[_Block]:
    """Reading order: full-width blocks split the page into bands; in each band, left column then right.

    A block belongs to the left column when it ends left of the page's middle (plus a small
    tolerance), to the right column when it starts right of it, else it spans both. Within a column,
    the PDF's own order is kept where it already runs top to bottom (LaTeX writes each column in
    order), so only a layout that is out of order gets reordered.
    """
    if len(blocks) < 2:
        return blocks
    mid = width / 2
    tol = width * 0.03
    kind = []
    for b in blocks:
        if b.x1 <= mid + tol:
            kind.append(0)
        elif b.x0 >= mid - tol:
            kind.append(1)
        else:
            kind.append(2)
    if 0 not in kind or 1 not in kind:  # single column: the PDF's own order
        return blocks
    out: list[_Block] = []
    spans = sorted((b for b, k in zip(blocks, kind) if k == 2), key=lambda b: b.y0)
    cols = [[b for b, k in zip(blocks, kind) if k == c] for c in (0, 1)]
    cuts = [b.y0 for b in spans] + [float("inf")]
    prev = float("-inf")
    si = 0
    for cut in cuts:
        for col in cols:
            band = [b for b in col if prev <= (b.y0 + b.y1) / 2 < cut]
            out.extend(band if _mostly_top_down(band) else sorted(band, key=lambda b: (round(b.y0), b.x0)))
        if si < len(spans):
            out.append(spans[si])
            prev = spans[si].y0
            si += 1
    return out


def _join_pieces(blocks: list[_Block]) -> list[_Block]:
    """The blocks with the pieces of each display, table row and reference entry joined (see
    :func:`corpus.extract.pieces.join_pieces`): their texts on separate lines, their boxes united."""
    out = []
    for group in join_pieces(blocks, body_size(blocks)):
        if len(group) == 1:
            out.append(blocks[group[0]])
            continue
        parts = [blocks[i] for i in group]
        out.append(_Block(
            min(b.x0 for b in parts), min(b.y0 for b in parts), max(b.x1 for b in parts), max(b.y1 for b in parts),
            "\n".join(b.text for b in parts), max(parts, key=lambda b: len(b.text)).size, parts[0].marked,
        ))
    return out


def _footnotes_last(blocks: list[_Block], height: float) -> list[_Block]:
    """Footnotes moved to the end of the page, so that they no longer split the sentence that runs from
    the foot of one column to the head of the next.

    A footnote block lies in the lower half of the page, is set smaller than the page's body text (its
    size at most ``_FOOTNOTE_SIZE`` of the size that carries most characters), starts with a
    superscript marker, and has nothing of body size below it in its column: a small block with body
    text under it (a caption in the middle of a column) stays where it is, and so do the small pieces
    of a displayed equation (they start with no marker).
    """
    if not any(b.size for b in blocks):
        return blocks
    body = body_size(blocks)
    small = [bool(b.size) and b.y0 >= height / 2 and b.size <= _FOOTNOTE_SIZE * body for b in blocks]
    if not any(small):
        return blocks
    notes = set()
    for i, b in enumerate(blocks):
        if small[i] and b.marked and not any(
            not small[j] and o.y0 >= b.y1 - 1 and o.x0 < b.x1 and o.x1 > b.x0 for j, o in enumerate(blocks)
        ):
            notes.add(i)
    if not notes:
        return blocks
    return [b for i, b in enumerate(blocks) if i not in notes] + [b for i, b in enumerate(blocks) if i in notes]


_FOOTNOTE_SIZE = 0.85
"""Footnotes are set at 0.8 of the body size (8 pt under 10 pt; boxes 7.97 vs 9.96 in LEGWORK);
math italic against a Times body measures 0.89 and stays out."""


def _mostly_top_down(blocks: list[_Block]) -> bool:
    """Whether the PDF's own order of these blocks (one column) already runs down the page.

    Equations and figure labels jump up and down a little (sub/superscripts, stacked fractions); a
    stream written in another order (a column's blocks drawn bottom first) jumps up a lot.
    """
    ups = sum(1 for a, b in zip(blocks, blocks[1:]) if b.y1 < a.y0 - 2)
    return ups <= max(1, len(blocks) // 5)


# ----------------------------------------------------------------------------------------------------
# spans -> visual lines, with sub- and superscripts set apart

_Box = tuple[float, float, float, float]
_SCRIPT_HEIGHT = 0.85
"""A span is a script candidate when its box is at most this fraction of the line's main span's height
(TeX's script sizes are 0.7 and 0.5 of the text size)."""
_SCRIPT_SHIFT = 0.15
"""... and its vertical centre sits at least this fraction of that height below (subscript) or above
(superscript) the main span's centre. A smaller font on the same baseline (small capitals, a smaller
text size) moves the centre by well under 0.1; TeX's script shifts move it by 0.2-0.35."""
_WORD_GAP = 0.3
"""MuPDF writes a space where it sees a word gap, but under TEXT_PRESERVE_SPANS a gap wider than its
line-joining distance (a loosely set line) ends the span instead: a gap of this fraction of the line
height between two spans is a space (the gaps between glued spans measure 0-0.17)."""
_KERN_OVERLAP = 0.15
"""A small raised span that overlaps the base text before it by more than this fraction of the line
height is a kerned logo letter (the A of LaTeX), not a superscript: TeX sets scripts after their base."""


def _visual_lines(spans: Sequence[tuple[str, _Box | None]], scripts: str = "mark") -> tuple[str, bool]:
    """Join a block's spans (MuPDF lines under TEXT_PRESERVE_SPANS) into its visual lines.

    ``spans`` are (text, box) in MuPDF's order; ``box`` is the union of the span's word boxes, None for
    a span of whitespace only (it joins the line it is in). A span continues the current visual line
    when its vertical centre lies inside the line's band (the box of its full-size spans so far) or,
    when it is taller than the spans so far, its box spans the band's centre (full-size text after a
    leading superscript), else it starts a new one. Spans of a line are concatenated as MuPDF concatenates them (spaces are
    characters of the spans), except that a sub- or superscript (smaller and shifted, see the
    thresholds above) is set apart from its base: ``f_orb``, ``n^th``, ``abstract^a)`` with
    ``scripts="mark"``, ``f orb`` with ``"space"``, MuPDF's own ``forb`` with ``"join"``; and a gap
    wider than ``_WORD_GAP`` between two spans is a space. Returns the visual lines joined by
    newlines, and whether the first line starts with a superscript (a footnote marker).
    """
    out: list[str] = []
    first_raised = False
    cur: list[tuple[str, _Box | None]] = []
    y0 = y1 = bh = hmin = hmax = 0.0
    nbox = 0
    for span in spans:
        box = span[1]
        if box is not None:
            top, bottom = box[1], box[3]
            h = bottom - top
            if nbox:
                cy = (top + bottom) * 0.5
                if (cy < y0 or cy > y1) and not (bh < _SCRIPT_HEIGHT * h and top <= (y0 + y1) * 0.5 <= bottom):
                    line, raised = _line_text(cur, nbox, hmin, hmax, scripts)
                    first_raised = first_raised or (raised and not out)
                    out.append(line)
                    cur = []
                    nbox = 0
            if not nbox:
                y0, y1, bh, hmin, hmax = top, bottom, h, h, h
            else:
                if h >= _SCRIPT_HEIGHT * bh:  # the band grows (min and max written out: this loop is hot)
                    if top < y0:
                        y0 = top
                    if bottom > y1:
                        y1 = bottom
                    if h > bh:
                        bh = h
                if h < hmin:
                    hmin = h
                elif h > hmax:
                    hmax = h
            nbox += 1
        cur.append(span)
    if cur:
        line, raised = _line_text(cur, nbox, hmin, hmax, scripts)
        first_raised = first_raised or (raised and not out)
        out.append(line)
    return "\n".join(out), first_raised


def _line_text(line: list[tuple[str, _Box | None]], nbox: int, hmin: float, hmax: float, scripts: str) -> tuple[str, bool]:
    """One visual line's text and whether it starts with a superscript; ``nbox`` spans have a box,
    of heights ``hmin``..``hmax``."""
    if nbox < 2:
        return (line[0][0] if len(line) == 1 else "".join([t for t, _ in line])), False
    if hmin > _SCRIPT_HEIGHT * hmax:  # one size throughout: no scripts, only gaps to check
        gap = _WORD_GAP * hmax
        parts: list[str] = []
        prev_x1 = None
        for text, box in line:
            if box is not None:
                if prev_x1 is not None and box[0] - prev_x1 > gap and not text[:1].isspace() and parts and not parts[-1][-1:].isspace():
                    text = " " + text
                prev_x1 = box[2]
            parts.append(text)
        return "".join(parts), False
    return _mark_scripts(line, scripts)


def _mark_scripts(line: list[tuple[str, _Box | None]], scripts: str) -> tuple[str, bool]:
    """One visual line's text, and whether it starts with a superscript."""
    # the main size: the box height that carries most characters (ties: the taller)
    weight: dict[float, int] = {}
    first: dict[float, _Box] = {}  # the first span of each size
    for t, b in line:
        if b is not None:
            k = round(b[3] - b[1], 1)
            if k in weight:
                weight[k] += len(t.strip())
            else:
                weight[k], first[k] = len(t.strip()), b
    size = max(weight, key=lambda k: (weight[k], k))
    main = first[size]
    H = main[3] - main[1]
    cy_main = (main[1] + main[3]) / 2
    gap, script_h, script_shift, kern = _WORD_GAP * H, _SCRIPT_HEIGHT * H, _SCRIPT_SHIFT * H, _KERN_OVERLAP * H
    out: list[str] = []
    base_x1 = None  # right edge of the last full-size span
    prev_kind = ""
    prev_x1 = None
    starts_raised = None
    for text, box in line:
        kind = ""
        if box is not None:
            if prev_x1 is not None and box[0] - prev_x1 > gap and not text[:1].isspace() and out and not out[-1][-1:].isspace():
                text = " " + text
            prev_x1 = box[2]
            h = box[3] - box[1]
            shift = (box[1] + box[3]) / 2 - cy_main
            if h <= script_h and abs(shift) >= script_shift and text.strip():
                if base_x1 is None or box[0] >= base_x1 - kern:
                    kind = "_" if shift > 0 else "^"
            if not kind:
                base_x1 = box[2]
            if starts_raised is None:
                starts_raised = kind == "^"
        if scripts == "join":
            out.append(text)
        elif kind and kind != prev_kind:
            body = text.lstrip()
            lead = text[: len(text) - len(body)]
            if scripts == "mark":
                out.append(lead + kind + body)
            else:  # "space": set apart from a base word it touches
                out.append((lead or (" " if out and out[-1][-1:].isalnum() else "")) + body)
        elif not kind and prev_kind and box is not None and text[:1].isalnum() and out and out[-1][-1:].isalnum():
            out.append(" " + text)  # the base resumes right after a script: "a^3 b", not "a^3b"
        else:
            out.append(text)
        if box is not None:
            prev_kind = kind
    return "".join(out), bool(starts_raised)


def _block_text(raw: str) -> str:
    """Lines of a block joined by newlines, whitespace normalised (hyphen breaks resolved later)."""
    if "  " in raw or "\t" in raw or "\xa0" in raw:
        raw = _SPACES.sub(" ", raw)
    return "\n".join([ln for ln in map(str.strip, raw.split("\n")) if ln])


def _margin_key(text: str) -> str:
    return _DIGITS.sub("#", " ".join(text.lower().split()))


@dataclass
class _RawPage:
    number: int
    width: float
    height: float
    blocks: list[_Block]
    image_coverage: float
    error: str | None = None
    flags: list[str] = field(default_factory=list)


_FIGURE_FRAGMENTS = 3
"""Figures are looked for on pages with at least this many blocks of 3 words or fewer (tick labels,
axis titles, panel labels); other pages are read without the look-up."""


def _read_page(page: pymupdf.Page, scripts: str = "mark", figures: bool = True) -> _RawPage:
    """One page's text blocks and image coverage; with ``figures`` (on a page with
    ``_FIGURE_FRAGMENTS`` short blocks), the text of its figure areas (tick labels, axis titles,
    legends: see corpus.extract.figures) is left out and the page flagged ``figure_text_removed``,
    and figure captions are marked."""
    # text coordinates are those of the unrotated page, origin at the cropbox's top left: a landscape
    # (/Rotate 90) page keeps its running head at the top of the cropbox, not of page.rect
    box = page.cropbox  # computed anew on each access
    w, h = max(box.width, 1.0), max(box.height, 1.0)
    tp = page.get_textpage(flags=_TEXT_FLAGS)
    words = _span_words(tp.extractWORDS())
    blocks: list[_Block] = []
    graphics: list[tuple[float, float, float, float]] = []  # images, then placed form XObjects
    img_area = 0.0
    n_text = 0
    for x0, y0, x1, y1, txt, _no, btype in tp.extractBLOCKS():
        if btype == 1:
            cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
            cx1, cy1 = min(x1, w), min(y1, h)
            if cx1 > cx0 and cy1 > cy0:
                img_area += (cx1 - cx0) * (cy1 - cy0)
            graphics.append((x0, y0, x1, y1))
            continue
        spans, size, marked = _block_spans(txt, words, n_text, scripts)
        n_text += 1
        t = _block_text(spans)
        if t:
            blocks.append(_Block(x0, y0, x1, y1, t, size, marked))
    raw = _RawPage(page.number + 1, w, h, blocks, min(1.0, img_area / (w * h)))
    # a page whose blocks are (nearly) all longer than a few words has no figure text to look for
    if figures and sum(1 for b in blocks if b.text.count(" ") < 3) >= _FIGURE_FRAGMENTS:
        try:
            forms = placed_forms(page)
        except Exception:  # a content stream or form MuPDF reads for text but this walk cannot: no forms
            forms = []
        areas = figure_areas(graphics + forms, w, h)
        if areas:
            drop, captions = figure_text([((b.x0, b.y0, b.x1, b.y1), b.text) for b in blocks], areas, h)
            for i in captions:
                blocks[i].aside = True
            if drop:
                raw.blocks = [b for i, b in enumerate(blocks) if i not in drop]
                raw.flags.append("figure_text_removed")
    return raw


_LINE_KEY = operator.itemgetter(5, 6)  # an extractWORDS row's (text block, line)


def _span_words(words: list[tuple]) -> tuple[list[tuple], dict[tuple[int, int], int]]:
    """extractWORDS rows, and the index of the last row of each (text block, span line). The line's
    first row is ``word_no`` rows before its last: a line's words are consecutive rows numbered from 0."""
    return words, dict(zip(map(_LINE_KEY, words), range(len(words))))


def _block_spans(raw: str, words: tuple[list[tuple], dict], index: int, scripts: str) -> tuple[str, float, bool]:
    """A text block's text as visual lines, its spans' boxes taken from the words of the ``index``-th
    text block (extractWORDS numbers text blocks only; ``words`` as :func:`_span_words` gives them).
    A span's box runs from its first word's left edge to its last word's right edge (the words of a
    span share font, size and baseline). Where the words do not match the block's span lines (a line
    clipped away, another numbering), the block keeps MuPDF's line breaks. Also returns the height of
    the longest span's box (0 if unknown) and whether the block starts with a superscript."""
    spans = raw.split("\n")
    if spans and spans[-1] == "":
        spans.pop()
    rows, last_row = words
    if len(spans) < 2:
        j = last_row.get((index, 0))
        if j is None:
            return raw, 0.0, False
        f = rows[j - rows[j][7]]
        return raw, f[3] - f[1], False
    pairs: list[tuple[str, _Box | None]] = []
    size = 0.0
    longest = 0
    last_of = last_row.get
    for i, text in enumerate(spans):
        j = last_of((index, i))
        if j is None:
            if text and not text.isspace():
                return raw, 0.0, False
            pairs.append((text, None))
            continue
        lw = rows[j]
        f = rows[j - lw[7]]
        if f[4] not in text or lw[4] not in text:
            return raw, 0.0, False
        pairs.append((text, (f[0], f[1], lw[2], f[3])))
        if len(text) > longest:
            longest, size = len(text), f[3] - f[1]
    if (index, len(spans)) in last_row:
        return raw, 0.0, False
    text, marked = _visual_lines(pairs, scripts)
    return text, size, marked


def _strip_margins(pages: list[_RawPage], cfg: PdfExtractConfig) -> None:
    """Remove running headers/footers and page numbers in place, flagging the pages
    (``header_removed``, ``page_number_removed``).

    The lines looked at are those of the top and bottom bands (``cfg.margin_fraction`` of the page
    height): every line of a block that lies in a band, and the first (top) or last (bottom) line of a
    block that reaches into one when that line is short (under ``_HEAD_LINE`` of the block's longest),
    since MuPDF may set a running head or footer in one block with the text next to it. A line is furniture when, with digits masked (page numbers differ) and in the
    same band, it occurs on 2 pages or more (running heads alternate between even and odd pages, so
    each is on half of them; a 3-page erratum shows its footer twice), or when it is the page's
    topmost or bottommost line and starts or ends with the page's own number while another page's
    topmost or bottommost line does too (``2 Grudic et al.`` and ``Title 3``: each shown once). A
    block in a band whose text is a page number alone (``12``, ``iv``, ``Page 3 of 9``) goes too.
    """
    if not cfg.remove_headers:
        return
    counts: Counter[tuple[str, str]] = Counter()
    lines_of: list[list[tuple[int, int, str, str, bool]]] = []  # per page: (block, line, band, text, whole block in band)
    for p in pages:
        band = cfg.margin_fraction * p.height
        found = []
        for bi, b in enumerate(p.blocks):
            top, bottom = b.y0 <= band, b.y1 >= p.height - band
            inside = b.y1 <= band or b.y0 >= p.height - band
            if not (top or bottom or inside):  # clear of both bands
                continue
            lines = b.text.split("\n")
            if inside:  # the whole block is in a band
                found += [(bi, li, "top" if top else "bottom", ln, True) for li, ln in enumerate(lines)]
            elif len(lines) >= 2:  # only a short first or last line: a full one is running text
                short = _HEAD_LINE * max(len(ln) for ln in lines)
                if top and len(lines[0]) < short:
                    found.append((bi, 0, "top", lines[0], False))
                if bottom and len(lines[-1]) < short:
                    found.append((bi, len(lines) - 1, "bottom", lines[-1], False))
        lines_of.append(found)
        counts.update({(where, _margin_key(ln)) for _, _, where, ln, _ in found})
    outer = [_outer_numbered_lines(p, found) for p, found in zip(pages, lines_of)]
    numbered_pages = sum(1 for o in outer if o)
    for p, found, numbered in zip(pages, lines_of, outer):
        drop: dict[int, set[int]] = {}
        for bi, li, where, ln, whole in found:
            if whole and _PAGE_NUMBER.match(ln):
                p.flags.append("page_number_removed")
            elif len(pages) >= 2 and (
                (counts[(where, _margin_key(ln))] >= 2 and len(_LETTERS.findall(ln)) >= 3)
                or (numbered_pages >= 2 and (bi, li) in numbered)
            ):
                p.flags.append("header_removed")
            else:
                continue
            drop.setdefault(bi, set()).add(li)
        if drop:
            keep = []
            for bi, b in enumerate(p.blocks):
                if bi in drop:
                    b.text = "\n".join(ln for li, ln in enumerate(b.text.split("\n")) if li not in drop[bi])
                if b.text.strip():
                    keep.append(b)
            p.blocks = keep


_ARXIV_STAMP = re.compile(r"arXiv:\s*\S+\s*\[[^\]]+\]\s*\d{1,2}\s*[A-Z][a-z]{2}\s*\d{4}")
_LINE_NUMBERS = re.compile(r"^[\d\s]+$")
_COLUMN_BLOCK_CHARS = 100
"""Blocks of at least this many characters are running text: they mark out the text column."""


def _column_bounds(pages: list[_RawPage]) -> dict[int, tuple[float, float]]:
    """The text column's left and right edges for odd (1) and even (0) pages: the 10th percentile of
    the left edges and the 90th percentile of the right edges of the long blocks of pages of that
    parity (of all pages where one parity has fewer than 5; books set the wide margin outside)."""
    edges: dict[int, tuple[list[float], list[float]]] = {0: ([], []), 1: ([], [])}
    for p in pages:
        for b in p.blocks:
            if len(b.text) >= _COLUMN_BLOCK_CHARS:
                edges[p.number % 2][0].append(b.x0)
                edges[p.number % 2][1].append(b.x1)
    both = (edges[0][0] + edges[1][0], edges[0][1] + edges[1][1])
    out = {}
    for parity, (x0s, x1s) in edges.items():
        if len(x0s) < 5:
            x0s, x1s = both
        if x0s:
            x0s, x1s = sorted(x0s), sorted(x1s)
            out[parity] = (x0s[len(x0s) // 10], x1s[(len(x1s) * 9) // 10])
    return out


def _strip_side_margins(pages: list[_RawPage]) -> str | None:
    """Take text that lies beside the text column (wholly left or right of it, see
    :func:`_column_bounds`) out of the running text, in place; returns arXiv's margin stamp.

    arXiv's stamp (``arXiv:2301.00001v1 [astro-ph.GA] 2 Jan 2023``, vertical in the left margin; also
    a block that is the stamp alone anywhere) is removed and returned (the first one, spaces
    normalised), the page flagged ``arxiv_stamp_removed``; line numbers (digits only) are removed
    (``margin_text_removed``); other margin text (a margin note, a glossary term) is moved after the
    page's running text (``margin_note_moved``), so that it no longer splits a sentence.
    """
    bounds = _column_bounds(pages)
    stamp = None
    for p in pages:
        left, right = bounds.get(p.number % 2, (float("-inf"), float("inf")))
        keep = []
        for b in p.blocks:
            outside = b.x1 <= left + 1 or b.x0 >= right - 1
            m = _ARXIV_STAMP.search(b.text)
            if m and (outside or m.group(0) == b.text.strip()):
                stamp = stamp or " ".join(m.group(0).split())
                p.flags.append("arxiv_stamp_removed")
                continue
            if outside:
                if _LINE_NUMBERS.match(b.text):
                    p.flags.append("margin_text_removed")
                    continue
                b.aside = True
                p.flags.append("margin_note_moved")
            keep.append(b)
        p.blocks = keep
    return stamp


_HEAD_LINE = 0.6
_LETTERS = re.compile(r"[^\W\d_]")
_NUMBERED = re.compile(r"^\s*(\d{1,4})\s+\S.*|.*\S\s+(\d{1,4})\s*$")


def _outer_numbered_lines(p: _RawPage, found: list[tuple[int, int, str, str, bool]]) -> set[tuple[int, int]]:
    """(block, line) of the page's topmost and bottommost band lines that start or end with the
    page's own number (a running head or footer that carries the page number)."""
    out = set()
    for where in ("top", "bottom"):
        cands = [(bi, li, ln) for bi, li, w, ln, _ in found if w == where]
        if not cands:
            continue
        if where == "top":
            bi, li, ln = min(cands, key=lambda c: (p.blocks[c[0]].y0, c[1]))
        else:
            bi, li, ln = max(cands, key=lambda c: (p.blocks[c[0]].y1, c[1]))
        m = _NUMBERED.match(ln)
        if m and int(m.group(1) or m.group(2)) == p.number and len(ln.split()) <= 12:
            out.add((bi, li))
    return out


_PUNCT = "\"'“”‘’`.,;:!?()[]{}<>«»–—/*"
_TRAILING_WORD = re.compile(r"(?<![^\W\d_])[^\W\d_]+$")  # tried at the start of each letter run only
_LEADING_WORD = re.compile(r"[^\W\d_]+")


def _dehyphenate(texts: list[str]) -> list[str]:
    """Resolve ``left-\nright`` line breaks, using the document itself as the dictionary.

    Joined (``left`` + ``right``) when the joined word occurs elsewhere in the document; hyphen kept
    (``left-right``) when the compound is written with a hyphen elsewhere; otherwise joined when
    ``right`` starts lower-case (``cal-\nculating``) and hyphen kept when it starts upper-case
    (``non-\nGaussian``), unless both halves are upper-case (``LEG-\nWORK``).
    """
    if not any("-\n" in t for t in texts):
        return texts
    words = {tok.strip(_PUNCT) for tok in set("\n".join(texts).lower().split())}
    compounds: set[tuple[str, str]] = set()
    for tok in words:
        if "-" in tok:
            parts = tok.split("-")
            compounds.update(zip(parts, parts[1:]))

    def decide(left: str, right: str) -> bool:
        """True: join without the hyphen."""
        ll, rl = left.lower(), right.lower()
        if ll + rl in words:
            return True
        if (ll, rl) in compounds:
            return False
        return right[0].islower() or (left.isupper() and right.isupper())

    out = []
    for t in texts:
        pieces = t.split("-\n")
        if len(pieces) == 1:
            out.append(t)
            continue
        buf = [pieces[0]]
        for nxt in pieces[1:]:
            prev = buf[-1]
            lm = _TRAILING_WORD.search(prev[-64:])
            rm = _LEADING_WORD.match(nxt)
            if lm is None or rm is None:  # "1-\n2", "x -\n": not a hyphenated word, keep as it was
                buf.append("-\n" + nxt)
            elif decide(lm.group(0), rm.group(0)):
                buf.append(nxt)
            else:
                buf.append("-" + nxt)
        out.append("".join(buf))
    return out


_NAME = r"(?:(?:van|von|de|der|den|du|da|di|le|la)\s+)*[A-Z][A-Za-z'\u2019\-]+(?:\s+[A-Z][A-Za-z'\u2019\-]+)*"
_AUTHORS = _NAME + r"(?:\s*(?:,|&|and)\s*" + _NAME + r")*(?:\s+et\s+al\.?)?"
_YEAR = r"(?:1[89]|20)\d{2}[a-z]?"
_LOCATOR = r"(?:\s*,\s*(?:Eqs?|Sects?|Section|Figs?|Table|Tab|Chapter|Ch|App|p|pp)\.?\s*[\w.\-\u2013]+)?"
_CITATION = _AUTHORS + r",?\s+" + _YEAR + r"(?:\s*,\s*" + _YEAR + r")*" + _LOCATOR
_CITE_PREFIX = r"(?:(?:e\.\s?g\.?|i\.\s?e\.|see(?:\s+also)?|cf\.)\s*,?\s*)?"
_PARENTHETICAL = re.compile(  # "(?: \(|\t\(|\()" is "[ \t]?\(" with literal first characters, which the engine skips ahead by
    r"(?: \(|\t\(|\()" + _CITE_PREFIX + _CITATION + r"(?:\s*[;,]\s*" + _CITE_PREFIX + _CITATION + r")*\s*\)"
)


def drop_parenthetical_citations(text: str) -> str:
    """Remove author-year citations in parentheses (``(Peters 1964)``, ``(e.g. A et al. 2015; B & C
    2019, Eq. 1)``) and the blank before them; ``Peters (1964)`` and other parentheses stay."""
    return _PARENTHETICAL.sub("", text)


def _flow(text: str) -> str:
    """Join the remaining line breaks inside a block into spaces (blocks stay separated by blank lines)."""
    return "\n\n".join(" ".join(b.split("\n")) for b in text.split("\n\n"))


# ----------------------------------------------------------------------------------------------------
# the entry point


class _Alarm:
    """SIGALRM-based hard limit, active only in the main thread of a POSIX process."""

    def __init__(self, seconds: float | None, name: str):
        self.seconds = seconds
        self.name = name
        self.active = False
        self.armed = False

    def _handler(self, signum, frame):
        if self.armed:  # never raise while the alarm is being disarmed
            raise PdfError(self.name, "timeout", f"time limit {self.seconds:g}s exceeded")

    def __enter__(self):
        if (
            self.seconds
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0  # never clobber a caller's timer
        ):
            self.active = True
            self.armed = True
            self.previous = signal.signal(signal.SIGALRM, self._handler)
            try:
                signal.setitimer(signal.ITIMER_REAL, self.seconds)
            except BaseException:  # a tiny limit can fire before __enter__ returns: restore, re-raise
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc):
        self.armed = False
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
        return False


def extract_pdf(
    source: str | Path | bytes,
    config: PdfExtractConfig | None = None,
    *,
    name: str | None = None,
    pages: Iterable[int] | None = None,
) -> PdfResult:
    """Extract the text layer of a PDF page by page; raises :class:`PdfError` for a bad file.

    ``source`` is a path or the file's bytes (then ``name`` names it in errors; default ``<bytes>``).
    ``pages`` restricts extraction to these 1-based page numbers (running headers are still detected
    on the pages read, so give a range of at least a few pages).
    """
    cfg = config or PdfExtractConfig()
    if cfg.scripts not in ("mark", "space", "join"):
        raise ValueError(f"PdfExtractConfig.scripts must be 'mark', 'space' or 'join'; got {cfg.scripts!r}")
    if cfg.figure_text not in ("drop", "keep"):
        raise ValueError(f"PdfExtractConfig.figure_text must be 'drop' or 'keep'; got {cfg.figure_text!r}")
    label = name or (str(source) if not isinstance(source, (bytes, bytearray, memoryview)) else "<bytes>")
    start = time.monotonic()
    with _Alarm(cfg.time_limit_s, label):
        doc = _open(source, label)
        try:
            wanted = range(1, doc.page_count + 1) if pages is None else sorted(set(pages))
            raw: list[_RawPage] = []
            for number in wanted:
                if not 1 <= number <= doc.page_count:
                    raise ValueError(f"{label}: page {number} out of range 1..{doc.page_count}")
                if cfg.time_limit_s is not None and time.monotonic() - start > cfg.time_limit_s:
                    raise PdfError(label, "timeout", f"time limit {cfg.time_limit_s:g}s exceeded at page {number}")
                try:
                    raw.append(_read_page(doc[number - 1], cfg.scripts, cfg.figure_text == "drop"))
                except PdfError:
                    raise
                except Exception as e:  # one unreadable page is a page-level failure, not a file-level one
                    raw.append(_RawPage(number, 1.0, 1.0, [], 0.0, error=f"{type(e).__name__}: {e}"))
            if raw and all(p.error for p in raw):
                raise PdfError(label, "corrupt", f"no page could be read ({raw[0].error})")
            metadata = {k: str(v).strip() for k, v in (doc.metadata or {}).items() if v and str(v).strip()}
            n_pages = doc.page_count
        finally:
            doc.close()

        _strip_margins(raw, cfg)
        stamp = _strip_side_margins(raw) if cfg.remove_headers else None
        texts = []
        for p in raw:
            blocks = _order_blocks(p.blocks, p.width) if cfg.reading_order else p.blocks
            if cfg.join_pieces:
                blocks = _join_pieces(blocks)
            if any(b.aside for b in blocks):
                blocks = [b for b in blocks if not b.aside] + [b for b in blocks if b.aside]
            if cfg.footnotes_last:
                blocks = _footnotes_last(blocks, p.height)
            text = "\n\n".join(b.text for b in blocks)
            if _LIGATURE_CHARS.search(text):  # MuPDF expands most; fonts mapping to U+FB0x keep them
                text = text.translate(_LIGATURES)
            texts.append(text)
        if cfg.dehyphenate:
            _join_page_hyphens(texts, [p.number for p in raw])
            texts = _dehyphenate(texts)
        if cfg.drop_toc:  # before _flow: one entry a line
            for i, p in enumerate(raw):
                texts[i], n = drop_toc_lines(texts[i])
                p.flags += [f"toc_removed:{n}"] if n else []
        texts = [_flow(t) for t in texts]
        if cfg.parenthetical_citations == "drop":
            texts = [drop_parenthetical_citations(t) for t in texts]
        cjk = is_cjk("\n".join(texts))
        out = [_page(p, t, sorted(set(p.flags)), cfg, cjk) for p, t in zip(raw, texts)]

    first_line = next((ln.strip() for p in out for ln in p.text.split("\n") if ln.strip()), None)
    return PdfResult(label, n_pages, out, metadata, first_line, stamp)


_PAGE_END_HYPHEN = re.compile(r"[^\W\d_]-$")
_PAGE_START_WORD = re.compile(r"[a-zß-ÿ][^\W\d_]*[.,;:]?")


def _join_page_hyphens(texts: list[str], numbers: list[int]) -> None:
    """A word hyphenated across a page break moves whole onto the earlier page (offsets stay per page)."""
    for i in range(len(texts) - 1):
        if numbers[i + 1] != numbers[i] + 1:
            continue
        a, b = texts[i], texts[i + 1]
        m = _PAGE_END_HYPHEN.search(a[-3:])  # the end alone: a search of the whole page costs per letter
        n = _PAGE_START_WORD.match(b)
        if m and n:
            texts[i] = a + "\n" + n.group(0)  # becomes "-\n" + fragment: dehyphenated like a line break
            texts[i + 1] = b[n.end() :].lstrip()


def _page(p: _RawPage, text: str, layout_flags: list[str], cfg: PdfExtractConfig, cjk: bool) -> PdfPage:
    if p.error:
        return PdfPage(p.number, "", 0, 1.0, ["error"], True, f"{FLAG_REASONS['error']}: {p.error}")
    fix = fix_glyphs(text, cjk)
    s = text_signals(fix.text, fix.removed)
    page = PdfPage(
        page=p.number, text=fix.text, chars=s.chars, garbled=round(s.garbled, 4),
        image_coverage=round(p.image_coverage, 4), math_glyph_fraction=round(s.math_glyph_fraction, 4),
        nonword_fraction=round(s.nonword_fraction, 4), bad_char_fraction=round(s.bad_char_fraction, 4),
        bad_glyphs=fix.removed,
    )
    signals = PageSignals.from_page(page)  # the rounded values, exactly what a router reads later
    counts = [f"{name}:{n}" for name, n in (("bad_glyphs_removed", fix.removed), ("math_glyphs_repaired", fix.repaired)) if n]
    page.flags = signal_flags(signals, cfg.routing) + layout_flags + counts
    page.needs_ocr, why = decide(signals, cfg.routing)
    page.reason = why if page.needs_ocr else None
    return page
