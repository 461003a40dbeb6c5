"""Continued pretraining (CPT): TRL's ``SFTTrainer`` on the plain text of our curated corpus, packed.

    from trainer.cpt import train_cpt
    result = train_cpt("examples/cpt.yaml")            # or a CPTConfig, or a dict
    result.output_dir, result.metrics["eval_perplexity"], result.manifest

The data: the ``text`` of every DOCUMENT file in ``corpus`` (rows without text counted and skipped);
``validation_fraction`` of those documents held out (seed) for evaluation, where ``eval_perplexity =
exp(eval_loss)`` is logged at each evaluation and at the end; general text mixed into the training
part by ``general_ratio`` (characters); the training documents shuffled (seed). TRL appends the
end-of-document token (the base tokenizer's ``eos_token`` unless ``eos_token`` is set) to every
document, tokenizes, and packs into ``max_length``-token rows with ``wrapped`` or ``bfd_split``, which
keep every token (``bfd`` would truncate: refused by the config).

Command line: ``sagecorpus train cpt CONFIG [--out DIR]``; multi-GPU: ``accelerate launch
--config_file examples/accelerate/... -m trainer cpt CONFIG``.
"""

from __future__ import annotations

import os
import random
from typing import Any

from trainer.config import ConfigError, CPTConfig
from trainer.data import mix_in, read_documents, read_general_text, split_validation
from trainer.run import TrainResult, run_training, sft_trainer_class

__all__ = ["build_cpt_trainer", "cpt_trainer_class", "train_cpt"]

_CPT_TRAINER_CLASS = None


def fused_head_has_kernel(device) -> bool:
    """Whether TRL's fused LM head runs its Triton kernel on ``device`` (CUDA/XPU with triton installed), as
    TRL decides it (``trl.kernels.chunked_logprob._use_triton``)."""
    import importlib.util

    return device.type in ("cuda", "xpu") and importlib.util.find_spec("triton") is not None


def cpt_trainer_class():
    """Our SFTTrainer (:func:`trainer.run.sft_trainer_class`) whose loss, on a device where TRL's fused LM
    head has no Triton kernel (the CPU), is transformers' own causal-LM loss.

    TRL 1.16's ``SFTTrainer.compute_loss`` always calls the model with ``fused_lm_head=True``: per-token
    log-probabilities (plus entropy and top-1 for its logged metrics) computed without the full logits, and
    the logits recomputed in the backward pass. On CUDA that is one Triton kernel and saves the
    ``tokens x vocabulary`` logits (gigabytes at sequence 8192 with Llama-3's 128k vocabulary): kept there.
    Without Triton it falls back to plain torch ops that make about ten full-size float32 passes over the
    ``tokens x vocabulary`` tile plus the recomputation, which bench/train.py measured at ~20% of a CPU step
    (hidden 512, 4 layers, vocabulary 8,000). The plain loss is the same mean token NLL over the labelled
    positions (``num_items_in_batch`` honoured the same way); only TRL's logged ``entropy`` and
    ``mean_token_accuracy`` are absent on CPU.
    """
    global _CPT_TRAINER_CLASS
    if _CPT_TRAINER_CLASS is None:
        from transformers import Trainer

        class CPTTrainer(sft_trainer_class()):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                if fused_head_has_kernel(inputs["input_ids"].device):
                    return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                inputs["use_cache"] = False
                return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

        _CPT_TRAINER_CLASS = CPTTrainer
    return _CPT_TRAINER_CLASS


def resolve_eos(tokenizer, eos_token: str | None) -> str:
    """The end-of-document token: ``eos_token`` if given, else the tokenizer's; it must be one vocabulary token."""
    eos = eos_token or tokenizer.eos_token
    if not eos:
        raise ConfigError("the base tokenizer has no eos_token: set eos_token to the end-of-document token")
    if eos not in tokenizer.get_vocab():
        raise ConfigError(f"eos_token {eos!r} is not a token of the base model's vocabulary")
    return eos


def build_cpt_trainer(config: CPTConfig):
    """The SFTTrainer for ``config`` (datasets read, mixed, split and prepared) and what the manifest
    records: ``(trainer, dataset records, extra)``."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    eos = resolve_eos(tokenizer, config.eos_token)

    records, corpus = [], []
    for path in config.corpus:
        texts, record = read_documents(path, "corpus", config.run_dir)
        corpus += texts
        records.append(record)
    train, held_out = split_validation(corpus, config.validation_fraction, config.seed)
    general, mixing = [], None
    for path in config.general:
        texts, record = read_general_text(path, "general")
        general += texts
        records.append(record)
    if general:
        general, mixing = mix_in(train, general, config.general_ratio, config.seed, size=len)
        if mixing["short"]:
            print(f"train cpt: general text holds {mixing['mixed']:,.0f} characters, fewer than the "
                  f"{mixing['wanted']:,.0f} wanted ({config.general_ratio} x the corpus): all of it is used")
    train = train + general
    random.Random(config.seed).shuffle(train)

    args = config.to_sft_config({"eval_strategy": "steps"} if held_out else {},
                                packing=True, dataset_text_field="text", eos_token=eos)
    trainer = cpt_trainer_class()(
        model=config.model, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_dict({"text": train}),
        eval_dataset=Dataset.from_dict({"text": held_out}) if held_out else None,
    )
    extra = {"document_separator": eos, "document_separator_id": tokenizer.convert_tokens_to_ids(eos),
             "documents": {"train": len(train) - len(general), "general": len(general), "validation": len(held_out)},
             "mixing": mixing}
    return trainer, records, extra


def train_cpt(config: CPTConfig | dict | str | os.PathLike, **overrides: Any) -> TrainResult:
    """Train ``config`` (a :class:`CPTConfig`, a dict or a YAML path; ``overrides`` such as ``output_dir``
    win) and return the final model folder, its metrics and its manifest (see :mod:`trainer.run`)."""
    config = CPTConfig.load(config, **overrides)
    trainer, records, extra = build_cpt_trainer(config)
    return run_training(trainer, config, kind="cpt", datasets=records, extra=extra)
