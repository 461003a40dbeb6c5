"""Figure areas of a PDF page, and the text blocks that belong to them rather than to the prose.

A plot's tick labels, axis titles, legends and panel labels are text in the PDF's text layer; read
in order they land mid-sentence ("marginally faster than / 6 / relative flux [ppt] / 4 ..."). This
module finds where a page's figures are, from the graphics MuPDF collects alongside the text
(``TEXT_COLLECT_VECTORS`` vector blocks and ``TEXT_PRESERVE_IMAGES`` image blocks, both nearly free
in the same text-page pass), and says which text blocks are figure text:

1. :func:`figure_areas` - graphics are grouped into clusters (boxes that overlap or lie within
   ``_CLUSTER_GAP`` of each other, hairlines left out); a cluster is a figure when it holds an image,
   or a vector path that is not a rectangle (a curve, a marker, a slanted line), and is at least
   ``_MIN_FIGURE`` of the page wide and high. Rectangles and hairlines alone are table rules, boxes,
   shaded panels and fraction bars, not figures; a cluster covering nearly the whole page is a
   background, not a figure.
2. :func:`figure_text` - a text block whose centre lies in a figure area is figure text; then,
   repeatedly, a short block (fewer than ``_SHORT_WORDS`` words) within ``_ABSORB_GAP`` of an area
   joins it (tick labels and axis titles sit just outside the axes, an axis title just outside the
   tick labels), and the area grows to hold it. A caption (``Figure 3.``, ``Fig. 3``, ``Table 2``)
   is never figure text, nor is a section heading or a block of prose (``_PROSE_WORDS`` words or
   more); captions above or below a figure area (within ``_CAPTION_GAP``, overlapping it
   horizontally) are returned apart, so that they can be moved out of the running text.
"""

from __future__ import annotations

import re
from typing import Sequence

Box = tuple[float, float, float, float]

HAIRLINE = 1.5
"""Vector paths thinner than this (points) in either direction are rules, ticks, fraction bars and
underlines: they neither make nor join a figure."""
_CLUSTER_GAP = 3.0
"""Graphics within this distance (points) of each other belong to one cluster."""
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


def figure_areas(graphics: Sequence[tuple[Box, bool]], width: float, height: float) -> list[Box]:
    """The figure areas of a page from its graphics: (box, is_figure_evidence) pairs, where the flag
    is True for an image or a vector path that is not a rectangle (see the module docstring)."""
    items = [
        (b, ev) for b, ev in graphics
        if b[2] - b[0] >= HAIRLINE and b[3] - b[1] >= HAIRLINE
    ]
    if not any(ev for _, ev in items):
        return []
    items.sort(key=lambda it: it[0][1])
    done: list[list] = []  # [x0, y0, x1, y1, evidence]
    active: list[list] = []
    last: list | None = None
    for (x0, y0, x1, y1), ev in items:
        # fast path: a plot's markers and curve segments mostly fall inside the cluster grown last
        if last is not None and last[0] <= x0 and last[1] <= y0 and x1 <= last[2] and y1 <= last[3]:
            last[4] = last[4] or ev
            continue
        # clusters that end above this box (less the gap) can never be touched again: boxes come by y0
        still = []
        for c in active:
            (still if c[3] >= y0 - _CLUSTER_GAP else done).append(c)
        active = still
        touching = [
            c for c in active
            if x0 <= c[2] + _CLUSTER_GAP and c[0] <= x1 + _CLUSTER_GAP and y0 <= c[3] + _CLUSTER_GAP
        ]
        if not touching:
            last = [x0, y0, x1, y1, ev]
            active.append(last)
            continue
        keep = last = touching[0]
        for c in touching[1:]:
            active.remove(c)
            keep[0], keep[1], keep[2], keep[3] = min(keep[0], c[0]), min(keep[1], c[1]), max(keep[2], c[2]), max(keep[3], c[3])
            keep[4] = keep[4] or c[4]
        keep[0], keep[1], keep[2], keep[3] = min(keep[0], x0), min(keep[1], y0), max(keep[2], x1), max(keep[3], y1)
        keep[4] = keep[4] or ev
    done.extend(active)
    # merging can make two finished clusters overlap (a box joined the later one only): merge again
    areas = _merge_overlapping([c for c in done])
    page_area = width * height
    return [
        (c[0], c[1], c[2], c[3]) for c in areas
        if c[4]
        and c[2] - c[0] >= _MIN_FIGURE * width and c[3] - c[1] >= _MIN_FIGURE * height
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
                    o[4] = o[4] or c[4]
                    changed = True
                    break
            else:
                out.append(c)
        clusters = out
    return clusters


def figure_text(blocks: Sequence[tuple[Box, str]], areas: Sequence[Box], height: float) -> tuple[set[int], set[int]]:
    """(figure text, captions): indexes of ``blocks`` ((box, text) pairs) that are text of the figure
    ``areas``, and of the caption blocks next to a figure area (see the module docstring)."""
    if not areas:
        return set(), set()
    regions = [list(a) for a in areas]
    words = [len(t.split()) for _, t in blocks]
    caption = [bool(CAPTION.match(t)) for _, t in blocks]
    keep = [caption[i] or words[i] >= _PROSE_WORDS or bool(_HEADING.match(t)) for i, (_, t) in enumerate(blocks)]
    inside: set[int] = set()
    for i, (b, _) in enumerate(blocks):
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
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
