"""Runs: same bytes whatever the worker count, manifests that verify and rebuild, resume, no secrets."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toy_stage  # noqa: E402,F401  (registers the 'wordcount' stage)
from toy_stage import write_texts  # noqa: E402

from corpus.cli import main  # noqa: E402
from corpus.run.executor import ExecutorConfig, shard_bounds  # noqa: E402
from corpus.run.manifest import Manifest, verify  # noqa: E402
from corpus.run.recipe import ChangedInputs, Recipe, Step, load_recipe, rebuild, run_recipe  # noqa: E402
from corpus.run.secrets import REDACTED, RedactingFilter, is_secret_key, redact  # noqa: E402
from schemas import DECISION, read_polars  # noqa: E402


@pytest.fixture
def texts(tmp_path) -> Path:  # more files than the shared fixture's: shards of uneven sizes
    return write_texts(tmp_path / "texts", 23)


def recipe(folder: Path, workers: int = 1, tasks: int = 4, **config) -> Recipe:
    return Recipe(
        steps=[Step(stage="wordcount", config={"folder": str(folder), **config})],
        executor=ExecutorConfig(workers=workers, tasks=tasks, quiet=True),
    )


def test_shard_bounds_cover_everything_once():
    for n in (0, 1, 7, 23, 100):
        for world in (1, 2, 3, 8):
            spans = [shard_bounds(n, r, world) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_same_bytes_with_one_or_two_workers(texts, tmp_path):
    m1 = run_recipe(recipe(texts, workers=1), tmp_path / "w1")
    m2 = run_recipe(recipe(texts, workers=2), tmp_path / "w2")
    assert [(e.path, e.sha256, e.rows) for e in m1.outputs] == [(e.path, e.sha256, e.rows) for e in m2.outputs]
    df = read_polars(tmp_path / "w1" / "decisions/wordcount.parquet", DECISION)
    assert df["item_id"].to_list() == sorted(p.name for p in texts.iterdir())  # every item has a row, in order
    assert set(df["action"]) == {"kept", "dropped"}
    assert m1.stats["00-wordcount"]["decisions.dropped"] == (df["action"] == "dropped").sum()


def test_manifest_records_inputs_config_versions_seeds_and_run(texts, tmp_path):
    m = run_recipe(recipe(texts, seed=7), tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(saved["inputs"]) == 23 and all(len(e["sha256"]) == 64 and e["size"] > 0 for e in saved["inputs"])
    assert saved["steps"][0]["config"]["folder"] == str(texts)
    assert saved["seeds"] == {"00-wordcount.seed": 7}
    assert {"pyarrow", "polars", "datasketch", "datatrove"} <= set(saved["packages"])
    assert {"start", "end", "host"} <= set(saved["run"])
    assert saved["outputs"] == [
        {"path": "decisions/wordcount.parquet", "rows": 23, "sha256": m.outputs[0].sha256,
         "size": m.outputs[0].size, "table": "decision", "version": 1}
    ]


def test_verify_passes_then_names_a_changed_input_and_output(texts, tmp_path):
    out = tmp_path / "out"
    run_recipe(recipe(texts), out)
    assert verify(out / "manifest.json") == []
    victim = texts / "f005.txt"
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    problems = verify(out / "manifest.json")
    assert len(problems) == 1 and str(victim) in problems[0] and "sha256" in problems[0]
    (out / "decisions/wordcount.parquet").write_bytes(b"x")
    assert any("decisions/wordcount.parquet" in p for p in verify(out / "manifest.json"))
    assert main(["--quiet", "verify", str(out / "manifest.json")]) == 1


def test_rebuild_from_manifest_alone_reproduces_and_refuses_changed_inputs(texts, tmp_path):
    run_recipe(recipe(texts), tmp_path / "orig")
    manifest, diffs = rebuild(tmp_path / "orig" / "manifest.json", tmp_path / "again")
    assert diffs == []
    assert verify(tmp_path / "orig" / "manifest.json", tmp_path / "again") == []
    assert main(["--quiet", "rebuild", str(tmp_path / "orig" / "manifest.json"), "--out", str(tmp_path / "cli")]) == 0
    (texts / "f001.txt").write_text("changed")
    with pytest.raises(ChangedInputs, match="f001.txt"):
        rebuild(tmp_path / "orig" / "manifest.json", tmp_path / "again2")
    assert main(["--quiet", "rebuild", str(tmp_path / "orig" / "manifest.json"), "--out", str(tmp_path / "x")]) == 1
    _, diffs = rebuild(tmp_path / "orig" / "manifest.json", tmp_path / "again3", allow_changed_inputs=True)
    assert diffs == ["output decisions/wordcount.parquet: bytes differ"]


def test_rerun_after_a_crash_skips_finished_tasks(texts, tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("TOY_CALLS", str(calls))
    out = tmp_path / "out"
    r = recipe(texts, tasks=4, crash_on="f020.txt")  # in the last of 4 shards
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(r, out)
    first = calls.read_text().split()
    assert not (out / "manifest.json").exists()
    m = run_recipe(r, out)
    second = calls.read_text().split()[len(first):]
    assert set(second) == {f"f{i:03d}.txt" for i in range(18, 23)}  # only the crashed shard ran again
    clean = run_recipe(recipe(texts, tasks=4), tmp_path / "clean")
    assert m.outputs[0].sha256 == clean.outputs[0].sha256


def test_recipe_file_paths_are_relative_to_the_recipe(texts, tmp_path):
    (tmp_path / "recipe.yaml").write_text(
        "steps:\n  - stage: wordcount\n    config: {folder: texts, min_words: 2}\nexecutor: {tasks: 2}\n"
    )
    r = load_recipe(tmp_path / "recipe.yaml")
    assert r.steps[0].config["folder"] == str(texts) and r.executor.tasks == 2
    assert main(["--quiet", "run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "o"), "--workers", "2"]) == 0
    assert Manifest.load(tmp_path / "o" / "manifest.json").executor["workers"] == 2


def test_no_secret_reaches_manifest_or_logs(texts, tmp_path, monkeypatch, caplog):
    token, key = "hf_AbCdEfGhIjKlMnOpQrStUv123456", "sk-live-0123456789abcdefXYZ"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("MY_SERVICE_PASSWORD", "correct-horse-battery")
    out = tmp_path / "out"
    run_recipe(recipe(texts, api_key=key), out, argv=["--header", f"Authorization: Bearer {token}", "correct-horse-battery"])
    blob = (out / "manifest.json").read_text() + "".join(p.read_text(errors="ignore") for p in out.rglob("*.json"))
    for secret in (token, key, "correct-horse-battery"):
        assert secret not in blob
    assert REDACTED in blob
    logger = logging.getLogger("sagecorpus.test")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("calling with key %s and token %s", key, token)
    assert key not in caplog.text and token not in caplog.text


def test_redact_by_key_name_and_shape():
    data = {"api_key": "abc", "nested": [{"Authorization": "Basic xyz"}], "url": "ok", "n": 3,
            "note": "token ghp_abcdefghijklmnopqrstuvwxyz0123"}
    clean = redact(data)
    assert clean["api_key"] == REDACTED and clean["nested"][0]["Authorization"] == REDACTED
    assert clean["url"] == "ok" and clean["n"] == 3 and "ghp_" not in clean["note"]
    for key in ("hf_token", "HF_TOKEN", "apiKey", "OPENAI_API_KEY", "aws_secret_access_key", "password", "x-auth", "access_token", "auth_token"):
        assert is_secret_key(key), key
    for key in ("max_new_tokens", "tokenizer", "author", "authors", "keywords", "monkey", "passage",
                "min_alpha_token_fraction", "token_budget", "eos_token", "pad_token", "bos_token"):
        assert not is_secret_key(key), key


def test_changing_the_shard_count_after_a_crash_starts_the_step_afresh(texts, tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("TOY_CALLS", str(calls))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(recipe(texts, tasks=4, crash_on="f020.txt"), out)
    before = len(calls.read_text().split())
    m = run_recipe(recipe(texts, tasks=3, crash_on="f020.txt"), out)  # other shards: nothing reused
    assert len(calls.read_text().split()) - before == 23
    clean = run_recipe(recipe(texts, tasks=3), tmp_path / "clean")
    assert m.outputs[0].sha256 == clean.outputs[0].sha256


def test_list_options_repeat_or_take_several_values_and_flags_can_be_renamed():
    import argparse

    from pydantic import BaseModel

    from corpus.cli import add_model_options, model_values
    from corpus.run.stage import how_field

    class Options(BaseModel):
        endpoints: list[str] = how_field([], "base URLs", json_schema_extra={"flag": "endpoint"})
        questions: list[str] = []

    parser = argparse.ArgumentParser()
    add_model_options(parser, Options)
    args = parser.parse_args(["--endpoint", "http://a/v1", "--endpoint", "http://b/v1", "http://c/v1",
                              "--questions", "q1.json", "q2.json"])
    assert model_values(args, Options) == {"endpoints": ["http://a/v1", "http://b/v1", "http://c/v1"],
                                           "questions": ["q1.json", "q2.json"]}
    with pytest.raises(SystemExit):  # the field's own name is not an option once renamed
        parser.parse_args(["--endpoints", "http://a/v1"])
