"""``sagecorpus merge CONFIG OUT_DIR``: argparse only here; torch is imported when the command runs."""

from __future__ import annotations

import argparse

__all__ = ["HELP", "add_merge_arguments", "cmd_merge"]

HELP = "merge models (linear, slerp, task_arithmetic, ties, dare_ties) from a mergekit-style YAML config"
EPILOG = """\
CONFIG is mergekit's YAML format: merge_method, models (each `model: FOLDER` with optional `parameters`
such as weight, density), base_model, parameters (normalize, t, lambda, rescale, int8_mask), dtype (the
compute dtype), out_dtype (the saved one), tokenizer_source (base, union or a model folder), chat_template
(a Jinja template or auto). Ours: vocab_policy (error | by_id) and seed (DARE's drops). Anything else
(slices, modules, tokenizer, an unknown key) is refused with the key named. Models are local folders of
safetensors weights; their architecture, tensors and vocabularies are checked before any work. OUT_DIR
gets the merged model in safetensors shards, its config and tokenizer, README.md (model card) and
manifest.json."""


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("config", help="merge config (YAML, mergekit's format)")
    parser.add_argument("out_dir", help="output folder for the merged model (must be new or empty)")
    parser.add_argument("--max-shard-size", default="5GB", help="largest output shard (default 5GB)")


def cmd_merge(args: argparse.Namespace) -> int:
    from trainer.merge import merge

    # a bad config or models: the error names the file and key; the CLI prints it as one line (exit 2)
    result = merge(args.config, args.out_dir, max_shard_size=args.max_shard_size, quiet=getattr(args, "quiet", False))
    print(f"model: {result.out_dir}")
    print(f"card: {result.card}")
    print(f"manifest: {result.manifest}")
    return 0
