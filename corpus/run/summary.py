"""What a run did, one line per step (``sagecorpus run`` prints it at the end, the report shows it): each
stage's :meth:`~corpus.run.stage.Stage.summary` of its counters."""

from __future__ import annotations

from corpus.run.manifest import Manifest
from corpus.run.stage import get_stage

__all__ = ["run_summary", "step_summary"]


def step_summary(stage: str, config: dict | None, stats: dict) -> str:
    """The summary line of one step of ``stage`` with its recorded ``config`` (None: not recorded) and counters."""
    cls = get_stage(stage)
    step = cls(cls.config_class.model_construct(**(config or {})))  # as recorded: nothing re-validated or read
    return step.summary(stats)


def run_summary(manifest: Manifest) -> list[str]:
    """``NN-stage: summary`` for every step of the manifest, in order."""
    lines = []
    for index, step in enumerate(manifest.steps):
        key = f"{index:02d}-{step['stage']}"
        lines.append(f"{key}: {step_summary(step['stage'], step['config'], manifest.stats.get(key, {}))}")
    return lines
