"""Rules of the OCR repetition cleaner, one test per rule, plus loop detection."""

from __future__ import annotations

import pytest

from corpus.repetition import (
    clean_repetitions,
    collapse_quad_runs,
    collapse_repeated_chars,
    collapse_repeated_sequences,
    collapse_repeated_words,
    drop_duplicate_sentences,
    is_looping,
    repetition_score,
    tail_repeats,
)

PAGE = (
    "We measure the flux density of the source at 1.4 GHz and find "
    "$S_\\nu = 12.3 \\pm 0.4$ mJy, consistent with \\(\\alpha = -0.7\\). The had had "
    "example is English.\n\n## 2 Method\n\nWe fit \\[ f(x) = \\frac{a}{b^{c^{d^{e^{f}}}}} \\] to 100000 points."
)


def test_clean_page_is_unchanged():
    assert clean_repetitions(PAGE) == PAGE
    assert repetition_score(PAGE) == 0.0
    assert not is_looping(PAGE)


def test_sequence_of_words_collapses_to_one_copy():
    text = "we find the flux of the source the flux of the source the flux of the source is high"
    assert collapse_repeated_sequences(text) == "we find the flux of the source is high"


def test_sequence_up_to_22_words_but_not_longer():
    unit22 = " ".join(f"w{i}" for i in range(22))
    assert collapse_repeated_sequences(f"{unit22} {unit22} end") == f"{unit22} end"
    unit23 = " ".join(f"w{i}" for i in range(23))
    assert collapse_repeated_sequences(f"{unit23} {unit23} end") == f"{unit23} {unit23} end"
    assert collapse_repeated_sequences(f"{unit23} {unit23} end", max_len=23) == f"{unit23} end"


def test_sequence_keeps_paragraph_breaks_around_it():
    text = "Intro.\n\nto the star to the star to the star\n\nNext para."
    assert collapse_repeated_sequences(text) == "Intro.\n\nto the star\n\nNext para."


def test_sequence_collapse_keeps_dollar_parity():
    # each unit holds one '$': removing an odd number of copies would open a math span
    assert collapse_repeated_sequences("a $x b a $x b end") == "a $x b a $x b end"
    out = collapse_repeated_sequences("a $x b a $x b a $x b end")
    assert out == "a $x b end"
    assert out.count("$") % 2 == 1  # as many open spans as before: 3 -> 1


def test_sequence_with_unclosed_paren_math_is_left_alone():
    text = "\\( x y \\( x y end"
    assert collapse_repeated_sequences(text) == text


def test_repeated_characters_collapse_but_numbers_and_braces_survive():
    assert collapse_repeated_chars("Figure.......... shows") == "Figure. shows"
    assert collapse_repeated_chars("aaaaaaa b") == "a b"
    assert collapse_repeated_chars("aaaa b") == "aaaa b"  # 4 < 5
    for keep in ("100000", "$a^{b^{c^{d^{e}}}}}$", "para\n\n\n\n\n\nnext", "\\\\\\\\\\\\",
                 "\\begin{tabular}{lllll} a & b \\end{tabular}"):
        assert collapse_repeated_chars(keep) == keep


def test_words_repeated_three_or_more_times_collapse():
    assert collapse_repeated_words("the the the the model") == "the model"
    assert collapse_repeated_words("he had had lunch") == "he had had lunch"
    assert collapse_repeated_words("\\alpha \\alpha \\alpha =") == "\\alpha ="
    assert collapse_repeated_words("1 1 1 1 1 1") == "1"
    # a 'word' holding a single '$' keeps parity: 4 copies -> 2
    assert collapse_repeated_words("$x $x $x $x").count("$") % 2 == 0


def test_quad_runs():
    assert collapse_quad_runs(r"a \quad\quad\quad \quad b") == r"a \quad\quad b"
    assert collapse_quad_runs(r"a \quad\quad b") == r"a \quad\quad b"
    assert collapse_quad_runs(r"\qquad\qquad\qquad\qquad x") == r"\qquad\qquad x"
    assert collapse_quad_runs(r"x\,\,\,\, y \!\! z") == r"x\, y \! z"
    assert collapse_quad_runs(r"\quadrupole \quadrupole \quadrupole") == r"\quadrupole \quadrupole \quadrupole"


def test_duplicate_consecutive_sentences_dropped():
    text = "One two. One two.\n\nThree.  Three. One two."
    assert drop_duplicate_sentences(text) == "One two.\n\nThree. One two."


def test_duplicate_sentence_with_open_math_kept():
    text = "Let $x. Let $x. done."
    assert drop_duplicate_sentences(text) == text


def test_clean_repetitions_on_a_nougat_loop():
    loop = PAGE + " " + "and the mass of the halo " * 40
    cleaned = clean_repetitions(loop)
    assert cleaned.count("and the mass of the halo") == 1
    assert cleaned.startswith(PAGE)
    assert cleaned.count("$") == PAGE.count("$")


def test_loop_detection():
    looped = "Intro text here. " + "and the mass " * 60
    assert repetition_score(looped) > 0.8
    assert tail_repeats(looped) >= 60
    assert is_looping(looped)
    # a short loop at the end of an otherwise normal page (cut off by max_new_tokens)
    assert is_looping(PAGE + " of the of the of the of the")
    assert not is_looping("")
    assert tail_repeats("no repeats at all here") == 1


@pytest.mark.parametrize("fn", [collapse_repeated_chars, collapse_repeated_words])
def test_bad_parameters_raise(fn):
    with pytest.raises(ValueError):
        fn("x", 1)


def test_linear_enough_on_long_text():
    # 200k characters of mixed loops finish (a quadratic cleaner would not, in a test run)
    text = ("word " * 5000 + "a b c d e f g " * 3000 + "x" * 20000 + " ") * 2
    out = clean_repetitions(text)
    assert len(out) < 100
