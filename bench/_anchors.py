"""The pymupdf4llm anchor, run so that stdout stays for the figures' JSON lines."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def pymupdf4llm_markdown(path: str | Path) -> str | None:
    """``pymupdf4llm.to_markdown`` of a PDF, or None (with a line on stderr) when it is not installed.

    It prints parser messages on stdout, some from native code, so file descriptor 1 points at
    stderr while it runs.
    """
    try:
        import pymupdf4llm
    except ImportError:
        print("pymupdf4llm is not installed: its anchor figures are null (pip install pymupdf4llm)", file=sys.stderr)
        return None
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return pymupdf4llm.to_markdown(str(path), show_progress=False)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
