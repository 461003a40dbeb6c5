"""Progress bars with rates for every long step (``tqdm.auto``: a widget in notebooks, text in a shell)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "item", disable: bool = False):
    """A progress bar showing count, rate and time left; ``disable`` (``--quiet``) turns it off."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, leave=False)


def note(message: str) -> None:
    """A line for the user on stderr, on its own line even while progress bars are drawn."""
    tqdm.write(f"sagecorpus: {message}", file=sys.stderr)
