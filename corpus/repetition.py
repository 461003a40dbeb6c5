"""Repetition cleanup and loop detection for OCR (Nougat) text.

Nougat drifts into repetition loops: a phrase, word, character or ``\\quad`` repeated until the token
budget runs out. The reference recipe (cosmosage's ``clean_mmd.py``, used for AstroSage) collapses

* repeated word sequences of up to 22 words,
* characters repeated 5 or more times,
* words repeated 3 or more times,
* runs of ``\\quad`` / ``\\qquad`` (and of the thin spaces ``\\,`` / ``\\!``),
* duplicate consecutive sentences.

Each rule is one pure function here, regex-based and linear in the text length (no quadratic
token loops), so the curation stage can run them over a whole corpus. Unlike the reference, the
rules are written so that math survives:

* digits, whitespace, brackets, ``$`` and ``\\`` are never collapsed as "repeated characters"
  (``100000``, ``}}}}}`` closing nested math and paragraph breaks are real content), and the column
  spec of ``\\begin{tabular}{lllll}`` / ``\\begin{array}{ccccc}`` is left alone;
* a repeated unit is only removed when removing it keeps ``$`` parity and ``\\(``/``\\)``,
  ``\\[``/``\\]`` balance, so a collapse never opens or closes a math span;
* whitespace (newlines, paragraph breaks) is kept, not re-joined with single spaces.

``repetition_score`` and ``is_looping`` reuse the same collapsers to decide whether a page of model
output is a loop (see ``corpus/extract/nougat.py``).
"""

from __future__ import annotations

import re

__all__ = [
    "clean_repetitions",
    "collapse_quad_runs",
    "collapse_repeated_chars",
    "collapse_repeated_sequences",
    "collapse_repeated_words",
    "drop_duplicate_sentences",
    "is_looping",
    "repetition_score",
    "tail_repeats",
]

# Column specs such as \begin{tabular}{lllll} or \begin{array}{|c|c|}: never touched.
_PROTECTED = r"\\begin\{(?:tabular|array|tabularx)\*?\}(?:\{[^{}]*\})+"


def _delimiter_balance(unit: str) -> tuple[int, int, int]:
    """(``$`` count mod 2, ``\\(`` minus ``\\)``, ``\\[`` minus ``\\]``) of one repeated unit."""
    dollars = unit.count("$") - unit.count("\\$")
    return dollars % 2, unit.count("\\(") - unit.count("\\)"), unit.count("\\[") - unit.count("\\]")


def _copies_to_keep(unit: str, copies: int) -> int:
    """How many of ``copies`` consecutive copies of ``unit`` must stay so math delimiters stay paired.

    A unit with balanced delimiters collapses to one copy. A unit with an odd number of ``$`` keeps
    one or two copies so that an even number is removed. A unit that opens ``\\(`` or ``\\[`` without
    closing it is left as it is: removing it would unbalance the text around it.
    """
    odd_dollars, paren, bracket = _delimiter_balance(unit)
    if paren or bracket:
        return copies
    if odd_dollars:
        return 1 if (copies - 1) % 2 == 0 else 2
    return 1


def _sequence_pattern(min_len: int, max_len: int) -> re.Pattern[str]:
    # A unit is min_len..max_len whitespace-separated tokens, followed by one or more copies of itself.
    # Possessive \S++ keeps the scan linear: a token is never re-split while backtracking.
    return re.compile(
        r"(?<!\S)(\S++(?:\s+\S++){%d,%d})((?:\s+\1(?!\S))+)" % (min_len - 1, max_len - 1)
    )


_SEQ_CACHE: dict[tuple[int, int], re.Pattern[str]] = {}


def collapse_repeated_sequences(text: str, max_len: int = 22, min_len: int = 2, passes: int = 3) -> str:
    """Collapse a sequence of ``min_len``..``max_len`` words immediately repeated into one copy.

    ``"the flux of the source the flux of the source"`` becomes ``"the flux of the source"``.
    Words are whitespace-separated tokens, so punctuation and inline math count as part of a word.
    The longest repeating unit at a position wins; ``passes`` rounds handle nested loops (a repeated
    phrase inside a repeated paragraph). Single repeated words are the job of
    :func:`collapse_repeated_words`.
    """
    if min_len < 1 or max_len < min_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    pattern = _SEQ_CACHE.get((min_len, max_len))
    if pattern is None:
        pattern = _SEQ_CACHE[(min_len, max_len)] = _sequence_pattern(min_len, max_len)

    def repl(m: re.Match[str]) -> str:
        unit, rest = m.group(1), m.group(2)
        copies = 1 + len(re.findall(r"\s+" + re.escape(unit) + r"(?!\S)", rest))
        keep = _copies_to_keep(unit, copies)
        if keep >= copies:
            return m.group(0)
        if keep == 1:
            return unit
        # keep two copies with the original separator between them
        sep = re.match(r"\s+", rest).group(0)
        return unit + sep + unit

    for _ in range(passes):
        new = pattern.sub(repl, text)
        if new == text:
            break
        text = new
    return text


_CHAR_EXCLUDED = r"\s\d{}\[\]()$\\"


def collapse_repeated_chars(text: str, min_run: int = 5) -> str:
    """Collapse a character repeated ``min_run`` or more times in a row into one.

    ``"Figure.........."`` becomes ``"Figure."`` and ``"aaaaaaa"`` becomes ``"a"``. Digits,
    whitespace, brackets, ``$`` and backslashes are never collapsed (numbers, paragraph breaks and
    closing braces of nested math are content), nor are tabular/array column specs.
    """
    if min_run < 2:
        raise ValueError(f"min_run must be >= 2, got {min_run}")
    pattern = re.compile(
        r"(?P<keep>%s)|(?P<ch>[^%s])(?P=ch){%d,}" % (_PROTECTED, _CHAR_EXCLUDED, min_run - 1)
    )
    return pattern.sub(lambda m: m.group("keep") if m.group("keep") else m.group("ch"), text)


def collapse_repeated_words(text: str, min_run: int = 3) -> str:
    """Collapse a word repeated ``min_run`` or more times in a row (whitespace between) into one.

    ``"the the the the model"`` becomes ``"the model"``; ``"had had"`` (two copies) is left alone.
    A "word" is a whitespace-separated token, so ``\\alpha \\alpha \\alpha`` and ``1 1 1`` collapse too;
    math delimiter balance is preserved as in :func:`collapse_repeated_sequences`.
    """
    if min_run < 2:
        raise ValueError(f"min_run must be >= 2, got {min_run}")
    pattern = re.compile(r"(?<!\S)(\S++)((?:\s+\1(?!\S)){%d,})" % (min_run - 1))

    def repl(m: re.Match[str]) -> str:
        unit = m.group(1)
        copies = 1 + len(re.findall(r"\s+" + re.escape(unit) + r"(?!\S)", m.group(2)))
        keep = _copies_to_keep(unit, copies)
        if keep >= copies:
            return m.group(0)
        return unit if keep == 1 else unit + " " + unit

    return pattern.sub(repl, text)


_QUAD_RUN = re.compile(r"(\\q?quad)(?![A-Za-z])(?:\s*\\q?quad(?![A-Za-z])){2,}")
_THIN_RUN = re.compile(r"(\\[,!;:])(?:\s*\1){1,}")


def collapse_quad_runs(text: str) -> str:
    """Reduce runs of spacing commands that Nougat loops on.

    Three or more ``\\quad`` / ``\\qquad`` in a row become two (``\\quad\\quad`` is legitimate
    spacing and is kept); a run of the same thin space ``\\,`` ``\\!`` ``\\;`` ``\\:`` becomes one.
    Commands that merely start with ``quad`` (``\\quadrupole``) are not touched.
    """
    text = _QUAD_RUN.sub(lambda m: m.group(1) + m.group(1), text)
    return _THIN_RUN.sub(lambda m: m.group(1), text)


# A sentence ends with . ! or ? followed by whitespace; the whitespace is kept as the separator.
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])(\s+)")


def _norm(sentence: str) -> str:
    return " ".join(sentence.split())


def drop_duplicate_sentences(text: str) -> str:
    """Drop a sentence that is identical (up to whitespace) to the sentence right before it.

    Only consecutive duplicates go, so a sentence quoted again later in the paper stays. A sentence
    is kept when dropping it would change ``$`` parity or ``\\(``/``\\[`` balance, and sentences with
    no letter or digit (``"."``) are never compared. Whitespace between kept sentences is unchanged.
    """
    parts = _SENTENCE_SPLIT.split(text)
    if len(parts) < 3:
        return text
    out: list[str] = [parts[0]]
    last = _norm(parts[0])
    for i in range(1, len(parts), 2):
        sep, sentence = parts[i], parts[i + 1]
        norm = _norm(sentence)
        if (
            norm
            and norm == last
            and re.search(r"\w", norm)
            and _delimiter_balance(sentence) == (0, 0, 0)
        ):
            continue
        out.append(sep)
        out.append(sentence)
        last = norm
    return "".join(out)


def clean_repetitions(text: str) -> str:
    """Apply every rule, in the reference recipe's order.

    Sequences first (they remove whole loops), then characters, words, spacing-command runs and
    finally duplicate sentences.
    """
    text = collapse_repeated_sequences(text)
    text = collapse_repeated_chars(text)
    text = collapse_repeated_words(text)
    text = collapse_quad_runs(text)
    return drop_duplicate_sentences(text)


def repetition_score(text: str) -> float:
    """Fraction (0..1) of the non-space characters that the loop collapsers remove.

    0 for text without immediate repetition; close to 1 for a page that is one phrase repeated.
    Used to spot Nougat loops: a normal paper page scores near 0.
    """
    def size(s: str) -> int:
        return len(s) - sum(s.count(c) for c in " \t\n\r")

    total = size(text)
    if total == 0:
        return 0.0
    cleaned = collapse_quad_runs(
        collapse_repeated_words(collapse_repeated_chars(collapse_repeated_sequences(text)))
    )
    return max(0.0, min(1.0, 1.0 - size(cleaned) / total))


def tail_repeats(text: str, max_len: int = 22) -> int:
    """How many times the text's last unit of 1..``max_len`` tokens repeats back to back at its end.

    A page cut off by the token limit in the middle of a loop ends in many copies of one unit
    (``"... and the and the and the"`` gives 3 or more). Returns 1 when the end does not repeat.
    """
    tokens = text.split()
    best = 1
    for size in range(1, min(max_len, len(tokens) // 2) + 1):
        unit = tokens[-size:]
        copies = 1
        end = len(tokens) - size
        while end - size >= 0 and tokens[end - size:end] == unit:
            copies += 1
            end -= size
        best = max(best, copies)
    return best


def is_looping(text: str, max_score: float = 0.3, min_tail_repeats: int = 4) -> bool:
    """True when model output looks like a repetition loop.

    Either the collapsers would remove more than ``max_score`` of the text, or it ends in
    ``min_tail_repeats`` or more copies of one unit (a loop cut off by the token limit).
    """
    if not text.strip():
        return False
    return repetition_score(text) > max_score or tail_repeats(text) >= min_tail_repeats
