"""A paper's title from its PDF alone, for papers with no metadata row.

:func:`pdf_title` takes the PDF's metadata title when it is plausible (:func:`plausible_title`: not
empty, not a file name such as ``main.pdf`` or ``Microsoft Word - x.docx``, not a placeholder such
as ``untitled``, and made of words), else the largest text at the top of page 1
(:func:`largest_text_title`). The first line of the text layer is no title: on the shared fixtures
it is a running head ("Draft version May 23, 2019", "MNRAS 000, 1–13 (2020)") or a stray label.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: ingesting without PDFs does not load MuPDF
    import pymupdf

_FILE_NAME = re.compile(
    r"(?:^(?:microsoft\s+(?:word|powerpoint|excel)\s*-|[a-z]:\\|/)|\.(?:pdf|docx?|tex|dvi|ps|eps|rtf|odt|txt|md)\s*$)",
    re.IGNORECASE)
_PLACEHOLDER = re.compile(
    r"(?:untitled(?:\s+document)?|no\s+title|title|paper|article|manuscript|draft|document|main|ms|preprint|"
    r"arxiv|template|slides?|poster)\s*\d*", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]{2,}")

# Lines at the top of a first page that are not its title: running heads, journal and preprint
# stamps, dates, copyright and licence lines (tested on the text of one line, whitespace normalised).
_RUNNING_HEAD = re.compile(
    r"^\(?\s*(?:draft\b|preprint|typeset\s+using|accepted|received|submitted|published|to\s+appear|"
    r"mnras\b|mon\.\s*not|monthly\s+notices\s+of\s+the\s+royal\s+astronomical\s+society\s*,?\s*\d|"
    r"astronomy\s*(?:&|and)\s*astrophysics\s+(?:manuscript|\d)|a\s*&\s*a\s+\d|ap\s*j\w*\s*,?\s+\d|"
    r"the\s+astro(?:physical|nomical)\s+journal|annu\.\s*rev|annual\s+review|pasp\b|publications\s+of\s+the|"
    r"journal\s+of\s+|proceedings|page\s+\d|\d{1,2}\s+[a-z]{3,9}\s+\d{4}\s*$)"
    r"|arxiv\s*:\s*\d|doi\s*:|https?://|www\.|©|\(c\)\s*\d{4}|copyright",
    re.IGNORECASE)
_BOLD_FONT = re.compile(r"bold|black|heavy|semibold|demi|medi|cmbx|\bbx", re.IGNORECASE)

MAX_TITLE_LINES = 4
"""A run of largest-size lines longer than this is body text set at one size, not a title."""


def plausible_title(title: str | None) -> bool:
    """Whether a metadata title can be the paper's title: not empty, not a file name or a path, not a
    placeholder ("untitled", "main", "Title"), with at least two words of letters."""
    if not title or not title.strip():
        return False
    t = " ".join(title.split())
    if _FILE_NAME.search(t) or _PLACEHOLDER.fullmatch(t):
        return False
    return len(_WORD.findall(t)) >= 2


_MARKS = re.compile(r"[\s∗*†‡§¶⋆]+$")  # footnote marks after a title line


def _line_text(line: dict) -> str:
    """A line's spans joined, with a blank where a gap of a fifth of the text size separates two of them
    (a span that starts a new word without a space character), footnote marks at its end dropped."""
    parts: list[str] = []
    prev = None
    for span in line["spans"]:
        if prev is not None and span["bbox"][0] - prev["bbox"][2] > 0.2 * span["size"]:
            parts.append(" ")
        parts.append(span["text"])
        prev = span
    return _MARKS.sub("", " ".join("".join(parts).split()))


def _line_key(line: dict) -> tuple[float, bool]:
    """(text size, bold) of a line: its largest span's size (to half a point), and whether that span is bold."""
    span = max(line["spans"], key=lambda s: s["size"])
    return round(span["size"] * 2) / 2, bool(span["flags"] & 16 or _BOLD_FONT.search(span["font"]))


def largest_text_title(page: pymupdf.Page) -> str | None:
    """The title of a first page: its largest (then bold) text in the page's upper half, running
    heads and stamps skipped (``_RUNNING_HEAD``; vertical text such as arXiv's margin stamp too), the
    lines of that size and weight that come first joined in order. None when that text runs longer
    than ``MAX_TITLE_LINES`` lines (a page set at one size throughout) or is not made of words."""
    import pymupdf

    flags = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
    lines = []
    for block in page.get_text("dict", flags=flags)["blocks"]:
        for line in block.get("lines", ()):
            dx, dy = line["dir"]
            text = _line_text(line)
            if abs(dy) > 0.01 or dx <= 0 or line["bbox"][1] > page.rect.height / 2 or not _WORD.search(text):
                continue
            if _RUNNING_HEAD.search(text):
                continue
            lines.append((line["bbox"][1], line["bbox"][0], text, _line_key(line)))
    if not lines:
        return None
    lines.sort()
    best = max(key for *_, key in lines)
    first = next(i for i, (*_, key) in enumerate(lines) if key == best)
    run = []
    for *_, text, key in lines[first:]:
        if key != best:
            break
        run.append(text)
    if len(run) > MAX_TITLE_LINES:
        return None
    title = " ".join(run)
    return title if plausible_title(title) else None


def pdf_title(doc: pymupdf.Document) -> tuple[str | None, str]:
    """The title of a PDF and where it came from: ``title_from_pdf_metadata``,
    ``title_from_largest_text`` or (None) ``no_title``."""
    meta = (doc.metadata or {}).get("title") or ""
    if plausible_title(meta):
        return " ".join(meta.split()), "title_from_pdf_metadata"
    if doc.page_count:
        title = largest_text_title(doc[0])
        if title:
            return title, "title_from_largest_text"
    return None, "no_title"
