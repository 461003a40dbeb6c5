"""A run: an ordered list of stage steps with their configs, executed into one output folder.

``run_recipe`` is what every CLI verb and ``sagecorpus run recipe.yaml`` call; it writes
``manifest.json`` beside the outputs. A stage verb adds its step to the run folder's chain
(:func:`add_step`), so the manifest always covers every step run into the folder, in order. ``rebuild`` replays a manifest into another folder and says
whether the bytes came out the same.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from corpus.run.executor import ExecutorConfig, run_step, submit_slurm
from corpus.run.item_store import SEGMENT_SUFFIX, STORE_DIR
from corpus.run.manifest import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    check_inputs,
    collect_seeds,
    expand_inputs,
    now,
    output_entry,
    run_record,
)
from corpus.run.stage import Stage, absolutize, get_stage
from corpus.run.progress import note
from corpus.run.workdir import StepDirs, hash_reads, is_folder, missing_read_message, run_lock, step_identity


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str = Field(description="registered stage name, e.g. 'ingest'")
    config: dict = Field(default_factory=dict, description="the stage's config")


class Recipe(BaseModel):
    """Steps run in order into one output folder; ``executor`` says where."""

    model_config = ConfigDict(extra="forbid")

    steps: list[Step]
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read a recipe from YAML or JSON. Relative paths in it are relative to the recipe's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: not a readable recipe: {e}") from e
    recipe = Recipe.model_validate(data)
    for step in recipe.steps:
        config = get_stage(step.stage).config_class(**step.config)
        step.config = absolutize(config, path.parent.resolve()).model_dump(mode="json")
    return recipe


def build_stages(recipe: Recipe, out_dir: Path) -> list[Stage]:
    stages = []
    for step in recipe.steps:
        cls = get_stage(step.stage)
        stages.append(cls(absolutize(cls.config_class(**step.config))).bind(out_dir))
    return stages


def check_chain(stages: list[Stage], out: Path) -> None:
    """Every run-folder file a step reads is written by an earlier step or is already there."""
    written: set[str] = set()
    for stage in stages:
        for rel in stage.reads():
            if rel not in written and not ((out / rel).is_dir() if is_folder(rel) else (out / rel).is_file()):
                raise FileNotFoundError(missing_read_message(stage, rel))
        written |= set(stage.outputs())


def run_recipe(
    recipe: Recipe, out_dir: str | os.PathLike, argv: list[str] | None = None, replay_from: str | os.PathLike | None = None,
) -> Manifest | None:
    """Run every step into ``out_dir`` and write its manifest (None for Slurm: the last job writes it).

    A step is redone when its identity (stage, *what* config, the hashes of what it reads) changed
    or its outputs no longer have their recorded bytes; otherwise its finished work is reused.
    ``replay_from``: an earlier run's folder whose stored model outputs (OCR pages, generations,
    grades) stages reuse instead of calling the models again. Every step's ``validate`` runs first, so
    a bad input file fails before any work. A run that fails before any work was done (no shard
    finished, no model reply stored) leaves no folder behind; two runs into one folder at once are refused.
    """
    start = now()
    out = Path(out_dir).resolve()
    stages = build_stages(recipe, out)
    for i, stage in enumerate(stages):
        stage.replay_dir = Path(replay_from).resolve() if replay_from else None
        stage.earlier = stages[:i]
    check_chain(stages, out)
    for stage in stages:
        stage.validate()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(out):
            return _run(recipe, stages, out, start, argv)
    except BaseException:
        if created and not any((out / "_work").glob("*/parts/_stats/*.json")) and not any((out / "_work").glob("*/done.json")) \
                and not any((out / STORE_DIR).glob(f"*/*{SEGMENT_SUFFIX}")):  # stored model replies are work done too
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(recipe: Recipe, stages: list[Stage], out: Path, start: str, argv: list[str] | None) -> Manifest | None:
    step_inputs = [expand_inputs(s.input_files()) for s in stages]
    sources = sorted({p for s in stages for p in s.input_files()})

    def finish(stats: dict[str, dict], records: list[dict], inputs: list[FileEntry], hashes: dict[str, str]) -> Manifest:
        outputs = sorted({f for s in stages for o in s.outputs() for f in _files_of(o, hashes)})
        steps = [{"stage": s.name, "config": s.config_dict(), **r} for s, r in zip(stages, records)]
        manifest = Manifest(
            steps=steps, sources=sources, inputs=inputs, outputs=[output_entry(out, o, hashes.get(o)) for o in outputs],
            executor=recipe.executor.model_dump(mode="json"), seeds=collect_seeds(steps),
            models=[m for s in stages for m in s.models()], stats=stats, run=run_record(start, argv),
        )
        manifest.save(out / MANIFEST_NAME)
        return manifest

    if recipe.executor.kind == "slurm":
        def from_done(index: int, stage: Stage, reads) -> tuple[dict, dict[str, str]]:
            dirs = StepDirs(out, index, stage)  # the last job reads back what each step's jobs recorded
            return json.loads(dirs.done.read_text())["stats"], dirs.finished_outputs()

        submit_slurm(stages, step_inputs, recipe.executor, lambda: finish(*_steps(stages, step_inputs, from_done)))
        return None
    return finish(*_steps(stages, step_inputs, lambda index, stage, reads: run_step(stage, index, recipe.executor, reads)))


def _files_of(output: str, hashes: dict[str, str]) -> list[str]:
    """A file output, or the files of a folder output as its step recorded them."""
    return sorted(f for f in hashes if f.startswith(output) and not is_folder(f)) if is_folder(output) else [output]


def _steps(stages: list[Stage], step_inputs: list[list[str]], result: Callable) -> tuple:
    """Each step's reads hashed in order, then ``result(index, stage, reads) -> (stats, output hashes)``
    (run it, or read back what it recorded); returns the manifest's stats, step records, inputs and
    output hashes."""
    stats, records, inputs, hashes = {}, [], {}, {}
    for index, (stage, files) in enumerate(zip(stages, step_inputs)):
        reads = hash_reads(stage, files, hashes)
        inputs.update((e.path, e) for e in reads.inputs)
        stats[f"{index:02d}-{stage.name}"], outputs = result(index, stage, reads)
        hashes.update(outputs)
        records.append({"identity": step_identity(stage, reads), "reads": reads.run_files,
                        "input_sources": stage.input_files()})
    return stats, records, sorted(inputs.values(), key=lambda e: e.path), hashes


def add_step(out_dir: str | os.PathLike, step: Step, executor: ExecutorConfig) -> Recipe:
    """The run folder's chain of steps, from its manifest, with ``step`` in its place.

    This is how the step-by-step command line builds one rebuildable run: each verb adds its step
    to the chain and runs the chain (earlier steps whose identity did not change are reused, not
    redone). A step already in the chain is replaced; the steps after it are dropped from the chain
    and their outputs removed, since they were made from what the replaced step wrote before.
    """
    out = Path(out_dir).resolve()
    path = out / MANIFEST_NAME
    steps = [Step(stage=s["stage"], config=s["config"]) for s in Manifest.load(path).steps] if path.exists() else []
    names = [s.stage for s in steps]
    if step.stage not in names:
        return Recipe(steps=[*steps, step], executor=executor)
    i = names.index(step.stage)
    kept = [*steps[:i], step]
    dropped = steps[i + 1:]
    if dropped:
        keep = {o for s in build_stages(Recipe(steps=kept), out) for o in s.outputs()}
        for index, stage in enumerate(build_stages(Recipe(steps=dropped), out), start=i + 1):
            StepDirs(out, index, stage).reset(None, keep=keep)
        note(f"{', '.join(s.stage for s in dropped)} dropped from {path} and their outputs removed: "
             f"they were made from an earlier {step.stage}; run them again")
    return Recipe(steps=kept, executor=executor)


class ChangedInputs(RuntimeError):
    """Rebuild refused: inputs differ from the manifest's."""


def rebuild(
    manifest_path: str | os.PathLike, out_dir: str | os.PathLike, allow_changed_inputs: bool = False,
    executor: ExecutorConfig | None = None,
) -> tuple[Manifest, list[str]]:
    """Replay a run from its manifest alone into ``out_dir``.

    Returns the new manifest and one line per output whose bytes differ from the original's.
    Raises :class:`ChangedInputs` when an input changed, unless ``allow_changed_inputs``.
    """
    original = Manifest.load(manifest_path)
    changed = check_inputs(original)
    if changed and not allow_changed_inputs:
        raise ChangedInputs("inputs changed since the run (use --allow-changed-inputs to rebuild anyway):\n  " + "\n  ".join(changed))
    recipe = Recipe(
        steps=[Step(stage=s["stage"], config=s["config"]) for s in original.steps],
        executor=executor or ExecutorConfig(**{**original.executor, "kind": "local"}),
    )
    if Path(out_dir).resolve() == Path(manifest_path).resolve().parent:
        raise ValueError(f"{out_dir}: rebuild needs another folder than the original run's")
    manifest = run_recipe(recipe, out_dir, argv=["rebuild", str(manifest_path)], replay_from=Path(manifest_path).parent)
    before = {e.path: e.sha256 for e in original.outputs}
    after = {e.path: e.sha256 for e in manifest.outputs}
    diffs = [
        f"output {p}: " + ("missing from the rebuild" if p not in after else "bytes differ")
        for p in sorted(before) if after.get(p) != before[p]
    ] + [f"output {p}: not in the original run" for p in sorted(set(after) - set(before))]
    return manifest, diffs


__all__ = ["ChangedInputs", "Recipe", "Step", "add_step", "build_stages", "load_recipe", "rebuild", "run_recipe"]
