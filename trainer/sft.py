"""Supervised fine-tuning (SFT): TRL's ``SFTTrainer`` on our SFT examples' chat ``messages``.

    from trainer.sft import train_sft
    result = train_sft("examples/sft.yaml")            # or an SFTTrainConfig, or a dict
    result.output_dir, result.metrics["eval_loss"], result.manifest

The data: the ``messages`` of every SFT_EXAMPLE file in ``examples`` (a run's ``qa/sft.parquet``);
``validation_fraction`` of them held out (seed) for evaluation; examples of a general instruction
dataset (``general``: any shape ``qa_synth.select.read_general`` accepts) mixed into the training part,
``general_ratio`` general examples per SFT example. Each chat is rendered with the base model's chat
template and the loss falls on the assistant's turns only (``assistant_only_loss``, default on): the
template must mark them with ``{% generation %}`` and, when it does not, :mod:`trainer.chat_template`
supplies a marked copy (or ``chat_template`` in the config gives one) whose mask covers each reply and its
end-of-turn token. That token becomes the tokenizer's ``eos_token`` (TRL's ``eos_token``, unless given)
and joins the generation config's stop tokens, so the fine-tuned model stops at the end of its turn.

Full fine-tuning by default. With ``lora`` (peft), only the adapter trains: output_dir holds the adapter
(``adapter_config.json``, ``adapter_model.safetensors``; ``AutoModelForCausalLM.from_pretrained(output_dir)``
loads base + adapter when peft is installed and the base folder is where it was) and, unless
``lora.merge`` is false, ``output_dir/merged/`` holds the base with the adapter merged in: a plain model
folder that loads and generates anywhere, without peft. The saved tokenizer carries the marked template
(markers change no rendered text, so inference prompts are unchanged).

Command line: ``sagecorpus train sft CONFIG [--out DIR]``; multi-GPU: ``accelerate launch
--config_file examples/accelerate/... -m trainer sft CONFIG``.
"""

from __future__ import annotations

import os
import shutil
import random
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corpus.run.stage import path_field
from schemas import SFT_EXAMPLE
from trainer.chat_template import NAMED, training_template
from trainer.config import ConfigError, TrainConfig, _as_list
from trainer.data import (
    DatasetError,
    dataset_record,
    mix_in,
    read_rows,
    split_validation,
)
from trainer.run import TrainResult, run_training, sft_trainer_class

__all__ = ["LoraSettings", "SFTTrainConfig", "build_sft_trainer", "train_sft"]

MERGED = "merged"
"""The sub-folder of output_dir that holds a LoRA run's merged model."""


class LoraSettings(BaseModel):
    """LoRA through peft: low-rank adapters on ``target_modules``; the base weights stay frozen."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, gt=0, description="adapter rank")
    alpha: int = Field(32, gt=0, description="scaling numerator (lora_alpha): updates scale by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] | str = Field("all-linear", description=(
        "module names to adapt (e.g. [q_proj, k_proj, v_proj, o_proj]) or 'all-linear' (every linear layer "
        "but the output head)"))
    merge: bool = Field(True, description=(
        "also write output_dir/merged/: the base model with the adapter merged in (full size; loads without peft)"))

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type="CAUSAL_LM")


class SFTTrainConfig(TrainConfig):
    """Supervised fine-tuning on SFT_EXAMPLE chats, loss on the assistant's turns, full or LoRA."""

    REFERENCE: ClassVar[dict[str, Any]] = {
        **TrainConfig.REFERENCE,
        # common full fine-tuning values for an 8B chat SFT (not AstroSage's published ones): override freely
        "learning_rate": 2e-5,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,  # a float < 1: a fraction of the training steps
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "num_train_epochs": 2,
        "max_length": 4096,
    }

    examples: list[str] = path_field(description=(
        "SFT_EXAMPLE parquet file(s) to train on (a run's qa/sft.parquet); their `messages`. A file inside a run "
        "folder must still have the sha256 its manifest.json recorded"))
    general: list[str] = path_field([], description=(
        "general instruction dataset(s) to mix in: .parquet or .jsonl with messages, ShareGPT conversations, "
        "prompt + completion, or Alpaca instruction/input/output rows (as qa_select reads them)"))
    general_ratio: float = Field(0.0, ge=0, description=(
        "general examples per SFT example in the training part (e.g. 0.5), drawn at random (seed); when the "
        "general datasets hold fewer, all are used and the manifest says so"))
    chat_template: str | None = Field(None, description=(
        "chat template to train with instead of the base tokenizer's: a .jinja file, a template string, or a "
        "family name (chatml, llama3, llama3_1, llama3_2: for a base model that ships none). Unmarked templates "
        "get {% generation %} markers (trainer/chat_template.py); the saved tokenizer keeps the marked one"))
    assistant_only_loss: bool = Field(True, description=(
        "loss on the assistant's replies and their end-of-turn token only (TRL's field; false: on every token)"))
    lora: LoraSettings | None = Field(None, description=(
        "null: full fine-tuning; {r, alpha, dropout, target_modules, merge}: LoRA adapters through peft"))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> SFTTrainConfig:
        """Read a YAML file; relative paths in it, a ``chat_template`` file's included, are relative to its folder."""
        config = super().from_yaml(path)
        value = config.chat_template
        if value and value not in NAMED and "{{" not in value and "{%" not in value:
            config = config.model_copy(update={"chat_template": str(Path(path).parent.resolve() / Path(value).expanduser())})
        return config

    @field_validator("examples", "general", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return _as_list(value)

    @model_validator(mode="after")
    def _check_mixing(self) -> SFTTrainConfig:
        if not self.examples:
            raise ValueError("examples: give at least one SFT_EXAMPLE parquet file")
        if self.general_ratio > 0 and not self.general:
            raise ValueError("general_ratio > 0 needs `general`: the instruction dataset(s) to mix in")
        if self.general and self.general_ratio == 0:
            raise ValueError("`general` is set but general_ratio is 0: nothing would be mixed in")
        for key in ("packing", "completion_only_loss", "dataset_text_field"):
            if key in (self.model_extra or {}):
                raise ValueError(f"{key!r} cannot be set for SFT: chats are trained one per row, "
                                 "loss on the assistant's turns (assistant_only_loss)")
        return self


def read_general_chats(path: str) -> tuple[list[list[dict]], dict[str, Any]]:
    """A general instruction dataset as chats (``qa_synth.select.read_general``) and its record."""
    from qa_synth.select import GeneralDatasetError, read_general

    record = dataset_record(path, "general")
    try:
        chats = list(read_general(record["path"]))
    except GeneralDatasetError as e:
        raise DatasetError(str(e)) from e
    if not chats:
        raise DatasetError(f"{record['path']}: no examples")
    record["rows"] = len(chats)
    return chats, record


def _chat(messages: list[dict], where: str) -> list[dict]:
    if not messages or messages[-1]["role"] != "assistant":
        raise DatasetError(f"{where}: the chat must end with an assistant message")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def build_sft_trainer(config: SFTTrainConfig):
    """The SFTTrainer for ``config`` (datasets read, split, mixed; the marked template on the tokenizer) and
    what the manifest records: ``(trainer, dataset records, extra)``."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    model = str(Path(config.model).resolve()) if Path(config.model).is_dir() else config.model
    tokenizer = AutoTokenizer.from_pretrained(model)
    template, defaults = None, {}
    if config.assistant_only_loss:
        template = training_template(tokenizer, config.chat_template)
        tokenizer.chat_template = template.template
        defaults["eos_token"] = template.end_of_turn  # the model must stop where its turns end
    elif config.chat_template is not None:
        from trainer.chat_template import read_template

        tokenizer.chat_template = read_template(config.chat_template)
    if not tokenizer.chat_template:
        raise ConfigError("the base tokenizer has no chat template: set chat_template in the config")

    records, chats = [], []
    for path in config.examples:
        rows, record = read_rows(path, SFT_EXAMPLE, ["example_id", "messages"], "examples", config.run_dir)
        chats += [_chat(r["messages"], f"{record['path']}: example {r['example_id']}") for r in rows]
        records.append(record)
    train, held_out = split_validation(chats, config.validation_fraction, config.seed)
    general, mixing = [], None
    for path in config.general:
        rows, record = read_general_chats(path)
        general += rows
        records.append(record)
    if general:
        general, mixing = mix_in(train, general, config.general_ratio, config.seed)
        if mixing["short"]:
            print(f"train sft: the general datasets hold {mixing['available']:,} examples, fewer than the "
                  f"{mixing['wanted']:,.0f} wanted ({config.general_ratio} x {len(train):,}): all of them are used")
    train = train + general
    random.Random(config.seed).shuffle(train)

    if held_out:
        defaults["eval_strategy"] = "steps"
    args = config.to_sft_config(defaults, packing=False)
    trainer = sft_trainer_class()(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_dict({"messages": train}),
        eval_dataset=Dataset.from_dict({"messages": held_out}) if held_out else None,
        peft_config=config.lora.peft_config() if config.lora else None,
    )
    kept = len(trainer.train_dataset)
    at_max = sum(1 for n in trainer.train_dataset.with_format("arrow")[:]["input_ids"].to_pylist()
                 if args.max_length and len(n) >= args.max_length) if kept else 0
    if kept < len(train) or at_max:
        print(f"train sft: {at_max:,} of {len(train):,} training chats reach max_length {args.max_length} and are "
              f"cut there; {len(train) - kept:,} lost every assistant token to the cut and are left out: raise "
              f"max_length to keep them")
    extra = {
        "chat_template": {"source": template.source, "end_of_turn": template.end_of_turn} if template else None,
        "examples": {"train": len(train) - len(general), "general": len(general), "validation": len(held_out),
                     "cut_at_max_length": at_max, "left_out_fully_masked": len(train) - kept},
        "mixing": mixing,
        "lora": config.lora.model_dump() if config.lora else None,
        "base_manifest": _base_manifest(model),
    }
    return trainer, records, extra


def _base_manifest(model: str) -> dict | None:
    """The base model folder's own manifest (a CPT output's), path and sha256: the link back to its data."""
    from corpus.run.manifest import MANIFEST_NAME
    from schemas import sha256_file

    path = Path(model) / MANIFEST_NAME
    return {"path": str(path), "sha256": sha256_file(path)} if path.is_file() else None


def merge_lora(output_dir: Path, base: str) -> Path:
    """Write ``output_dir/merged/``: the base model with output_dir's adapter merged in, the tokenizer
    (marked template, end-of-turn eos) beside it, and that eos among the generation config's stop tokens."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    model = PeftModel.from_pretrained(model, output_dir).merge_and_unload()
    eos = tokenizer.eos_token_id
    stops = model.generation_config.eos_token_id
    stops = [] if stops is None else [stops] if isinstance(stops, int) else list(stops)
    if eos is not None and eos not in stops:
        model.generation_config.eos_token_id = [eos, *stops]
    model.config.eos_token_id = eos
    merged = output_dir / MERGED
    model.save_pretrained(merged)
    tokenizer.save_pretrained(merged)
    if (output_dir / "README.md").is_file():  # the model card (licence, base, data) holds for the merged copy too
        shutil.copyfile(output_dir / "README.md", merged / "README.md")
    return merged


def _add_outputs(manifest_path: Path, output_dir: Path, folder: Path) -> None:
    """Add the files of ``folder`` (under output_dir) to the manifest's outputs."""
    from corpus.run.manifest import Manifest, output_entry

    manifest = Manifest.load(manifest_path)
    manifest.outputs += [output_entry(output_dir, f.relative_to(output_dir).as_posix())
                         for f in sorted(folder.iterdir()) if f.is_file()]
    manifest.save(manifest_path)


def train_sft(config: SFTTrainConfig | dict | str | os.PathLike, **overrides: Any) -> TrainResult:
    """Train ``config`` (an :class:`SFTTrainConfig`, a dict or a YAML path; ``overrides`` such as
    ``output_dir`` win) and return the final model folder, its metrics and its manifest
    (see :mod:`trainer.run`). A LoRA run also writes ``output_dir/merged/`` (see the module doc)."""
    config = SFTTrainConfig.load(config, **overrides)
    trainer, records, extra = build_sft_trainer(config)
    result = run_training(trainer, config, kind="sft", datasets=records, extra=extra)
    if config.lora and config.lora.merge and trainer.is_world_process_zero():
        merged = merge_lora(result.output_dir, trainer.model.peft_config["default"].base_model_name_or_path)
        _add_outputs(result.manifest, result.output_dir, merged)
        print(f"train sft: merged model in {merged}")
    return result
