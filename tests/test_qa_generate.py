"""The qa_generate stage through the framework: against the scripted loopback server and the
in-process tiny model."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402
from qa_data import chunk_rows, decisions, generate, recipe, reply, tiny_model, user_turn  # noqa: E402

from corpus.run.recipe import run_recipe  # noqa: E402
from schemas import QA_PAIR, read_polars  # noqa: E402

ROWS = chunk_rows()


def pairs(out: Path) -> pl.DataFrame:
    return read_polars(out / "qa/pairs.parquet", QA_PAIR)


def test_pairs_in_plan_order_with_metadata_pairs_and_rewriting(server, chunks, tmp_path):
    out = tmp_path / "run"
    manifest = run_recipe(recipe(generate(server.url, chunks)), out)
    df = pairs(out)
    expected = []
    for paper, title, *_ in [(r["paper_id"], r["title"]) for r in ROWS if r["index"] == 0]:
        if title:
            expected += [f"{paper}/meta/{f}" for f in ("title", "first_author", "year", "arxiv_id")]
        expected += [f"{r['chunk_id']}/{n}" for r in ROWS if r["paper_id"] == paper for n in range(3)]
    assert df["pair_id"].to_list() == expected
    llm = df.filter(pl.col("kind") == "llm")
    assert llm["error"].null_count() == llm.height and set(llm["model"]) == {"gen-a"} and set(llm["template"]) == {"generate@1"}
    assert llm["question_type"].to_list()[:3] == ["factual", "conceptual", "quantitative"]
    first = llm.row(0, named=True)
    assert first["answer"].startswith("Balázs et al. (2021) find that")  # "We find that" rewritten
    assert first["raw"] and first["request_key"] and first["prompt_tokens"] > 0
    templ = df.filter(pl.col("kind") == "template")
    assert set(templ["model"]) == {"template"} and set(templ["template"]) == {"metadata@1"}
    assert templ.filter(pl.col("pair_id") == "astro-ph/0701001/meta/first_author")["answer"].item() == \
        'The first author of "Cepheid distances to Type Ia supernova hosts" is Riess.'
    # the paper without metadata: its chunk is asked about, its "We" is left and flagged, no template pair
    bare = ROWS[-1]
    d = decisions(out, "qa_generate")
    assert d[bare["paper_id"]]["reason"] == "no_metadata"
    assert d[bare["chunk_id"]]["detail"]["unresolved_references"] == ["We"] * 3
    assert d["2101.00001#0"]["reason"] == "generated" and d["2101.00001#0"]["detail"]["pairs"] == 3
    # one request per chunk, with the configured sampling and structured output
    assert server.total == len(ROWS) and max(server.counts.values()) == 1
    body = server.sent()[0]
    assert body["model"] == "gen-a" and body["temperature"] == 0.7 and body["max_tokens"] == 1024
    assert body["response_format"]["type"] == "json_schema"
    stats = manifest.stats["00-qa_generate"]
    assert stats["requests.sent"] == len(ROWS) and stats["pairs.llm"] == 3 * len(ROWS) and stats["pairs.template"] == 8
    model = manifest.models[0]
    assert model["model_id"] == "gen-a" and model["template"] == "generate@1" and model["endpoints"] == [server.url]
    assert model["parameters"] == {"max_tokens": 1024, "temperature": 0.7}


def test_malformed_truncated_and_refused_replies(server, chunks, tmp_path):
    bad, cut, refused = ROWS[2], ROWS[3], ROWS[4]
    full = reply({"messages": [{"content": user_turn(cut)}]})
    server.script(user_turn(bad), {"content": "Sorry, {not: json}"})
    server.script(user_turn(cut), {"content": full[: full.rindex('{"question_type"') + 20]})
    server.script(user_turn(refused), {"status": 400, "message": "prompt too long"})
    out = tmp_path / "run"
    run_recipe(recipe(generate(server.url, chunks)), out)
    df = pairs(out)
    row = df.filter(pl.col("chunk_id") == bad["chunk_id"]).row(0, named=True)
    assert df.filter(pl.col("chunk_id") == bad["chunk_id"]).height == 1
    assert row["pair_id"] == f"{bad['chunk_id']}/0" and row["question"] is None and row["answer"] is None
    assert row["raw"] == "Sorry, {not: json}" and "not JSON" in row["error"]
    assert df.filter(pl.col("chunk_id") == cut["chunk_id"])["pair_id"].to_list() == [f"{cut['chunk_id']}/{n}" for n in (0, 1)]
    row = df.filter(pl.col("chunk_id") == refused["chunk_id"]).row(0, named=True)
    assert row["error"].startswith("request refused: HTTP 400") and "prompt too long" in row["error"]
    d = decisions(out, "qa_generate")
    assert (d[bad["chunk_id"]]["action"], d[bad["chunk_id"]]["reason"]) == ("failed", "unparseable_reply")
    assert d[cut["chunk_id"]]["detail"]["repairs"] == ["truncated"]
    assert d[refused["chunk_id"]]["reason"] == "request_refused"


def test_without_structured_output_the_prompt_carries_the_shape(server, chunks, tmp_path):
    run_recipe(recipe(generate(server.url, chunks, structured=False, n_pairs=2, metadata_pairs=False)), tmp_path / "run")
    body = server.sent()[0]
    assert "response_format" not in body
    assert '"pairs": [{"question_type"' in body["messages"][0]["content"]
    df = pairs(tmp_path / "run")
    assert set(df["kind"]) == {"llm"} and df.height == 2 * len(ROWS)


def test_a_refused_key_stops_the_step_with_a_clear_message(server, chunks, tmp_path):
    server.script("*", *[{"status": 401, "message": "invalid api key"}] * 100)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match=r"refused the request with HTTP 401.*stopped sending"):
        run_recipe(recipe(generate(server.url, chunks, max_in_flight=2), tasks=1), out)
    assert server.total <= 2  # what was in flight; nothing after the refusal
    assert not (out / "qa/pairs.parquet").exists()


def test_a_model_the_endpoint_does_not_list_is_refused_before_any_request(chunks, tmp_path):
    with FakeOpenAI(content=reply, models=["gen-b"]) as server:
        with pytest.raises(RuntimeError, match=r"does not serve model 'gen-a': it lists 'gen-b'.*nothing was sent"):
            run_recipe(recipe(generate(server.url, chunks), tasks=1), tmp_path / "run")
        assert server.total == 0
        server.models = ["gen-b", "gen-a"]  # listed: the run goes ahead
        run_recipe(recipe(generate(server.url, chunks), tasks=1), tmp_path / "run")
        assert server.total == len(ROWS)


def test_cli_generate_prints_the_estimate(server, chunks, tmp_path, capfd):
    from corpus.cli import main

    out = tmp_path / "run"
    code = main(["qa", "generate", "--out", str(out), "--endpoint", server.url, "--model", "gen-a",
                 "--chunks", str(chunks), "--price-input-per-m", "1", "--price-output-per-m", "2", "--quiet"])
    assert code == 0
    err = capfd.readouterr().err
    assert f"{len(ROWS)} requests to gen-a (generate@1): 0 stored, {len(ROWS)} to send" in err
    assert "estimated cost: $" in err
    assert pairs(out).height == 3 * len(ROWS) + 8


def test_tiny_local_model_replies_become_error_rows_with_raw_kept(chunks, tmp_path):
    model = tiny_model(tmp_path / "tiny", seed=0)
    step = ("qa_generate", {"backend": "transformers", "model": str(model), "chunks": str(chunks), "max_tokens": 24,
                            "n_pairs": 1, "seed": 0, "batch_size": 4})
    out = tmp_path / "run"
    manifest = run_recipe(recipe(step, tasks=1), out)
    df = pairs(out)
    llm = df.filter(pl.col("kind") == "llm")
    assert llm.height == len(ROWS)  # garbage from a random model: one error row per chunk
    assert llm["error"].null_count() == 0 and llm["raw"].null_count() == 0 and (llm["raw"].str.len_chars() > 0).all()
    assert df.filter(pl.col("kind") == "template").height == 8  # template pairs carry the run
    assert manifest.models[0]["sha256"]  # the local weights' fingerprint is recorded
    # replayed from the store: a second run into another folder with the same store gives the same bytes
    first = (out / "qa/pairs.parquet").read_bytes()
    (out / "qa/pairs.parquet").unlink()
    run_recipe(recipe(step, tasks=1), out)
    assert (out / "qa/pairs.parquet").read_bytes() == first


def test_new_weights_in_the_same_model_folder_redo_the_step_with_new_requests(chunks, tmp_path):
    model = tiny_model(tmp_path / "tiny", seed=0)
    step = ("qa_generate", {"backend": "transformers", "model": str(model), "chunks": str(chunks), "max_tokens": 8,
                            "n_pairs": 1, "seed": 0, "batch_size": 4})
    out = tmp_path / "run"
    first = run_recipe(recipe(step, tasks=1), out)
    keys = set(pairs(out)["request_key"].drop_nulls())
    tiny_model(tmp_path / "other", seed=5)
    shutil.copy(tmp_path / "other" / "model.safetensors", model / "model.safetensors")  # same folder, new weights
    second = run_recipe(recipe(step, tasks=1), out)
    assert second.models[0]["sha256"] != first.models[0]["sha256"]
    new_keys = set(pairs(out)["request_key"].drop_nulls())
    assert new_keys and not (new_keys & keys)  # no reply of the old weights reused
    assert set(pairs(out)["model"].drop_nulls()) == {"tiny", "template"}  # the model's id, not where it lies
