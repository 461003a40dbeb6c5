"""The README demo's recipe (examples/demo.yaml) and the merge config it names, copied beside a test's
own samples (``make_samples``), for the tests that run it."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DATA_STEPS = ("ingest", "extract", "clean", "dedup", "filter", "decontaminate", "qa_chunk", "qa_generate", "qa_grade",
              "qa_select")
"""The demo's steps that make data (before the models are trained, merged and evaluated)."""


def write_demo_recipe(base: Path, name: str = "recipe.yaml") -> Path:
    """``base/<name>`` and ``base/merge.yaml``, reading ``base/samples`` instead of ``examples/../samples``."""
    (base / "merge.yaml").write_text((EXAMPLES / "merge.yaml").read_text().replace("../samples", "samples"))
    (base / name).write_text((EXAMPLES / "demo.yaml").read_text().replace("../samples", "samples"))
    return base / name
