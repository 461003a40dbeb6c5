"""The qa_grade stage through the framework: what is graded, what is skipped and why, unparseable
grades, and the refusal to let the generator grade itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from qa_data import chunk_rows, decisions, generate, grade, recipe, tiny_model, user_turn  # noqa: E402

from corpus.run.recipe import run_recipe  # noqa: E402
from schemas import GRADE, read_polars  # noqa: E402

ROWS = chunk_rows()


def grades(out: Path) -> pl.DataFrame:
    return read_polars(out / "qa/grades.parquet", GRADE)


def grade_turn(chunk_text: str, question: str, answer: str) -> str:
    from qa_synth.prompts.grade import GRADE_V1

    return GRADE_V1.messages({"text": chunk_text, "question": question, "answer": answer}, True)[-1][1]


def test_llm_pairs_graded_others_skipped_with_reasons(server, chunks, tmp_path):
    broken = ROWS[1]
    server.script(user_turn(broken), {"content": "no pairs today"})
    out = tmp_path / "run"
    run_recipe(recipe(generate(server.url, chunks)), out)
    pairs = pl.read_parquet(out / "qa/pairs.parquet")
    generated = server.total
    run_recipe(recipe(generate(server.url, chunks), grade(server.url, chunks)), out)
    df = grades(out)
    llm = pairs.filter((pl.col("kind") == "llm") & pl.col("error").is_null())
    assert df["pair_id"].to_list() == llm["pair_id"].to_list()  # pair order, one grade each
    assert server.total - generated == llm.height
    assert set(df["model"]) == {"grade-b"} and set(df["template"]) == {"grade@1"} and df["error"].null_count() == df.height
    assert df.filter(pl.col("overall").is_null()).height == 0
    d = decisions(out, "qa_grade")
    assert d["2101.00001/meta/title"]["reason"] == "skipped_template_pair" and d["2101.00001/meta/title"]["action"] == "dropped"
    assert d[f"{broken['chunk_id']}/0"]["reason"] == "skipped_error_row"
    assert len(d) == pairs.height  # every pair has a decision
    # the request: temperature 0, few-shot, the source chunk and the pair
    body = server.sent()[-1]
    assert body["temperature"] == 0.0 and len(body["messages"]) == 8
    pair = llm.row(-1, named=True)
    source = next(r["text"] for r in ROWS if r["chunk_id"] == pair["chunk_id"])
    assert body["messages"][-1]["content"] == grade_turn(source, pair["question"], pair["answer"])


def test_unparseable_and_out_of_range_grades_are_error_rows(server, chunks, tmp_path):
    out = tmp_path / "run"
    run_recipe(recipe(generate(server.url, chunks, n_pairs=1, metadata_pairs=False)), out)
    pairs = pl.read_parquet(out / "qa/pairs.parquet").to_dicts()
    source = {r["chunk_id"]: r["text"] for r in ROWS}
    turns = [grade_turn(source[p["chunk_id"]], p["question"], p["answer"]) for p in pairs]
    server.script(turns[0], {"content": "I'd give it a solid four."})
    server.script(turns[1], {"content": json.dumps({"correctness": 7, "standalone": 5, "pertinence": 5, "overall": 5})})
    server.script(turns[2], {"content": "```json\n{\"Correctness\": 4, \"Stand-alone\": 3, \"pertinence\": 5, \"overall\": 4,}\n```"})
    run_recipe(recipe(generate(server.url, chunks, n_pairs=1, metadata_pairs=False), grade(server.url, chunks)), out)
    df = grades(out).to_dicts()
    assert df[0]["error"] == "no JSON object in the reply" and df[0]["raw"] == "I'd give it a solid four." and df[0]["overall"] is None
    assert "7 is outside 1-5" in df[1]["error"] and df[1]["correctness"] is None
    assert (df[2]["correctness"], df[2]["standalone"], df[2]["pertinence"], df[2]["overall"], df[2]["error"]) == (4, 3, 5, 4, None)
    d = decisions(out, "qa_grade")
    assert d[pairs[0]["pair_id"]]["reason"] == "unparseable_grade" and d[pairs[0]["pair_id"]]["action"] == "failed"
    assert d[pairs[2]["pair_id"]]["detail"]["repairs"] == ["code_fence", "trailing_comma", "key_names"]


def test_the_generator_may_not_grade_its_own_pairs_unless_allowed(server, chunks, tmp_path):
    out = tmp_path / "run"
    gen = generate(server.url, chunks, n_pairs=1, metadata_pairs=False)
    with pytest.raises(ValueError, match="'gen-a' generated the pairs.*allow_same_model"):
        run_recipe(recipe(gen, grade(server.url, chunks, model="gen-a")), out)
    assert not (out / "qa/grades.parquet").exists()
    run_recipe(recipe(gen, grade(server.url, chunks, model="gen-a", allow_same_model=True)), out)
    assert set(grades(out)["model"]) == {"gen-a"}


def test_tiny_local_grader_gives_error_rows_with_raw_kept(server, chunks, tmp_path):
    out = tmp_path / "run"
    gen = generate(server.url, chunks, n_pairs=1, metadata_pairs=False)
    model = tiny_model(tmp_path / "tiny", seed=1)
    step = ("qa_grade", {"backend": "transformers", "model": str(model), "chunks": str(chunks), "max_tokens": 16, "batch_size": 8})
    run_recipe(recipe(gen, step, tasks=1), out)
    df = grades(out)
    assert df.height == len(ROWS) and df["error"].null_count() == 0 and (df["raw"].str.len_chars() > 0).all()
    assert df["overall"].null_count() == df.height
