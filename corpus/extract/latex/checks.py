"""Counts of two faults in converted text, for benchmarks (``bench/hygiene.py``): references printed
as ``?`` and two inline maths glued into ``$…$$…$``. Both should be 0 for this package's output."""

from __future__ import annotations

import re

# "?" where a number was: after a word naming what is referred to ("Equation ((?))", "Table ?",
# "Fig. ?", "§?"), or alone in brackets ("(?)", "((?))")
_WORDS = r"Equations?|Eqns?\.?|Eqs?\.|Figures?|Figs?\.|Tables?|Tabs?\.|Sections?|Sects?\.|Secs?\.|Appendix|Appendices"
UNRESOLVED_REFERENCE = re.compile(
    rf"(?:(?<!\w)(?:{_WORDS})[ \t\u00a0~]*|§[ \t\u00a0~]*)\(*\?+\)*(?![\w?])|\(\(?\?+\)\)?"
)
# an inline math closed and the next opened at the same place: $a$$b$ (a display $$..$$ is excluded:
# its opening $$ is not preceded by the closing $ of an inline math on the same line)
GLUED_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(?:[^$\n\\]|\\.)+?(?<!\\)\$\$(?!\$)(?:[^$\n\\]|\\.)+?(?<!\\)\$(?!\$)")


def unresolved_references(text: str) -> int:
    """How many references in ``text`` were printed as ``?`` (``Equation ((?))``, ``Table ?``, ``(?)``)."""
    return len(UNRESOLVED_REFERENCE.findall(text))


def glued_inline_maths(text: str) -> int:
    """How many places in ``text`` hold two inline maths with nothing between them (``$a$$b$``),
    which a reader takes for a display-math delimiter."""
    return len(GLUED_INLINE_MATH.findall(text))
