"""Reading model replies (repair, validation), prompt templates, and the stand-alone rewriting."""

from __future__ import annotations

import json

import pytest

from qa_synth.prompts import get_template, render
from qa_synth.prompts.generate import GENERATE_V1, generate_fields
from qa_synth.prompts.grade import GRADE_V1
from qa_synth.prompts.metadata import metadata_pairs
from qa_synth.replies import ReplyError, extract_json, parse_pairs, parse_reply
from qa_synth.standalone import stand_alone

PAIR = {"question_type": "factual", "question": "What drives gas inwards in a barred galaxy?",
        "answer": "The bar's gravitational torque."}
GRADE_SCHEMA = GRADE_V1.schema
PAIRS_SCHEMA = GENERATE_V1.schema


# ---------------------------------------------------------------------------- extraction and repairs

def test_clean_json_needs_no_repair():
    value, repairs = extract_json(json.dumps({"pairs": [PAIR]}))
    assert value == {"pairs": [PAIR]} and repairs == []


def test_code_fence_and_prose_around_are_removed():
    text = 'Sure! Here are the pairs:\n```json\n{"pairs": [' + json.dumps(PAIR) + ']}\n```\nHope this helps.'
    value, repairs = extract_json(text)
    assert value == {"pairs": [PAIR]}
    assert "code_fence" in repairs


def test_prose_without_fence():
    value, repairs = extract_json('The grade is {"correctness": 4, "standalone": 5, "pertinence": 4, "overall": 4} as asked.')
    assert value["overall"] == 4 and repairs == ["prose"]


def test_trailing_commas_dropped_but_not_inside_strings():
    value, repairs = extract_json('{"pairs": [{"question_type": "factual", "question": "a, }", "answer": "b",},],}')
    assert value["pairs"][0]["question"] == "a, }"
    assert repairs == ["trailing_comma"]


def test_latex_backslashes_kept_as_latex():
    # what models write: single backslashes; \frac, \nu, \theta would read as form feed, newline, tab
    text = r'{"question": "What is $\frac{\nu}{\theta}$ when $\alpha = \sigma$?", "answer": "Line one.\nThe $\rho$ \u00e9"}'
    value, repairs = extract_json(text)
    assert value["question"] == r"What is $\frac{\nu}{\theta}$ when $\alpha = \sigma$?"
    assert value["answer"] == "Line one.\nThe $\\rho$ é"  # a real newline escape and \u00e9 stay escapes
    assert repairs == ["latex_escapes"]


def test_properly_escaped_latex_is_untouched():
    text = json.dumps({"question": r"Why is $\frac{1}{2}\nu$ used?"})
    value, repairs = extract_json(text)
    assert value["question"] == r"Why is $\frac{1}{2}\nu$ used?" and repairs == []


def test_truncated_reply_keeps_complete_items():
    full = json.dumps({"pairs": [PAIR, {**PAIR, "question": "Second?"}, {**PAIR, "question": "Third?"}]})
    cut = full[: full.index("Third") + 3]  # cut inside the third pair
    value, repairs = extract_json(cut)
    assert [p["question"] for p in value["pairs"]] == [PAIR["question"], "Second?"]
    assert repairs == ["truncated"]


def test_truncated_before_any_complete_item_is_an_error():
    with pytest.raises(ReplyError, match="cut off"):
        extract_json('{"pairs": [{"question_type": "factual", "question": "Wha')


@pytest.mark.parametrize("text,reason", [
    ("", "empty reply"),
    ("I cannot answer that.", "no JSON"),
    ("{'pairs': [{'question': 'x'}]}", "not JSON"),  # single quotes are not guessed at
    ('{"pairs": [1, 2] "x": 3}', "not JSON"),
])
def test_unreadable_replies_are_errors(text, reason):
    with pytest.raises(ReplyError, match=reason):
        extract_json(text)


# ---------------------------------------------------------------------------- validation

def test_grade_parsed_with_key_and_number_repairs():
    value, repairs = parse_reply('{"Correctness": "4", "Stand-alone": 5.0, "pertinence": 3, "OVERALL": 4, "why": "ok"}',
                                 GRADE_SCHEMA)
    assert value == {"correctness": 4, "standalone": 5, "pertinence": 3, "overall": 4}
    assert set(repairs) == {"key_names", "number_type"}


@pytest.mark.parametrize("reply,problem", [
    ({"correctness": 6, "standalone": 5, "pertinence": 3, "overall": 4}, "outside 1-5"),
    ({"correctness": 0, "standalone": 5, "pertinence": 3, "overall": 4}, "outside 1-5"),
    ({"correctness": 4.5, "standalone": 5, "pertinence": 3, "overall": 4}, "expected an integer"),
    ({"correctness": True, "standalone": 5, "pertinence": 3, "overall": 4}, "expected an integer"),
    ({"correctness": 4, "standalone": 5, "pertinence": 3}, "no 'overall'"),
    ([4, 5, 3, 4], "expected an object"),
])
def test_invalid_grades_are_errors(reply, problem):
    with pytest.raises(ReplyError, match=problem):
        parse_reply(json.dumps(reply), GRADE_SCHEMA)


def test_pairs_invalid_items_set_aside_valid_kept():
    reply = {"pairs": [PAIR, {**PAIR, "question_type": "trivia"}, {**PAIR, "answer": "  "},
                       {**PAIR, "question_type": "Methods", "question": "How?"}]}
    parsed = parse_pairs(json.dumps(reply), PAIRS_SCHEMA, n=3)
    assert [(n, p["question_type"]) for n, p in parsed.pairs] == [(0, "factual"), (3, "methods")]
    assert [n for n, _ in parsed.dropped] == [1, 2]
    assert "not one of" in parsed.dropped[0][1] and "empty" in parsed.dropped[1][1]
    assert parsed.repairs == ["enum_case"]


def test_pairs_beyond_n_are_set_aside_and_bare_list_accepted():
    parsed = parse_pairs(json.dumps([PAIR, PAIR, PAIR]), PAIRS_SCHEMA, n=2)
    assert [n for n, _ in parsed.pairs] == [0, 1]
    assert parsed.dropped == [(2, "beyond the 2 pairs asked for")]
    assert parsed.repairs == ["bare_list"]


@pytest.mark.parametrize("reply,problem", [
    ({"pairs": []}, "empty list"),
    ({"pairs": [{"question": "only a question"}]}, "no 'question_type'"),
    ({"questions": [PAIR]}, "no 'pairs'"),
    ({"pairs": "none"}, "expected a list"),
])
def test_pairs_replies_without_a_valid_pair_are_errors(reply, problem):
    with pytest.raises(ReplyError, match=problem):
        parse_pairs(json.dumps(reply), PAIRS_SCHEMA, n=3)


# ---------------------------------------------------------------------------- templates

CHUNK = {"chunk_id": "2101.00001#0", "paper_id": "2101.00001", "text": "We find $\\{x\\}$ {n} inflow.",
         "section": "Results", "title": "Bars", "first_author": "Balázs", "year": 2021}


def test_generate_prompt_names_the_paper_and_keeps_text_verbatim():
    msgs = GENERATE_V1.messages(generate_fields(CHUNK, 4), structured=True)
    assert [r for r, _ in msgs] == ["system", "user"]
    user = msgs[-1][1]
    assert "We find $\\{x\\}$ {n} inflow." in user  # braces in the chunk are not placeholders
    assert '"Bars", first author Balázs, 2021' in user and "Write 4 question-answer pairs" in user
    assert 'call it "Balázs et al. (2021)"' in user
    assert "JSON" not in msgs[0][1]


def test_without_structured_output_the_prompt_states_the_shape():
    msgs = GENERATE_V1.messages(generate_fields({**CHUNK, "first_author": None}, 2), structured=False)
    assert '"question_type": "factual" | "conceptual"' in msgs[0][1]
    assert "rephrase it so that it does not" in msgs[-1][1]  # no author: no citation offered


def test_grade_prompt_is_few_shot_with_the_source():
    msgs = GRADE_V1.messages({"text": "SOURCE TEXT", "question": "Q?", "answer": "A."}, structured=True)
    roles = [r for r, _ in msgs]
    assert roles == ["system"] + ["user", "assistant"] * 3 + ["user"]
    for _, content in msgs[2:-1:2]:
        assert set(json.loads(content)) == {"correctness", "standalone", "pertinence", "overall"}
    assert "SOURCE TEXT" in msgs[-1][1] and "Question: Q?" in msgs[-1][1]


def test_templates_by_id_and_missing_placeholder():
    assert get_template("grade@1") is GRADE_V1
    with pytest.raises(KeyError, match="generate@9"):
        get_template("generate@9")
    with pytest.raises(KeyError, match="placeholder {x}"):
        render("a {x} b", {})


def test_metadata_pairs_only_for_what_exists():
    pairs, missing = metadata_pairs("astro-ph/0701001", "Cepheids", "Riess", 2007)
    assert [p["field"] for p in pairs] == ["title", "first_author", "year", "arxiv_id"] and missing == []
    assert pairs[1]["question"] == 'Who is the first author of the paper titled "Cepheids"?'
    assert pairs[1]["answer"] == 'The first author of "Cepheids" is Riess.'
    pairs, missing = metadata_pairs("sha256:" + "a" * 64, "A title", None, 2020)
    assert [p["field"] for p in pairs] == ["year"] and missing == ["title", "first_author", "arxiv_id"]
    assert metadata_pairs("2101.00001", None, "Smith", 2020) == ([], ["title", "first_author", "year", "arxiv_id"])


# ---------------------------------------------------------------------------- stand-alone rewriting

@pytest.mark.parametrize("text,expected", [
    ("In this paper, we show that the bar drives gas inwards.",
     "Balázs et al. (2021) show that the bar drives gas inwards."),
    ("What does this study find about AGN feedback?",
     "What does the study by Balázs et al. (2021) find about AGN feedback?"),
    ("This work measures $H_0$ with Cepheids.", "The work by Balázs et al. (2021) measures $H_0$ with Cepheids."),
    ("We find that the authors' model over-predicts the ring's radius.",
     "Balázs et al. (2021) find that Balázs et al.'s (2021) model over-predicts the ring's radius."),
    ("Our simulations allow us to resolve the nuclear ring.",
     "Balázs et al.'s (2021) simulations allow Balázs et al. (2021) to resolve the nuclear ring."),
    ("We've checked that the authors use 42 supernovae.",
     "Balázs et al. (2021) have checked that Balázs et al. (2021) use 42 supernovae."),
    ("According to the paper, the inflow rate is $0.5\\,M_\\odot$/yr.",
     "According to the paper by Balázs et al. (2021), the inflow rate is $0.5\\,M_\\odot$/yr."),
])
def test_references_to_the_paper_are_rewritten(text, expected):
    r = stand_alone(text, "Balázs", 2021)
    assert r.text == expected and r.rewritten >= 1 and r.unresolved == []


@pytest.mark.parametrize("text", [
    "The work done by gravity equals the change in kinetic energy.",
    "The study of barred galaxies began with Hubble's classification.",
    "The weak lens signal of the US survey was measured by Jones et al. (2019) in the paper by Smith.",
    "Western blotting? No: the swept-up shell answers it.",
])
def test_text_without_self_references_is_unchanged(text):
    r = stand_alone(text, "Balázs", 2021)
    assert r.text == text and r.rewritten == 0 and r.unresolved == []


def test_unknown_author_or_year_leaves_text_and_flags():
    r = stand_alone("We find that our model fits.", None, 2021)
    assert r.text == "We find that our model fits." and r.unresolved == ["We", "our"]
    assert stand_alone("We find it.", "Smith", None).unresolved == ["We"]


def test_leftovers_that_have_no_safe_rewrite_are_flagged():
    r = stand_alone("The result is ours; we'd say so.", "Smith", 2020)
    assert r.unresolved == ["ours", "we"]
