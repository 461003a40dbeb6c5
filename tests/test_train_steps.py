"""The trainers as recipe steps (trainer/stages.py): `train_cpt` then `train_sft` in one run folder.

What a user depends on: the model folders are outputs listed file by file in the run's manifest and
verified; an unchanged rerun does not train again; a changed corpus or a damaged weight file trains again
(the old manifest.json of the folder never blocks it); a crashed step resumes from its own checkpoints;
fields the step sets itself are refused; there is no second CLI verb.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

sys.path.insert(0, str(Path(__file__).parent))

from corpus.cli import build_parser  # noqa: E402
from corpus.run.executor import ExecutorConfig  # noqa: E402
from corpus.run.manifest import Manifest, verify  # noqa: E402
from corpus.run.recipe import Recipe, Step, run_recipe  # noqa: E402
from schemas import DECISION, read_polars  # noqa: E402
from test_train_cpt import paper, write_corpus  # noqa: E402
from test_train_sft import write_sft  # noqa: E402
from trainer.stages import CPTStepConfig  # noqa: E402

TRAIN = {"max_length": 64, "max_steps": 4, "per_device_train_batch_size": 4, "learning_rate": 3e-3,
         "logging_steps": 2, "eval_steps": 2, "save_steps": 2, "validation_fraction": 0.2, "device": "cpu",
         "disable_tqdm": True}


def recipe(tiny_lm: Path, **cpt) -> Recipe:
    return Recipe(steps=[
        Step(stage="train_cpt", config={"model": str(tiny_lm), **TRAIN, **cpt}),
        Step(stage="train_sft", config={**TRAIN, "max_length": 128}),
    ], executor=ExecutorConfig(tasks=2, quiet=True))


@pytest.fixture
def run(tmp_path) -> Path:
    """A run folder holding what the corpus and Q&A steps would have written."""
    out = tmp_path / "run"
    (out / "qa").mkdir(parents=True)
    write_corpus(out / "corpus.parquet", [paper(i) for i in range(40)])
    write_sft(out / "qa" / "sft.parquet", times=4)
    return out


@pytest.fixture
def trainings(monkeypatch):
    """The trainers actually called (the steps look them up by name at run time)."""
    import trainer.cpt
    import trainer.sft

    called = []
    for module, name in ((trainer.cpt, "train_cpt"), (trainer.sft, "train_sft")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda config, _real=real, _name=name: called.append(_name) or _real(config))
    return called


def test_cpt_then_sft_steps_write_verified_model_folders_that_generate(tiny_lm, run, trainings):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = run_recipe(recipe(tiny_lm), run)
    assert trainings == ["train_cpt", "train_sft"]
    files = {e.path for e in manifest.outputs}
    for model in ("models/cpt", "models/sft"):
        assert {f"{model}/model.safetensors", f"{model}/config.json", f"{model}/manifest.json",
                f"{model}/trainer_state.json"} <= files
        assert not any(f.startswith(f"{model}/checkpoint-") for f in files)  # checkpoints stay in the work folder
    assert not list((run / "_work").glob("*/checkpoints/checkpoint-*"))  # and are removed once the model is saved
    assert verify(run / "manifest.json") == []

    sft_manifest = Manifest.load(run / "models/sft/manifest.json")
    assert sft_manifest.steps[0]["config"]["model"] == str(run / "models/cpt")
    consumed = sft_manifest.steps[0]["datasets"][0]
    assert consumed["path"] == str(run / "qa/sft.parquet") and consumed["run_dir"] == str(run)
    decisions = read_polars(run / "decisions/train_sft.parquet", DECISION).to_dicts()
    assert [(d["item_id"], d["action"]) for d in decisions] == [("models/sft", "trained")]
    assert "eval_perplexity" in json.loads(decisions[0]["detail"])
    assert "train_loss" in manifest.stats["01-train_sft"]

    tok = AutoTokenizer.from_pretrained(run / "models/sft")
    model = AutoModelForCausalLM.from_pretrained(run / "models/sft")
    ids = tok.apply_chat_template([{"role": "user", "content": "What is a pulsar?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    assert model.generate(**ids, max_new_tokens=5, do_sample=False).shape[1] > ids["input_ids"].shape[1]


def test_reruns_train_again_only_when_data_or_weights_changed(tiny_lm, run, trainings):
    run_recipe(recipe(tiny_lm), run)
    trainings.clear()
    run_recipe(recipe(tiny_lm), run)
    assert trainings == []  # nothing changed: both models reused

    # a new corpus (the folder's manifest.json still lists the old one: that must not block the step)
    write_corpus(run / "corpus.parquet", [paper(i) for i in range(44)])
    run_recipe(recipe(tiny_lm), run)
    assert trainings == ["train_cpt", "train_sft"]  # SFT follows: it reads the new CPT model

    trainings.clear()
    weights = run / "models/sft/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    run_recipe(recipe(tiny_lm), run)
    assert trainings == ["train_sft"]  # a damaged weight file is never blessed
    assert verify(run / "manifest.json") == []

    trainings.clear()
    run_recipe(recipe(tiny_lm, learning_rate=1e-3), run)
    assert trainings == ["train_cpt", "train_sft"]  # a TRL field is part of the step's identity


def test_a_crashed_training_step_resumes_from_its_own_checkpoint(tiny_lm, run, monkeypatch):
    from transformers import TrainerCallback

    import trainer.run

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise RuntimeError("simulated crash")

    real = trainer.run.run_training
    resumed = []

    def crashing(t, config, **kw):
        t.add_callback(Crash())
        return real(t, config, **kw)

    def recording(t, config, **kw):
        result = real(t, config, **kw)
        resumed.append(result.resumed_from)
        return result

    one = Recipe(steps=recipe(tiny_lm).steps[:1], executor=ExecutorConfig(tasks=1, quiet=True))
    monkeypatch.setattr("trainer.cpt.run_training", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(one, run)
    checkpoints = list((run / "_work").glob("00-train_cpt/checkpoints/checkpoint-2"))
    assert checkpoints
    monkeypatch.setattr("trainer.cpt.run_training", recording)
    run_recipe(one, run)
    assert resumed == [str(checkpoints[0])]
    assert verify(run / "manifest.json") == []


def test_fields_the_step_sets_are_refused_and_there_is_no_second_verb(tiny_lm):
    for bad in ({"output_dir": "elsewhere"}, {"checkpoint_dir": "x"}, {"resume_from_checkpoint": None}):
        with pytest.raises(ValueError, match="recipe step"):
            CPTStepConfig(model=str(tiny_lm), **bad)
    with pytest.raises(ValueError, match="max_length"):
        CPTStepConfig(model=str(tiny_lm), max_seq_length=128)  # TRL's fields are checked as in `train cpt`
    verbs = build_parser()._subparsers._group_actions[0].choices
    assert "train" in verbs and "train_cpt" not in verbs and "train_sft" not in verbs


def test_a_step_with_two_processes_trains_through_accelerate_launch(tiny_lm, run, monkeypatch):
    """`processes: 2` runs `accelerate launch -m trainer cpt` from the step's task (two CPU processes over
    gloo here; one per GPU on a GPU node): the world the trainer saw was two processes."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", str(root))
    one = Recipe(steps=[Step(stage="train_cpt", config={
        "model": str(tiny_lm), **TRAIN, "processes": 2, "per_device_train_batch_size": 2, "max_steps": 2,
        "gradient_checkpointing": False})], executor=ExecutorConfig(tasks=1, quiet=True))
    run_recipe(one, run)
    recorded = Manifest.load(run / "models/cpt/manifest.json")
    assert recorded.steps[0]["estimate"]["processes"] == 2
    assert json.loads((run / "models/cpt/trainer_state.json").read_text())["global_step"] == 2
    assert verify(run / "manifest.json") == []


def test_the_trained_models_carry_a_card_with_the_base_licence_and_their_data(tiny_lm, run):
    from huggingface_hub import ModelCard

    from corpus.model_files import model_fingerprint

    run_recipe(recipe(tiny_lm), run)
    base = model_fingerprint(tiny_lm)
    for model, data in (("cpt", "corpus.parquet"), ("sft", "sft.parquet")):
        card = ModelCard.load(run / "models" / model / "README.md")
        assert card.data.license == base["license"] and card.data.license != "unknown"
        assert f"`{data}`" in card.text and "eval_perplexity" in card.text
    assert ModelCard.load(run / "models/sft/README.md").data.base_model == model_fingerprint(run / "models/cpt")["model_id"]
    assert model_fingerprint(run / "models/sft")["license"] == base["license"]  # what the next step's manifest reads
