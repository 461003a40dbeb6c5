"""Text cleanup before dedup and filtering: Unicode, characters no English text holds, tables of
contents, whitespace, hyphenation leftovers, optional removal of reference lists and
acknowledgements, and the OCR repetition rules.

Math is kept: the Unicode step uses NFC by default (NFKC would turn ``x²`` into ``x2``) and only
undoes typographic artefacts (ligatures, soft hyphens, zero-width and non-breaking spaces); the
repetition rules are :func:`corpus.repetition.clean_repetitions`, the same code the OCR stage
uses, written to leave math spans balanced.

``clean_text(text, config) -> (text, changes)``: ``changes`` names every rule that changed something
(e.g. ``["unicode", "dehyphenate:12", "references_removed"]``), for the paper's ``Decision`` row.
Bad glyphs (:mod:`corpus.glyphs`) and table-of-contents lines (:mod:`corpus.toc`) are the same
rules the PDF extractor applies, so text from any extractor (LaTeX, OCR, an older extraction) is
covered: ``bad_glyphs_removed:<n>``, ``math_glyphs_repaired:<n>``, ``toc_removed:<n>``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from corpus.glyphs import fix_glyphs
from corpus.repetition import clean_repetitions
from corpus.toc import drop_toc_lines


@dataclass(frozen=True)
class CleanConfig:
    """Which cleanup rules run."""

    unicode_form: str | None = field(default="NFC", metadata={"help": "NFC, NFKC or None (NFKC flattens super/subscripts)"})
    fix_typography: bool = field(default=True, metadata={"help": "expand ligatures, drop soft hyphens / zero-width chars, NBSP -> space"})
    whitespace: bool = field(default=True, metadata={"help": "collapse runs of spaces, strip line ends, at most one blank line"})
    bad_glyphs: bool = field(default=True, metadata={
        "help": "remove characters no English text holds (U+FFFD, private use, controls; CJK in a document that "
                "is not CJK), repairing math italics written as Hangul (corpus.glyphs)"})
    drop_toc: bool = field(default=True, metadata={"help": "drop table-of-contents lines (dot leader and page number; corpus.toc)"})
    dehyphenate: bool = field(default=True, metadata={"help": "join words split by a line-end hyphen"})
    repetitions: str = field(default="ocr", metadata={
        "help": "OCR repetition rules (corpus.repetition): 'always', 'never', or 'ocr' = unless the "
                "extractor is known to be a text layer or LaTeX (they also collapse real table cells)"})
    remove_references: bool = field(default=False, metadata={"help": "cut the reference list (from its heading to the next section or the end)"})
    remove_acknowledgements: bool = field(default=False, metadata={"help": "cut the acknowledgements section"})

    def __post_init__(self):
        if self.unicode_form not in (None, "NFC", "NFKC", "NFD", "NFKD"):
            raise ValueError(f"CleanConfig.unicode_form must be NFC, NFKC, NFD, NFKD or None, got {self.unicode_form!r}")
        if self.repetitions not in ("always", "ocr", "never"):
            raise ValueError(f"CleanConfig.repetitions must be 'always', 'ocr' or 'never', got {self.repetitions!r}")


_TYPOGRAPHY = {
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st",
    "\u00ad": "",  # soft hyphen
    "\u200b": "", "\u200c": "", "\u200d": "", "\u2060": "", "\ufeff": "",  # zero-width
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u2009": " ", "\u2002": " ", "\u2003": " ",
}
_TYPO_TABLE = str.maketrans(_TYPOGRAPHY)
_TYPO_CHARS = re.compile("[" + "".join(_TYPOGRAPHY) + "]")

_SPACES = re.compile(r"[ \t\f\v]+")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANKS = re.compile(r"\n{3,}")
# "galax-\nies": letters, hyphen at line end, lower-case letters on the next line.
_LINE_HYPHEN = re.compile(r"([^\W\d_]+)-[ \t]*\n[ \t]*([a-z][^\W\d_]*)")

_HEADING_PREFIX = r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\\section\*?\{)?(?:[0-9IVX]+\.?[ \t]+)?"
_REFERENCES_HEAD = re.compile(_HEADING_PREFIX + r"(?:references?|bibliography|literature cited)\}?[ \t]*:?[ \t]*$",
                              re.IGNORECASE | re.MULTILINE)
_ACK_HEAD = re.compile(_HEADING_PREFIX + r"acknowledge?ments?\}?[ \t]*:?[ \t]*(?:$|(?=\S))",
                       re.IGNORECASE | re.MULTILINE)
_THEBIBLIOGRAPHY = re.compile(r"\\begin\{thebibliography\}.*?(?:\\end\{thebibliography\}|\Z)", re.DOTALL)
# The start of the next section: a Markdown or LaTeX heading, an appendix, or an upper-case heading line.
_NEXT_SECTION = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]+\S|\\(?:sub)*section\*?\{|\\appendix\b|appendix\b|APPENDIX\b|"
    r"(?:[0-9A-Z]+\.?[ \t]+)?[A-Z][A-Z \-]{3,}[ \t]*$)",
    re.MULTILINE)


def _dehyphenate(text: str) -> tuple[str, int]:
    """Join ``word-\\nword`` when the joined word is not known as a hyphenated compound.

    The document's own vocabulary decides: if ``self-consistent`` occurs elsewhere (and
    ``selfconsistent`` does not) the hyphen is kept and only the line break removed; an upper-case
    first half (``X-``, ``UV-``) keeps its hyphen too; otherwise the two halves are joined (a line-end
    hyphen in typeset text is most often a syllable break).
    """
    if "-" not in text:
        return text, 0
    lower = text.lower()  # substring tests on it: cheap, and exact enough for this heuristic
    n = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal n
        a, b = m.group(1), m.group(2)
        n += 1
        if a.isupper() or (f"{a}-{b}".lower() in lower and (a + b).lower() not in lower):
            return f"{a}-{b}"  # "X-ray", "UV-bright", or a compound the document writes hyphenated
        return a + b

    return _LINE_HYPHEN.sub(repl, text), n


def _cut_section(text: str, head: re.Pattern[str], last: bool, max_chars: int | None) -> tuple[str, bool]:
    """Remove one section from its heading (the last match, or the first) to the next heading."""
    matches = list(head.finditer(text))
    if not matches:
        return text, False
    m = matches[-1] if last else matches[0]
    nxt = _NEXT_SECTION.search(text, m.end() + 1)
    end = nxt.start() if nxt else len(text)
    if max_chars is not None and end - m.start() > max_chars:
        # No heading found close enough: the section ends at the first blank line.
        blank = text.find("\n\n", m.end())
        end = blank if blank != -1 else len(text)
    return text[: m.start()] + text[end:], True


def drop_until_next_section(text: str) -> tuple[str, bool]:
    """Text from the first section heading on (empty when there is none), and whether one was found.

    For a document cleaned page by page: pages after the one where the reference list starts are
    references until a heading (an appendix, say) ends them.
    """
    nxt = _NEXT_SECTION.search(text)
    return (text[nxt.start():], True) if nxt else ("", False)


NOT_OCR = frozenset({"latex", "pdf"})
"""Extractors whose text has no OCR loops (the ``document.extractor`` values of the other extractors)."""


def clean_text(text: str, config: CleanConfig = CleanConfig(), extractor: str | None = None,
               cjk: bool | None = None) -> tuple[str, list[str]]:
    """Clean ``text``; return the new text and the names of the rules that changed it.

    ``extractor`` (the document's ``extractor`` column) decides whether the OCR repetition rules
    run under ``repetitions="ocr"``: they run unless it is ``latex`` or ``pdf``. ``cjk``: whether
    the document is written in a CJK script (``corpus.glyphs.is_cjk`` of the whole document, when
    ``text`` is one page of it); None decides from ``text``.
    """
    changes: list[str] = []

    def step(name: str, new: str) -> str:
        if new != current:
            changes.append(name)
        return new

    current = text
    if config.unicode_form and not unicodedata.is_normalized(config.unicode_form, current):
        current = step("unicode", unicodedata.normalize(config.unicode_form, current))
    if config.fix_typography and _TYPO_CHARS.search(current):
        current = step("typography", current.translate(_TYPO_TABLE))
    if "\r" in current:
        current = step("newlines", current.replace("\r\n", "\n").replace("\r", "\n"))
    if config.bad_glyphs:
        fix = fix_glyphs(current, cjk)
        changes += [f"{name}:{n}" for name, n in (("bad_glyphs_removed", fix.removed),
                                                  ("math_glyphs_repaired", fix.repaired)) if n]
        current = fix.text
    if config.drop_toc:
        current, n = drop_toc_lines(current)
        changes += [f"toc_removed:{n}"] if n else []
    if config.dehyphenate:
        new, n = _dehyphenate(current)
        if new != current:
            changes.append(f"dehyphenate:{n}")
        current = new
    if config.remove_references:
        new = _THEBIBLIOGRAPHY.sub("", current)
        new, _ = _cut_section(new, _REFERENCES_HEAD, last=True, max_chars=None)
        current = step("references_removed", new)
    if config.remove_acknowledgements:
        new, _ = _cut_section(current, _ACK_HEAD, last=False, max_chars=5000)
        current = step("acknowledgements_removed", new)
    if config.repetitions == "always" or (config.repetitions == "ocr" and extractor not in NOT_OCR):
        current = step("repetitions", clean_repetitions(current))
    if config.whitespace:
        new = _SPACES.sub(" ", current)
        new = _TRAILING.sub("\n", new)
        new = _BLANKS.sub("\n\n", new).strip()
        current = step("whitespace", new)
    return current, changes
