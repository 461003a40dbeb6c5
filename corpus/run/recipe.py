"""A run: an ordered list of stage steps with their configs, executed into one output folder.

``run_recipe`` is what every CLI verb and ``sagecorpus run recipe.yaml`` call; it writes
``manifest.json`` beside the outputs. ``rebuild`` replays a manifest into another folder and says
whether the bytes came out the same.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from corpus.run.executor import ExecutorConfig, run_step, submit_slurm
from corpus.run.manifest import (
    MANIFEST_NAME,
    Manifest,
    collect_seeds,
    expand_inputs,
    input_entry,
    now,
    output_entry,
    run_record,
)
from corpus.run.stage import Stage, absolutize, get_stage


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


def run_recipe(
    recipe: Recipe, out_dir: str | os.PathLike, argv: list[str] | None = None, replay_from: str | os.PathLike | None = None,
) -> Manifest | None:
    """Run every step into ``out_dir`` and write its manifest (None for Slurm: the last job writes it).

    ``replay_from``: an earlier run's folder whose stored model outputs (OCR pages, generations,
    grades) stages reuse instead of calling the models again.
    """
    start = now()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stages = build_stages(recipe, out)
    for stage in stages:
        stage.replay_dir = Path(replay_from).resolve() if replay_from else None
    steps = [{"stage": s.name, "config": s.config_dict()} for s in stages]
    inputs = [input_entry(p) for p in expand_inputs(sorted({f for s in stages for f in s.input_files()}))]

    def finish(stats: dict[str, dict]) -> Manifest:
        outputs = sorted({o for s in stages for o in s.outputs()})
        manifest = Manifest(
            steps=steps, inputs=inputs, outputs=[output_entry(out, o) for o in outputs],
            executor=recipe.executor.model_dump(mode="json"), seeds=collect_seeds(steps),
            models=[m for s in stages for m in s.models()], stats=stats, run=run_record(start, argv),
        )
        manifest.save(out / MANIFEST_NAME)
        return manifest

    if recipe.executor.kind == "slurm":
        submit_slurm(stages, recipe.executor, lambda: finish(_stats_from_done(out, stages)))
        return None
    stats = {}
    for index, stage in enumerate(stages):
        stats[f"{index:02d}-{stage.name}"] = run_step(stage, index, recipe.executor)
    return finish(stats)


def _stats_from_done(out: Path, stages: list[Stage]) -> dict[str, dict]:
    from corpus.run.executor import StepDirs

    return {
        f"{i:02d}-{s.name}": json.loads(StepDirs(out, i, s).done.read_text())["stats"]
        for i, s in enumerate(stages)
    }


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
    changed = []
    for e in original.inputs:
        try:
            now_entry = input_entry(e.path)
        except OSError as err:
            changed.append(f"input {e.path}: unreadable ({err})")
            continue
        if now_entry.sha256 != e.sha256:
            changed.append(f"input {e.path}: sha256 differs from the manifest's")
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


__all__ = ["ChangedInputs", "Recipe", "Step", "build_stages", "load_recipe", "rebuild", "run_recipe"]
