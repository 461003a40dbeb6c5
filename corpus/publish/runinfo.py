"""What a run folder says about itself: its manifest (when written) and every finished step's counters.

Shared by the HTML report and the notebook summaries. A run folder's ``manifest.json`` is written when
a run ends; while a recipe is still running (the ``report`` step of a fresh run), the steps finished so
far are known from their work folders' ``done.json`` (:mod:`corpus.run.workdir`), which also hold the
latest counters of steps redone since the manifest was written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from corpus.run.manifest import MANIFEST_NAME, Manifest

_STEP_DIR = re.compile(r"^(\d{2,})-(.+)$")


@dataclass
class RunInfo:
    """A run folder's manifest (None before its first run ends) and its steps' counters, in run order."""

    root: Path
    manifest: Manifest | None
    stats: dict[str, dict] = field(default_factory=dict)  # "NN-stage" -> counters

    @property
    def steps(self) -> list[tuple[str, str, dict]]:
        """(key "NN-stage", stage name, counters) of every step known, in run order."""
        return [(key, key.split("-", 1)[1], counters) for key, counters in self.stats.items()]

    def step_config(self, stage: str) -> dict | None:
        """The config the manifest recorded for the last step of ``stage`` (None: not recorded)."""
        if self.manifest is None:
            return None
        configs = [s.get("config", {}) for s in self.manifest.steps if s.get("stage") == stage]
        return configs[-1] if configs else None


def load_run(run_dir: str | Path) -> RunInfo:
    """Read a run folder's manifest and finished steps; a folder with neither is refused."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder")
    path = root / MANIFEST_NAME
    manifest = Manifest.load(path) if path.is_file() else None
    stats = dict(manifest.stats) if manifest else {}
    for done in sorted((root / "_work").glob("*/done.json")):
        match = _STEP_DIR.match(done.parent.name)
        if not match:
            continue
        try:
            stats[done.parent.name] = json.loads(done.read_text())["stats"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable marker: the step is unfinished, the manifest's record (if any) stands
    if manifest is None and not stats:
        raise FileNotFoundError(f"{root}: not a run folder (no {MANIFEST_NAME} and no finished step in {root / '_work'})")
    ordered = dict(sorted(stats.items(), key=lambda kv: (int(kv[0].split("-", 1)[0]), kv[0])))
    return RunInfo(root, manifest, ordered)
