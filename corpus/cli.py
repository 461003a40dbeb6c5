"""The ``sagecorpus`` command line: the same stages as the Python API, one verb each.

Stage verbs are generated from the registered stages (``corpus.run.stage.register_stage``; any package
can add stages through the ``sagecorpus.stages`` entry-point group) and their typed configs: every
config field is an option with its description as help, so Python, YAML recipes and the command line
share one definition. A stage verb adds its step to the run folder's chain and runs it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from corpus.run.executor import ExecutorConfig
from corpus.run.recipe import ChangedInputs, Step, add_step, load_recipe, rebuild, run_recipe
from corpus.run.secrets import install_log_redaction
from corpus.run.stage import VERB_GROUPS, Stage, absolutize, all_stages

# verb -> (help, add_arguments, handler) for verbs that are not one stage (e.g. `text`).
EXTRA_VERBS: dict[str, tuple[str, Callable, Callable]] = {}


def parse_date(value: str) -> datetime.date:
    """A command-line date: YYYY-MM-DD."""
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date: use YYYY-MM-DD, e.g. 2007-04-01") from None


def _field_type(annotation):
    """(python type, choices, is_list) for a config field's annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _field_type(args[0])
    if origin is typing.Literal:
        return type(args[0]), list(typing.get_args(annotation)), False
    if origin in (list, tuple):
        inner, _, _ = _field_type(args[0]) if args else (str, None, False)
        return inner, None, True
    if origin is dict or annotation is dict:
        return json.loads, None, False
    if annotation in (int, float, str, bool):
        return annotation, None, False
    if annotation is typing.Any:
        return str, None, False
    if annotation is datetime.date:
        return parse_date, None, False
    return None, None, False  # nested configs (dataclasses, models): set them with --config


def add_model_options(parser: argparse.ArgumentParser, model: type[BaseModel], prefix: str = "") -> None:
    """One ``--option`` per field of a pydantic model, with the field's description as help."""
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flag = "--" + (prefix + extra.get("flag", name)).replace("_", "-")
        typ, choices, is_list = _field_type(field.annotation)
        if typ is None:
            continue
        default = "required" if field.is_required() else f"default: {field.get_default(call_default_factory=True)!r}"
        help_text = f"{field.description or ''} ({default})"
        dest = prefix + name
        if typ is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(  # a list option takes several values, or is repeated (--endpoint A --endpoint B)
                flag, dest=dest, type=typ, choices=choices, nargs="+" if is_list else None, default=None,
                action="extend" if is_list else "store",
                help=help_text, metavar=extra.get("flag", name).upper() if choices is None else None,
            )


def model_values(args: argparse.Namespace, model: type[BaseModel], prefix: str = "") -> dict:
    return {n: getattr(args, prefix + n) for n in model.model_fields if getattr(args, prefix + n, None) is not None}


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where it runs")
    for name in ("kind", "workers", "tasks", "cpus_per_task", "mem_per_cpu_gb", "partition", "time", "env_command"):
        field = ExecutorConfig.model_fields[name]
        typ, choices, _ = _field_type(field.annotation)
        flag = "--executor" if name == "kind" else "--" + name.replace("_", "-")
        group.add_argument(flag, dest=f"exec_{name}", type=typ, choices=choices, default=None,
                           help=f"{field.description} (default: {field.default!r})")


def executor_from(args: argparse.Namespace, base: dict | None = None) -> ExecutorConfig:
    values = dict(base or {})
    values.update({n: getattr(args, f"exec_{n}") for n in ExecutorConfig.model_fields
                   if getattr(args, f"exec_{n}", None) is not None})
    values["quiet"] = args.quiet
    return ExecutorConfig(**values)


def common_options() -> argparse.ArgumentParser:
    """Options every verb takes, before or after the verb (``sagecorpus ingest ... --quiet``)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars; warnings and errors only")
    p.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help="show the full traceback on errors")
    return p


def _stage_parser(sub, verb: str, stage_cls: type[Stage]) -> None:
    p = sub.add_parser(verb, help=stage_cls.description, description=stage_cls.description, parents=[common_options()])
    p.add_argument("--out", required=True, help="the run folder: this step is added to its chain of steps (manifest.json)")
    p.add_argument("--config", help="YAML file with the stage's config, nested options included (options given here override it)")
    add_model_options(p, stage_cls.config_class)
    add_executor_options(p)
    p.set_defaults(handler=lambda a, cls=stage_cls: _run_stage_verb(a, cls))


def _run_stage_verb(args: argparse.Namespace, stage_cls: type[Stage]) -> int:
    import yaml

    values = {}
    if args.config:
        values.update(yaml.safe_load(Path(args.config).read_text()) or {})
    values.update(model_values(args, stage_cls.config_class))
    config = absolutize(stage_cls.config_class(**values))
    step = Step(stage=stage_cls.name, config=config.model_dump(mode="json"))
    recipe = add_step(args.out, step, executor_from(args))
    return _report(run_recipe(recipe, args.out, argv=sys.argv[1:]), args)


def _report(manifest, args) -> int:
    if manifest is None:
        print("submitted to slurm; the manifest is written by the last job", file=sys.stderr)
        return 0
    if not args.quiet:
        from corpus.run.summary import run_summary

        folders: dict[str, int] = {}
        for e in manifest.outputs:
            if e.path.startswith("models/"):  # a model folder: one line, its files are in the manifest
                folder = "/".join(e.path.split("/")[:2]) + "/"
                folders[folder] = folders.get(folder, 0) + 1
                continue
            print(f"{e.path}\t{e.rows if e.rows is not None else '-'} rows\tsha256 {e.sha256[:16]}")
        for folder, n in folders.items():
            print(f"{folder}\t{n} files")
        print("steps:")
        for line in run_summary(manifest):
            print(f"  {line}")
        print(f"manifest: {Path(args.out) / 'manifest.json'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    recipe.executor = executor_from(args, recipe.executor.model_dump())
    return _report(run_recipe(recipe, args.out, argv=sys.argv[1:]), args)


def cmd_rebuild(args: argparse.Namespace) -> int:
    from corpus.run.manifest import Manifest

    original = Manifest.load(args.manifest)
    executor = executor_from(args, {**original.executor, "kind": "local"})
    try:
        manifest, diffs = rebuild(args.manifest, args.out, args.allow_changed_inputs, executor)
    except ChangedInputs as e:
        print(f"sagecorpus rebuild: refused: {e}", file=sys.stderr)
        return 1
    for line in diffs:
        print(line, file=sys.stderr)
    if diffs:
        print(f"sagecorpus rebuild: {len(diffs)} output(s) differ from {args.manifest}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"rebuilt {len(manifest.outputs)} output(s) into {args.out}: identical bytes")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from corpus.run.manifest import verify

    problems = verify(args.manifest, args.dir)
    for line in problems:
        print(line)
    if problems:
        print(f"sagecorpus verify: {len(problems)} difference(s)", file=sys.stderr)
        return 1
    if not args.quiet:
        print("verify: every input and output matches the manifest")
    return 0


def cmd_text(args: argparse.Namespace) -> int:
    """Print one paper's extracted text to stdout and its provenance to stderr."""
    from corpus.extract.document import LATEX_KINDS, ExtractOptions, extract_paper
    from corpus.archives import HEAD_BYTES, sniff_source_kind

    path = Path(args.path)
    if not path.exists():
        print(f"sagecorpus text: {path}: no such file or folder", file=sys.stderr)
        return 2
    if path.is_dir():
        kind = "folder"
    else:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
        kind = sniff_source_kind(head)
    options = ExtractOptions(tex_file_folder=True)  # a .tex file's folder is its source folder
    if kind == "pdf":
        doc = extract_paper(pdf=str(path), options=options)
    elif kind in LATEX_KINDS:
        doc = extract_paper(source=str(path), source_kind=kind, options=options)
    else:
        print(f"sagecorpus text: {path}: refused: it is {kind}, not a PDF or a LaTeX source", file=sys.stderr)
        return 2
    if doc.failed:
        print(f"sagecorpus text: {path}: no text: {doc.reason}" + (f" ({doc.notes[-1]})" if doc.notes else ""), file=sys.stderr)
        return 1
    sys.stdout.write(doc.text.rstrip("\n") + "\n")
    print(f"# {path}: {doc.extractor} ({doc.reason}), {len(doc.text)} characters", file=sys.stderr)
    routed = {route.page: route.reason for route in doc.routes if route.use_ocr}  # pages routed to Nougat
    for page in doc.pages:
        flags = ",".join(page["flags"]) or "-"
        ocr = f"  NEEDS OCR: {routed[page['page']]}" if page["page"] in routed else ""
        print(f"#   page {page['page']:>3}: {page['extractor']}, {page['chars']} chars, garbled {page['garbled']:.2f}, flags {flags}{ocr}", file=sys.stderr)
    if doc.latex_files:
        print(f"#   latex files: {', '.join(doc.latex_files)}", file=sys.stderr)
    for note in doc.notes:
        print(f"#   note: {note}", file=sys.stderr)
    return 0


def _text_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="a PDF, a .tex file, a source bundle (.tar/.gz) or a folder of sources")


EXTRA_VERBS["text"] = (
    "print one paper's extracted text (provenance per page on stderr); the first check of extraction",
    _text_args, cmd_text,
)

def cmd_report(args: argparse.Namespace) -> int:
    """Add the `report` step to the run in RUN_DIR and run it: RUN_DIR/report.html, listed in the manifest."""
    from corpus.run.manifest import MANIFEST_NAME

    if not (Path(args.run_dir) / MANIFEST_NAME).is_file():
        print(f"sagecorpus report: {args.run_dir}: no {MANIFEST_NAME}: not a run folder (run a recipe or a step into it first)",
              file=sys.stderr)
        return 2
    recipe = add_step(args.run_dir, Step(stage="report", config={}), executor_from(args))
    run_recipe(recipe, args.run_dir, argv=sys.argv[1:])
    if not args.quiet:
        print(Path(args.run_dir) / "report.html")
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (with its manifest.json)")
    add_executor_options(p)


EXTRA_VERBS["report"] = (
    "write RUN_DIR/report.html: a self-contained HTML report of the run's plots and tables (adds the report step to its run)",
    _report_args, cmd_report,
)

# The command line is the one place that mounts every package: `train cpt|sft` comes from trainer.cli
# (argparse only; torch, transformers and TRL are imported when a training command runs).
from trainer.cli import HELP as _TRAIN_HELP, add_train_arguments, cmd_train  # noqa: E402

EXTRA_VERBS["train"] = (_TRAIN_HELP, lambda p: add_train_arguments(p, [common_options()]), cmd_train)

from trainer.merge.cli import HELP as _MERGE_HELP, add_merge_arguments, cmd_merge  # noqa: E402

EXTRA_VERBS["merge"] = (_MERGE_HELP, add_merge_arguments, cmd_merge)

from trainer.eval_cli import HELP as _EVAL_HELP, add_eval_arguments, cmd_eval  # noqa: E402

EXTRA_VERBS["eval"] = (_EVAL_HELP, add_eval_arguments, cmd_eval)

# `card` and `publish` come from corpus.publish.cli (huggingface_hub is imported when they run)
from corpus.publish.cli import (  # noqa: E402
    CARD_HELP, PUBLISH_HELP, add_card_arguments, add_publish_arguments, cmd_card, cmd_publish,
)

EXTRA_VERBS["card"] = (CARD_HELP, add_card_arguments, cmd_card)
EXTRA_VERBS["publish"] = (PUBLISH_HELP, add_publish_arguments, cmd_publish)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagecorpus", description="Build a specialist corpus (and model) from a field's preprints.",
        parents=[common_options()],
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    groups: dict[str, argparse._SubParsersAction] = {"": sub}
    for name, stage_cls in all_stages().items():  # in the order they registered: the flow's
        if stage_cls.recipe_only:  # its command has a form of its own (an EXTRA_VERBS entry)
            continue
        *path, leaf = (stage_cls.verb or name).split()
        for depth in range(len(path)):
            words = " ".join(path[: depth + 1])
            if words not in groups:
                parent = groups[" ".join(path[:depth])]
                help_text = VERB_GROUPS.get(words)
                group = parent.add_parser(path[depth], help=help_text, description=help_text)
                groups[words] = group.add_subparsers(dest=f"verb_{depth + 1}", required=True, metavar="STEP")
        _stage_parser(groups[" ".join(path)], leaf, stage_cls)
    for verb, (help_text, add_args, handler) in EXTRA_VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text, parents=[common_options()])
        add_args(p)
        p.set_defaults(handler=handler)

    help_text = "run a whole recipe file (YAML): its steps in order, into one run folder"
    p = sub.add_parser("run", help=help_text, parents=[common_options()], description=(
        help_text + ". Steps whose config and inputs did not change since an earlier run into the same folder are "
        "reused; the rest are redone. Writes manifest.json beside the outputs."))
    p.add_argument("recipe", help="recipe file (YAML or JSON) with `steps` and optional `executor`")
    p.add_argument("--out", required=True, help="output folder")
    add_executor_options(p)
    p.set_defaults(handler=cmd_run)

    help_text = "replay a run from its manifest alone into another folder and check the bytes match"
    p = sub.add_parser("rebuild", help=help_text, parents=[common_options()], description=(
        help_text + ". Refuses when an input changed (or a folder gained a file) unless --allow-changed-inputs; "
        "stored model outputs (OCR pages, generations, grades) are replayed, not recomputed. Exit 1 names each "
        "output that differs."))
    p.add_argument("manifest", help="manifest.json of the run")
    p.add_argument("--out", required=True, help="folder to rebuild into (not the original's)")
    p.add_argument("--allow-changed-inputs", action="store_true", help="rebuild even if inputs changed")
    add_executor_options(p)
    p.set_defaults(handler=cmd_rebuild)

    help_text = "recompute every hash of a run; name every input or output that differs"
    p = sub.add_parser("verify", help=help_text, parents=[common_options()], description=(
        help_text + ", every file that vanished, and every new file in an input folder. Exit 0: all match."))
    p.add_argument("manifest", help="manifest.json of the run")
    p.add_argument("dir", nargs="?", help="folder holding the outputs (default: the manifest's folder)")
    p.set_defaults(handler=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    install_log_redaction()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.quiet = getattr(args, "quiet", False)
    args.traceback = getattr(args, "traceback", False)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("sagecorpus: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user; --traceback for the rest
        if args.traceback:
            raise
        from tqdm import tqdm

        from corpus.run.secrets import describe_error  # never echo an input value (a secret, maybe)

        tqdm.write(f"sagecorpus {args.verb}: error: {describe_error(e)}", file=sys.stderr)  # its own line, not after a progress bar
        return 2


if __name__ == "__main__":
    sys.exit(main())
