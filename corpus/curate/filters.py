"""Document filters calibrated on scientific text: language ID and a few robust heuristics.

Scientific LaTeX/Markdown text is full of braces, backslashes, ``$``, digits and symbols, so web-text
rules (C4's curly-bracket rule, symbol-to-word ratios, "lines must end in punctuation") would delete
equations and whole papers. None of them is here. The heuristics are:

* **length**: at least ``min_words`` whitespace-separated tokens (and at most ``max_words`` if set);
* **garbled tokens**: the fraction of tokens with a replacement character, private-use or control
  characters, a PDF ``(cid:NN)`` glyph, or a run of 25+ letters (words run together by a broken text
  layer) — all signs of a failed extraction, none of them present in math;
* **alphabetic tokens**: at least ``min_alpha_token_fraction`` of the tokens contain a letter (tables
  of numbers pass; a dump of digits or binary noise does not);
* **repetition**: the share of word 10-grams that occur more than once in the document (vectorised
  over word hashes, Gopher-style but calibrated on papers), and the share of characters in exactly
  repeated lines. Optionally (``max_repetition``, off by default because it costs ~10x more) the
  share of characters the OCR repetition collapsers would remove
  (:func:`corpus.repetition.repetition_score`, shared with the OCR stage).

The defaults keep every clean fixture paper (PDF text layers, LaTeX sources and unarXive full texts);
``tests/test_filters.py`` checks that.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from corpus.curate import text as T
from corpus.run.stage import EmptyOutputError


def ensure_some_kept(stage: str, n_in: int, n_kept: int, reasons: Counter | dict | None = None) -> None:
    """Raise :class:`EmptyOutputError` if a step given documents kept none of them.

    ``reasons`` (drop reason -> count) goes into the message so the misconfigured rule is obvious.
    """
    if n_in > 0 and n_kept == 0:
        top = ", ".join(f"{k}: {v}" for k, v in Counter(reasons or {}).most_common(5))
        raise EmptyOutputError(
            f"{stage}: all {n_in} documents were dropped ({top or 'no reasons recorded'}); "
            "check the thresholds in its config")


# ------------------------------------------------------------------------------------------ language


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]{0,400}\$|\\\[.*?\\\]|\\begin\{(equation|align|eqnarray)\*?\}.*?\\end\{\1\*?\}",
                   re.DOTALL)


def language(text: str, max_chars: int = 5_000) -> tuple[str, float]:
    """``(ISO 639-1 code, probability)`` of the text's language by py3langid (its bundled model).

    Math spans are removed first and at most ``max_chars`` characters from the middle of the text
    are classified (the middle avoids title pages and reference lists). An empty text gives
    ``("und", 0.0)``.
    """
    if len(text) > 2 * max_chars:  # a window twice the sample, so math removal leaves enough
        start = (len(text) - 2 * max_chars) // 2
        text = text[start : start + 2 * max_chars]
    sample = _MATH.sub(" ", text)
    if len(sample) > max_chars:
        start = (len(sample) - max_chars) // 2
        sample = sample[start : start + max_chars]
    if not sample.strip():
        return "und", 0.0
    lang, prob = _identifier().classify(sample)
    return str(lang), float(prob)


@dataclass(frozen=True)
class LanguageConfig:
    """Keep documents in these languages, identified with at least this probability."""

    languages: tuple[str, ...] = field(default=("en",), metadata={"help": "ISO 639-1 codes to keep"})
    min_prob: float = field(default=0.5, metadata={"help": "minimum py3langid probability"})
    max_chars: int = field(default=5_000, metadata={"help": "characters classified (from the middle)"})


def language_check(text: str, config: LanguageConfig = LanguageConfig()) -> tuple[bool, str | None, dict]:
    """``(keep, reason, scores)``: reason is ``None`` when kept, else ``language:<code>`` or
    ``language_low_confidence``."""
    lang, prob = language(text, config.max_chars)
    scores = {"language": lang, "language_prob": round(prob, 4)}
    if lang not in config.languages:
        return False, f"language:{lang}", scores
    if prob < config.min_prob:
        return False, "language_low_confidence", scores
    return True, None, scores


# ------------------------------------------------------------------------------------------ heuristics

_GARBLED = re.compile(
    r"[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"  # replacement, private use, control
    r"|\(cid:\d+\)"  # unmapped PDF glyphs
    r"|[^\W\d_]{25,}"  # 25+ letters with no space: words run together
)
_HAS_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class HeuristicConfig:
    """Thresholds of :func:`heuristic_check` (``None`` turns a rule off)."""

    min_words: int | None = field(default=300, metadata={"help": "minimum whitespace-separated tokens"})
    max_words: int | None = field(default=None, metadata={"help": "maximum tokens (None: no limit)"})
    max_garbled_fraction: float | None = field(
        default=0.05, metadata={"help": "maximum fraction of garbled tokens (see module docstring)"})
    min_alpha_token_fraction: float | None = field(
        default=0.5, metadata={"help": "minimum fraction of tokens containing a letter"})
    max_duplicate_ngram_fraction: float | None = field(
        default=0.25, metadata={"help": "maximum share of word 10-grams occurring more than once"})
    max_repetition: float | None = field(
        default=None, metadata={"help": "maximum share of characters removed by the OCR repetition collapsers (slow)"})
    max_duplicate_line_fraction: float | None = field(
        default=0.3, metadata={"help": "maximum share of characters in exactly repeated lines"})


def duplicate_ngram_fraction(text: str, n: int = 10) -> float:
    """Share of the word ``n``-grams of ``text`` that occur more than once in it (0 for short texts)."""
    wh = T.word_hashes(T.words(text))
    if len(wh) < n + 1:
        return 0.0
    _, inverse, counts = np.unique(T.ngram_hashes(wh, n), return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse] > 1))


def heuristic_scores(text: str, with_repetition_score: bool = False) -> dict:
    """The measurements the heuristics threshold (``repetition`` only when asked: it is the slow one)."""
    tokens = text.split()
    n = len(tokens)
    lines = [ln.strip() for ln in text.split("\n")]
    lines = [ln for ln in lines if ln]
    line_chars = sum(map(len, lines))
    counts = Counter(lines)
    dup_chars = sum(len(ln) * (c - 1) for ln, c in counts.items() if c > 1)
    scores = {
        "words": n,
        "garbled_fraction": (sum(1 for t in tokens if _GARBLED.search(t)) / n) if n else 0.0,
        "alpha_token_fraction": (sum(1 for t in tokens if _HAS_LETTER.search(t)) / n) if n else 0.0,
        "duplicate_ngram_fraction": duplicate_ngram_fraction(text),
        "duplicate_line_fraction": dup_chars / line_chars if line_chars else 0.0,
    }
    if with_repetition_score:
        from corpus.repetition import repetition_score

        scores["repetition"] = repetition_score(text) if n else 0.0
    return scores


def heuristic_check(text: str, config: HeuristicConfig = HeuristicConfig()) -> tuple[bool, str | None, dict]:
    """``(keep, reason, scores)``; ``reason`` names the first rule that failed, ``None`` when kept."""
    s = heuristic_scores(text, with_repetition_score=config.max_repetition is not None)
    rounded = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in s.items()}
    c = config
    if c.min_words is not None and s["words"] < c.min_words:
        return False, "too_short", rounded
    if c.max_words is not None and s["words"] > c.max_words:
        return False, "too_long", rounded
    if c.max_garbled_fraction is not None and s["garbled_fraction"] > c.max_garbled_fraction:
        return False, "garbled", rounded
    if c.min_alpha_token_fraction is not None and s["alpha_token_fraction"] < c.min_alpha_token_fraction:
        return False, "few_alphabetic_tokens", rounded
    if c.max_duplicate_ngram_fraction is not None and s["duplicate_ngram_fraction"] > c.max_duplicate_ngram_fraction:
        return False, "repetitive", rounded
    if c.max_repetition is not None and s["repetition"] > c.max_repetition:
        return False, "repetitive_ocr", rounded
    if c.max_duplicate_line_fraction is not None and s["duplicate_line_fraction"] > c.max_duplicate_line_fraction:
        return False, "duplicate_lines", rounded
    return True, None, rounded
