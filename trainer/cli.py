"""``sagecorpus train cpt|sft CONFIG [--out DIR]`` and ``python -m trainer cpt|sft CONFIG [--out DIR]``.

Importing this module is cheap (argparse only): ``corpus.cli`` mounts it as its ``train`` verb, and the
trainers (torch, transformers, TRL) are imported only when a command runs. ``python -m trainer`` is the
form ``accelerate launch -m trainer cpt CONFIG`` starts once per GPU.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

__all__ = ["add_train_arguments", "cmd_train", "main"]

TRAINERS = {
    "cpt": ("trainer.cpt", "train_cpt", "continued pretraining on a corpus's text (packed, end-of-document "
                                        "token between papers, perplexity on a held-out split)"),
    "sft": ("trainer.sft", "train_sft", "supervised fine-tuning on SFT examples (chat template, loss on the "
                                        "assistant's turns; LoRA optional)"),
}
CONFIGS = {"cpt": ("trainer.config", "CPTConfig"), "sft": ("trainer.sft", "SFTTrainConfig")}
"""Each trainer's config class (importing them loads pydantic models only, no torch)."""
HELP = "train a model with TRL: continued pretraining (cpt) or supervised fine-tuning (sft)"


def _epilog(kind: str) -> str:
    lines = [textwrap.fill(
        "The CONFIG file is a YAML mapping. Besides the fields below, any field of TRL's SFTConfig / "
        "transformers' TrainingArguments (learning_rate, gradient_accumulation_steps, save_steps, ...) "
        "passes through unchanged.", 100)]
    config_class = getattr(importlib.import_module(CONFIGS[kind][0]), CONFIGS[kind][1])  # pydantic only: cheap
    lines.append(textwrap.fill("Reference defaults for TRL fields (given ones win): " + ", ".join(
        f"{k} {v!r}" for k, v in config_class.REFERENCE.items()) + ".", 100))
    lines.append("")
    for name, field in config_class.model_fields.items():
        default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        lines.append(textwrap.fill(f"{name} ({default}): {field.description}", 100,
                                   initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


def add_train_arguments(parser: argparse.ArgumentParser, parents: list[argparse.ArgumentParser] | None = None) -> None:
    """The ``cpt`` and ``sft`` sub-commands, each ``CONFIG [--out DIR]``."""
    sub = parser.add_subparsers(dest="train_kind", required=True, metavar="KIND")
    for kind, (_, _, help_text) in TRAINERS.items():
        p = sub.add_parser(kind, help=help_text, description=help_text, epilog=_epilog(kind),
                           formatter_class=argparse.RawDescriptionHelpFormatter, parents=parents or [])
        p.add_argument("config", help="the trainer's config (YAML)")
        p.add_argument("--out", help="output folder: overrides the config's output_dir")


def cmd_train(args: argparse.Namespace) -> int:
    """Run the trainer ``args.train_kind`` on ``args.config``; print the model folder, metrics and manifest."""
    module, function, _ = TRAINERS[args.train_kind]
    train = getattr(importlib.import_module(module), function)
    overrides = {"output_dir": args.out} if args.out else {}
    if getattr(args, "quiet", False):
        from trainer.run import be_quiet

        be_quiet()
    result = train(args.config, **overrides)
    if int(os.environ.get("RANK", "0")) == 0 and not getattr(args, "quiet", False):
        shown = {k: v for k, v in result.metrics.items() if k in ("train_loss", "eval_loss", "eval_perplexity")}
        print(f"model: {result.output_dir}")
        print("metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
        print(f"manifest: {result.manifest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer cpt|sft CONFIG [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m trainer", description=HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars; warnings and errors only")
    add_train_arguments(parser)
    return cmd_train(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
