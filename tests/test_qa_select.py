"""qa select: thresholds per criterion, missing and unparseable grades, several graders, near-duplicate
questions (the best graded kept), benchmark overlap against the shared fixtures, general-data mixing,
TRL's conversational format, a decision for every pair, and the stage through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpus.curate.decontaminate import QuestionFileError
from corpus.curate.minhash import signatures
from corpus.run.executor import ExecutorConfig
from corpus.run.recipe import Recipe, Step, run_recipe
from corpus.run.stage import EmptyOutputError
from qa_synth.select import (
    GeneralDatasetError,
    SelectConfig,
    band_candidates,
    question_dedup_defaults,
    read_general,
)
from schemas import DECISION, GRADE, QA_PAIR, SFT_EXAMPLE, read_polars, write_table

ROOT = Path(__file__).resolve().parents[1]
ASTROMLAB = "qa/astromlab1_astrobench_mcq_v1_public_en_sample50.json"
ASTROQA = "qa/astro_qa_en_single_choice4_sample50.jsonl"
TOPICS = ("galaxy rotation curves", "stellar winds", "dust extinction", "pulsar timing", "exoplanet transits",
          "cosmic microwave background", "accretion disks", "supernova remnants", "globular clusters", "quasar outflows")


def pair(pid: str, question: str | None, answer: str | None = "An answer.", kind: str = "llm", error: str | None = None) -> dict:
    return {"pair_id": pid, "chunk_id": pid.split("/")[0] if kind == "llm" else None, "paper_id": pid.split("#")[0].split("/")[0],
            "kind": kind, "question_type": "factual" if kind == "llm" else "title", "question": question, "answer": answer,
            "model": "gen" if kind == "llm" else "template", "template": "generate@1" if kind == "llm" else "metadata@1",
            "request_key": "k" if kind == "llm" else None, "raw": "{}" if kind == "llm" else None, "error": error,
            "prompt_tokens": None, "completion_tokens": None}


def grade(pid: str, c=5, s=5, p=5, o=5, model: str = "grader", error: str | None = None) -> dict:
    return {"pair_id": pid, "model": model, "template": "grade@1", "correctness": c, "standalone": s, "pertinence": p,
            "overall": o, "request_key": "g", "raw": "{}", "error": error, "prompt_tokens": 1, "completion_tokens": 1}


QUANTITIES = ("mass", "age", "metallicity", "luminosity", "temperature", "distance", "velocity dispersion")
OBJECTS = ("dwarf galaxies", "hot Jupiters", "white dwarfs", "red giants", "brown dwarfs", "magnetars", "blazars",
           "Cepheids", "protostars", "comets", "lensed quasars")


def distinct_question(i: int) -> str:
    """Questions that share a frame but differ in at least two content words (not near-duplicates)."""
    return (f"What does the {QUANTITIES[i % 7]} measured from {TOPICS[i % 10]} imply for {OBJECTS[i % 11]} "
            f"in the sample {i} of Smith et al.?")


def run(out: Path, pairs: list[dict], grades: list[dict] | None, config: dict | None = None, **executor):
    write_table(QA_PAIR, pairs, out / "qa/pairs.parquet")
    if grades is not None:
        write_table(GRADE, grades, out / "qa/grades.parquet")
    recipe = Recipe(steps=[Step(stage="qa_select", config=(config or {}) | ({} if grades is not None else {"grades": None}))],
                    executor=ExecutorConfig(**{"tasks": 3, "quiet": True, **executor}))
    return run_recipe(recipe, out)


def decisions(out: Path) -> dict[str, dict]:
    rows = read_polars(out / "decisions/qa_select.parquet", DECISION).to_dicts()
    return {r["item_id"]: r | {"detail": json.loads(r["detail"])} for r in rows}


def sft(out: Path) -> dict[str, dict]:
    return {r["example_id"]: r for r in read_polars(out / "qa/sft.parquet", SFT_EXAMPLE).to_dicts()}


# ------------------------------------------------------------------------------------ grades


def test_thresholds_missing_and_unparseable_grades_and_errors(tmp_path):
    pairs = [pair(f"p#{i}/0", distinct_question(i)) for i in range(9)]
    pairs += [pair("p#9/0", None, None, error="reply is not JSON"), pair("p/meta/title", "What is the title of X?", "X", kind="template"),
              pair("p#10/0", distinct_question(10), kind="other")]
    grades = [grade("p#0/0"), grade("p#1/0", c=3), grade("p#2/0", s=3), grade("p#3/0", p=3), grade("p#4/0", o=3),
              grade("p#5/0", 4, 4, 4, 4), grade("p#6/0", None, None, None, None, error="no JSON in reply"),
              grade("p#8/0", c=2, o=3)]  # p#7 has no grade
    run(tmp_path, pairs, grades)
    d = decisions(tmp_path)
    assert list(d) == [p["pair_id"] for p in pairs]  # every pair, in pair order
    assert {k for k, r in d.items() if r["action"] == "kept"} == {"p#0/0", "p#5/0", "p/meta/title"}
    for pid, criterion in (("p#1/0", "correctness"), ("p#2/0", "standalone"), ("p#3/0", "pertinence"), ("p#4/0", "overall")):
        assert d[pid]["reason"] == "below_threshold" and d[pid]["detail"]["failed"] == [criterion]
    assert d["p#8/0"]["detail"]["failed"] == ["correctness", "overall"]
    assert d["p#6/0"]["reason"] == "grade_unparseable" and d["p#6/0"]["detail"]["error"] == "no JSON in reply"
    assert d["p#7/0"]["reason"] == "grade_missing"
    assert d["p#9/0"]["reason"] == "generation_error" and d["p#9/0"]["detail"]["error"] == "reply is not JSON"
    assert (d["p#10/0"]["action"], d["p#10/0"]["reason"]) == ("failed", "unknown_kind")
    examples = sft(tmp_path)
    assert set(examples) == {"p#0/0", "p#5/0", "p/meta/title"}
    assert examples["p/meta/title"]["source"] == "template" and examples["p#0/0"]["source"] == "llm"
    assert examples["p#0/0"]["messages"] == [{"role": "user", "content": distinct_question(0)},
                                             {"role": "assistant", "content": "An answer."}]
    # lower thresholds keep more; the thresholds are part of the step's identity
    run(tmp_path / "lenient", pairs, grades, {"min_correctness": 2, "min_overall": 3})
    kept = {k for k, r in decisions(tmp_path / "lenient").items() if r["action"] == "kept"}
    assert kept == {"p#0/0", "p#1/0", "p#4/0", "p#5/0", "p#8/0", "p/meta/title"}


def test_several_graders_all_or_mean_and_a_chosen_grader(tmp_path):
    pairs = [pair("p#0/0", distinct_question(0)), pair("p#1/0", distinct_question(1)), pair("p#2/0", distinct_question(2))]
    grades = [grade("p#0/0", model="a"), grade("p#0/0", o=3, model="b"),  # mean overall 4: passes only with mean
              grade("p#1/0", model="a"), grade("p#1/0", None, None, None, None, model="b", error="bad"),  # one parseable
              grade("p#2/0", o=2, model="a"), grade("p#2/0", model="b")]
    run(tmp_path / "all", pairs, grades)
    d = decisions(tmp_path / "all")
    assert [d[p]["action"] for p in ("p#0/0", "p#1/0", "p#2/0")] == ["dropped", "kept", "dropped"]
    assert d["p#0/0"]["detail"]["scores"]["overall"] == 3 and d["p#1/0"]["detail"]["graders"] == 1
    run(tmp_path / "mean", pairs, grades, {"combine": "mean"})
    d = decisions(tmp_path / "mean")
    assert [d[p]["action"] for p in ("p#0/0", "p#1/0", "p#2/0")] == ["kept", "kept", "dropped"]
    assert d["p#0/0"]["detail"]["scores"]["overall"] == 4.0 and d["p#2/0"]["detail"]["scores"]["overall"] == 3.5
    run(tmp_path / "b", pairs, grades, {"graders": ["b"]})
    d = decisions(tmp_path / "b")
    assert [d[p]["reason"] for p in ("p#0/0", "p#1/0", "p#2/0")] == ["below_threshold", "grade_unparseable", "selected"]


def test_without_grades_only_template_pairs_pass(tmp_path):
    pairs = [pair("p#0/0", distinct_question(0)), pair("p/meta/year", "In which year was X submitted?", "2020", kind="template")]
    run(tmp_path, pairs, None)
    d = decisions(tmp_path)
    assert d["p#0/0"]["reason"] == "grade_missing" and d["p/meta/year"]["action"] == "kept"


# ------------------------------------------------------------------------------------ near duplicates


def test_near_duplicate_questions_keep_the_best_graded(tmp_path):
    base = "What mass does the dark matter halo of the Milky Way have according to the rotation curve of Smith et al. (2020)?"
    variants = {"p#0/0": base, "p#1/0": base.replace("What mass", "Which mass"),
                "p#2/0": base.replace("?", " ?"), "p#3/0": base.upper(), "p/meta/x": None}
    pairs = [pair(pid, q) for pid, q in variants.items() if q] + [pair(f"q#{i}/0", distinct_question(i)) for i in range(40)]
    grades = [grade("p#0/0", o=4), grade("p#1/0", o=5, c=4), grade("p#2/0", o=5, c=5), grade("p#3/0", o=5, c=5)]
    grades += [grade(f"q#{i}/0") for i in range(40)]
    run(tmp_path, pairs, grades)
    d = decisions(tmp_path)
    # best graded: overall 5 and the largest sum (p#2 and p#3 tie): the smaller id
    assert d["p#2/0"]["action"] == "kept" and d["p#2/0"]["cluster_id"] == "minhash:p#2/0"
    for pid in ("p#0/0", "p#1/0", "p#3/0"):
        assert (d[pid]["action"], d[pid]["reason"], d[pid]["kept_id"]) == ("dropped", "near_duplicate", "p#2/0")
    assert d["p#3/0"]["score"] == 1.0  # same words (case and spacing differ): an exact copy
    assert d["p#1/0"]["score"] < 1.0
    assert all(d[f"q#{i}/0"]["action"] == "kept" for i in range(40))  # similar templates of words, not duplicates
    run(tmp_path / "nodedup", pairs, grades, {"near_dedup": False})
    assert all(r["action"] == "kept" for r in decisions(tmp_path / "nodedup").values())


def test_a_template_pair_outranks_a_graded_copy(tmp_path):  # a fact from metadata beats a perfect grade
    q = "What is the title of the paper by Smith et al. (2020) on the mass of the Milky Way halo?"
    run(tmp_path, [pair("a#0/0", q), pair("z/meta/title", q, kind="template")], [grade("a#0/0")])
    d = decisions(tmp_path)
    assert d["a#0/0"]["kept_id"] == "z/meta/title" and d["z/meta/title"]["action"] == "kept"


def test_band_candidates_find_planted_pairs_only():
    import random

    rng = random.Random(0)
    vocabulary = [f"w{k}" for k in range(2000)]
    config = question_dedup_defaults()
    texts = [" ".join(rng.choice(vocabulary) for _ in range(16)) for _ in range(300)]
    words = texts[10].split()
    texts[250] = " ".join(words[:8] + ["changed"] + words[9:])  # one word of 16 changed: Jaccard 13/17
    sigs = signatures(texts, config)
    edges = {tuple(e) for e in band_candidates(sigs, config).tolist()}
    assert (10, 250) in edges and len(edges) < 5
    copies = band_candidates(np.repeat(sigs[:1], 4, axis=0), config).tolist()
    assert copies == [[0, 1], [0, 2], [0, 3], [1, 2], [2, 3]]  # each to the first and to its predecessor
    assert band_candidates(sigs, config, active=np.arange(300) != 250).tolist() == []


# ------------------------------------------------------------------------------------ benchmark overlap


def test_benchmark_overlap_with_fixture_questions_and_a_small_file(fixtures, tmp_path):
    qa = [json.loads(line) for line in (fixtures / ASTROQA).read_text().splitlines()]
    ml = json.loads((fixtures / ASTROMLAB).read_text())
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps({"id": "own-1", "question": "Which instrument first resolved the shadow of the black hole "
                                                          "in the galaxy M87 at millimetre wavelengths", "A": "The Event Horizon Telescope",
                               "B": "Hubble", "C": "JWST", "D": "ALMA alone", "answer": "A"}) + "\n")
    pairs = [
        pair("a#0/0", qa[0]["question"], qa[0][qa[0]["answer"]]),  # the question and its correct option
        pair("b#0/0", "Explain this: " + ml[0]["question"], ml[0]["A"]),  # no answer key: any option counts
        pair("c#0/0", "Which instrument first resolved the shadow of the black hole in the galaxy M87 at millimetre "
                      "wavelengths?", "The Event Horizon Telescope did, in 2019."),
        *[pair(f"q#{i}/0", distinct_question(i)) for i in range(5)],
    ]
    grades = [grade(p["pair_id"]) for p in pairs]
    run(tmp_path / "out", pairs, grades, {"questions": [str(fixtures / ASTROQA), str(fixtures / ASTROMLAB), str(own)]})
    d = decisions(tmp_path / "out")
    assert {k for k, r in d.items() if r["reason"] == "benchmark_overlap"} == {"a#0/0", "b#0/0", "c#0/0"}
    assert d["a#0/0"]["detail"]["question_id"] == qa[0]["id"] and d["a#0/0"]["detail"]["ngram"]
    assert d["b#0/0"]["detail"]["question_id"] == str(ml[0]["index"])
    assert d["c#0/0"]["detail"]["question_id"] == "own-1"
    assert all(d[f"q#{i}/0"]["action"] == "kept" for i in range(5))


def test_a_bad_question_file_fails_before_the_run(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    with pytest.raises(QuestionFileError, match="bad.json"):
        run(tmp_path / "out", [pair("a#0/0", distinct_question(0))], [grade("a#0/0")], {"questions": [str(bad)]})
    assert not (tmp_path / "out" / "_work").exists()


# ------------------------------------------------------------------------------------ mixing and TRL


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_general_dataset_shapes(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}]},
            {"prompt": "2+2?", "completion": "4"},
            {"instruction": "Translate", "input": "chat", "output": "cat"},
            {"conversations": [{"from": "human", "value": "Name a planet"}, {"from": "gpt", "value": "Mars"}]}]
    chats = list(read_general(write_jsonl(tmp_path / "g.jsonl", rows)))
    assert chats[1] == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert chats[2][0] == {"role": "user", "content": "Translate\n\nchat"}
    assert chats[3][1] == {"role": "assistant", "content": "Mars"}
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([rows[0], rows[0]]), tmp_path / "g.parquet")
    assert list(read_general(tmp_path / "g.parquet")) == [chats[0], chats[0]]
    for bad, message in ((({"text": "just text"}), r"g2.jsonl: line 2: no accepted columns .*found \['text'\]"),
                         ({"messages": [{"role": "user", "content": "Hi"}]}, "must end with an assistant message"),
                         ({"messages": [{"role": "bot", "content": "Hi"}]}, "role 'bot' is not one of"),
                         ({"prompt": "", "completion": "x"}, "'prompt' must be a non-empty string")):
        with pytest.raises(GeneralDatasetError, match=message):
            list(read_general(write_jsonl(tmp_path / "g2.jsonl", [rows[1], bad])))
    with pytest.raises(GeneralDatasetError, match="unknown general dataset type '.csv'"):
        (tmp_path / "g.csv").write_text("a,b\n")
        list(read_general(tmp_path / "g.csv"))


def test_mixing_by_ratio_with_a_seed_in_trl_conversational_format(tmp_path):
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    general = write_jsonl(tmp_path / "general.jsonl",
                          [{"prompt": f"General question {n}?", "completion": f"General answer {n}."} for n in range(50)])
    pairs = [pair(f"q#{i}/0", distinct_question(i)) for i in range(10)]
    grades = [grade(p["pair_id"]) for p in pairs]
    config = {"general": str(general), "general_ratio": 1.5, "seed": 3, "system_prompt": "You are an astronomer."}
    run(tmp_path / "a", pairs, grades, config)
    run(tmp_path / "b", pairs, grades, config)
    run(tmp_path / "c", pairs, grades, config | {"seed": 4})
    a, b, c = sft(tmp_path / "a"), sft(tmp_path / "b"), sft(tmp_path / "c")
    mixed = [k for k in a if k.startswith("general/")]
    assert len(mixed) == 15 and len(a) == 25  # 1.5 general examples per selected pair
    assert list(a) == list(b) and list(a) != list(c)  # deterministic with the seed
    n = int(mixed[0].split("/")[1])
    assert a[mixed[0]]["messages"] == [{"role": "user", "content": f"General question {n}?"},
                                       {"role": "assistant", "content": f"General answer {n}."}]
    assert a[mixed[0]]["source"] == "general" and a[mixed[0]]["pair_id"] is None
    assert a["q#0/0"]["messages"][0] == {"role": "system", "content": "You are an astronomer."}
    # what TRL's SFTTrainer is given: a `messages` column of {role, content} lists
    ds = load_dataset("parquet", data_files=str(tmp_path / "a" / "qa/sft.parquet"), split="train",
                      cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 25
    assert set(ds.features["messages"].feature) == {"role", "content"}  # a list of {role, content}
    for example in ds:
        assert is_conversational(example)
        assert [m["role"] for m in example["messages"]][-2:] == ["user", "assistant"]
    # more wanted than there are: all of them, said so
    run(tmp_path / "d", pairs, grades, config | {"general_ratio": 10})
    assert len([k for k in sft(tmp_path / "d") if k.startswith("general/")]) == 50


def test_a_bad_general_dataset_fails_before_the_run(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "x", "completion": "y"}, {"question": "no shape"}])
    with pytest.raises(GeneralDatasetError, match=r"bad.jsonl: line 2: no accepted columns"):
        run(tmp_path / "out", [pair("a#0/0", distinct_question(0))], [grade("a#0/0")],
            {"general": str(bad), "general_ratio": 1})
    assert not (tmp_path / "out" / "_work").exists()
    with pytest.raises(ValueError, match="general_ratio > 0 needs `general`"):
        SelectConfig(general_ratio=1)


# ------------------------------------------------------------------------------------ the run


def test_empty_pairs_and_nothing_kept_are_refused(tmp_path):
    with pytest.raises(EmptyOutputError, match="pairs.parquet has no rows"):
        run(tmp_path / "empty", [], [])
    with pytest.raises(EmptyOutputError, match=r"qa_select: all 2 documents were dropped \(below_threshold: 1, grade_missing: 1"):
        run(tmp_path / "none", [pair("a#0/0", distinct_question(0)), pair("b#0/0", distinct_question(1))], [grade("a#0/0", o=1)])
    assert not (tmp_path / "none" / "qa/sft.parquet").exists()


def test_same_bytes_with_one_and_two_workers(tmp_path):
    pairs = [pair(f"q#{i}/0", distinct_question(i % 30) if i % 3 else distinct_question(i)) for i in range(90)]
    grades = [grade(p["pair_id"], o=4 + i % 2) for i, p in enumerate(pairs)]
    m1 = run(tmp_path / "a", pairs, grades, workers=1)
    m2 = run(tmp_path / "b", pairs, grades, workers=2, tasks=3)
    assert {e.path: e.sha256 for e in m1.outputs} == {e.path: e.sha256 for e in m2.outputs}
    assert any(r["reason"] == "near_duplicate" for r in decisions(tmp_path / "a").values())


def test_cli_select_with_questions(fixtures, tmp_path):
    qa = json.loads((fixtures / ASTROQA).read_text().splitlines()[0])
    pairs = [pair("a#0/0", qa["question"], qa[qa["answer"]]), pair("b#0/0", distinct_question(1)),
             pair("b/meta/title", "What is the title of the paper by Smith et al. (2001)?", "Winds", kind="template")]
    write_table(QA_PAIR, pairs, tmp_path / "run" / "qa/pairs.parquet")
    write_table(GRADE, [grade("a#0/0"), grade("b#0/0")], tmp_path / "run" / "qa/grades.parquet")
    env = {"PYTHONPATH": str(ROOT), "PATH": str(Path(sys.executable).parent)}
    subprocess.run([sys.executable, "-m", "corpus.cli", "qa", "select", "--out", str(tmp_path / "run"), "--quiet",
                    "--questions", str(fixtures / ASTROQA), str(fixtures / ASTROMLAB), "--min-overall", "5"],
                   check=True, env=env, cwd=tmp_path)
    d = decisions(tmp_path / "run")
    assert d["a#0/0"]["reason"] == "benchmark_overlap"
    assert set(sft(tmp_path / "run")) == {"b#0/0", "b/meta/title"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["steps"][-1]["stage"] == "qa_select" and manifest["steps"][-1]["config"]["min_overall"] == 5
