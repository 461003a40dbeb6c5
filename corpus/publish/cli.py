"""``sagecorpus card`` and ``sagecorpus publish``: argparse only; the work is imported when a command runs."""

from __future__ import annotations

import argparse
import sys

CARD_HELP = "write a run folder's dataset card (README.md with the Hub's metadata) from its tables and manifest"
PUBLISH_HELP = "upload a run folder (its card, manifest and tables) or a model folder (with its card) to the Hugging Face Hub"


def add_card_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (manifest.json, corpus.parquet, qa/...)")
    p.add_argument("--pretty-name", help="the dataset's name on the Hub (default: the folder's name)")
    p.add_argument("--description", help="the card's first paragraph (default: what the run built)")
    p.add_argument("--tag", dest="tags", action="append", default=[], help="a Hub tag (repeat for more)")
    p.add_argument("--language", dest="languages", action="append", default=None,
                   help="ISO 639-1 language code (repeat for more; default: the filter step's languages, else en)")
    p.add_argument("--table", dest="tables", action="append", default=None, metavar="NAME=FILE",
                   help="a table to publish as config NAME: a run file or glob, e.g. documents=documents.parquet "
                        "(repeat; default: corpus, papers, the Q&A tables, eval results and the decisions)")


def cmd_card(args: argparse.Namespace) -> int:
    """Add the ``card`` step to the run folder's chain and run it (earlier steps are reused), so the
    card is in the manifest and ``rebuild`` writes it again."""
    from pathlib import Path

    from corpus.run.executor import ExecutorConfig
    from corpus.run.manifest import Manifest
    from corpus.run.recipe import Step, add_step, run_recipe

    run = Path(args.run_dir)
    if not (run / "manifest.json").is_file():
        print(f"sagecorpus card: {run}: no manifest.json: not a run folder (run a recipe or a stage verb into it first)",
              file=sys.stderr)
        return 2
    tables = None
    if args.tables:
        bad = [t for t in args.tables if "=" not in t]
        if bad:
            print(f"sagecorpus card: --table {bad[0]!r}: use NAME=FILE, e.g. documents=documents.parquet", file=sys.stderr)
            return 2
        tables = dict(t.split("=", 1) for t in args.tables)
    config = {"pretty_name": args.pretty_name, "description": args.description, "tags": args.tags,
              "language": args.languages, "tables": tables}
    executor = ExecutorConfig(**{**Manifest.load(run / "manifest.json").executor, "kind": "local", "quiet": args.quiet})
    recipe = add_step(run, Step(stage="card", config=config), executor)
    run_recipe(recipe, run, argv=sys.argv[1:])
    if not args.quiet:
        print(f"dataset card: {run / 'README.md'}")
    return 0


def add_publish_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="a run folder with its card (sagecorpus card DIR), or a model folder with its README.md")
    p.add_argument("repo_id", metavar="REPO_ID", help="the Hub repository, OWNER/NAME (created when missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", action="store_true", help="list exactly the files that would be uploaded and where; send nothing")
    p.add_argument("--licenses", metavar="IDS", help=(
        "licence ids the dataset's papers may have, comma-separated (default: the redistributable ones: CC licences, "
        "CC0, public domain); arxiv-nonexclusive, assumed-1991-2003 and unknown must be named to be allowed"))
    p.add_argument("--force", action="store_true", help="publish even papers under licences not allowed")


def cmd_publish(args: argparse.Namespace) -> int:
    from corpus.publish.hub import LicenseRefused, publish
    from corpus.publish.licenses import parse_ids

    allowed = parse_ids(args.licenses) if args.licenses else None
    try:
        plan = publish(args.dir, args.repo_id, private=args.private, dry_run=True, licenses=allowed, force=args.force)
    except LicenseRefused as e:
        print(f"sagecorpus publish: {e}", file=sys.stderr)
        return 1
    print(("dry run: would upload " if args.dry_run else "uploading ") + plan.describe())
    if args.dry_run:
        return 0
    plan = publish(args.dir, args.repo_id, private=args.private, licenses=allowed, force=args.force)
    print(f"published: {plan.url}")
    return 0


__all__ = ["CARD_HELP", "PUBLISH_HELP", "add_card_arguments", "add_publish_arguments", "cmd_card", "cmd_publish"]
