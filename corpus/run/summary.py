"""What a run did, one line per step (``sagecorpus run`` prints it at the end): each stage's
:meth:`~corpus.run.stage.Stage.summary` of its counters in the manifest."""

from __future__ import annotations

from corpus.run.manifest import Manifest
from corpus.run.stage import get_stage

__all__ = ["run_summary"]


def run_summary(manifest: Manifest) -> list[str]:
    """``NN-stage: summary`` for every step of the manifest, in order."""
    lines = []
    for index, step in enumerate(manifest.steps):
        key = f"{index:02d}-{step['stage']}"
        cls = get_stage(step["stage"])
        stage = cls(cls.config_class.model_construct(**step["config"]))  # as recorded: nothing re-validated or read
        lines.append(f"{key}: {stage.summary(manifest.stats.get(key, {}))}")
    return lines
