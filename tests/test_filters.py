"""Filters: every clean fixture paper is kept; garbage, loops, short and foreign texts are not."""

from __future__ import annotations

import json

import pytest

from corpus.curate.filters import (
    EmptyOutputError,
    HeuristicConfig,
    LanguageConfig,
    ensure_some_kept,
    heuristic_check,
    language,
    language_check,
)

PROSE = ("The observed rotation curves of spiral galaxies remain flat at large radii, which implies "
         "that the enclosed mass keeps growing beyond the visible disk. ")


@pytest.fixture(scope="module")
def fixture_texts(fixtures):
    import pymupdf

    texts = {}
    for p in sorted((fixtures / "pdf").glob("*.pdf")):
        if "hubble" in p.name:  # scanned pages with a poor OCR layer: not a "clean" paper
            continue
        with pymupdf.open(p) as d:
            texts[p.name] = "\n".join(page.get_text() for page in d)
    for p in sorted((fixtures / "latex").rglob("*.tex")):
        texts[p.name] = p.read_text(errors="replace")
    for line in (fixtures / "metadata" / "unarxive_2212_astro_subset4.jsonl").read_text().splitlines():
        rec = json.loads(line)
        texts[rec["paper_id"]] = "\n\n".join(p["text"] for p in rec["body_text"])
    assert len(texts) >= 11
    return texts


def test_defaults_keep_every_clean_fixture_paper(fixture_texts):
    for name, text in fixture_texts.items():
        keep, reason, scores = heuristic_check(text)
        assert keep, (name, reason, scores)
        keep, reason, scores = language_check(text)
        assert keep, (name, reason, scores)


def test_math_and_braces_are_not_penalised():
    math = (r"We solve $\nabla^2 \Phi = 4\pi G \rho$ with \begin{equation} \frac{d^2 r}{dt^2} = "
            r"-\frac{G M_{\odot}}{r^2} + \left(\frac{L}{r}\right)^{2} \end{equation} and {\it see} {[}1{]}. ")
    text = (PROSE + math) * 40  # repeated on purpose: only the brace/symbol handling is tested here
    keep, reason, scores = heuristic_check(text, HeuristicConfig(max_duplicate_ngram_fraction=None))
    assert keep, (reason, scores)
    assert scores["garbled_fraction"] == 0.0


def test_short_text_dropped():
    keep, reason, scores = heuristic_check(PROSE)
    assert (keep, reason) == (False, "too_short") and scores["words"] < 300
    assert heuristic_check(PROSE, HeuristicConfig(min_words=10))[0]


def test_garbled_extraction_dropped():
    garbled = " ".join(["(cid:12)(cid:7)", "\ufffd\ufffd", "thisisaverylongrunofwordswithoutspaces"] * 200)
    keep, reason, scores = heuristic_check(PROSE * 10 + garbled)
    assert (keep, reason) == (False, "garbled")
    assert scores["garbled_fraction"] > 0.05


def test_repetition_loop_dropped():
    loop = "the flux of the source is " * 400
    keep, reason, scores = heuristic_check(PROSE * 2 + loop)
    assert (keep, reason) == (False, "repetitive") and scores["duplicate_ngram_fraction"] > 0.9
    # the OCR collapsers' score (shared with the OCR stage) is an optional second rule
    cfg = HeuristicConfig(max_duplicate_ngram_fraction=None, max_repetition=0.2)
    keep, reason, scores = heuristic_check(PROSE * 2 + loop, cfg)
    assert (keep, reason) == (False, "repetitive_ocr") and scores["repetition"] > 0.2


def test_numbers_only_dropped():
    keep, reason, _ = heuristic_check(" ".join(str(i * 7919 % 10007) for i in range(2000)))
    assert (keep, reason) == (False, "few_alphabetic_tokens")


def test_language():
    assert language(PROSE * 5)[0] == "en"
    french = ("Les courbes de rotation des galaxies spirales restent plates à grande distance, ce qui "
              "implique que la masse continue de croître au-delà du disque visible. ") * 5
    lang, prob = language(french)
    assert lang == "fr" and prob > 0.9
    keep, reason, scores = language_check(french)
    assert (keep, reason) == (False, "language:fr") and scores["language"] == "fr"
    assert language_check(french, LanguageConfig(languages=("en", "fr")))[0]
    assert language("") == ("und", 0.0)


def test_empty_output_is_an_error():
    ensure_some_kept("filter", 10, 1)
    ensure_some_kept("filter", 0, 0)  # nothing in, nothing out: fine
    with pytest.raises(EmptyOutputError, match="all 3 documents.*too_short: 3"):
        ensure_some_kept("filter", 3, 0, {"too_short": 3})
