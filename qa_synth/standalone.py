"""Make a generated question or answer stand alone: references to "the paper" or "we" name the paper.

A pair read without its paper cannot say "this study finds" or "we measure". Each such reference is
rewritten to name the source as "Surname et al. (Year)" (:func:`qa_synth.prompts.generate.citation`),
keeping the sentence grammatical without parsing it:

====================================  =====================================================
written                               becomes
====================================  =====================================================
In this paper, we show ...            Smith et al. (2020) show ...
this paper / study / work / article   the paper / study / work / article by Smith et al. (2020)
(also "the present", "the current")
the paper, the article                the paper by Smith et al. (2020) (not before by/of/titled)
the authors                           Smith et al. (2020)
the authors' / our                    Smith et al.'s (2020)
we / us                               Smith et al. (2020)
we've / we're / we'll                 Smith et al. (2020) have / are / will
====================================  =====================================================

"Smith et al." is plural like "we" and "the authors", so verbs agree. "the study" and "the work"
alone are left as they are ("the work done by gravity"), and so is a capitalised "US". What is left
afterwards that still looks like a reference to the paper ("ours", "ourselves", "the authors" in a
form not above) is returned as unresolved, for the stage to record; when the first author or the
year is unknown nothing is rewritten and every reference found is unresolved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qa_synth.prompts.generate import citation

_NOUN = r"(paper|study|work|article|letter|manuscript|analysis)"
_THIS = r"(this|the present|the current)"
_APOS = r"['\u2019]"

_CONTRACTIONS = {"ve": "have", "re": "are", "ll": "will"}

_LEFTOVER = re.compile(
    r"\b([Ww]e|[Oo]urs?|us|[Oo]urselves|[Tt]he authors|[Tt]his (paper|study|work|article)|[Tt]he paper(?! by))\b")


@dataclass
class Rewrite:
    """A rewritten text, how many references were rewritten, and those left (see the module docstring)."""

    text: str
    rewritten: int = 0
    unresolved: list[str] = field(default_factory=list)


def _cap(original: str, replacement: str) -> str:
    """``replacement`` capitalised when ``original`` was (a sentence start)."""
    return replacement[:1].upper() + replacement[1:] if original[:1].isupper() else replacement


def stand_alone(text: str, first_author: str | None, year: int | None) -> Rewrite:
    """``text`` with its references to the source paper rewritten (see the module docstring)."""
    cite = citation(first_author, year)
    if cite is None:
        return Rewrite(text, 0, [m.group(0) for m in _LEFTOVER.finditer(text)])
    owner = f"{first_author} et al.'s ({year})"
    count = 0

    def sub(pattern: str, replace, s: str, flags: int = 0) -> str:
        nonlocal count
        s, n = re.subn(pattern, replace, s, flags=flags)
        count += n
        return s

    s = sub(rf"\b[Ii]n {_THIS} {_NOUN},? we\b", cite, text)
    s = sub(rf"\b[Ii]n our {_NOUN},? we\b", cite, s)
    s = sub(rf"\b({_THIS}) {_NOUN}\b", lambda m: _cap(m.group(0), f"the {m.group(3).lower()} by {cite}"), s, re.IGNORECASE)
    s = sub(r"\b([Tt]he) (paper|article)\b(?!\s+(by|of|titled|entitled)\b)(?!\s*['\u2019]s\b)",
            lambda m: f"{m.group(1)} {m.group(2)} by {cite}", s)
    s = sub(rf"\b[Tt]he authors{_APOS}(?!\w)", owner, s)
    s = sub(r"\b[Tt]he authors\b", cite, s)
    s = sub(rf"\b[Ww]e{_APOS}(ve|re|ll)\b", lambda m: f"{cite} {_CONTRACTIONS[m.group(1)]}", s)
    s = sub(r"\b[Ww]e\b(?!['\u2019])", cite, s)
    s = sub(r"\b[Oo]ur\b", owner, s)
    s = sub(r"\bus\b", cite, s)
    return Rewrite(s, count, [m.group(0) for m in _LEFTOVER.finditer(s)])


__all__ = ["Rewrite", "stand_alone"]
