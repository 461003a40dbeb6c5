"""Typed trainer configs built on TRL's own ``SFTConfig``.

A trainer config is a pydantic model with ``extra="allow"``: the fields declared here are what TRL
lacks (the base model folder, our Parquet datasets, mixing ratios, the validation split, the device,
the estimate's inputs), and every other key must be a field of TRL's ``SFTConfig`` (which holds all of
``transformers.TrainingArguments``): it passes through to ``SFTConfig`` unchanged. An unknown key is an
error naming it and, when one is close, the field meant (``max_seq_length`` -> ``max_length``).

:meth:`TrainConfig.to_sft_config` builds the ``SFTConfig`` from four layers, later ones winning:

1. TRL's own defaults;
2. our reference recipe (``REFERENCE``, per trainer: AstroSage-8B's CPT values for :class:`CPTConfig`)
   and the precision chosen for the device (bf16 on a CUDA device that supports it, else fp16; fp32 on
   CPU, never TRL's bf16 default there), ``report_to="none"``;
3. what the user wrote: the declared fields that are TRL fields (``output_dir``, ``seed``, CPT's
   ``max_length``, ``packing_strategy``, ``eos_token``) and every TRL key given;
4. ``fixed``: what the trainer itself must set (CPT: ``packing=True``, ``dataset_text_field="text"``);
   a user value that contradicts one is refused, not overridden in silence.

How the SFT trainer uses this module (``trainer/sft.py``)::

    class SFTTrainConfig(TrainConfig):
        REFERENCE: ClassVar[dict] = {**TrainConfig.REFERENCE, "learning_rate": ..., ...}
        examples: list[str] = Field(description=...)         # SFT_EXAMPLE parquet(s)
        general_ratio: float = Field(0.0, ...)               # general examples per SFT example
        ...

    config = SFTTrainConfig.load(config_or_dict_or_yaml_path)
    args = config.to_sft_config(assistant_only_loss=True)   # an SFTConfig, precision and defaults set
    args = config.to_sft_config({"eval_strategy": "steps"}, assistant_only_loss=True)  # with a data default

Everything else a trainer shares (device, estimate, resume, manifest, perplexity) is in
:mod:`trainer.run`; reading our datasets is :mod:`trainer.data`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corpus.run.secrets import describe_error
from corpus.run.stage import absolutize, path_field

__all__ = ["CPTConfig", "ConfigError", "TrainConfig", "sft_config_fields"]


class ConfigError(ValueError):
    """A trainer config cannot be used; the message names the file or key and the problem."""


@cache
def sft_config_fields() -> dict[str, dataclasses.Field]:
    """TRL ``SFTConfig``'s fields by name (all of ``TrainingArguments`` included)."""
    from trl import SFTConfig

    return {f.name: f for f in dataclasses.fields(SFTConfig) if f.init}


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, (str, os.PathLike)) else value


class TrainConfig(BaseModel):
    """What every trainer shares: the base model, where it writes, device, seed, resume, estimate.

    Any other key must be a TRL ``SFTConfig`` / ``TrainingArguments`` field and passes through unchanged.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    REFERENCE: ClassVar[dict[str, Any]] = {"report_to": "none"}
    """Our defaults for TRL fields (layer 2 of :meth:`to_sft_config`); a trainer adds its reference recipe."""
    OURS_NOT_TRL: ClassVar[frozenset[str]] = frozenset({"resume_from_checkpoint", "output_dir"})
    """Declared fields named like a TRL field but with our meaning: never passed to ``SFTConfig``."""

    model: str = path_field(description="base model folder (config, weights, tokenizer), e.g. a local copy of "
                                   "meta-llama/Llama-3.1-8B made with `hf download ... --local-dir DIR`")
    output_dir: str = path_field(description="where checkpoints (checkpoint-N/), the final model and manifest.json go "
                                        "(TRL's field; `--out` on the command line overrides it)")
    seed: int = Field(42, description="seed of the data mixing, the validation split and training (TRL's `seed`)")
    validation_fraction: float = Field(0.01, ge=0, lt=1, description=(
        "fraction of the (domain) dataset held out for evaluation, drawn with `seed`; 0: no evaluation. "
        "At least one row is held out when it is > 0"))
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description=(
        "auto: CUDA when available, else CPU. Sets the precision (bf16 on CUDA that supports it, else fp16; "
        "fp32 on CPU) unless `bf16`/`fp16` are given"))
    resume_from_checkpoint: str | None = Field("auto", description=(
        "auto: resume from the last checkpoint-N in output_dir when there is one (after a crash, rerun the same "
        "command); a checkpoint folder: resume from it; null: start from step 0"))
    checkpoint_dir: str | None = path_field(None, description=(
        "where checkpoint-N folders go (TRL's output_dir) when not in output_dir; a recipe step sets its work folder"))
    run_dir: str | None = path_field(None, description=(
        "set by a recipe step (train_cpt, train_sft): the run folder it trains in; datasets inside it are checked "
        "by the step's identity instead of the folder's earlier manifest.json"))
    tokens_per_s: float | None = Field(None, gt=0, json_schema_extra={"how": True}, description=(
        "measured training throughput of this setup, all GPUs together (e.g. from bench/train.py): gives the "
        "time estimate printed before training"))
    gpu_hour_price: float | None = Field(None, ge=0, json_schema_extra={"how": True}, description=(
        "price of one GPU-hour: with tokens_per_s, gives the cost estimate (x the number of processes)"))

    @model_validator(mode="after")
    def _check_trl_keys(self) -> TrainConfig:
        fields = sft_config_fields()
        ours = set(type(self).model_fields)
        for key in self.model_extra or {}:
            if key in fields:
                continue
            close = difflib.get_close_matches(key, [*fields, *ours], n=1, cutoff=0.7)
            hint = {"max_seq_length": "max_length"}.get(key) or (close[0] if close else None)
            raise ValueError(
                f"unknown key {key!r}: it is neither a field of {type(self).__name__} nor of TRL's SFTConfig / "
                f"TrainingArguments" + (f"; did you mean {hint!r}?" if hint else ""))
        if self.gpu_hour_price is not None and self.tokens_per_s is None:
            raise ValueError("gpu_hour_price needs tokens_per_s (the measured throughput) to estimate a cost")
        return self

    # ---------------------------------------------------------------------------------------- loading

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a YAML file (a mapping of fields). Relative paths in it (the path fields, and
        ``resume_from_checkpoint`` when a folder) are relative to the file's folder, as in recipes."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the config: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config is a mapping of fields, got {type(data).__name__}")
        base = path.parent.resolve()
        resume = data.get("resume_from_checkpoint", "auto")
        if isinstance(resume, str) and resume != "auto":
            data["resume_from_checkpoint"] = str(base / Path(resume).expanduser())
        try:
            return absolutize(cls(**data), base)
        except ValueError as e:  # pydantic's errors without the input values (a secret, maybe)
            raise ConfigError(f"{path}: {describe_error(e)}") from e

    @classmethod
    def load(cls, config: TrainConfig | dict | str | os.PathLike, **overrides: Any) -> TrainConfig:
        """A config from an instance, a dict or a YAML path; ``overrides`` (e.g. ``output_dir``) win."""
        if isinstance(config, (str, os.PathLike)):
            config = cls.from_yaml(config)
        elif isinstance(config, dict):
            config = cls(**config)
        elif not isinstance(config, cls):
            raise ConfigError(f"expected a {cls.__name__}, a dict or a YAML path, got {type(config).__name__}")
        if overrides:
            config = cls(**{**config.as_dict(), **overrides})
        return config

    def as_dict(self) -> dict[str, Any]:
        """The config as the user would write it: declared fields and TRL keys (JSON-ready)."""
        return self.model_dump(mode="json")

    # ---------------------------------------------------------------------------------------- to TRL

    def trl_values(self) -> dict[str, Any]:
        """What the user set for TRL: the declared fields that are TRL fields, and every extra key."""
        fields = sft_config_fields()
        declared = {
            k: getattr(self, k) for k in type(self).model_fields if k in fields and k not in self.OURS_NOT_TRL
        }
        # TRL's output_dir is where its checkpoints go; the final model is saved into ours
        return {**declared, "output_dir": self.checkpoint_dir or self.output_dir, **(self.model_extra or {})}

    def to_sft_config(self, defaults: dict[str, Any] | None = None, **fixed: Any):
        """TRL's ``SFTConfig``: TRL defaults < ``REFERENCE``, precision by device and ``defaults`` (what the
        trainer prefers for this data, e.g. ``eval_strategy="steps"`` when there is a validation split) <
        the user's values < ``fixed`` (what the trainer must set; a user value contradicting one is refused)."""
        from trl import SFTConfig

        from trainer.run import device_kwargs

        user = self.trl_values()
        for key, value in fixed.items():
            if key in (self.model_extra or {}) and user[key] != value:
                raise ConfigError(f"{key}={user[key]!r} cannot be used here: this trainer sets {key}={value!r}; "
                                  f"remove {key!r} from the config")
        values: dict[str, Any] = {**self.REFERENCE}
        by_device = device_kwargs(self.device)
        if "bf16" in user or "fp16" in user:  # the user chose the precision
            by_device = {k: v for k, v in by_device.items() if k not in ("bf16", "fp16")}
        values.update(by_device)
        if os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() == "true":
            # `accelerate launch` with FSDP's own activation checkpointing (examples/accelerate/fsdp.yaml):
            # transformers refuses TRL's gradient checkpointing beside it, so TRL's default (on) yields
            values["gradient_checkpointing"] = False
        values.update(defaults or {})
        values.update(user)
        values.update(fixed)
        return SFTConfig(**values)


class CPTConfig(TrainConfig):
    """Continued pretraining: plain text of our DOCUMENT tables (the curated ``corpus.parquet``), packed.

    Every document ends with ``eos_token`` (TRL appends it), then documents are packed into
    ``max_length``-token rows without cutting anything off (``wrapped`` or ``bfd_split``).
    """

    REFERENCE: ClassVar[dict[str, Any]] = {
        **TrainConfig.REFERENCE,
        # AstroSage-8B's CPT: peak 6e-5, cosine to a 10% floor, weight decay 0.1, Adam betas 0.9/0.95, clip 1.0
        "learning_rate": 6e-5,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
        "weight_decay": 0.1,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "max_grad_norm": 1.0,
    }

    corpus: list[str] = path_field(description=(
        "DOCUMENT parquet file(s) to train on (a run's corpus.parquet); their `text` column, rows with no text "
        "counted and skipped. A file inside a run folder must still have the sha256 its manifest.json recorded"))
    general: list[str] = path_field([], description=(
        "general text to mix in against forgetting: .parquet or .jsonl file(s) with a `text` column"))
    general_ratio: float = Field(0.0, ge=0, description=(
        "characters of general text per character of corpus text (e.g. 0.1), drawn as whole documents in a "
        "random order (seed) until reached; characters stand in for tokens (one tokenizer for both)"))
    eos_token: str | None = Field(None, description=(
        "end-of-document token appended after every document (TRL's `eos_token`); null: the base tokenizer's "
        "eos_token (Llama-3 base: <|end_of_text|>). It must be one token of the vocabulary"))
    packing_strategy: Literal["wrapped", "bfd_split"] = Field("wrapped", description=(
        "wrapped: concatenate the documents and cut every max_length tokens; bfd_split: split documents longer "
        "than max_length, then best-fit pack the pieces (documents attend only within themselves with a "
        "padding-free attention kernel). TRL's `bfd` is refused: it truncates every document to max_length"))
    max_length: int = Field(8192, gt=0, description="tokens per packed training row (TRL's `max_length`; reference 8192)")

    @field_validator("corpus", "general", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("packing_strategy", mode="before")
    @classmethod
    def _refuse_bfd(cls, value: Any) -> Any:
        if value == "bfd":
            raise ValueError("packing_strategy 'bfd' truncates every document longer than max_length (the rest of a "
                             "paper would be lost): use 'wrapped' (default) or 'bfd_split'")
        return value

    @model_validator(mode="after")
    def _check_mixing(self) -> CPTConfig:
        if not self.corpus:
            raise ValueError("corpus: give at least one DOCUMENT parquet file")
        if self.general_ratio > 0 and not self.general:
            raise ValueError("general_ratio > 0 needs `general`: the text dataset(s) to mix in")
        if self.general and self.general_ratio == 0:
            raise ValueError("`general` is set but general_ratio is 0: nothing would be mixed in")
        return self
