"""Figure areas of a PDF page, and the text blocks that belong to them rather than to the prose.

A plot's tick labels, axis titles, legends and panel labels are text in the PDF's text layer; read
in order they land mid-sentence ("marginally faster than / 6 / relative flux [ppt] / 4 ..."). This
module finds where a page's figures are and says which text blocks are figure text:

1. :func:`placed_forms` - where the page draws its form XObjects: pdfLaTeX includes a PDF figure
   (every plotting library's vector output) as one, and its box holds the plot with its labels.
   Images come from the text page itself (``TEXT_PRESERVE_IMAGES`` image blocks). Both are nearly
   free; collecting the vector paths themselves (``TEXT_COLLECT_VECTORS``) costs a fifth of the
   page's parse, ends a text block at every path, and is not done: a figure drawn straight into the
   page's content (TikZ, a publisher's flattened PDF) is not found.
   :func:`figure_areas` - images and forms that overlap or touch are one area (a figure's panels);
   too small a one (a logo, an inline symbol) or one covering nearly the whole page (a scan, a page
   imposed as a form) is no figure.
2. :func:`figure_text` - a text block whose centre lies in a figure area is figure text; then,
   repeatedly, a short block (fewer than ``_SHORT_WORDS`` words) within ``_ABSORB_GAP`` of an area
   joins it (tick labels and axis titles sit just outside the axes, an axis title just outside the
   tick labels), and the area grows to hold it. A caption (``Figure 3.``, ``Fig. 3``, ``Table 2``)
   is never figure text, nor is a section heading or a block of prose (``_PROSE_WORDS`` words or
   more); captions above or below a figure area (within ``_CAPTION_GAP``, overlapping it
   horizontally) are returned apart, so that they can be moved out of the running text. An area
   where blocks of prose hold most of the characters inside it is a text container (a boxed panel
   placed as a form), not a figure: nothing in it is figure text.
"""

from __future__ import annotations

import re
from typing import Sequence

import pymupdf

Box = tuple[float, float, float, float]
_Matrix = tuple[float, float, float, float, float, float]

_CLUSTER_GAP = 3.0
"""Images and forms within this distance (points) of each other are one figure."""
_MIN_FIGURE = 0.08
"""A figure is at least this fraction of the page's width and of its height."""
_BACKGROUND = 0.9
"""A cluster covering this fraction of the page area or more is a page background."""
_ABSORB_GAP = 0.012
"""Short blocks within this fraction of the page height of a figure area join it (about 10 pt)."""
_CAPTION_GAP = 0.05
"""A caption within this fraction of the page height of a figure area (about 40 pt) is its caption."""
_SHORT_WORDS = 10
_PROSE_WORDS = 25

CAPTION = re.compile(r"^\s*(?:Fig\.|Figs\.|Figure|FIG\.|FIGURE|Table|TABLE|Tab\.)\s*[A-Z]?\d+[a-z]?\b")
"""The start of a figure or table caption."""
_HEADING = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?|[IVX]+\.|[A-Z]\.)\s+[A-Z][A-Za-z]")


_CONTENT_OPS = re.compile(rb"[qQcD](?:(?<=[qQ])(?=[\s/\[(<]|$)|(?<=c)m(?![^\s/\[(<])|(?<=D)o(?![^\s/\[(<]))")
"""Where the operators q, Q, cm and Do may be (operands are read back from there): ``q`` or ``Q``
before a delimiter or the end, ``cm`` or ``Do`` not running on into a name. Written to start with
one character class, which the regex engine skips ahead by (a pattern of alternatives scans 5 times
slower)."""
_DELIMITERS = frozenset(b" \t\r\n\x0c\x00)]>")
_REFS = re.compile(r"/([^\s/<>\[\]()]+)\s*(\d+)\s+0\s+R")
_NUMBERS = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")


def placed_forms(page: pymupdf.Page) -> list[Box]:
    """Where the page's content stream draws its form XObjects (pdfLaTeX's ``\\includegraphics`` of
    a PDF figure, a plotting library's vector figure), in the coordinates of the unrotated page with
    the cropbox's top left as origin (those of the text): the form's ``/BBox`` through its
    ``/Matrix`` and the current transformation at its ``Do``, which is followed through ``q``, ``Q``
    and ``cm``. Forms drawn inside other forms are not looked at. A page whose resources name no
    XObject costs one dictionary lookup; others, one regular-expression pass over the content.
    """
    doc = page.parent
    kind, val = doc.xref_get_key(page.xref, "Resources/XObject")
    if kind == "xref":
        val = doc.xref_object(int(val.split()[0]), compressed=True)
    elif kind != "dict":
        return []
    names = {n.encode(): int(x) for n, x in _REFS.findall(val)}
    if not names:
        return []
    forms: dict[int, tuple[list[float], _Matrix] | None] = {}
    ctm: _Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    stack: list[_Matrix] = []
    top = x0 = y0 = None  # the page's geometry, read at the first form (MuPDF's boxes are slow to get)
    out: list[Box] = []
    content = page.read_contents()
    last_do = content.rfind(b"Do")
    if last_do < 0:
        return []
    content = content[: last_do + 3]  # nothing after the last Do moves a form (one byte kept: "Do" ends there)
    for m in _CONTENT_OPS.finditer(content):
        at = m.start()
        if at and content[at - 1] not in _DELIMITERS:  # inside a word or a number: no operator
            continue
        op = m.group()
        if op[:1] == b"q":
            stack.append(ctm)
        elif op[:1] == b"Q":
            ctm = stack.pop() if stack else ctm
        elif op == b"cm":
            try:
                ctm = _concat(tuple(float(v) for v in content[max(0, at - 120) : at].split()[-6:]), ctm)
            except ValueError:  # not six numbers before it
                continue
        else:
            before = content[max(0, at - 130) : at].split()
            name = before[-1][1:] if before and before[-1][:1] == b"/" else b""
            if name not in names:
                continue
            xref = names[name]
            if xref not in forms:
                forms[xref] = _form(doc, xref)
            if forms[xref] is None:
                continue
            bbox, matrix = forms[xref]
            full = _concat(matrix, ctm)
            xs, ys = [], []
            for x, y in ((bbox[0], bbox[1]), (bbox[0], bbox[3]), (bbox[2], bbox[1]), (bbox[2], bbox[3])):
                xs.append(full[0] * x + full[2] * y + full[4])
                ys.append(full[1] * x + full[3] * y + full[5])
            if top is None:
                top, (x0, y0) = page.mediabox.y1, page.cropbox.tl
            out.append((min(xs) - x0, top - max(ys) - y0, max(xs) - x0, top - min(ys) - y0))
    return out


def _form(doc: pymupdf.Document, xref: int) -> tuple[list[float], _Matrix] | None:
    """A form XObject's bounding box and matrix; None for an image XObject or a malformed form."""
    if doc.xref_get_key(xref, "Subtype")[1] != "/Form":
        return None
    bbox = [float(v) for v in _NUMBERS.findall(doc.xref_get_key(xref, "BBox")[1])]
    matrix = [float(v) for v in _NUMBERS.findall(doc.xref_get_key(xref, "Matrix")[1])]
    if len(bbox) != 4:
        return None
    return bbox, (tuple(matrix) if len(matrix) == 6 else (1.0, 0.0, 0.0, 1.0, 0.0, 0.0))


def _concat(m: Sequence[float], n: _Matrix) -> _Matrix:
    """The matrix ``m`` then ``n`` (PDF's row-vector convention: ``m x n``)."""
    a, b, c, d, e, f = m
    A, B, C, D, E, F = n
    return (a * A + b * C, a * B + b * D, c * A + d * C, c * B + d * D, e * A + f * C + E, e * B + f * D + F)


def figure_areas(graphics: Sequence[Box], width: float, height: float) -> list[Box]:
    """The figure areas of a page from the boxes of its images and placed form XObjects: boxes that
    overlap or lie within ``_CLUSTER_GAP`` of each other are one area (the panels of a figure); an
    area narrower or lower than ``_MIN_FIGURE`` of the page (a logo, an inline symbol) or covering
    ``_BACKGROUND`` of it (a scanned page, a page imposed as one form) is no figure."""
    areas = _merge_overlapping([list(b) for b in graphics])
    page_area = width * height
    return [
        (c[0], c[1], c[2], c[3]) for c in areas
        if c[2] - c[0] >= _MIN_FIGURE * width and c[3] - c[1] >= _MIN_FIGURE * height
        and (c[2] - c[0]) * (c[3] - c[1]) < _BACKGROUND * page_area
    ]


def _merge_overlapping(clusters: list[list]) -> list[list]:
    changed = True
    while changed:
        changed = False
        out: list[list] = []
        for c in clusters:
            for o in out:
                if c[0] <= o[2] + _CLUSTER_GAP and o[0] <= c[2] + _CLUSTER_GAP and c[1] <= o[3] + _CLUSTER_GAP and o[1] <= c[3] + _CLUSTER_GAP:
                    o[0], o[1], o[2], o[3] = min(o[0], c[0]), min(o[1], c[1]), max(o[2], c[2]), max(o[3], c[3])
                    changed = True
                    break
            else:
                out.append(c)
        clusters = out
    return clusters


def figure_text(blocks: Sequence[tuple[Box, str]], areas: Sequence[Box], height: float) -> tuple[set[int], set[int]]:
    """(figure text, captions): indexes of ``blocks`` ((box, text) pairs) that are text of the figure
    ``areas``, and of the caption blocks next to a figure area (see the module docstring)."""
    regions = [list(a) for a in areas]
    words = [len(t.split()) for _, t in blocks]
    caption = [bool(CAPTION.match(t)) for _, t in blocks]
    keep = [caption[i] or words[i] >= _PROSE_WORDS or bool(_HEADING.match(t)) for i, (_, t) in enumerate(blocks)]
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b, _ in blocks]
    regions = [r for r in regions if not _holds_prose(r, blocks, centres, words)]
    inside: set[int] = set()
    for i, (cx, cy) in enumerate(centres):
        if not keep[i] and any(r[0] <= cx <= r[2] and r[1] <= cy <= r[3] for r in regions):
            inside.add(i)
    gap = _ABSORB_GAP * height
    grown = True
    while grown:
        grown = False
        for i, (b, _) in enumerate(blocks):
            if i in inside or keep[i] or words[i] >= _SHORT_WORDS:
                continue
            for r in regions:
                if b[0] <= r[2] + gap and r[0] <= b[2] + gap and b[1] <= r[3] + gap and r[1] <= b[3] + gap:
                    inside.add(i)
                    r[0], r[1], r[2], r[3] = min(r[0], b[0]), min(r[1], b[1]), max(r[2], b[2]), max(r[3], b[3])
                    grown = True
                    break
    near = _CAPTION_GAP * height
    captions = {
        i for i, (b, _) in enumerate(blocks)
        if caption[i] and any(b[0] <= r[2] and r[0] <= b[2] and b[1] <= r[3] + near and r[1] <= b[3] + near for r in regions)
    }
    return inside, captions


def _holds_prose(r: list[float], blocks: Sequence[tuple[Box, str]], centres: list[tuple[float, float]], words: list[int]) -> bool:
    """Whether blocks of prose (``_PROSE_WORDS`` words or more) hold most characters inside ``r``."""
    prose = other = 0
    for i, (cx, cy) in enumerate(centres):
        if r[0] <= cx <= r[2] and r[1] <= cy <= r[3]:
            if words[i] >= _PROSE_WORDS:
                prose += len(blocks[i][1])
            else:
                other += len(blocks[i][1])
    return prose > other
