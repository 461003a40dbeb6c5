"""Tables of contents: lines whose entries end in a dot leader and a page number are not prose.

A TOC entry is a title, a run of leader dots and a page number: ``1. Introduction . . . . . . . 3``,
``2.1 Methods ........ 12``, ``Appendix A …… xii``. :func:`drop_toc_lines` removes the lines made of
such entries, from text as the PDF extractor has it before it joins a block's lines (one entry a
line) and from text where the lines were already joined (several entries a line: an older PDF
extraction, an OCR transcript), and counts the entries removed. A line is a TOC line when it holds at
least one entry and, besides its entries' leaders and numbers, no more than ``MAX_TITLE_WORDS``
words per entry (a sentence that happens to hold a dot run keeps its line). A paragraph (lines
between blank lines) at least half of whose lines are TOC lines goes whole: the rest are titles
wrapped onto a second line and the "Contents" heading set with them; a "Contents" heading in a
paragraph of its own right before a removed one goes too.

Used by the PDF text-layer extractor and by ``curate clean`` (LaTeX and OCR text too).
"""

from __future__ import annotations

import re

MAX_TITLE_WORDS = 15
"""Words of title (section number included) an entry may have; prose around a dot run has more."""

# four or more leader dots (spaced or not), or two or more ellipsis characters, then a page number
_HEADING = re.compile(r"\s*(?:#+\s*)?(?:table\s+of\s+)?contents\s*", re.IGNORECASE)
# the cheap first look (no run, no leader): four leader dots or two ellipses, written to start with
# one character class, which the regex engine skips ahead by (alternatives are tried at every position)
_DOT_RUN = re.compile(r"[.·∙…](?:(?<=[.·∙])(?:[ \t]*[.·∙]){3}|(?<=…)[ \t]*…)")
_ENTRY_END = re.compile(r"(?:(?:[.·∙][ \t]*){4,}|(?:…[ \t]*){2,})(?:\d{1,4}|[ivxlcdm]{1,7}|[IVXLCDM]{1,7})(?!\w)")


def _toc_entries(line: str) -> int:
    """How many TOC entries ``line`` is made of (0: it is not a TOC line)."""
    ends = _ENTRY_END.findall(line)
    if not ends:
        return 0
    rest = len(_ENTRY_END.sub(" ", line).split())
    return len(ends) if rest <= MAX_TITLE_WORDS * len(ends) else 0


def drop_toc_lines(text: str) -> tuple[str, int]:
    """``text`` without its table-of-contents lines (see the module docstring), and the number of
    entries removed. Paragraphs stay separated by one blank line; text without a dot leader comes
    back as it was."""
    if not _DOT_RUN.search(text) or not _ENTRY_END.search(text):
        return text, 0
    removed = 0
    out = []
    for para in text.split("\n\n"):
        lines = para.split("\n")
        entries = [_toc_entries(ln) for ln in lines]
        n_toc = sum(1 for e in entries if e)
        if not n_toc:
            out.append(para)
            continue
        removed += sum(entries)
        if 2 * n_toc >= len([ln for ln in lines if ln.strip()]):
            if out and _HEADING.fullmatch(out[-1]):
                out.pop()
            continue
        out.append("\n".join(ln for ln, e in zip(lines, entries) if not e))
    return "\n\n".join(out), removed
