"""The trainers as recipe steps: ``train_cpt`` and ``train_sft`` (registered through the
``sagecorpus.stages`` entry point; recipe-only: their command is ``sagecorpus train cpt|sft CONFIG``).

A step's config is the trainer's own config (:class:`trainer.config.CPTConfig`,
:class:`trainer.sft.SFTTrainConfig`: our fields plus any TRL ``SFTConfig`` field), with defaults that
read the run folder: ``train_cpt`` trains on ``{out}/corpus.parquet`` and writes ``{out}/models/cpt/``;
``train_sft`` fine-tunes ``{out}/models/cpt`` on ``{out}/qa/sft.parquet`` and writes ``{out}/models/sft/``.
The model folder is the step's output: every file is hashed, checked on reuse (a changed weight file
trains again) and read by later steps (merge, eval) by its digest. Checkpoints go to the step's work
folder (``_work/NN-train_cpt/checkpoints``), so a crashed step resumes from its last checkpoint when
rerun with the same identity, and checkpoints of another config or other data are never resumed from.

Multi-GPU: ``processes: N`` runs ``accelerate launch --num_processes N [--config_file ...] -m trainer``
from the step's task (which the executor gives N GPUs); only the driving process holds the run's lock.

``rebuild`` does not train again (training on GPUs is not bit-reproducible): it replays the original
run's model folder after checking that the original step had the same identity and every file its
recorded sha256 (:meth:`corpus.run.stage.Stage.replay_folder`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, Field, model_validator

from corpus.run.manifest import MANIFEST_NAME
from corpus.run.stage import OUT, OneTaskStage, folder_in_run, path_field, register_stage
from trainer.config import CPTConfig, TrainConfig
from trainer.sft import SFTTrainConfig

__all__ = ["CPTStepConfig", "SFTStepConfig", "TrainCPT", "TrainSFT"]

SHOWN_METRICS = ("train_loss", "eval_loss", "eval_perplexity")


CPT_OUT = f"{OUT}/models/cpt"
SFT_OUT = f"{OUT}/models/sft"


class _StepFields(BaseModel):
    """What a training step adds to its trainer's config (processes, accelerate's config), and the check
    that the fields the step sets itself are not given."""

    OUTPUT: ClassVar[str]

    processes: int = Field(1, ge=1, json_schema_extra={"how": True}, description=(
        "training processes (one per GPU): more than one runs `accelerate launch --num_processes N -m trainer` "
        "from the step's task, which the executor gives N GPUs"))
    accelerate_config: str | None = path_field(None, description=(
        "accelerate config file for the launch (e.g. examples/accelerate/fsdp.yaml or deepspeed_zero3.yaml)"))

    @model_validator(mode="after")
    def _set_by_the_step(self) -> _StepFields:
        if self.output_dir != self.OUTPUT:
            raise ValueError(f"output_dir: a recipe step writes {self.OUTPUT}; leave output_dir out")
        if self.checkpoint_dir is not None or self.run_dir is not None:
            raise ValueError("checkpoint_dir and run_dir are set by the recipe step; leave them out")
        if self.resume_from_checkpoint != "auto":
            raise ValueError("resume_from_checkpoint: a recipe step resumes from its own checkpoints (auto); leave it out")
        return self


class CPTStepConfig(_StepFields, CPTConfig):
    """``train_cpt`` step: a :class:`CPTConfig` (any TRL field passes through) reading the run's corpus."""

    OUTPUT: ClassVar[str] = CPT_OUT

    corpus: list[str] = path_field([f"{OUT}/corpus.parquet"], description=(
        "DOCUMENT parquet file(s) to train on: the run's curated corpus by default"))
    output_dir: str = Field(CPT_OUT, description="set by the step: the model folder {out}/models/cpt")


class SFTStepConfig(_StepFields, SFTTrainConfig):
    """``train_sft`` step: an :class:`SFTTrainConfig` fine-tuning the run's CPT model on its Q&A."""

    OUTPUT: ClassVar[str] = SFT_OUT

    model: str = path_field(CPT_OUT, description=(
        "model to fine-tune: the run's CPT model by default (or any model folder, e.g. a base model: CPT skipped)"))
    examples: list[str] = path_field([f"{OUT}/qa/sft.parquet"], description=(
        "SFT_EXAMPLE parquet file(s): the run's selected Q&A by default"))
    output_dir: str = Field(SFT_OUT, description="set by the step: the model folder {out}/models/sft")


class _TrainStep(OneTaskStage):
    """One training run as a recipe step (see the module doc)."""

    recipe_only = True
    kind: ClassVar[str]
    trainer_config: ClassVar[type[TrainConfig]]

    @property
    def output(self) -> str:
        """The model folder, relative to the run folder, as a folder output (``models/cpt/``)."""
        return folder_in_run(self.config.output_dir)

    @property
    def gpus_per_task(self) -> int:  # the task that trains gets one GPU per process, when it trains on GPUs
        device = self.config.device
        if device == "cpu":
            return 0
        if device == "auto":
            import torch

            if not torch.cuda.is_available():
                return 0
        return self.config.processes

    def outputs(self) -> dict:
        return {**super().outputs(), self.output: None}

    def reads(self) -> list[str]:
        model = folder_in_run(self.config.model)
        return [*super().reads(), *([model] if model else [])]

    def requirements(self) -> dict[str, str]:
        return {"trl": "train", **({"peft": "train"} if getattr(self.config, "lora", None) else {})}

    def models(self) -> list[dict]:
        """The base model and the trained one (id, licence, weights sha256), for the manifest and the cards."""
        from corpus.model_files import ModelFolderError, model_fingerprint

        found = []
        for role, folder in (("base", self.path(self.config.model)), ("trained", self.path(self.config.output_dir))):
            try:
                found.append({"stage": self.name, "role": role, **model_fingerprint(folder)})
            except ModelFolderError:  # not trained yet (a manifest written before the step ran)
                continue
        return found

    def trainer_values(self) -> dict[str, Any]:
        """The trainer's config: this step's, run-folder paths resolved, checkpoints in the work folder."""
        values = self.config.as_dict()
        for key in ("processes", "accelerate_config"):
            values.pop(key)
        for key, value in values.items():
            if isinstance(value, str) and value.startswith(OUT):
                values[key] = self.path(value)
            elif isinstance(value, list):
                values[key] = [self.path(v) if isinstance(v, str) and v.startswith(OUT) else v for v in value]
        return {**values, "checkpoint_dir": str(self.work_dir / "checkpoints"), "run_dir": str(self.out_dir)}

    def run_task(self) -> Iterator[tuple[str, list[dict]]]:
        model = self.out_dir / self.output
        if not self.replay_folder(self.output):
            values = self.trainer_values()
            if self.config.processes > 1 or self.config.accelerate_config:
                self._launch(values)
            else:
                from trainer.cli import TRAINERS
                from trainer.run import be_quiet

                if self.quiet:
                    be_quiet()
                module, function, _ = TRAINERS[self.kind]
                __import__(module)
                getattr(sys.modules[module], function)(self.trainer_config(**values))
            shutil.rmtree(values["checkpoint_dir"], ignore_errors=True)  # the model is the output; resume state no longer needed
        metrics = json.loads((model / MANIFEST_NAME).read_text())["stats"].get("metrics", {})
        shown = {k: metrics[k] for k in SHOWN_METRICS if k in metrics}
        for key, value in shown.items():
            self.stat_update(key, value=value)
        yield self.decisions_file, [self.decision(self.output.rstrip("/"), "trained", self.kind, **shown)]

    def summary(self, stats: dict) -> str:
        shown = ", ".join(f"{k} {stats[k]:.4g}" for k in SHOWN_METRICS if k in stats)
        return f"{self.output.rstrip('/')}" + (f": {shown}" if shown else "")

    def _launch(self, values: dict[str, Any]) -> None:
        """``accelerate launch -m trainer KIND CONFIG`` with this step's trainer config, one process per GPU."""
        config = self.work_dir / f"{self.kind}.yaml"
        config.write_text(yaml.safe_dump(values, sort_keys=True))
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(self.config.processes)]
        if self.config.accelerate_config:
            command += ["--config_file", self.config.accelerate_config]
        else:  # plain data parallel on one machine (torch.distributed: NCCL on GPUs, gloo on a CPU)
            command += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        "--main_process_port", "0"]
        command += ["-m", "trainer", *(["--quiet"] if self.quiet else []), self.kind, str(config)]
        done = subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"step {self.name}: `{' '.join(command)}` failed with exit status {done.returncode} "
                               f"(its output is above; rerun to resume from the last checkpoint)")


@register_stage
class TrainCPT(_TrainStep):
    name = "train_cpt"
    kind = "cpt"
    config_class = CPTStepConfig
    trainer_config = CPTConfig
    description = "continued pretraining on the run's corpus with TRL -> models/cpt/ (recipe step of `sagecorpus train cpt`)"


@register_stage
class TrainSFT(_TrainStep):
    name = "train_sft"
    kind = "sft"
    config_class = SFTStepConfig
    trainer_config = SFTTrainConfig
    description = "supervised fine-tuning on the run's Q&A with TRL -> models/sft/ (recipe step of `sagecorpus train sft`)"

from trainer.merge.stage import MergeStage  # noqa: E402,F401  (the `merge` step)
import trainer.evaluate  # noqa: E402,F401  eval (recipe-only: its command is `sagecorpus eval MODEL QUESTIONS...`)
