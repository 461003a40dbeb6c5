"""Measures of layout debris in extracted text: fragments and repeated furniture.

Measuring sticks for the PDF path's page layout (``bench/hygiene.py``, tests), applied the same way
to the project's text and to another extractor's Markdown (``pymupdf4llm.to_markdown``):

* :func:`short_paragraph_share` - the share of paragraphs (blocks separated by blank lines) of three
  words or fewer, headings, displayed math and tables aside: axis tick labels, axis titles, figure
  labels and margin notes spliced into the prose show up as such fragments;
* :func:`repeated_lines` - lines of 8 characters or more that occur 3 times or more in a paper once
  digits are masked (``"2 Aigrain & Foreman-Mackey"`` and ``"24 Aigrain & Foreman-Mackey"`` are one
  line): running heads and footers that were not removed.
"""

from __future__ import annotations

import re
from collections import Counter

_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"\S+")
_MATH = re.compile(r"[=<>≤≥≈∼∝±×∑∫√∂∇]|\$\$|\\\[|\\\(")
_SECTION = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[IVX]+\.|[A-Z]\.|Appendix|APPENDIX)\s+\S")
_MARKUP = re.compile(r"^(?:#|\||```|-{3,}|\*{3,}|_{3,}|!\[|<!--)")
_BOLD = re.compile(r"^(?:\*\*|_).*(?:\*\*|_)$", re.S)


def paragraphs(text: str) -> list[str]:
    """The blocks of ``text`` separated by blank lines, stripped, empty ones left out."""
    return [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def _set_apart(par: str) -> bool:
    """Headings, displayed math and tables (they are short by nature, not debris).

    Markdown headings (``#``), table rows (``|``), rules, code fences and images; a bold line alone
    (pymupdf4llm's headings); a numbered section heading (``2.1 Data``, ``IV. RESULTS``, ``A. Proofs``)
    or one in capitals (``INTRODUCTION``, ``ABSTRACT``); a block with a relation or operator sign
    (``=``, ``<``, ``±``, ``∑`` ...) or Markdown/LaTeX display delimiters. A block of digits alone (a
    tick label, a page number) is not set apart: that is the debris being measured.
    """
    if _MARKUP.match(par) or _BOLD.match(par) or _SECTION.match(par) or _MATH.search(par):
        return True
    letters = [c for c in par if c.isalpha()]
    return len(letters) >= 4 and all(c.isupper() for c in letters)


def short_paragraph_share(text: str, max_words: int = 3) -> tuple[float, int, int]:
    """(share, short, counted): of the paragraphs not set apart (see :func:`_set_apart`), how many
    have at most ``max_words`` words (runs of non-space characters)."""
    counted = [p for p in paragraphs(text) if not _set_apart(p)]
    short = sum(1 for p in counted if len(_WORD.findall(p)) <= max_words)
    return (short / len(counted) if counted else 0.0), short, len(counted)


_MARKUP_ONLY = re.compile(r"^(?:<!--|```|!\[)")


def repeated_lines(text: str, min_chars: int = 8, min_count: int = 3) -> Counter[str]:
    """Lines of at least ``min_chars`` non-space characters that occur at least ``min_count`` times in
    ``text`` with digits masked (``#``) and spaces normalised; maps each such line (masked) to its
    count. Lines that are markup, not text, are left out: no letter at all (rules, a table's
    ``|---|`` separators, rows of numbers), HTML comments, code fences, images. A table row with words
    counts, written as Markdown (``|Data|Data|``) or as plain cells (``Data Data``) alike."""
    counts: Counter[str] = Counter()
    for line in text.split("\n"):
        key = " ".join(_DIGITS.sub("#", line).split())
        if len(key.replace(" ", "")) >= min_chars and any(c.isalpha() for c in key) and not _MARKUP_ONLY.match(key):
            counts[key] += 1
    return Counter({k: n for k, n in counts.items() if n >= min_count})
