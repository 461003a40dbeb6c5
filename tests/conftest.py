"""Shared test fixtures.

Tests that read ``../shared/fixtures`` (real astronomy PDFs, LaTeX sources, metadata, benchmark
questions) run whenever that folder exists (CI has it) and skip with a reason otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
pytest_plugins = ["qa_data", "toy_stage"]  # fixtures: the Q&A stage tests' server and chunk table; the toy stages' texts
FIXTURES = Path(os.environ.get("SAGECORPUS_FIXTURES", ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The shared fixtures folder; skips the test when it is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES} (set SAGECORPUS_FIXTURES)")
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A tiny random chat model folder (``examples/tiny_lm.py``, seed 0), built once per test session."""
    sys.path.insert(0, str(ROOT / "examples"))
    from tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), seed=0)
