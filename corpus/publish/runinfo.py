"""What a run folder says about itself: its steps (stage, config, counters), models and outputs.

Shared by the HTML report and the notebook summaries. Two sources, one shape:

- :func:`load_run`: a finished run, from its ``manifest.json`` (a folder without one, from the work
  folders' ``done.json`` of the steps finished so far: counters only);
- :func:`from_steps`: inside a run, for the ``report`` step, whose manifest is not written yet: the
  steps before it (``Stage.earlier``) give their configs and models, and their work folders'
  ``done.json`` (:mod:`corpus.run.workdir`) their counters and outputs. Nothing here depends on the
  run folder's location or the time, so the same run gives the same report bytes (``rebuild`` checks).

Configs are passed through :func:`corpus.run.secrets.redact` before anything shows them.
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from corpus.run.manifest import MANIFEST_NAME, Manifest, package_versions
from corpus.run.stage import OneTaskStage
from corpus.run.secrets import redact
from schemas import count_rows, table_of

_STEP_DIR = re.compile(r"^(\d{2,})-(.+)$")


@dataclass
class StepInfo:
    key: str  # "NN-stage": the step's place in the run and its stage
    stage: str
    config: dict | None  # None: not recorded (a run folder without manifest)
    stats: dict


@dataclass
class OutputInfo:
    path: str  # relative to the run folder
    table: str | None  # "document v1", or None for a file that is not one of our tables
    rows: int | None
    sha256: str


@dataclass
class RunInfo:
    """A run folder's steps in run order, the models they called, their outputs, and how it ran."""

    root: Path
    steps: list[StepInfo] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)
    outputs: list[OutputInfo] | None = None  # None: not recorded
    record: dict = field(default_factory=dict)  # start, end, host, argv (a finished run's manifest only)
    packages: dict[str, str] = field(default_factory=dict)
    python: str = ""

    def step_config(self, stage: str) -> dict | None:
        """The config of the last step of ``stage`` (None: no such step, or not recorded)."""
        configs = [s.config for s in self.steps if s.stage == stage]
        return configs[-1] if configs else None


def load_run(run_dir: str | Path) -> RunInfo:
    """A run folder as its manifest records it; without a manifest, the steps finished so far (counters only)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder")
    path = root / MANIFEST_NAME
    if path.is_file():
        m = Manifest.load(path)
        keys = [f"{i:02d}-{s['stage']}" for i, s in enumerate(m.steps)]  # the keys of the manifest's stats
        steps = [StepInfo(key, s["stage"], redact(s.get("config", {})), m.stats.get(key, {})) for key, s in zip(keys, m.steps)]
        outputs = [OutputInfo(e.path, f"{e.table} v{e.version}" if e.table else None, e.rows, e.sha256) for e in m.outputs]
        return RunInfo(root, steps, list(m.models), outputs, dict(m.run), dict(m.packages), m.python)
    steps = []
    for done in sorted((root / "_work").glob("*/done.json"), key=lambda p: p.parent.name):
        match = _STEP_DIR.match(done.parent.name)
        stats = _done(done)
        if match and stats is not None:
            steps.append(StepInfo(done.parent.name, match.group(2), None, stats["stats"]))
    if not steps:
        raise FileNotFoundError(f"{root}: not a run folder (no {MANIFEST_NAME} and no finished step in {root / '_work'})")
    return RunInfo(root, steps)


def from_steps(root: Path, earlier: list) -> RunInfo:
    """The run so far, for a step of it: ``earlier`` are the stages before it (``Stage.earlier``), in order."""
    steps, outputs = [], {}
    for index, stage in enumerate(earlier):
        key = f"{index:02d}-{stage.name}"
        done = _done(root / "_work" / key / "done.json") or {}
        steps.append(StepInfo(key, stage.name, redact(stage.config_dict()), done.get("stats", {})))
        outputs.update(done.get("outputs", {}))
    return RunInfo(
        root, steps, [m for s in earlier for m in redact(s.models())],
        [_output(root, rel, sha) for rel, sha in sorted(outputs.items())], {}, package_versions(), platform.python_version(),
    )


def _done(path: Path) -> dict | None:
    """A step's done record; None when it is absent or unreadable (the step is not finished)."""
    try:
        done = json.loads(path.read_text())
        return done if isinstance(done.get("stats"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def _output(root: Path, rel: str, sha: str) -> OutputInfo:
    path = root / rel
    table = table_of(path) if path.suffix == ".parquet" and path.is_file() else None
    if table is None:
        return OutputInfo(rel, None, None, sha)
    return OutputInfo(rel, f"{table.name} v{table.version}", count_rows(path, table), sha)


class RunDescription(OneTaskStage):
    """A step that describes the steps before it in its run (the card, the report): it reads their
    ``done.json`` and configs (:func:`from_steps`), so its identity covers their *what* configs too: a
    changed threshold upstream redoes it even when no table it reads changed."""

    def what_config(self) -> dict:
        return {**super().what_config(), "earlier": [{"stage": s.name, "config": s.what_config()} for s in self.earlier]}
