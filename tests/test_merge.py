"""trainer/merge: each method against its closed form, TIES sign election by hand, DARE-TIES seeding,
the checks (vocabulary, tensors), mergekit config errors, shards and manifest, and `sagecorpus merge`.

Tiny random Llamas (examples/tiny_lm.py) built here; no download. Equality with mergekit itself is
checked by bench/merge.py (mergekit is LGPL and lives in the bench's own environment).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from corpus.run.stage import OneTaskStage, StageConfig, path_field, register_stage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Three tiny random Llamas with one tokenizer (seeds 0, 1, 2); ``b`` is saved in several shards."""
    sys.path.insert(0, str(ROOT / "examples"))
    from tiny_lm import build_tiny_lm
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("merge_models")
    found = {name: build_tiny_lm(root / name, seed=seed) for name, seed in (("a", 0), ("b", 1), ("c", 2))}
    model = AutoModelForCausalLM.from_pretrained(found["b"])  # re-save b in shards: the reader follows the index
    (found["b"] / "model.safetensors").unlink()
    model.save_pretrained(found["b"], max_shard_size="100KB")
    assert (found["b"] / "model.safetensors.index.json").is_file()
    return found


def weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(f, "pt") as h:
            out.update({k: h.get_tensor(k) for k in h.keys()})  # noqa: SIM118 (safe_open, not a dict)
    return out


def run(tmp_path: Path, config: dict, name: str = "out", **kw):
    from trainer.merge import merge

    return merge(config, tmp_path / name, quiet=True, **kw)


def linear_config(models, wa, wb, **extra) -> dict:
    return {"merge_method": "linear", "models": [{"model": str(models["a"]), "parameters": {"weight": wa}},
                                                 {"model": str(models["b"]), "parameters": {"weight": wb}}], **extra}


# ----------------------------------------------------------------------------------- closed forms


def test_sagecorpus_merge_linear_is_exactly_the_weighted_sum(models, tmp_path, capsys):
    from corpus.cli import main

    (tmp_path / "merge.yaml").write_text(yaml.safe_dump(linear_config(models, 0.75, 0.25, dtype="float32")))
    assert main(["merge", str(tmp_path / "merge.yaml"), str(tmp_path / "out")]) == 0
    assert f"manifest: {tmp_path / 'out' / 'manifest.json'}" in capsys.readouterr().out
    a, b, out = weights(models["a"]), weights(models["b"]), weights(tmp_path / "out")
    assert out.keys() == a.keys() and len(out) > 10
    for name, tensor in out.items():
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, 0.75 * a[name] + 0.25 * b[name]), name


def test_linear_normalizes_by_the_weights_sum_unless_told_not_to(models, tmp_path):
    a, b = weights(models["a"]), weights(models["b"])
    out = weights(run(tmp_path, linear_config(models, 0.3, 0.5)).out_dir)
    raw = weights(run(tmp_path, linear_config(models, 0.3, 0.5, parameters={"normalize": False}), "raw").out_dir)
    for name in a:
        assert torch.allclose(out[name], (0.3 * a[name] + 0.5 * b[name]) / 0.8, atol=1e-6), name
        assert torch.allclose(raw[name], 0.3 * a[name] + 0.5 * b[name], atol=1e-6), name


def test_gradients_and_filters_give_per_tensor_values(models, tmp_path):
    """mergekit's parameter forms: a list is interpolated over the layers (layer i of n at i/(n-1),
    embeddings and head at 0); a {filter, value} list picks by substring of the tensor's name."""
    config = linear_config(models, 1.0, [0.0, 1.0])
    config["models"][0]["parameters"]["weight"] = [{"filter": "mlp", "value": 3.0}, {"value": 1.0}]
    a, b = weights(models["a"]), weights(models["b"])
    out = weights(run(tmp_path, config).out_dir)
    for name in a:
        wb = 1.0 if ".layers.1." in name else 0.0  # 2 layers: layer 0 at t=0, layer 1 at t=1, the rest at 0
        wa = 3.0 if "mlp" in name else 1.0
        assert torch.allclose(out[name], (wa * a[name] + wb * b[name]) / (wa + wb), atol=1e-6), name


def test_slerp_closed_form(models, tmp_path):
    from trainer.merge.methods.slerp import slerp

    x, y = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])  # orthogonal: a quarter circle
    assert torch.allclose(slerp(0.5, x, y), torch.tensor([0.5 ** 0.5, 2 * 0.5 ** 0.5]))
    assert torch.allclose(slerp(0.3, x, 2 * x), 0.7 * x + 0.3 * 2 * x)  # collinear: linear

    config = {"merge_method": "slerp", "base_model": str(models["a"]),
              "models": [{"model": str(models["a"])}, {"model": str(models["b"])}], "parameters": {"t": 0.3}}
    a, b = weights(models["a"]), weights(models["b"])
    out = weights(run(tmp_path, config).out_dir)
    for name in a:
        v0, v1 = a[name].double().flatten(), b[name].double().flatten()
        cos = torch.dot(v0 / v0.norm(), v1 / v1.norm()).clamp(-1, 1)
        if cos.abs() > 0.9995:
            expected = 0.7 * v0 + 0.3 * v1
        else:
            theta = torch.acos(cos)
            expected = (torch.sin(0.7 * theta) * v0 + torch.sin(0.3 * theta) * v1) / torch.sin(theta)
        assert torch.allclose(out[name].double().flatten(), expected, atol=1e-5), name


def test_task_arithmetic_closed_form(models, tmp_path):
    config = {"merge_method": "task_arithmetic", "base_model": str(models["c"]),
              "models": [{"model": str(models["a"]), "parameters": {"weight": 0.6}},
                         {"model": str(models["b"]), "parameters": {"weight": 0.5}}],
              "parameters": {"lambda": 0.8}}
    a, b, c = weights(models["a"]), weights(models["b"]), weights(models["c"])
    out = weights(run(tmp_path, config).out_dir)
    for name in a:
        expected = c[name] + 0.8 * (0.6 * (a[name] - c[name]) + 0.5 * (b[name] - c[name]))
        assert torch.allclose(out[name], expected, atol=1e-5), name


def _inputs(*tensors, weights=(1.0, 1.0), densities=(1.0, 1.0), name="w"):
    from trainer.merge.methods import Inputs

    per_input = [{}] + [{"weight": w, "density": d} for w, d in zip(weights, densities)]
    return Inputs(name, [torch.zeros(4), *tensors], 0, per_input)


def test_ties_sign_election_by_hand():
    from trainer.merge.methods import get_method

    ties = get_method("ties")
    shared = {"normalize": True, "rescale": False, "lambda": 1.0, "int8_mask": False}
    x1, x2 = torch.tensor([1.0, -2.0, 3.0, 0.5]), torch.tensor([-3.0, 1.5, 1.0, -0.1])
    # density 1: sums [-2, -0.5, 4, 0.4] elect signs [-, -, +, +]; the agreeing deltas are averaged
    assert ties.merge(_inputs(x1, x2), **shared).tolist() == [-3.0, -2.0, 2.0, 0.5]
    # density 0.5 keeps the two largest magnitudes of each: [0, -2, 3, 0] and [-3, 1.5, 0, 0];
    # sums [-3, -0.5, 3, 0] (0 counts as +): element 3 has no delta left, so it stays at the base
    assert ties.merge(_inputs(x1, x2, densities=(0.5, 0.5)), **shared).tolist() == [-3.0, -2.0, 3.0, 0.0]
    # weights scale the deltas before the election; normalize divides by the agreeing weights' sum
    out = ties.merge(_inputs(x1, x2, weights=(2.0, 1.0)), **{**shared, "normalize": False})
    assert out.tolist() == [-3.0, -4.0, 7.0, 1.0]


def test_dare_ties_is_seeded_and_equals_ties_at_density_1(models, tmp_path):
    def config(method, density, seed=0, **params):
        return {"merge_method": method, "base_model": str(models["c"]), "seed": seed,
                "models": [{"model": str(models["a"]), "parameters": {"weight": 0.7, "density": density}},
                           {"model": str(models["b"]), "parameters": {"weight": 0.4, "density": density}}],
                "parameters": {"normalize": True, **params}}

    def shard_hashes(folder):
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.glob("*.safetensors"))}

    first = run(tmp_path, config("dare_ties", 0.5), "d1").out_dir
    again = run(tmp_path, config("dare_ties", 0.5), "d2").out_dir
    other = run(tmp_path, config("dare_ties", 0.5, seed=1), "d3").out_dir
    assert shard_hashes(first) == shard_hashes(again)
    assert shard_hashes(first) != shard_hashes(other)
    out, c, a = weights(first), weights(models["c"]), weights(models["a"])
    kept = (out["model.layers.0.mlp.up_proj.weight"] != c["model.layers.0.mlp.up_proj.weight"]).float().mean()
    assert 0.6 < kept < 0.85  # each model keeps ~half its deltas: ~75% of elements moved
    assert not torch.equal(out["model.layers.0.mlp.up_proj.weight"], a["model.layers.0.mlp.up_proj.weight"])

    dare = weights(run(tmp_path, config("dare_ties", 1.0), "d4").out_dir)
    ties = weights(run(tmp_path, config("ties", 1.0), "t1").out_dir)
    assert all(torch.equal(dare[k], ties[k]) for k in ties)


# ----------------------------------------------------------------------- dtype, shards, manifest, card


def test_compute_and_saved_dtypes_shards_index_and_manifest(models, tmp_path):
    from huggingface_hub import ModelCard

    from corpus.model_files import model_fingerprint
    from corpus.run.manifest import verify

    config = linear_config(models, 0.5, 0.5, dtype="float32", out_dtype="bfloat16")
    result = run(tmp_path, config, max_shard_size="150KB")
    out = result.out_dir
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) >= 3 and (out / "model.safetensors.index.json").is_file()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {s.name for s in shards}
    a, b, merged = weights(models["a"]), weights(models["b"]), weights(out)
    for name in a:
        assert merged[name].dtype == torch.bfloat16
        assert torch.equal(merged[name], ((0.5 * a[name] + 0.5 * b[name]) / 1.0).to(torch.bfloat16)), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).read_bytes() == (models["a"] / name).read_bytes(), name

    manifest = json.loads(result.manifest.read_text())
    assert verify(result.manifest) == []  # every input file and output file has its recorded sha256
    recorded = {m["path"]: m["sha256"] for m in manifest["models"]}
    for key in ("a", "b"):  # hashed while streaming (b is sharded): the same as hashing the files
        assert recorded[str(models[key])] == model_fingerprint(models[key])["sha256"]
    assert manifest["steps"][0]["config"]["merge_method"] == "linear"
    assert {e["path"] for e in manifest["outputs"]} >= {s.name for s in shards} | {"README.md", "config.json"}

    card = ModelCard.load(out / "README.md")
    assert card.data.license == "apache-2.0" and card.data.base_model == ["a", "b"]
    assert "Linear" in card.text and "weight: 0.5" in card.text and recorded[str(models["a"])][:16] in card.text


def test_merged_model_reloads_and_generates(models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = {**linear_config(models, 0.75, 0.25), "chat_template": "{{ messages[0]['content'] }}<|im_end|>"}
    out = run(tmp_path, config).out_dir
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Hubble"}], tokenize=False) == "Hubble<|im_end|>"
    ids = tokenizer("The Hubble constant", return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > ids["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(generated[0]), str)


# ----------------------------------------------------------------------------------------- refusals


def test_vocabulary_mismatch_is_refused_unless_by_id(models, tmp_path):
    """Same sizes, two token ids swapped: the silent garbling case (embeddings of different tokens averaged)."""
    from trainer.merge import MergeCheckError

    swapped = tmp_path / "swapped"
    shutil.copytree(models["b"], swapped)
    data = json.loads((swapped / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    t1, t2 = sorted(vocab)[10], sorted(vocab)[20]
    vocab[t1], vocab[t2] = vocab[t2], vocab[t1]
    (swapped / "tokenizer.json").write_text(json.dumps(data))
    config = {"merge_method": "linear", "models": [{"model": str(models["a"]), "parameters": {"weight": 0.5}},
                                                   {"model": str(swapped), "parameters": {"weight": 0.5}}]}
    with pytest.raises(MergeCheckError, match=r"vocabularies differ.*2 with different ids.*vocab_policy: by_id"):
        run(tmp_path, config)
    assert not (tmp_path / "out").exists()  # refused before any work
    assert run(tmp_path, {**config, "vocab_policy": "by_id"}, "by_id").stats["vocabulary"]["same"] is False
    with pytest.raises(MergeCheckError, match="vocabularies differ"):  # a tokenizer from outside the inputs too
        run(tmp_path, {**linear_config(models, 0.5, 0.5), "tokenizer_source": str(swapped)}, "outside")


def test_different_tensors_are_refused(models, tmp_path):
    from trainer.merge import MergeCheckError

    sys.path.insert(0, str(ROOT / "examples"))
    from tiny_lm import build_tiny_lm

    wider = build_tiny_lm(tmp_path / "wider", seed=0, hidden_size=32)
    config = {"merge_method": "linear", "models": [{"model": str(models["a"]), "parameters": {"weight": 0.5}},
                                                   {"model": str(wider), "parameters": {"weight": 0.5}}]}
    with pytest.raises(MergeCheckError, match=r"tensor shapes differ: \S+ is \[\d+, 64\] in .* and \[\d+, 32\]"):
        run(tmp_path, config)


@pytest.mark.parametrize("change, message", [
    ({"slices": []}, r"`slices`: layer slices"),
    ({"tokenizer": {"source": "union"}}, r"`tokenizer`: the `tokenizer` section"),
    ({"merge_method": "model_stock"}, r"`merge_method`: 'model_stock' is not supported"),
    ({"dtype": "int8"}, r"`dtype`: 'int8'"),
    ({"chat_template": "chatml"}, r"`chat_template`: 'chatml'"),
    ({"frobnicate": 1}, r"unknown key `frobnicate`"),
    ({"parameters": {"density": 0.5}}, r"parameters.density: not a parameter of linear"),
    ({"base_model": "meta-llama/Llama-3-8B"}, r"base_model: 'meta-llama/Llama-3-8B' is not a local model folder"),
])
def test_what_we_cannot_honour_is_an_error_naming_the_key(models, tmp_path, change, message):
    from trainer.merge import MergeConfigError

    path = tmp_path / "merge.yaml"
    path.write_text(yaml.safe_dump({**linear_config(models, 0.5, 0.5), **change}))
    with pytest.raises(MergeConfigError, match=message) as e:
        run(tmp_path, str(path))
    assert str(path) in str(e.value)


def test_required_parameters_and_base_model(models, tmp_path):
    from trainer.merge import MergeConfigError, load_config

    with pytest.raises(MergeConfigError, match=r"model .*b.*: parameter `weight` is required by linear"):
        load_config({"merge_method": "linear", "models": [{"model": str(models["a"]), "parameters": {"weight": 1}},
                                                          {"model": str(models["b"])}]})
    with pytest.raises(MergeConfigError, match=r"`base_model`: ties needs a base model"):
        load_config({"merge_method": "ties", "models": [{"model": str(models["a"]), "parameters": {"weight": 1}}]})
    with pytest.raises(MergeConfigError, match=r"parameters.t is required by slerp"):
        load_config({"merge_method": "slerp", "base_model": str(models["a"]), "models": [str(models["b"])]})
    # {out}/ in a recipe step's config stands for the run folder
    run_dir = models["a"].parent
    loaded = load_config({"merge_method": "linear", "models": [{"model": "{out}/a", "parameters": {"weight": 1}}]},
                         run_dir=run_dir)
    assert loaded.models[0].path == models["a"].resolve()


def test_cli_error_is_one_line(models, tmp_path, capsys):
    from corpus.cli import main

    (tmp_path / "merge.yaml").write_text(yaml.safe_dump({**linear_config(models, 0.5, 0.5), "slices": []}))
    assert main(["merge", str(tmp_path / "merge.yaml"), str(tmp_path / "out")]) == 2
    assert "`slices`" in capsys.readouterr().err


# -------------------------------------------------------------------------------------- recipe step


class CopyModelConfig(StageConfig):
    model: str = path_field(description="model folder to copy into the run as models/sft/")


@register_stage
class CopyModel(OneTaskStage):
    """Test stand-in for train_sft: puts a model folder into the run as ``models/sft/``."""

    name = "test_copy_model"
    config_class = CopyModelConfig
    recipe_only = True

    def outputs(self):
        return {**super().outputs(), "models/sft/": None}

    def run_task(self):
        shutil.copytree(self.config.model, self.out_dir / "models" / "sft")
        yield self.decisions_file, [self.decision("models/sft", "copied", "test")]


def test_merge_as_a_recipe_step_after_a_model_step_reused_and_rebuilt(models, tmp_path, capsys):
    from corpus.cli import main
    from corpus.run.recipe import rebuild

    (tmp_path / "merge.yaml").write_text(yaml.safe_dump({"merge_method": "linear", "models": [
        {"model": "{out}/models/sft", "parameters": {"weight": 0.75}},
        {"model": str(models["b"]), "parameters": {"weight": 0.25}}]}))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"steps": [
        {"stage": "test_copy_model", "config": {"model": str(models["a"])}},
        {"stage": "merge", "config": {"config": "merge.yaml", "max_shard_size": "200KB"}}]}))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "recipe.yaml"), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "models/merged: 21 tensors in" in printed.out + printed.err
    merged = out / "models" / "merged"
    a, b, result = weights(models["a"]), weights(models["b"]), weights(merged)
    assert all(torch.equal(result[k], 0.75 * a[k] + 0.25 * b[k]) for k in a)
    assert (merged / "README.md").is_file() and not (merged / "manifest.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {e["path"] for e in manifest["outputs"]}
    assert "decisions/merge.parquet" in listed and any(p.startswith("models/merged/model-") for p in listed)
    assert any(e["path"].startswith(str(models["b"])) for e in manifest["inputs"])  # the outside model: an input

    first = {f.name: f.read_bytes() for f in merged.iterdir()}
    assert main(["--quiet", "run", str(tmp_path / "recipe.yaml"), "--out", str(out)]) == 0  # reused, not redone
    assert {f.name: f.read_bytes() for f in merged.iterdir()} == first
    _, differences = rebuild(out / "manifest.json", tmp_path / "again")  # merged again: the same bytes
    assert differences == []
    assert {f.name: f.read_bytes() for f in (tmp_path / "again" / "models" / "merged").iterdir()} == first


def test_large_tensors_merged_by_blocks_of_rows_give_the_same_bytes(models, tmp_path, monkeypatch):
    """Linear is elementwise: a tensor larger than BLOCK_BYTES is read, merged and written a block of rows at
    a time (bounded memory); the files are byte for byte those of the whole-tensor merge."""
    import trainer.merge.run as merge_run

    config = linear_config(models, 0.6, 0.4, out_dtype="bfloat16")
    whole = run(tmp_path, config, "whole").out_dir
    monkeypatch.setattr(merge_run, "BLOCK_BYTES", 3000)  # the 1000x64 embeddings: 11 rows a block
    blocks = run(tmp_path, config, "blocks").out_dir
    for f in sorted(whole.glob("*.safetensors")):
        assert f.read_bytes() == (blocks / f.name).read_bytes()
    from corpus.model_files import model_fingerprint

    manifest = json.loads((blocks / "manifest.json").read_text())  # hashes from the block reads are the files'
    assert [m["sha256"] for m in manifest["models"]] == [model_fingerprint(models[k])["sha256"] for k in "ab"]


def test_recipe_step_reads_run_models_by_folder_and_others_as_inputs(models, tmp_path):
    from trainer.merge.stage import MergeStage

    (tmp_path / "merge.yaml").write_text(yaml.safe_dump({
        "merge_method": "linear", "models": [{"model": "{out}/models/sft", "parameters": {"weight": 0.75}},
                                             {"model": str(models["a"]), "parameters": {"weight": 0.25}}]}))
    stage = MergeStage({"config": str(tmp_path / "merge.yaml")})
    assert stage.outputs()["models/merged/"] is None
    assert stage.reads() == ["models/sft/"]
    assert stage.input_files() == [str(tmp_path / "merge.yaml"), str(models["a"].resolve())]


def test_a_failed_merge_leaves_no_half_written_model(models, tmp_path, monkeypatch):
    from trainer.merge.methods.linear import Linear

    calls = []

    def failing(self, inputs, **kw):
        calls.append(inputs.name)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return inputs.tensors[0]

    monkeypatch.setattr(Linear, "merge", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        run(tmp_path, linear_config(models, 0.5, 0.5), max_shard_size="100KB")
    assert not (tmp_path / "out").exists()
    monkeypatch.undo()
    assert run(tmp_path, linear_config(models, 0.5, 0.5)).stats["tensors"] == 21  # the same folder works again
