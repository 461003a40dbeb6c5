"""Evaluation on multiple-choice benchmarks (trainer.evaluate): readers, answer extraction, the Wilson
interval, and the ``eval`` step in both modes on the Astro-QA sample with a tiny local model, a scripted
OpenAI-compatible server, and replay by ``rebuild`` with no model call."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_openai import FakeOpenAI, last_message  # noqa: E402

from corpus.cli import main as cli_main  # noqa: E402
from corpus.run.executor import ExecutorConfig  # noqa: E402
from corpus.run.recipe import rebuild  # noqa: E402
from trainer.evaluate import (  # noqa: E402
    LETTERS,
    LetterScorer,
    extract_answer,
    letter_logprobs_from_top,
    letter_probabilities,
    load_benchmark,
    wilson_interval,
)
from trainer.evaluate import evaluate as run_eval  # noqa: E402
from schemas import DECISION, EVAL_RESULT, read_polars  # noqa: E402

ASTRO_QA = "qa/astro_qa_en_single_choice4_sample50.jsonl"
ASTROMLAB = "qa/astromlab1_astrobench_mcq_v1_public_en_sample50.json"
ONE_PROCESS = ExecutorConfig(workers=1, tasks=2, quiet=True)


def rows(path: Path) -> list[dict]:
    return read_polars(path, EVAL_RESULT).to_dicts()  # read_polars checks the file against the table's schema


def subset(fixtures: Path, tmp_path: Path, n: int, name: str = "astroqa10") -> Path:
    """The first ``n`` Astro-QA questions as a JSONL file of their own (a cheaper benchmark)."""
    lines = (fixtures / ASTRO_QA).read_text(encoding="utf-8").splitlines()[:n]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ extraction

MESSY = [
    ("B", "B"),
    ("  (C)  ", "C"),
    ("D) The Sun's core.", "D"),
    ("A: perihelion", "A"),
    ("C - because of the orbit", "C"),
    ("Answer: C", "C"),
    ("**Answer:** (B)", "B"),
    ("The correct answer is D.", "D"),
    ("I think the answer is therefore B, since the orbit is eccentric.", "B"),
    ("Option A is tempting, but the correct option is C.", "C"),
    ("The correct answer is C, not option A.", "C"),  # an answer statement outranks an option mentioned later
    ("Answer: The correct option is B", "B"),
    ("Answer: A) Its perihelion is the greatest.", "A"),
    ('{"ANSWER": "A", "EXPLANATION": "Sedna has the largest perihelion."}', "A"),
    ("Let me think.\n\nThe luminosity scales as R^2 T^4, so...\n\nFinal answer: $\\boxed{D}$", "D"),
    ("<think>Maybe the answer is A? No: B fits better.</think>\nAnswer: B", "B"),
    ("<think>A is wrong. So B.</think> The answer is (C).", "C"),
    ("A star of this mass ends as a white dwarf, so (B) is right.", "B"),
    ("A star of this mass ends as a white dwarf.", None),  # the article 'A' is not an answer
    ("answer: b", None),  # a lowercase letter is a word, not an option
    ("I am not sure; it could be (A) or (C).", None),
    ("", None),
    ("It has the longest orbital period around the sun.", "D"),  # the text of one option
]
OPTIONS = {"A": "Its perihelion is the greatest.", "B": "It has the greatest average distance from the Sun.",
           "C": "It has the largest aphelion distance.", "D": "It has the longest orbital period around the sun."}


@pytest.mark.parametrize("reply,expected", MESSY)
def test_extract_answer_on_messy_replies(reply, expected):
    assert extract_answer(reply, OPTIONS) == expected


# ------------------------------------------------------------------------------------------ statistics

def test_wilson_interval_matches_newcombe_1998():
    # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (score interval without continuity correction)
    for (k, n), (lo, hi) in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                             (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}.items():
        got = wilson_interval(k, n)
        assert got[0] == pytest.approx(lo, abs=5e-5) and got[1] == pytest.approx(hi, abs=5e-5), (k, n, got)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_letter_logprobs_from_a_servers_top_logprobs():
    top = [{"token": " B", "logprob": math.log(0.5)}, {"token": "B", "logprob": math.log(0.1)},
           {"token": "A", "logprob": math.log(0.2)}, {"token": "The", "logprob": math.log(0.15)}]
    lp = letter_logprobs_from_top(top)
    assert lp[0] == pytest.approx(math.log(0.2)) and lp[1] == pytest.approx(math.log(0.6))
    assert lp[2] is None and lp[3] is None
    assert letter_probabilities(lp) == pytest.approx([0.25, 0.75, 0.0, 0.0])
    assert letter_probabilities([None] * 4) is None


# ------------------------------------------------------------------------------------------ readers

def test_every_file_layout_reads_the_same_questions_and_problems_are_reported(tmp_path):
    records = [
        {"id": "q1", "question": "Which planet is largest?", "A": "Jupiter", "B": "Mars", "C": "Venus", "D": "Earth",
         "answer": "A"},
        {"id": "q2", "question": "Which star is closest?", "A": "Sirius", "B": "Proxima Centauri", "C": "",
         "D": "Vega", "answer": "B"},  # a blank option: asked, flagged
        {"id": "q3", "question": "which  planet is LARGEST?", "A": "Jupiter", "B": "Mars", "C": "Venus",
         "D": "Earth", "answer": "A"},  # the same question as q1: asked, flagged
        {"id": "q4", "question": "", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "A"},  # no question: left out
        {"id": "q5", "question": "What?", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "E"},  # left out
    ]
    files = {}
    files["json"] = tmp_path / "bench.json"
    files["json"].write_text(json.dumps(records), encoding="utf-8")
    files["jsonl"] = tmp_path / "bench.jsonl"
    files["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    files["parquet"] = tmp_path / "bench.parquet"
    pq.write_table(pa.Table.from_pylist(records), files["parquet"])
    files["csv"] = tmp_path / "bench.csv"  # as a spreadsheet exports it: a byte-order mark, capitalised headers
    header = "ID,Question,A,B,C,D,Answer\r\n"
    body = "".join(",".join('"' + str(r[k]).replace('"', '""') + '"' for k in ("id", "question", "A", "B", "C", "D",
                                                                                  "answer")) + "\r\n" for r in records)
    files["csv"].write_bytes("\ufeff".encode() + (header + body).encode())
    seen = []
    for kind, path in files.items():
        b = load_benchmark(path)
        assert b.name == "bench"
        got = [(q.question.id, q.question.answer, q.question.options["C"], q.flags) for q in b.questions]
        assert got == [("q1", "A", "Venus", ()), ("q2", "B", "", ("blank_option:C",)),
                       ("q3", "A", "Venus", ("duplicate_question:q1",))], kind
        assert len(b.skipped) == 2 and "row 4 no question text" in b.skipped[0] and "not one of A-D" in b.skipped[1]
        seen.append(got)
    assert all(s == seen[0] for s in seen)


def test_both_fixture_layouts_load(fixtures):
    astroqa = load_benchmark(fixtures / ASTRO_QA)
    assert len(astroqa.questions) == 50 and all(q.question.answer in LETTERS for q in astroqa.questions)
    astromlab = load_benchmark(fixtures / ASTROMLAB)
    assert len(astromlab.questions) == 50 and all(q.question.answer is None for q in astromlab.questions)
    assert astromlab.questions[0].question.id == "173"


# ------------------------------------------------------------------------------------------ local model

def test_logprob_mode_on_the_astro_qa_sample(tiny_lm, fixtures, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli_main(["eval", str(tiny_lm), str(fixtures / ASTRO_QA), str(fixtures / ASTROMLAB), "--mode", "logprob",
                     "--out", str(out), "--workers", "1", "--tasks", "2", "--batch-size", "8"])
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "eval/summary.json").read_text())
    s = summary["benchmarks"]["astro_qa_en_single_choice4_sample50"]
    lo, hi = s["ci95"]
    assert s["questions"] == s["with_answer"] == 50 and lo <= s["accuracy"] <= hi
    assert (lo, hi) == pytest.approx(wilson_interval(s["correct"], 50))
    assert f"astro_qa_en_single_choice4_sample50: accuracy {s['accuracy']:.1%} ({s['correct']}/50), 95% CI " \
           f"[{lo:.1%}, {hi:.1%}]" in printed
    assert summary["benchmarks"]["astromlab1_astrobench_mcq_v1_public_en_sample50"]["accuracy"] is None
    assert "predictions only" in printed

    results = rows(out / "eval/results.parquet")
    assert len(results) == 100
    for r in results:
        assert r["method"] == "logprob" and r["error"] is None and r["raw"] is None
        assert sum(r["probabilities"]) == pytest.approx(1.0)
        assert r["predicted"] == LETTERS[max(range(4), key=lambda k: r["probabilities"][k])]
        assert r["probabilities"] == pytest.approx(letter_probabilities(r["logprobs"]))
        if r["benchmark"].startswith("astro_qa"):
            assert r["answer"] in LETTERS and r["correct"] == (r["predicted"] == r["answer"])
        else:
            assert r["answer"] is None and r["correct"] is None  # AstroMLab keeps its keys private
    assert sum(r["correct"] for r in results if r["correct"] is not None) == s["correct"]
    decisions = read_polars(out / "decisions/eval.parquet", DECISION)
    assert decisions.height == 100 and set(decisions["reason"]) <= {"correct", "wrong", "predicted"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["steps"]] == ["eval"]


def test_letter_scores_do_not_depend_on_the_batch(tiny_lm, fixtures):
    """Left padding with position ids: a question scores the same alone as in a batch of longer prompts."""
    import asyncio

    from qa_synth.backends.base import ChatRequest
    from trainer.evaluate import LOGPROB_PROMPT, prompt_fields

    questions = [q.question for q in load_benchmark(fixtures / ASTRO_QA).questions[:6]]
    requests = [ChatRequest(model="m", messages=(("user", LOGPROB_PROMPT.format(**prompt_fields(q))),)) for q in questions]
    batched = LetterScorer(str(tiny_lm), chat=False, batch_size=6).answer_batch(requests)
    alone = [LetterScorer(str(tiny_lm), chat=False, batch_size=1).answer_batch([r])[0] for r in requests]
    assert len({len(r.messages[0][1]) for r in requests}) > 1  # prompts of several lengths: padding happened
    for b, a in zip(batched, alone):
        assert b.extra["letter_logprobs"] == pytest.approx(a.extra["letter_logprobs"], abs=1e-4)
        assert b.text == a.text
    assert asyncio.run(_complete(LetterScorer(str(tiny_lm), chat=True), requests[0])).extra["letter_logprobs"] != \
        batched[0].extra["letter_logprobs"]  # with the chat template the prompt differs


async def _complete(backend, request):
    async with backend:
        return await backend.complete(request)


def test_generate_mode_on_the_astro_qa_sample_and_rebuild_replays_without_the_model(tiny_lm, fixtures, tmp_path,
                                                                                   monkeypatch):
    out = tmp_path / "run"
    summary = run_eval(str(tiny_lm), [fixtures / ASTRO_QA], out, mode="generate", max_tokens=6, batch_size=25,
                       max_in_flight=25, executor=ONE_PROCESS)
    results = rows(out / "eval/results.parquet")
    assert len(results) == 50
    for r in results:
        assert r["method"] == "generate" and r["probabilities"] is None and isinstance(r["raw"], str)
        assert r["completion_tokens"] >= 1 and r["prompt_tokens"] > 0
        assert r["predicted"] == extract_answer(r["raw"], load_options(fixtures, r["question_id"]))
        assert (r["error"] is None) == (r["predicted"] is not None)
        assert r["correct"] == (r["predicted"] == r["answer"])  # no prediction counts as wrong
    s = summary["overall"]
    assert s["questions"] == 50 and s["no_prediction"] == sum(r["predicted"] is None for r in results)

    from qa_synth.backends.local import TransformersBackend

    def no_model(*args, **kwargs):
        raise AssertionError("rebuild called the model")

    monkeypatch.setattr(TransformersBackend, "answer_batch", no_model)
    monkeypatch.setattr(TransformersBackend, "__aenter__", no_model)
    _, diffs = rebuild(out / "manifest.json", tmp_path / "rebuilt", executor=ONE_PROCESS)
    assert diffs == []
    assert (tmp_path / "rebuilt/eval/results.parquet").read_bytes() == (out / "eval/results.parquet").read_bytes()


def load_options(fixtures: Path, qid: str) -> dict:
    for line in (fixtures / ASTRO_QA).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["id"] == qid:
            return {k: row[k] for k in LETTERS}
    raise KeyError(qid)


def test_a_base_model_without_chat_template_scores_logprob_but_not_generate(tiny_lm, fixtures, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_lm, base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    questions = subset(fixtures, tmp_path, 4)
    summary = run_eval(str(base), [questions], tmp_path / "run", mode="logprob", executor=ONE_PROCESS)
    assert summary["overall"]["predicted"] == 4
    with pytest.raises(RuntimeError, match="no chat template"):
        run_eval(str(base), [questions], tmp_path / "run", mode="generate", max_tokens=2, executor=ONE_PROCESS)


# ------------------------------------------------------------------------------------------ served model

def _letter_of(body: dict) -> str:
    """The scripted server's choice: A for the first question, then B, C, D in turn (by prompt length)."""
    return LETTERS[len(last_message(body)) % 4]


def test_generate_mode_with_a_served_model(fixtures, tmp_path):
    questions = subset(fixtures, tmp_path, 8)
    with FakeOpenAI(content=lambda body: f"Let me think... **Answer:** ({_letter_of(body)})") as server:
        summary = run_eval("served-model", [questions], tmp_path / "run", mode="generate", endpoints=[server.url],
                           executor=ONE_PROCESS)
        sent = server.sent()
    assert len(sent) == 8 and all(b["model"] == "served-model" and b["temperature"] == 0.0 for b in sent)
    results = rows(tmp_path / "run/eval/results.parquet")
    expected = {last_message(b): _letter_of(b) for b in sent}
    assert sorted(r["predicted"] for r in results) == sorted(expected.values())
    assert summary["overall"]["correct"] == sum(r["predicted"] == r["answer"] for r in results)
    assert all(r["model"] == "served-model" for r in results)
    _, diffs = rebuild(tmp_path / "run/manifest.json", tmp_path / "rebuilt", executor=ONE_PROCESS)  # server gone
    assert diffs == []


def test_logprob_mode_with_a_served_model_that_gives_logprobs(fixtures, tmp_path):
    questions = subset(fixtures, tmp_path, 5)
    top = [{"token": "C", "logprob": math.log(0.6)}, {"token": " A", "logprob": math.log(0.3)},
           {"token": "The", "logprob": math.log(0.1)}]
    with FakeOpenAI(content="C") as server:
        server.default = {"logprobs": {"content": [{"token": "C", "logprob": math.log(0.6), "top_logprobs": top}]}}
        run_eval("served-model", [questions], tmp_path / "run", mode="logprob", endpoints=[server.url],
                 executor=ONE_PROCESS)
        body = server.sent()[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
    for r in rows(tmp_path / "run/eval/results.parquet"):
        assert r["predicted"] == "C" and r["probabilities"] == pytest.approx([1 / 3, 0.0, 2 / 3, 0.0])
        assert r["logprobs"][1] is None and r["logprobs"][2] == pytest.approx(math.log(0.6))


def test_logprob_mode_with_a_server_without_logprobs_is_a_clear_error(fixtures, tmp_path):
    questions = subset(fixtures, tmp_path, 3)
    with FakeOpenAI(content="B") as server:
        with pytest.raises(RuntimeError, match="gives no log-probabilities.*use --mode generate"):
            run_eval("served-model", [questions], tmp_path / "run", mode="logprob", endpoints=[server.url],
                     executor=ONE_PROCESS)
    store = tmp_path / "run/_store/eval"
    assert not store.exists() or all(p.stat().st_size == 0 for p in store.iterdir())  # nothing stored


def test_a_refused_request_is_an_error_row_not_the_end_of_the_run(fixtures, tmp_path):
    questions = subset(fixtures, tmp_path, 3)
    with FakeOpenAI(content="Answer: A") as server:
        server.script("*", {"status": 400, "message": "prompt too long"})
        summary = run_eval("served-model", [questions], tmp_path / "run", mode="generate", endpoints=[server.url],
                           executor=ONE_PROCESS)
    results = rows(tmp_path / "run/eval/results.parquet")
    refused = [r for r in results if r["error"] is not None]
    assert len(refused) == 1 and "prompt too long" in refused[0]["error"] and refused[0]["predicted"] is None
    assert refused[0]["correct"] is False and summary["overall"]["no_prediction"] == 1


def test_rows_left_out_get_decisions_and_a_bad_file_fails_before_any_model_call(fixtures, tmp_path):
    good = json.loads((fixtures / ASTRO_QA).read_text(encoding="utf-8").splitlines()[0])
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(good) + "\n{not json\n" + json.dumps({**good, "id": "x", "answer": "Z"}) + "\n")
    with FakeOpenAI(content="Answer: A") as server:
        run_eval("m", [path], tmp_path / "run", mode="generate", endpoints=[server.url], executor=ONE_PROCESS)
        decisions = read_polars(tmp_path / "run/decisions/eval.parquet", DECISION)
        assert sorted(decisions["reason"]) == ["correct", "unusable_row", "unusable_row"]
        summary = json.loads((tmp_path / "run/eval/summary.json").read_text())
        assert summary["benchmarks"]["mixed"]["left_out"] == 2 and summary["overall"]["questions"] == 1
        assert "not valid JSON" in " ".join(decisions["detail"])
        sent = server.total
        bad = tmp_path / "bad.json"
        bad.write_text("{]")
        with pytest.raises(Exception, match="bad.json: cannot read questions"):
            run_eval("m", [bad], tmp_path / "run2", mode="generate", endpoints=[server.url], executor=ONE_PROCESS)
        assert server.total == sent
    assert pl.read_parquet(tmp_path / "run/eval/results.parquet").height == 1


def test_a_model_in_the_run_folder_is_read_by_digest(tiny_lm, fixtures, tmp_path):
    """A recipe evaluates what an earlier step trained: ``{out}/models/sft``, read by its files' digest."""
    out = tmp_path / "run"
    shutil.copytree(tiny_lm, out / "models/sft")
    summary = run_eval("{out}/models/sft", [subset(fixtures, tmp_path, 3)], out, executor=ONE_PROCESS)
    assert summary["overall"]["predicted"] == 3 and summary["model"] == "sft"  # the folder's name (model_fingerprint)
    step = json.loads((out / "manifest.json").read_text())["steps"][0]
    assert list(step["reads"]) == ["models/sft/"] and step["config"]["model"] == "{out}/models/sft"
    assert not any("models/sft" in p for p in step["input_sources"])


def test_a_request_without_answer_fails_the_step_and_a_rerun_asks_only_for_it(fixtures, tmp_path):
    from trainer.evaluate import GENERATE_PROMPT, prompt_fields

    questions = subset(fixtures, tmp_path, 6)
    third = load_benchmark(questions).questions[2].question
    with FakeOpenAI(content="Answer: B") as server:
        server.script(GENERATE_PROMPT.format(**prompt_fields(third)), {"status": 503})
        with pytest.raises(RuntimeError, match="1 of .* request.* got no answer.*HTTP 503"):
            run_eval("m", [questions], tmp_path / "run", mode="generate", endpoints=[server.url], max_retries=0,
                     executor=ONE_PROCESS)
        run_eval("m", [questions], tmp_path / "run", mode="generate", endpoints=[server.url], max_retries=0,
                 executor=ONE_PROCESS)
        assert server.total == 7  # six questions, one of them twice
    assert [r["predicted"] for r in rows(tmp_path / "run/eval/results.parquet")] == ["B"] * 6


def test_out_of_memory_scores_one_prompt_at_a_time(tiny_lm, fixtures, monkeypatch):
    import torch

    from qa_synth.backends.base import ChatRequest
    from trainer.evaluate import LOGPROB_PROMPT, prompt_fields

    scorer = LetterScorer(str(tiny_lm), chat=False, batch_size=4)
    requests = [ChatRequest(model="m", messages=(("user", LOGPROB_PROMPT.format(**prompt_fields(q.question))),))
                for q in load_benchmark(fixtures / ASTRO_QA).questions[:3]]
    want = scorer.answer_batch(requests)
    score = LetterScorer._score

    def small_memory(self, rows):
        if len(rows) > 1 or len(rows[0]) > 200:  # a batch, or the longest prompt alone, does not fit
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return score(self, rows)

    monkeypatch.setattr(LetterScorer, "_score", small_memory)
    got = scorer.answer_batch(requests)
    for g, w, r in zip(got, want, requests):
        if w.prompt_tokens > 200:
            assert g.error.startswith("out of memory") and g.prompt_tokens == w.prompt_tokens
        else:
            assert g.error is None and g.extra["letter_logprobs"] == pytest.approx(w.extra["letter_logprobs"], abs=1e-4)
    assert sum(w.prompt_tokens > 200 for w in want) == 1  # the test covers both outcomes


def test_eval_is_a_recipe_step(fixtures, tmp_path, capsys):
    """``eval`` runs from a recipe file like any step (relative question paths from the recipe's folder)."""
    questions = subset(fixtures, tmp_path, 4)
    with FakeOpenAI(content="The answer is (A).") as server:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(f"steps:\n  - stage: eval\n    config:\n      model: served\n      questions: [{questions.name}]\n"
                          f"      mode: generate\n      endpoints: ['{server.url}']\n")
        assert cli_main(["run", str(recipe), "--out", str(tmp_path / "run"), "--workers", "1", "--quiet"]) == 0
    summary = json.loads((tmp_path / "run/eval/summary.json").read_text())
    assert summary["overall"]["predicted"] == 4 and summary["method"] == "generate"
    s = summary["overall"]
    assert f"sagecorpus: eval: astroqa10: accuracy {s['accuracy']:.1%}" in capsys.readouterr().err  # shown in a recipe run


def test_a_server_that_does_not_serve_the_model_is_refused_before_any_question(fixtures, tmp_path):
    with FakeOpenAI(content="Answer: A", models=["other-model"]) as server:
        with pytest.raises(RuntimeError, match="does not serve model 'served-model'.*nothing was sent"):
            run_eval("served-model", [subset(fixtures, tmp_path, 3)], tmp_path / "run", mode="generate",
                     endpoints=[server.url], executor=ONE_PROCESS)
        assert server.total == 0


def test_flagged_questions_are_asked_and_their_rows_say_why(tmp_path, capsys):
    q = {"question": "Which star is closest to the Sun?", "A": "Sirius", "B": "Proxima Centauri", "C": "Vega",
         "D": "Deneb", "answer": "B"}
    path = tmp_path / "flags.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (
        {**q, "id": "1"}, {**q, "id": "2", "C": " "}, {**q, "id": "3", "question": "Which star is closest to the SUN?"})))
    with FakeOpenAI(content="Answer: B") as server:
        summary = run_eval("m", [path], tmp_path / "run", mode="generate", endpoints=[server.url], executor=ONE_PROCESS)
    assert [(r["question_id"], r["flags"], r["correct"]) for r in rows(tmp_path / "run/eval/results.parquet")] == [
        ("1", [], True), ("2", ["blank_option:C"], True), ("3", ["duplicate_question:1"], True)]
    assert summary["overall"]["flagged"] == 2 and summary["overall"]["accuracy"] == 1.0
    assert "2 flagged (blank option or duplicated question)" in capsys.readouterr().err
