"""What every trainer shares: device and precision, the estimate, resume, perplexity, the run manifest.

A trainer (``trainer/cpt.py``, ``trainer/sft.py``) reads its data (:mod:`trainer.data`), builds TRL's
``SFTConfig`` (:meth:`trainer.config.TrainConfig.to_sft_config`) and an :class:`SFTTrainer` from
:func:`sft_trainer_class` (TRL's ``SFTTrainer`` that also logs ``eval_perplexity = exp(eval_loss)``),
then hands it to :func:`run_training`, which:

1. refuses to resume a run whose output_dir holds checkpoints of other data or another base model;
2. prints the estimate (tokens x epochs / ``tokens_per_s`` -> time; x ``gpu_hour_price`` -> cost);
3. trains, resuming from the last ``checkpoint-N`` in output_dir (``resume_from_checkpoint="auto"``);
4. evaluates on the held-out split (when there is one), saves the final model and tokenizer into
   output_dir (``AutoModelForCausalLM.from_pretrained(output_dir)`` loads it) and ``trainer_state.json``;
5. writes ``<output_dir>/manifest.json`` from the main process only: the config (secrets redacted), the
   resolved SFTConfig, the datasets consumed (:func:`trainer.data.dataset_record`, also as manifest
   inputs), the base model's fingerprint, package versions, seeds, metrics and every output file's
   sha256, in the run-manifest format of :mod:`corpus.run.manifest` (``sagecorpus verify`` checks it).

The SFT trainer does the same::

    trainer = sft_trainer_class()(model=config.model, args=args, train_dataset=..., eval_dataset=...,
                                  processing_class=tokenizer, peft_config=...)
    return run_training(trainer, config, kind="sft", datasets=[record, ...])
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus.run.manifest import MANIFEST_NAME, Manifest, now, output_entry, run_record

__all__ = [
    "TrainResult", "device_kwargs", "estimate", "perplexity", "resolve_device", "resume_checkpoint",
    "run_training", "sft_trainer_class",
]


@dataclass
class TrainResult:
    """What a training run left: the final model folder (also output_dir), its metrics and manifest."""

    output_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    manifest: Path | None = None
    resumed_from: str | None = None


# ---------------------------------------------------------------------------------------- device


def resolve_device(device: str) -> str:
    """``"cpu"`` or ``"cuda"`` for a config's ``device`` (auto: CUDA when available)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for, but torch sees no CUDA device (use device: auto or cpu)")
    return device


def device_kwargs(device: str) -> dict[str, Any]:
    """TRL fields a device decides: precision (bf16 on a CUDA device that supports it, else fp16; fp32 on
    CPU, where TRL's default bf16 fails); on CPU no pinned memory, and ``use_cpu`` when chosen explicitly."""
    import torch

    if resolve_device(device) == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16}
    return {"bf16": False, "fp16": False, "dataloader_pin_memory": False,
            **({"use_cpu": True} if device == "cpu" else {})}


# ---------------------------------------------------------------------------------------- resume


def resume_checkpoint(config) -> str | None:
    """The checkpoint to resume from: ``resume_from_checkpoint`` "auto" -> the last ``checkpoint-N`` in
    output_dir, if any; a folder -> that one (must exist); None -> none."""
    from transformers.trainer_utils import get_last_checkpoint

    value = config.resume_from_checkpoint
    if value is None:
        return None
    if value == "auto":
        out = Path(config.checkpoint_dir or config.output_dir)
        return get_last_checkpoint(str(out)) if out.is_dir() else None
    if not Path(value).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: {value}: no such checkpoint folder")
    return value


def _check_same_run(manifest_path: Path, datasets: list[dict], model_sha256: str, checkpoint: str) -> None:
    """Refuse to resume from checkpoints trained on other data or another base model."""
    try:
        earlier = Manifest.load(manifest_path)
    except ValueError:
        return
    before = {e.path: e.sha256 for e in earlier.inputs}
    now_ = {r["path"]: r["sha256"] for r in datasets}
    models = [m.get("sha256") for m in earlier.models]
    if before != now_ or (models and model_sha256 not in models):
        raise RuntimeError(
            f"{checkpoint}: this output_dir's checkpoints were trained on other datasets or another base model "
            f"(see {manifest_path}); use a new output_dir, or set resume_from_checkpoint: null to start over")


# ---------------------------------------------------------------------------------------- estimate


def dataset_tokens(dataset) -> int:
    """Tokens in a prepared (tokenized, maybe packed) dataset: the sum of its ``input_ids`` lengths."""
    import pyarrow.compute as pc

    column = dataset.with_format("arrow")[:]["input_ids"]
    return int(pc.sum(pc.list_value_length(column)).as_py() or 0)


def estimate(tokens: int, rows: int, args, config, processes: int) -> dict[str, Any]:
    """Tokens to train on (tokens x epochs, or what ``max_steps`` covers), time at ``tokens_per_s`` and cost
    at ``gpu_hour_price`` x processes; ``text`` says it in one line (and what is missing)."""
    rows_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * processes
    steps_per_epoch = max(1, math.ceil(rows / max(1, rows_per_step)))
    if args.max_steps and args.max_steps > 0:
        steps = args.max_steps
        planned = round(tokens / max(1, rows) * rows_per_step * steps)
    else:
        steps = math.ceil(steps_per_epoch * args.num_train_epochs)
        planned = round(tokens * args.num_train_epochs)
    out: dict[str, Any] = {"dataset_tokens": tokens, "dataset_rows": rows, "steps": steps, "tokens": planned,
                           "processes": processes}
    text = f"{tokens:,} tokens in {rows:,} rows; {steps:,} steps x {rows_per_step} rows: about {planned:,} tokens"
    if config.tokens_per_s:
        hours = planned / config.tokens_per_s / 3600
        out["hours"] = hours
        text += f"; ~{hours:.2f} h at {config.tokens_per_s:,.0f} tokens/s"
        if config.gpu_hour_price is not None:
            out["cost"] = hours * processes * config.gpu_hour_price
            text += f"; ~{out['cost']:,.2f} at {config.gpu_hour_price}/GPU-hour x {processes} process(es)"
    else:
        text += "; no tokens_per_s given: time and cost not estimated (measure it with bench/train.py)"
    out["text"] = text
    return out


# ---------------------------------------------------------------------------------------- perplexity


def perplexity(loss: float) -> float:
    """exp(loss), inf when it overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def add_perplexity(logs: dict[str, float]) -> None:
    """Add ``<prefix>_perplexity`` beside every ``<prefix>_loss`` of an evaluation (``eval_loss``,
    ``eval_<name>_loss``) in place."""
    for key in [k for k in logs if k.startswith("eval_") and k.endswith("_loss")]:
        logs[key[: -len("loss")] + "perplexity"] = perplexity(logs[key])


_TRAINER_CLASS = None


def sft_trainer_class():
    """TRL's ``SFTTrainer`` whose logs (log_history, trainer_state.json, report_to integrations and the
    metrics ``evaluate()`` returns) carry ``eval_perplexity`` beside ``eval_loss``."""
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        from trl import SFTTrainer

        class SageSFTTrainer(SFTTrainer):
            def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
                add_perplexity(logs)
                super().log(logs, start_time)

        _TRAINER_CLASS = SageSFTTrainer
    return _TRAINER_CLASS


# ---------------------------------------------------------------------------------------- the run

_QUIET = False


def be_quiet() -> None:
    """For ``--quiet``: warnings and errors only from transformers and datasets, no progress bars, and no
    per-log metric lines from the trainer (its logs still go to trainer_state.json). The estimate and the
    line naming the saved model are still printed."""
    global _QUIET
    import warnings

    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bar()
    # TRL's SFTConfig sets transformers' deprecated name (gradient_checkpointing) itself: nothing a user can change
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
    _QUIET = True



def _say(trainer, text: str) -> None:
    if trainer.is_world_process_zero():
        print(text, file=sys.stderr, flush=True)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _manifest(trainer, config, kind: str, datasets: list[dict], base: dict, extra: dict, start: str,
              metrics: dict, outputs: list) -> Manifest:
    from trainer.data import input_entries

    args = trainer.args
    step = {"stage": f"train {kind}", "config": config.as_dict(), "sft_config": _jsonable(args.to_dict()),
            "datasets": datasets, **_jsonable(extra)}
    return Manifest(
        steps=[step], sources=[r["path"] for r in datasets], inputs=input_entries(datasets), outputs=outputs,
        executor={"processes": args.world_size, "device": str(args.device)},
        seeds={"seed": args.seed, "data_seed": args.data_seed}, models=[base],
        stats={"metrics": _jsonable(metrics)}, run=run_record(start),
    )


def run_training(trainer, config, *, kind: str, datasets: list[dict], extra: dict | None = None) -> TrainResult:
    """Estimate, train (resuming), evaluate, save the model and write the manifest (see the module doc).

    ``trainer``: an SFTTrainer built on ``config.to_sft_config(...)``; ``datasets``: the records of every
    file it trains or evaluates on; ``extra``: more to record in the manifest's step (e.g. the eos token,
    mixing stats). Returns a :class:`TrainResult` in every process.
    """
    from corpus.model_files import model_fingerprint

    start = now()
    out = Path(config.output_dir)
    base = model_fingerprint(config.model)
    checkpoint = resume_checkpoint(config)
    manifest_path = out / MANIFEST_NAME
    if checkpoint is not None and manifest_path.is_file():
        _check_same_run(manifest_path, datasets, base["sha256"], checkpoint)

    if _QUIET:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    rows = len(trainer.train_dataset)
    tokens = dataset_tokens(trainer.train_dataset)
    plan = estimate(tokens, rows, trainer.args, config, trainer.args.world_size)
    _say(trainer, f"train {kind}: {plan['text']}")
    if checkpoint:
        _say(trainer, f"train {kind}: resuming from {checkpoint}")
    extra = {**(extra or {}), "estimate": plan, "resumed_from": checkpoint}
    if trainer.is_world_process_zero():  # written first, so a resume after a crash can check its data
        _manifest(trainer, config, kind, datasets, base, extra, start, {}, []).save(manifest_path)

    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(result.metrics)
    if trainer.eval_dataset is not None:  # the final evaluation, unless the last step just had one
        evaluated = [e for e in trainer.state.log_history if "eval_loss" in e]
        if evaluated and evaluated[-1].get("step") == trainer.state.global_step:
            metrics.update({k: v for k, v in evaluated[-1].items() if k.startswith("eval_")})
        else:
            metrics.update(trainer.evaluate())
    trainer.save_model(str(out))  # every process: FSDP/DeepSpeed gather the weights
    trainer.save_state()  # trainer_state.json, into TRL's output_dir (the checkpoint folder)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        state = Path(trainer.args.output_dir) / "trainer_state.json"
        if state.parent.resolve() != out.resolve():
            shutil.copyfile(state, out / state.name)
        from trainer.card import training_card

        training_card(kind, base, datasets, trainer.args.to_dict(), metrics, out.name).save(out / "README.md")
        outputs = [output_entry(out, f.name) for f in sorted(out.iterdir()) if f.is_file() and f.name != MANIFEST_NAME]
        _manifest(trainer, config, kind, datasets, base, extra, start, metrics, outputs).save(manifest_path)
        _say(trainer, f"train {kind}: model in {out}; manifest {manifest_path}")
    return TrainResult(out, metrics, manifest_path, checkpoint)
