"""The trained model's card (``huggingface_hub.ModelCard``, ``README.md`` in the model folder): the base
model and its licence (which the trained weights inherit), the datasets with their sha256, the kind of
training, the main settings and the final metrics. ``sagecorpus publish`` needs it, and the next step's
manifest (SFT on a CPT model, a merge) reads the licence from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["training_card"]

KINDS = {"cpt": "continued pretraining (causal LM on packed documents)",
         "sft": "supervised fine-tuning (chat, loss on the assistant's replies)"}
SETTINGS = ("learning_rate", "lr_scheduler_type", "num_train_epochs", "max_steps", "per_device_train_batch_size",
            "gradient_accumulation_steps", "max_length", "weight_decay", "warmup_steps", "seed", "bf16", "fp16")


def training_card(kind: str, base: dict[str, Any], datasets: list[dict], args: dict[str, Any], metrics: dict[str, Any],
                  name: str):
    """A :class:`huggingface_hub.ModelCard` for a model trained from ``base`` (a model fingerprint) on
    ``datasets`` (trainer dataset records) with TRL's resolved ``args``."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(license=base.get("license") or "unknown", library_name="transformers",
                         base_model=base.get("model_id"), tags=["sagecorpus", "trl", kind])
    rows = "\n".join(f"| {d.get('role', '')} | `{Path(d['path']).name}` | {d.get('table') or '-'} | "
                     f"{d.get('rows', '-')} | `{d['sha256'][:16]}` |" for d in datasets)
    settings = "\n".join(f"- {k}: {args[k]}" for k in SETTINGS if k in args and args[k] not in (None, -1))
    shown = "\n".join(f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in sorted(metrics.items())
                      if k in ("train_loss", "eval_loss", "eval_perplexity", "epoch"))
    text = f"""---
{data.to_yaml()}
---

# {name}

{KINDS[kind].capitalize()} of **{base.get("model_id")}** (licence {base.get("license") or "unknown"}, weights sha256
`{(base.get("sha256") or "")[:16]}`) with TRL, made by sagecorpus (`sagecorpus train {kind}`). The weights inherit the
base model's licence; the training data's licences are in its dataset card.

| role | file | table | rows | sha256 |
|---|---|---|---|---|
{rows}

## Settings

{settings}

## Final metrics

{shown or "- (none recorded)"}

`manifest.json` beside this card records the full config, the package versions, the seeds and every file's sha256.
"""
    return ModelCard(text)
