"""Text fidelity of a PDF extraction, measured against the paper's LaTeX source.

A measuring stick for ``bench/extract.py``, written independently of the project's LaTeX converter on
purpose: it must not share that converter's mistakes.

The measure: take the *prose* of the LaTeX source (the document body without comments, math, float
environments, citation/reference commands and command names; the URL of ``\\href`` counts as a
reference, its link text as prose), keep its words of 4 or more letters, lower-cased, and form word
trigrams. ``fidelity`` is the fraction of those distinct trigrams that also occur among the trigrams
of the extracted text (processed the same way). It is a recall: text the PDF has
and the source does not (running heads, figure labels, references) costs nothing, but a broken word
(``ﬁ`` ligature, ``cal- culating``), a lost word, or text spliced into the middle of a sentence (a
header, a figure label, the other column) breaks the trigrams that span it.
"""

from __future__ import annotations

import re

MATH_ENVS = (
    "equation", "align", "alignat", "flalign", "eqnarray", "gather", "multline", "displaymath",
    "math", "split", "aligned", "array",
)
FLOAT_ENVS = (
    "figure", "table", "deluxetable", "splitdeluxetable", "longrotatetable", "longtable", "tabular",
    "wrapfigure", "interactive", "verbatim",
)
CITE_REF = (
    r"cite\w*", "ref", "eqref", "autoref", "cref", "Cref", "pageref", "nameref", "label", "hyperref",
    "url", "bibliography", "bibliographystyle",
)

_COMMENT = re.compile(r"(?<!\\)%.*")
_ENV = re.compile(
    r"\\begin\{(" + "|".join(MATH_ENVS + FLOAT_ENVS) + r")(\*?)\}.*?\\end\{\1\2\}", re.S
)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]|\\\(.*?\\\)", re.S)
_INLINE_MATH = re.compile(r"(?<!\\)\$.*?(?<!\\)\$", re.S)
_CITE = re.compile(r"\\(?:" + "|".join(CITE_REF) + r")\*?(?:\[[^\]]*\])*\{[^}]*\}")
_HREF = re.compile(r"\\href\s*\{[^}]*\}")  # keep the link text, drop the URL
_VERB = re.compile(r"\\verb\*?(.).*?\1")
_BEGIN_END = re.compile(r"\\(?:begin|end)\s*\{[^}]*\}")
_COMMAND = re.compile(r"\\[A-Za-z@]+\*?|\\.")
_WORD = re.compile(r"[a-z]+")


def latex_prose(source: str) -> str:
    """The prose of a LaTeX document: body only, no comments, math, floats, citations or command names."""
    lines = source.splitlines()
    # comments first: a commented-out \begin{document} must not count
    text = "\n".join(_COMMENT.sub("", line) for line in lines)
    begin = text.find("\\begin{document}")
    end = text.rfind("\\end{document}")
    if begin >= 0:
        text = text[begin + len("\\begin{document}") : end if end > begin else None]
    text = _VERB.sub(" ", text)
    text = _ENV.sub(" ", text)
    text = _DISPLAY_MATH.sub(" ", text)
    text = _INLINE_MATH.sub(" ", text)
    text = _CITE.sub(" ", text)
    text = _HREF.sub(" ", text)
    text = _BEGIN_END.sub(" ", text)
    text = _COMMAND.sub(" ", text)
    return text


def words(text: str, min_len: int = 4) -> list[str]:
    """Runs of ASCII letters of at least ``min_len``, lower-cased, in order (a leftover ``ﬁ`` ligature
    or a non-ASCII letter splits a word, as it splits the word for a reader searching the text)."""
    return [w for w in _WORD.findall(text.lower()) if len(w) >= min_len]


def trigrams(ws: list[str]) -> set[tuple[str, str, str]]:
    return set(zip(ws, ws[1:], ws[2:]))


def fidelity(latex_source: str, extracted: str) -> float:
    """Fraction of the source prose's word trigrams found in the extracted text (0..1)."""
    ref = trigrams(words(latex_prose(latex_source)))
    if not ref:
        raise ValueError("the LaTeX source has no prose trigrams")
    got = trigrams(words(extracted))
    return len(ref & got) / len(ref)


def missing(latex_source: str, extracted: str) -> list[tuple[str, str, str]]:
    """The source trigrams not found in the extracted text, in source order (for diagnosis)."""
    ws = words(latex_prose(latex_source))
    got = trigrams(words(extracted))
    seen: set = set()
    out = []
    for t in zip(ws, ws[1:], ws[2:]):
        if t not in got and t not in seen:
            seen.add(t)
            out.append(t)
    return out
