"""Continued pretraining (trainer/cpt.py) on CPU with a tiny random Llama and a DOCUMENT table written here.

What a user depends on: the loss falls; packing keeps every token of long papers and puts the tokenizer's
end-of-document token between papers; TRL's own keys pass through and unknown ones are refused; fp32 on
CPU; a crashed run resumes from its checkpoint; the final model reloads and generates; the manifest ties the
model to the corpus (and the corpus to its run's manifest), and a corpus changed since its run is refused.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("trl")

import yaml  # noqa: E402

from corpus.model_files import model_fingerprint  # noqa: E402
from corpus.run.manifest import Manifest, output_entry, verify  # noqa: E402
from schemas import DOCUMENT, sha256_file, write_table  # noqa: E402
from trainer.config import ConfigError, CPTConfig  # noqa: E402
from trainer.cpt import build_cpt_trainer, train_cpt  # noqa: E402
from trainer.data import DatasetError  # noqa: E402
from trainer.run import run_training  # noqa: E402

SENTENCES = [
    "The Hubble constant measured from Cepheids and type Ia supernovae is about 73 km/s/Mpc.",
    "The cosmic microwave background has a blackbody spectrum with a temperature of 2.725 K.",
    "Dark matter halos dominate the mass of galaxies beyond a few disk scale lengths.",
    "Neutron stars spin down as their magnetic dipole radiates; pulsars are the ones we see.",
]


def paper(i: int, repeats: int = 1) -> str:
    """A short learnable 'paper': two fixed sentences, repeated."""
    return (f"{SENTENCES[i % 4]} {SENTENCES[(i + 1) % 4]}\n" * repeats).strip()


def write_corpus(path: Path, texts: list[str | None]) -> Path:
    rows = [{"paper_id": f"p{i}", "text": t, "extractor": "latex", "reason": "test", "n_pages": 0,
             "n_chars": len(t or ""), "pages": [], "input_sha256": None} for i, t in enumerate(texts)]
    write_table(DOCUMENT, rows, path)
    return path


def write_run(folder: Path, texts: list[str | None]) -> Path:
    """A run folder: corpus.parquet and a manifest.json that lists it (as `sagecorpus run` writes)."""
    write_corpus(folder / "corpus.parquet", texts)
    Manifest(steps=[], outputs=[output_entry(folder, "corpus.parquet")]).save(folder / "manifest.json")
    return folder / "corpus.parquet"


def base_config(tiny_lm: Path, corpus: Path, out: Path, **extra) -> dict:
    return {"model": str(tiny_lm), "corpus": str(corpus), "output_dir": str(out), "max_length": 64,
            "validation_fraction": 0.05, "learning_rate": 3e-3, "per_device_train_batch_size": 4,
            "logging_steps": 5, "eval_steps": 10, "save_steps": 10, "disable_tqdm": True, **extra}


def test_cpt_trains_evaluates_saves_and_records(tiny_lm, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = write_run(tmp_path / "run", [paper(i) for i in range(300)] + [None, "  "])
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES * 10))
    out = tmp_path / "cpt"
    result = train_cpt(base_config(tiny_lm, corpus, out, max_steps=30, general=[str(general)], general_ratio=0.05,
                                   gradient_accumulation_steps=1))

    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 6 and losses[-1] < 0.6 * losses[0], losses  # the loss falls
    evals = [e for e in state["log_history"] if "eval_loss" in e]
    assert [e["step"] for e in evals] == [10, 20, 30]
    for e in evals:  # perplexity logged at each evaluation
        assert e["eval_perplexity"] == pytest.approx(math.exp(e["eval_loss"]))
    assert result.metrics["eval_perplexity"] == pytest.approx(math.exp(result.metrics["eval_loss"]))

    manifest = json.loads(result.manifest.read_text())
    step = manifest["steps"][0]
    sft = step["sft_config"]
    assert sft["bf16"] is False and sft["fp16"] is False  # fp32 on CPU, not TRL's bf16
    assert (sft["gradient_accumulation_steps"], sft["logging_steps"], sft["learning_rate"]) == (1, 5, 3e-3)
    assert sft["weight_decay"] == 0.1 and sft["adam_beta2"] == 0.95  # reference defaults where not given
    assert sft["packing"] is True and sft["packing_strategy"] == "wrapped" and sft["max_length"] == 64

    corpus_record, general_record = step["datasets"]
    assert corpus_record["path"] == str(corpus) and corpus_record["sha256"] == sha256_file(corpus)
    assert corpus_record["run_manifest_sha256"] == sha256_file(corpus.parent / "manifest.json")
    assert (corpus_record["rows"], corpus_record["used"], corpus_record["skipped_no_text"]) == (302, 300, 2)
    assert general_record["role"] == "general" and step["mixing"]["mixed"] >= step["mixing"]["wanted"] > 0
    assert step["documents"] == {"train": 285, "validation": 15, "general": step["mixing"]["items"]}
    assert step["document_separator"] == AutoTokenizer.from_pretrained(tiny_lm).eos_token
    assert manifest["models"][0]["sha256"] == model_fingerprint(tiny_lm)["sha256"]
    assert {e["path"] for e in manifest["inputs"]} == {str(corpus), str(general)}
    assert "model.safetensors" in {e["path"] for e in manifest["outputs"]}
    assert manifest["stats"]["metrics"]["eval_loss"] == pytest.approx(result.metrics["eval_loss"])
    assert verify(result.manifest) == []  # every input and output hash recomputed

    model = AutoModelForCausalLM.from_pretrained(out)  # the saved model reloads and generates
    assert next(model.parameters()).dtype == torch.float32
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("The Hubble constant", return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > ids.shape[1]


@pytest.mark.parametrize("strategy", ["wrapped", "bfd_split"])
def test_packing_keeps_long_papers_whole_with_eos_between(tiny_lm, tmp_path, strategy):
    from transformers import AutoTokenizer

    texts = [paper(i, repeats=1 + 6 * (i % 3)) for i in range(12)]  # a third are ~5x max_length
    corpus = write_corpus(tmp_path / "corpus.parquet", texts)
    config = CPTConfig(**base_config(tiny_lm, corpus, tmp_path / "out", validation_fraction=0,
                                     packing_strategy=strategy))
    trainer, _, extra = build_cpt_trainer(config)

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    eos_id = tokenizer.eos_token_id  # the separator comes from the tokenizer (here <|im_end|>)
    assert extra["document_separator_id"] == eos_id
    expected = Counter(i for t in texts for i in tokenizer(t + tokenizer.eos_token).input_ids)
    rows = trainer.train_dataset["input_ids"]
    assert max(len(r) for r in rows) <= 64 < max(len(tokenizer(t).input_ids) for t in texts)
    packed = Counter(i for r in rows for i in r)
    assert packed == expected  # every token of every paper, none cut off
    assert packed[eos_id] == len(texts)  # one end-of-document token after each paper


def test_eos_token_can_be_set_and_must_be_one_token(tiny_lm, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.parquet", [paper(i) for i in range(6)])
    config = CPTConfig(**base_config(tiny_lm, corpus, tmp_path / "out", validation_fraction=0, eos_token="</s>"))
    trainer, _, extra = build_cpt_trainer(config)
    sep = trainer.processing_class.convert_tokens_to_ids("</s>")
    assert extra["document_separator"] == "</s>"
    assert sum(r.count(sep) for r in trainer.train_dataset["input_ids"]) == 6
    with pytest.raises(ConfigError, match="not a token"):
        build_cpt_trainer(CPTConfig(**base_config(tiny_lm, corpus, tmp_path / "out", eos_token="<|eot|>")))


def test_config_passes_trl_keys_and_refuses_what_would_go_wrong(tmp_path):
    ok = {"model": "m", "corpus": "c.parquet", "output_dir": "o"}
    args = CPTConfig(**ok, gradient_accumulation_steps=3, logging_steps=7, lr_scheduler_type="linear").to_sft_config()
    assert (args.gradient_accumulation_steps, args.logging_steps, args.lr_scheduler_type) == (3, 7, "linear")
    assert (args.learning_rate, args.weight_decay, args.adam_beta1, args.adam_beta2, args.max_grad_norm) == (
        6e-5, 0.1, 0.9, 0.95, 1.0)  # reference defaults
    assert args.max_length == 8192 and args.report_to == [] and args.bf16 is False  # CPU here: fp32

    with pytest.raises(ValueError, match="'bfd' truncates"):
        CPTConfig(**ok, packing_strategy="bfd")
    with pytest.raises(ValueError, match=r"unknown key 'max_seq_length'.*did you mean 'max_length'"):
        CPTConfig(**ok, max_seq_length=512)
    with pytest.raises(ValueError, match=r"unknown key 'learning_rat'.*did you mean 'learning_rate'"):
        CPTConfig(**ok, learning_rat=1e-4)
    with pytest.raises(ConfigError, match="this trainer sets packing=True"):
        CPTConfig(**ok, packing=False).to_sft_config(packing=True)
    with pytest.raises(ValueError, match="general_ratio > 0 needs `general`"):
        CPTConfig(**ok, general_ratio=0.1)

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cpt.yaml").write_text(yaml.safe_dump({**ok, "warmup_steps": 5}))
    config = CPTConfig.from_yaml(tmp_path / "sub" / "cpt.yaml")  # paths relative to the file
    assert config.corpus == [str(tmp_path / "sub" / "c.parquet")] and config.model_extra == {"warmup_steps": 5}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**ok, "packing_strategy": "bfd"}))
    with pytest.raises(ConfigError, match="bad.yaml"):
        CPTConfig.from_yaml(tmp_path / "bad.yaml")


def test_crashed_run_resumes_from_its_last_checkpoint(tiny_lm, tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                raise RuntimeError("simulated crash")

    class Steps(TrainerCallback):
        def __init__(self):
            self.done: list[int] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.done.append(state.global_step)

    corpus = write_corpus(tmp_path / "corpus.parquet", [paper(i) for i in range(100)])
    config = CPTConfig(**base_config(tiny_lm, corpus, tmp_path / "out", max_steps=8, save_steps=4, eval_steps=100))
    trainer, records, extra = build_cpt_trainer(config)
    trainer.add_callback(Crash())
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(trainer, config, kind="cpt", datasets=records, extra=extra)
    assert (tmp_path / "out" / "checkpoint-4").is_dir() and not (tmp_path / "out" / "model.safetensors").exists()

    trainer, records, extra = build_cpt_trainer(config)  # the rerun: same config, resume "auto"
    steps = Steps()
    trainer.add_callback(steps)
    result = run_training(trainer, config, kind="cpt", datasets=records, extra=extra)
    assert result.resumed_from == str(tmp_path / "out" / "checkpoint-4")
    assert steps.done == [5, 6, 7, 8]  # continued from step 4, not from 0
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 8

    # checkpoints of other data are not resumed from
    write_corpus(tmp_path / "corpus.parquet", [paper(i) for i in range(99)])
    with pytest.raises(RuntimeError, match="other datasets"):
        train_cpt(config)


def test_corpus_changed_since_its_run_is_refused(tiny_lm, tmp_path):
    corpus = write_run(tmp_path / "run", [paper(i) for i in range(10)])
    write_corpus(corpus, [paper(i) for i in range(11)])  # rewritten after the run's manifest
    with pytest.raises(DatasetError, match=r"corpus.parquet: sha256 .* the file changed after its run"):
        train_cpt(base_config(tiny_lm, corpus, tmp_path / "out"))


def test_sagecorpus_train_cpt_command(tiny_lm, tmp_path, capsys):
    from corpus.cli import main

    corpus = write_run(tmp_path / "run", [paper(i) for i in range(40)])
    config = base_config(tiny_lm, corpus, tmp_path / "ignored", max_steps=4, validation_fraction=0.1)
    (tmp_path / "cpt.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "cpt", str(tmp_path / "cpt.yaml"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert f"manifest: {tmp_path / 'out' / 'manifest.json'}" in printed and "eval_perplexity" in printed
    assert (tmp_path / "out" / "model.safetensors").is_file() and not (tmp_path / "ignored").exists()
    assert main(["train", "cpt", str(tmp_path / "missing.yaml")]) == 2  # one line, not a traceback
    assert "missing.yaml: cannot read the config" in capsys.readouterr().err


def test_fsdp_activation_checkpointing_turns_trls_gradient_checkpointing_off(monkeypatch, tmp_path):
    """accelerate launch with examples/accelerate/fsdp.yaml sets FSDP_ACTIVATION_CHECKPOINTING=true; transformers
    refuses TRL's gradient checkpointing beside it, so TRL's default (on) must yield, while a CPU run keeps it."""
    from trainer.config import CPTConfig

    config = CPTConfig(model=str(tmp_path), corpus=[str(tmp_path / "c.parquet")], output_dir=str(tmp_path / "o"))
    assert config.to_sft_config().gradient_checkpointing is True  # TRL's default
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    assert config.to_sft_config().gradient_checkpointing is False
