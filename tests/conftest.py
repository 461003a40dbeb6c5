"""Shared test fixtures.

Tests that read ``../shared/fixtures`` (real astronomy PDFs, LaTeX sources, metadata, benchmark
questions) run whenever that folder exists (CI has it) and skip with a reason otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SAGECORPUS_FIXTURES", ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The shared fixtures folder; skips the test when it is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES} (set SAGECORPUS_FIXTURES)")
    return FIXTURES
