"""Steps whose output is a folder (a trained model): hashed file by file, reused only while every file
has its bytes, read by later steps by their digest, replayed (not remade) by rebuild; recipe-only stages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toy_stage  # noqa: E402,F401  (registers the toy stages; its fixtures: texts, calls)

from corpus.cli import build_parser  # noqa: E402
from corpus.run.executor import ExecutorConfig  # noqa: E402
from corpus.run.item_store import ReplayMiss  # noqa: E402
from corpus.run.manifest import verify  # noqa: E402
from corpus.run.recipe import Recipe, Step, rebuild, run_recipe  # noqa: E402


def recipe(texts: Path, seed: int = 0) -> Recipe:
    return Recipe(steps=[Step(stage="toy_train", config={"folder": str(texts), "seed": seed}), Step(stage="toy_use")],
                  executor=ExecutorConfig(tasks=3, quiet=True))


def test_a_folder_output_is_listed_file_by_file_and_reused_while_unchanged(texts, tmp_path, calls):
    out = tmp_path / "run"
    manifest = run_recipe(recipe(texts), out)
    paths = [e.path for e in manifest.outputs]
    assert {"models/toy/config.json", "models/toy/shards/weights.bin", "used.txt"} <= set(paths)
    assert calls() == ["toy_train", "toy_use"]  # one task did the work; the other shards were empty
    assert verify(out / "manifest.json") == []
    weights = (out / "models/toy/shards/weights.bin").read_bytes()
    run_recipe(recipe(texts), out)
    assert calls() == []
    assert (out / "models/toy/shards/weights.bin").read_bytes() == weights


@pytest.mark.parametrize("damage", ["change", "delete", "add"])
def test_a_damaged_model_folder_is_redone_with_the_steps_that_read_it(texts, tmp_path, calls, damage, capsys):
    out = tmp_path / "run"
    run_recipe(recipe(texts), out)
    calls()
    model = out / "models" / "toy"
    if damage == "change":
        (model / "config.json").write_text('{"words": 0}')
    elif damage == "delete":
        (model / "shards" / "weights.bin").unlink()
    else:
        (model / "stray.bin").write_bytes(b"x")
    manifest = run_recipe(recipe(texts), out)
    assert calls() == ["toy_train", "toy_use"]  # new weights: the reader follows by the folder's digest
    assert "redoing it" in capsys.readouterr().err
    assert not (model / "stray.bin").exists()
    assert (out / "used.txt").read_text() == (model / "shards" / "weights.bin").read_bytes().hex()
    assert verify(out / "manifest.json") == []
    assert "models/toy/stray.bin" not in [e.path for e in manifest.outputs]


def test_a_config_change_removes_the_old_folder_and_makes_a_new_one(texts, tmp_path, calls):
    out = tmp_path / "run"
    run_recipe(recipe(texts), out)
    (out / "models/toy/leftover.txt").write_text("from the first config")
    run_recipe(recipe(texts, seed=1), out)
    assert json.loads((out / "models/toy/config.json").read_text())["seed"] == 1
    assert not (out / "models/toy/leftover.txt").exists()


def test_rebuild_replays_the_stored_folder_and_refuses_one_that_changed(texts, tmp_path, calls):
    out = tmp_path / "run"
    run_recipe(recipe(texts), out)
    manifest, diffs = rebuild(out / "manifest.json", tmp_path / "again")
    assert diffs == []  # made on every run with other bytes: equal only because it was replayed
    assert (tmp_path / "again/models/toy/shards/weights.bin").read_bytes() == (out / "models/toy/shards/weights.bin").read_bytes()
    (out / "models/toy/shards/weights.bin").write_bytes(b"tampered")
    with pytest.raises(ReplayMiss, match="no longer has the bytes"):
        rebuild(out / "manifest.json", tmp_path / "third")


def test_recipe_only_stages_get_no_generated_verb():
    verbs = build_parser()._subparsers._group_actions[0].choices
    assert "wordcount" in verbs and "toy_train" not in verbs and "toy_use" not in verbs
