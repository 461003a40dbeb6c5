"""Characters that cannot be text of an English paper: found, repaired where the cause is known, else removed.

A PDF's text layer holds what its fonts' Unicode maps say, and some maps are broken:

* **bad glyphs** -- U+FFFD (a glyph with no Unicode value: big-delimiter pieces, icons, an underbrace
  drawn from glyphs), private-use code points (U+E000-F8FF, planes 15 and 16: a font's own codes),
  control characters (C0 and C1 except tab, newline, carriage return and form feed), lone surrogates
  and the non-characters U+FFFE/U+FFFF. No text of any language holds them.
* **CJK in a paper that is not CJK** -- Hangul, kana, CJK ideographs and their punctuation in a
  document whose letters are otherwise (almost) all of other scripts (:func:`is_cjk`): a math or
  symbol font mapped onto the wrong code points.

The most common case of the second kind has a known cause and is repaired, not removed: the math
italic letters of U+1D400-1D7FF (``𝑇``, ``𝑃``, ``𝛼``) written with their top bit lost, which lands
them on U+D400-D7FF, Hangul syllables (``푇_eff`` is ``𝑇_eff``, ``훼 Cen A`` is ``𝛼 Cen A``).
:func:`fix_glyphs` adds the lost 0x10000 back wherever the result is an assigned math alphanumeric,
in a document that is not CJK; everything else of both kinds is removed, with the blanks around it
reduced to one, and counted. Callers flag the counts (``bad_glyphs_removed:<n>``,
``math_glyphs_repaired:<n>``): a removal is never silent.

Used by the PDF text-layer extractor (per page, before its pages are routed: many bad glyphs on a
page send it to OCR) and by ``curate clean`` (on any text, LaTeX and OCR included).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

BAD_GLYPH_CLASS = "\ufffd\ufffe\uffff\ue000-\uf8ff\U000f0000-\U0010ffff\ud800-\udfff\x00-\x08\x0b\x0e-\x1f\x7f-\x9f"
"""A regex character class (without brackets) of the bad glyphs: replacement glyph, non-characters,
private use, lone surrogates, control characters."""

CJK_CLASS = (
    "\u1100-\u11ff\u2e80-\u2fdf\u3001-\u303f\u3040-\u31ff\u3200-\u33ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff61-\uffdc\U00020000-\U0003134f"
)
"""A regex character class (without brackets) of Hangul (jamo, syllables), kana, bopomofo, CJK
ideographs, radicals, CJK punctuation and compatibility forms, half-width kana and Hangul."""

CJK_SHARE = 0.2
"""A document is CJK when at least this fraction of its letters are CJK characters other than
U+D400-D7FF (where truncated math italics land; Korean prose has most of its syllables below). A
Chinese, Japanese or Korean paper, references and formulae included, is well over half CJK."""

_BAD = re.compile(f"[{BAD_GLYPH_CLASS}]")
_CJK = re.compile(f"[{CJK_CLASS}]")
_CJK_PROSE = re.compile(f"(?![\ud400-\ud7ff])[{CJK_CLASS}]")
_ANY = re.compile(f"[{BAD_GLYPH_CLASS}{CJK_CLASS}]")
_LETTER = re.compile(r"[^\W\d_]")
_TRUNCATED_MATH = re.compile("[\ud400-\ud7ff]")


def _run(chars: str) -> re.Pattern[str]:
    """A run of removed characters (a class without brackets) with the blanks around it (blanks
    between them included): ``[ \\t]*X(?:[ \\t]*X)*[ \\t]*``, written to start with one character
    class, which the regex engine skips ahead by (a leading ``[ \\t]*`` is tried at every position):
    a blank, then more blanks and a removed character, or a removed character."""
    return re.compile(f"[ \\t{chars}](?:(?<=[ \\t])[ \\t]*[{chars}]|(?<=[{chars}]))(?:[ \\t]*[{chars}])*[ \\t]*")


_RUN_BAD = _run(BAD_GLYPH_CLASS)
_RUN_ANY = _run(BAD_GLYPH_CLASS + CJK_CLASS)
_EMPTIED_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


@dataclass(frozen=True)
class GlyphFix:
    """The text with its bad glyphs repaired or removed, and how many of each."""

    text: str
    removed: int
    """characters removed"""
    repaired: int
    """Hangul syllables turned back into the math alphanumerics they were (non-CJK documents only)"""


def is_cjk(text: str) -> bool:
    """Whether ``text`` is written in a CJK script: CJK characters (U+D400-D7FF aside) make
    ``CJK_SHARE`` of its letters. Cheap for the usual document, which has no CJK character at all."""
    if not _CJK.search(text) or not _CJK_PROSE.search(text):  # the plain class is the cheap look
        return False
    return len(_CJK_PROSE.findall(text)) >= CJK_SHARE * len(_LETTER.findall(text))


def _one_blank(m: re.Match[str]) -> str:
    """What replaces a removed run: one blank between two words it separated, nothing at a line's ends."""
    s, a, b = m.string, m.start(), m.end()
    if a == 0 or b == len(s) or s[a - 1] == "\n" or s[b] == "\n":
        return ""
    return " " if s[a] in " \t" or s[b - 1] in " \t" else ""  # a blank before or after the run


def fix_glyphs(text: str, cjk: bool | None = None) -> GlyphFix:
    """Repair the math italics written as Hangul and remove every other bad glyph (see the module
    docstring). ``cjk``: whether the document is CJK (then its CJK characters are text and stay);
    ``None`` decides from ``text`` itself, so pass the whole document's answer when fixing a part of it."""
    if not _ANY.search(text):
        return GlyphFix(text, 0, 0)
    if cjk is None:
        cjk = is_cjk(text)
    repaired = 0

    def unshift(m: re.Match[str]) -> str:
        nonlocal repaired
        c = chr(ord(m.group()) + 0x10000)
        if unicodedata.name(c, None) is None:  # a hole of the math block: no math font writes it
            return m.group()
        repaired += 1
        return c

    if not cjk:
        text = _TRUNCATED_MATH.sub(unshift, text)
    bad = _BAD if cjk else _ANY
    removed = len(bad.findall(text))
    if removed:
        text = (_RUN_BAD if cjk else _RUN_ANY).sub(_one_blank, text)
        text = _EMPTIED_LINES.sub("\n\n", text)  # a paragraph of nothing but bad glyphs leaves no gap
    return GlyphFix(text, removed, repaired)
