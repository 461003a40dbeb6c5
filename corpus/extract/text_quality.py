"""Is this text usable? Pure, cheap signals for routing pages to OCR and for curation.

Two signals, both in 0..1 and both computed from the text alone (no fonts, no layout), so the same
function scores a PDF text layer, an OCR transcript or a cleaned document:

``garbled_score``
    How much of the text is *not language*: 1.0 for empty text, ~0 for clean prose. It is the
    largest of three measured pieces:

    * bad characters: U+FFFD replacement glyphs, private-use code points, control characters and
      ``(cid:NN)`` escapes, as a fraction of the non-space characters (scaled so that 10 % bad
      characters already scores 1.0: a page like that cannot be trusted);
    * non-words: the fraction of letter tokens that do not look like words. A token is a word when
      its case pattern is one a language uses (``word``, ``Word``, ``WORD``; ``NSBULAx`` and
      ``DisTANcEs`` are not), it has a vowel (or is short, or upper-case), and it has no run of
      five consonants. The fraction is raised (up to doubled) when the text has few function words
      ("the", "of", "und", "les", ...);
    * rare letter bigrams: the fraction of letter pairs inside words that fall outside
      ``COMMON_BIGRAMS`` (the pairs making up 99 % of English astronomy prose), mapped linearly
      from 0 at 0.15 to 1 at 0.5, and halved when the text keeps its function words (>= 30 %). A
      broken font encoding that maps letters onto other letters (shifted or permuted glyph codes)
      keeps the case pattern, so only this piece sees it: its pages score 0.5-0.9 rare bigrams.

    The word-based pieces are shrunk towards zero below ``MIN_TOKENS`` letter tokens: a figure page
    with six axis labels is not evidence of a broken encoding. They read only the lines that are not
    table rows (a line at least half of whose tokens hold a digit or no letter at all): the star
    names, units and spectral types between the numbers of a table ("HD 12345", "dex", "G2V") have
    neither the words nor the letter pairs of prose, and scored a clean AASTeX table of stellar
    parameters 0.65-0.99.

``math_glyph_fraction``
    The fraction of non-space characters that are mathematical symbols or math-alphabet letters
    (U+1D400-U+1D7FF, Greek, operators, arrows, letterlike symbols, combining marks, private use).
    Born-digital math-heavy pages reach ~0.05-0.10; dense equations extracted as "glyph soup" go far
    higher. It is reported separately and does *not* count as garbled.

Measured on the shared fixture PDFs: every born-digital page with 300+ characters scores <= 0.07
(a table page scored 0.28 before table rows were set aside); the same pages with their letters
permuted or shifted score 0.71-1.0. Hence the PDF extractor's default threshold of 0.5.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from corpus.glyphs import BAD_GLYPH_CLASS

MIN_TOKENS = 30
"""Letter tokens needed before the non-word fraction counts in full (fewer are shrunk towards 0)."""

# Function words of the languages astronomy papers are written in. A broken encoding loses them all.
FUNCTION_WORDS = frozenset(
    """
    a an the of and or to in on at by for with from as is are was were be been being it its this that
    these those we our us they their there which who whom whose what when where while than then
    not no but if so such can may might will would should could has have had do does did into onto
    over under between through about also both each all any some more most other only same very
    well here however thus since because although using used per via
    le la les des du de un une et est sont dans pour par sur avec que qui ne pas au aux ce cette
    der die das und ist sind ein eine einer mit von zu den dem nicht auch auf für bei aus wir
    el los las del y en es son con por para una que se lo al como
    il lo gli della delle di che per con sono non
    o os da das do dos em um uma com para não
    """.split()
)

# A whitespace-delimited token made of letters (inner apostrophes and hyphens allowed), possibly
# wrapped in punctuation; tokens with digits or symbols inside ("H2O", "x+y") are not evidence either way.
_LETTER_TOKEN = re.compile(
    r"[\"'“”‘’`.,;:!?()\[\]{}<>«»–—/*]*([^\W\d_](?:(?:[^\W\d_]|['’-])*[^\W\d_])?)[\"'“”‘’`.,;:!?()\[\]{}<>«»–—/*]*"
)
_WORDLIKE = re.compile(r"^(?:[^\W\d_][^\W\d_'’-]*)$")
_VOWELS = frozenset("aeiouyàáâãäåæèéêëìíîïòóôõöøœùúûüýÿāēīōūαεηιουω")
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{5,}")
_CID = re.compile(r"\(cid:\d+\)")
_BAD_SCALE = 10.0

# The letter bigrams that make up 99 % of the bigrams inside words of English astronomy prose (measured
# on the prose of the LEGWORK paper's LaTeX source). A font encoding that maps letters onto other
# letters (a shift, a permutation) turns half or more of a page's bigrams into ones outside this set.
COMMON_BIGRAMS = frozenset(
    re.findall(
        "..",
        "abacadagaiajakalamanaparasatauavaxaybabebiblbobsbubycacccechcickclcocrcsctcucydadddedidodsdtdudw"
        "eaecedeeefegeielemeneoepeqeresetevewexeyfafefffiflfofrftfufygageghgiglgngrgtgugwhahehihohrhthuia"
        "ibicidieifigiliminioirisitivizjejokakeknlalcldlelilllolsltlulvlymambmemimlmompmsmunancndnenfngni"
        "nknlnnnonqnrnsntnunvnyobocodofoiolomonoooporosotouovowoxpapephpiplpoppprpsptpupyqiqurarbrcrdrerf"
        "rgrirkrlrmrnrorprrrsrtrurvrysascsesfshsismsnsospssstsusytatethtitltotptrtstttutwtyuaubucudueugui"
        "ulumunupurusutvavevivowawewhwiwnwowrwsxaxixpyeyoysytzo",
    )
)
RARE_BIGRAM_FLOOR = 0.15
RARE_BIGRAM_SPAN = 0.35


_ASCII_RUN = re.compile(r"[a-z]{2,}")


# Character classes, as regexes so that a page is counted in C, not character by character.
_BAD_CHARS = re.compile(f"[{BAD_GLYPH_CLASS}]")  # replacement glyph, private use, control characters
_MATH_CHARS = re.compile(
    "[\U0001d400-\U0001d7ff\ue000-\uf8ff\u0370-\u03ff\u2100-\u23ff\u27c0-\u27ef\u2980-\u2aff"
    "\u0300-\u036f\u20d0-\u20ff+<=>|~\u00ac\u00b1\u00d7\u00f7]"
)  # math alphanumerics, private use, Greek, letterlike/arrows/operators/technical, combining marks


TABLE_DIGIT_SHARE = 0.05
"""Digits, as a share of a text's characters, below which no line is set aside as a table row (the
fixture pages: prose 0.001-0.05, table pages 0.1-0.43)."""

# a token with a digit in it ("12345", "5.3e-4", "+0.12", "G2V") or with neither letter nor digit ("±", "−")
_NUMERIC_TOKEN = re.compile(r"(?<!\S)(?:[^\s\d]*\d\S*|[^\w\s]+(?!\S))")


def _prose_tokens(text: str, tokens: list[str]) -> list[str]:
    """Of ``tokens`` (``text.split()``), those outside table rows: lines at least half of whose
    tokens are numeric (see ``_NUMERIC_TOKEN``). A row of a table of numbers ("HD 12345 5777 ± 60
    4.44 +0.12 G2V") holds names, units and spectral types that are no evidence for or against a
    language; a broken encoding turns the digits of its rows into other glyphs, and its prose keeps
    few digits, so both stay in. A text whose characters are under ``TABLE_DIGIT_SHARE`` digits holds
    no table that could outweigh its prose and is read whole (the check costs a tenth of the split)."""
    if sum(map(text.count, "0123456789")) < TABLE_DIGIT_SHARE * len(text):
        return tokens
    out: list[str] = []
    for line in text.split("\n"):
        words = line.split()
        if words and 2 * len(_NUMERIC_TOKEN.findall(line)) < len(words):
            out.extend(words)
    return out


@lru_cache(maxsize=1 << 17)
def _token_stats(token: str) -> tuple[int, int, int]:
    """(kind, bigrams, rare bigrams) of a whitespace-delimited token; cached, pages repeat their words.

    kind: -1 = not a letter token (digits or symbols inside: "H2O", "x+y"), 0 = word,
    1 = function word, 2 = non-word.
    """
    low = token.lower()
    bigrams = rare = 0
    for run in _ASCII_RUN.findall(low):
        for i in range(len(run) - 1):
            bigrams += 1
            rare += run[i : i + 2] not in COMMON_BIGRAMS
    m = _LETTER_TOKEN.fullmatch(token)
    if m is None:
        return -1, bigrams, rare
    word = m.group(1)
    if word.lower() in FUNCTION_WORDS:
        return 1, bigrams, rare
    return (0 if _word_ok(word) else 2), bigrams, rare


def _word_ok(tok: str) -> bool:
    """Whether a letter token looks like a word of a language (see module docstring)."""
    if not _WORDLIKE.match(tok):
        return False
    core = tok.replace("'", "").replace("’", "").replace("-", "")
    if not core:
        return False
    if not (core.islower() or core.isupper() or (core[0].isupper() and core[1:].islower())):
        return False
    low = core.lower()
    if core.isupper() or len(low) <= 3:
        return True
    if not any(c in _VOWELS for c in low):
        return False
    return not _CONSONANT_RUN.search(low)


@dataclass(frozen=True)
class TextSignals:
    """The measured pieces behind :func:`garbled_score` (for reports and threshold tuning)."""

    chars: int
    """non-space characters"""
    bad_char_fraction: float
    letter_tokens: int
    nonword_fraction: float
    function_word_fraction: float
    math_glyph_fraction: float
    rare_bigram_fraction: float
    garbled: float


def text_signals(text: str, removed: int = 0) -> TextSignals:
    """Measure ``text``; see the module docstring for what each number means. ``removed``: bad
    characters already taken out of ``text`` (:func:`corpus.glyphs.fix_glyphs`), counted as bad
    characters of the text they came from."""
    tokens = text.split()
    n = sum(map(len, tokens))
    if n == 0:
        return TextSignals(0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 1.0)
    bad = len(_BAD_CHARS.findall(text)) + 6 * len(_CID.findall(text)) + removed
    math = len(_MATH_CHARS.findall(text))
    bad_frac = min(1.0, bad / (n + removed))

    n_tok = nonword = function = n_bigrams = rare_bigrams = 0
    for token, count in Counter(_prose_tokens(text, tokens)).items():
        kind, bigrams, rare = _token_stats(token)
        n_bigrams += bigrams * count
        rare_bigrams += rare * count
        if kind < 0:
            continue
        n_tok += count
        if kind == 1:
            function += count
        elif kind == 2:
            nonword += count
    nonword_frac = nonword / n_tok if n_tok else 0.0
    function_frac = function / n_tok if n_tok else 0.0

    # Few function words: the non-words that remain are likely a substituted alphabet.
    # 0.15+ function words (prose, even terse) leaves the fraction as is; none doubles it.
    lang = 1.0 + max(0.0, 0.15 - function_frac) / 0.15
    confidence = min(1.0, n_tok / MIN_TOKENS)
    rare = rare_bigrams / n_bigrams if n_bigrams else 0.0
    # rare bigrams: clean pages <= 0.26 (tables), substituted alphabets >= 0.5 (measured)
    bigram_score = min(1.0, max(0.0, (rare - RARE_BIGRAM_FLOOR) / RARE_BIGRAM_SPAN))
    bigram_score *= 1.0 - 0.5 * min(1.0, function_frac / 0.3)
    word_score = min(1.0, max(nonword_frac * lang, bigram_score)) * confidence
    garbled = max(min(1.0, bad_frac * _BAD_SCALE), word_score)
    return TextSignals(n, bad_frac, n_tok, nonword_frac, function_frac, math / n, rare, garbled)


def garbled_score(text: str) -> float:
    """0..1: how much of ``text`` is not language (1.0 = empty or unusable). Pure and cheap."""
    return text_signals(text).garbled


def math_glyph_fraction(text: str) -> float:
    """0..1: fraction of non-space characters that are math symbols / math letters / private use."""
    n = sum(map(len, text.split()))
    return len(_MATH_CHARS.findall(text)) / n if n else 0.0
