"""``sagecorpus eval MODEL QUESTIONS... --mode logprob|generate --out DIR [--endpoint URL]``.

Mounted by ``corpus.cli`` as its ``eval`` verb. The step it runs is the recipe stage ``eval``
(:mod:`trainer.evaluate`), added to the run folder's chain of steps (manifest, reuse, ``rebuild``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["HELP", "add_eval_arguments", "cmd_eval"]

HELP = ("evaluate a model on multiple-choice benchmarks (AstroMLab-1 and Astro-QA layouts): accuracy with its "
        "95 percent Wilson interval, one EvalResult row per question")
POSITIONAL = ("model", "questions")


def _options_model():
    """The stage config's fields other than the positional ones, for ``add_model_options``."""
    from pydantic import create_model

    from trainer.evaluate import EvalConfig

    fields = {n: (f.annotation, f) for n, f in EvalConfig.model_fields.items() if n not in POSITIONAL}
    return create_model("EvalOptions", **fields)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from corpus.cli import add_executor_options, add_model_options

    parser.add_argument("model", help="a local model folder, or with --endpoint the model's name on the server")
    parser.add_argument("questions", nargs="+", help="question files (JSON, JSONL, CSV, Parquet: question, A-D, "
                        "optional answer); each is one benchmark")
    parser.add_argument("--out", required=True, help="the run folder: the eval step is added to its chain of steps "
                        "(manifest.json); results in eval/results.parquet, accuracy in eval/summary.json")
    add_model_options(parser, _options_model())
    add_executor_options(parser)


def cmd_eval(args: argparse.Namespace) -> int:
    from corpus.cli import executor_from, model_values
    from trainer.evaluate import RESULTS, SUMMARY, evaluate, summary_lines

    values = model_values(args, _options_model())
    summary = evaluate(args.model, args.questions, args.out, executor=executor_from(args), argv=sys.argv[1:], **values)
    for line in summary_lines(summary):
        print(line)
    if not args.quiet:
        out = Path(args.out)
        print(f"results: {out / RESULTS}\nsummary: {out / SUMMARY}\nmanifest: {out / 'manifest.json'}")
    return 0
