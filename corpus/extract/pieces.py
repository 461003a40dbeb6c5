"""Text blocks that MuPDF splits out of one paragraph, put back together (the PDF path's page layout).

MuPDF makes a text block of every run of lines it finds close together. A displayed equation set by
TeX comes out as many small blocks (a fraction's numerator and denominator, a big bracket, a
sub- or superscript line, the equation number), a table whose cells are set apart as one block per
cell, and a reference list with a hanging indent as one block per line (``doi: 10.1103/...`` on its
own). Read as paragraphs they are fragments: ``2π``, ``32``, ``{[``, ``(5)``. :func:`join_pieces`
says which consecutive blocks (in reading order) belong together:

* a **display** - a run of consecutive *pieces* (blocks with at most ``_PIECE_WORDS`` words of three
  letters or more: math, numbers, a ``where``), each within ``_PIECE_GAP`` body sizes above or below
  the run so far and overlapping it horizontally or on its baseline, with a math sign among them or
  lying on one baseline - becomes one block, in the order the PDF gives (TeX's order: numerator
  before denominator), its equation number ``(20)`` moved to its end; a prose block whose first line
  lies on the run's last baseline (``where <math> and <math>, the orbit-averaged ...``) takes the run
  in front of it;
* a **table** - a run of pieces that lie in two or more rows of two or more cells each, every row's
  cells on one baseline - becomes one block per row, cells left to right;
* a **reference continuation** - a block set with a hanging indent right under a one-line block of
  the same size that does not end a sentence (or that starts with ``doi:``, a URL or ``arXiv:``) - is
  joined to the entry it continues.

Prose blocks (more than ``_PIECE_WORDS`` long words) are never split or reordered.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Protocol, Sequence


class Box(Protocol):
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    size: float
    aside: bool


_PIECE_WORDS = 3
"""A block with at most this many words of 3+ letters is a piece (``F(e) ≡``, ``where``, ``_orb and``);
a prose line has 6-12."""
_PIECE_GAP = 0.8
"""A piece continues a run when its box is at most this many body sizes above or below the run's box
(lines of one multi-line display lie 0.6-0.8 apart; a display and a heading, 1.1 or more)."""
_SCRIPT_SIZE = 0.9
"""A piece set smaller than this fraction of the body size is a script or a limit (``−∞`` under ``∫``)."""
_ROW_SHIFT = 0.3
"""Cells of one table row: vertical centres within this fraction of the body size of each other."""
_INDENT = (0.5, 4.0)
"""A hanging indent: the continuation starts this many body sizes (min, max) right of its entry."""
_ENTRY_GAP = 1.0
"""A continuation starts at most this many body sizes under the line before it (a reference list's
lines lie 0.4 apart, 0.9 where TeX stretches a last page's columns to equal length)."""
_LONG_WORD = re.compile(r"[^\W\d_]{3,}")
_MATH = re.compile(r"[=+−×·^_<>≤≥≈∼∝±∑∏∫√∂∇≡⟨⟩\[\]{}|\u0370-\u03ff\U0001d400-\U0001d7ff]|^\W*\(\d+[a-z]?\)\W*$")
"""Signs of math in a run of pieces (parentheses, slashes and hyphens are common in plain text too;
``_`` and ``^`` are the sub- and superscripts the PDF path marks)."""
_HEADING = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[IVX]+\.|[A-Z]\.)[ \t]+[^\W\d_]|^[^a-z]*[A-Z]{4}[^a-z]*$")
_EQ_NUMBER = re.compile(r"^\W*\(\d+[a-z]?\)\W*$")
_SENTENCE_END = re.compile(r"[.!?:]$")
_LINK = re.compile(r"^(?:doi:|https?://|arXiv:)", re.I)


def body_size(blocks: Sequence[Box]) -> float:
    """The block size that carries the most characters (the page's body text size); 10 if none is known."""
    weight: Counter[float] = Counter()
    for b in blocks:
        if b.size:
            weight[round(b.size, 1)] += len(b.text)
    return weight.most_common(1)[0][0] if weight else 10.0


def is_piece(b: Box) -> bool:
    """A block too short in words to be prose: math, numbers, a table cell, a lone ``where``."""
    if b.aside or len(b.text) > 300 or _HEADING.match(b.text):  # 300 characters hold more than 3 words
        return False
    return sum(1 for _ in zip(range(_PIECE_WORDS + 1), _LONG_WORD.finditer(b.text))) <= _PIECE_WORDS


def join_pieces(blocks: Sequence[Box], body: float) -> list[list[int]]:
    """The blocks (in reading order) grouped into the blocks they make up: a list of index lists, each
    joined into one block by the caller in the order given; every index appears exactly once. See
    the module docstring for the groups; ``body`` is the page's body text size (:func:`body_size`)."""
    out: list[list[int]] = []
    i, n = 0, len(blocks)
    piece = [is_piece(b) for b in blocks]
    while i < n:
        j = i + 1
        while j < n and _continues_entry(blocks[i], blocks[j - 1], blocks[j], body):
            j += 1
        if j > i + 1 or not piece[i]:
            out.append(list(range(i, j)))
            i = j
            continue
        run = [i]
        x0, y0, x1, y1 = blocks[i].x0, blocks[i].y0, blocks[i].x1, blocks[i].y1
        j = i + 1
        while j < n and piece[j]:
            b = blocks[j]
            if not _near(b, (x0, y0, x1, y1), body):
                # a big operator's lower limit (set small) hangs further below than the line's other
                # pieces: it joins when the piece after it comes back within reach
                c = blocks[j + 1] if j + 1 < n else None
                if not b.size or b.size >= _SCRIPT_SIZE * body or c is None or not piece[j + 1] or not _near(c, (x0, y0, x1, y1), body):
                    break
                box = (min(x0, c.x0), min(y0, c.y0), max(x1, c.x1), max(y1, c.y1))
                if not _near(b, box, body):
                    break
            run.append(j)
            x0, y0, x1, y1 = min(x0, b.x0), min(y0, b.y0), max(x1, b.x1), max(y1, b.y1)
            j += 1
        if len(run) == 1:
            out.append(run)
            i = j
            continue
        rows = _rows(blocks, run, body)
        if len(rows) >= 2 and all(len(r) >= 2 for r in rows) and _aligned(blocks, rows, body):
            out.extend(sorted(r, key=lambda k: blocks[k].x0) for r in rows)
            i = j
            continue
        if not (len(rows) == 1 or any(_MATH.search(blocks[k].text) for k in run)):
            out.extend([k] for k in run)
            i = j
            continue
        numbers = [k for k in run if _EQ_NUMBER.match(blocks[k].text)]
        group = [k for k in run if k not in numbers] + numbers
        last = blocks[run[-1]]
        if j < n and not blocks[j].aside and blocks[j].y0 < last.y1 and blocks[j].y0 + body > last.y0:
            group.append(j)  # prose running on from the display's last baseline
            j += 1
        out.append(group)
        i = j
    return out


def _near(b: Box, box: tuple[float, float, float, float], body: float) -> bool:
    """Whether ``b`` lies within ``_PIECE_GAP`` body sizes above or below ``box`` (sideways it may lie
    anywhere: the reading order keeps a column's blocks together, and an equation number sits at the
    column's edge)."""
    gap = _PIECE_GAP * body
    return b.y0 <= box[3] + gap and b.y1 >= box[1] - gap


def _rows(blocks: Sequence[Box], run: list[int], body: float) -> list[list[int]]:
    """The run's blocks in rows, top to bottom: a block joins the row whose centre lies within
    ``_ROW_SHIFT`` body sizes of its own."""
    rows: list[tuple[float, list[int]]] = []
    for k in sorted(run, key=lambda k: blocks[k].y0 + blocks[k].y1):
        cy = (blocks[k].y0 + blocks[k].y1) / 2
        if rows and abs(cy - rows[-1][0]) <= _ROW_SHIFT * body:
            rows[-1][1].append(k)
        else:
            rows.append((cy, [k]))
    return [r for _, r in rows]


def _aligned(blocks: Sequence[Box], rows: list[list[int]], body: float) -> bool:
    """Whether the rows are a table's: no row's box reaches into the next (a display's pieces are
    stacked and interleaved: fractions, big brackets, scripts)."""
    spans = [(min(blocks[k].y0 for k in r), max(blocks[k].y1 for k in r)) for r in rows]
    return all(a[1] <= b[0] + 0.1 * body for a, b in zip(spans, spans[1:]))


def _continues_entry(head: Box, prev: Box, b: Box, body: float) -> bool:
    """Whether ``b`` continues the reference entry that starts with the one-line block ``head`` and
    ends (so far) with ``prev`` (see the module docstring)."""
    if head.aside or b.aside or "\n" in head.text or abs(head.size - b.size) > 0.5:
        return False
    if _HEADING.match(b.text) or _MATH.search(head.text):  # a heading under a heading, a display's lines
        return False
    if not _INDENT[0] * body <= b.x0 - head.x0 <= _INDENT[1] * body or not 0 <= b.y0 - prev.y1 <= _ENTRY_GAP * body:
        return False
    return bool(_LINK.match(b.text)) or not _SENTENCE_END.search(prev.text)
