"""The one error type of LaTeX reading and conversion."""

from __future__ import annotations

from pathlib import Path


class LatexError(Exception):
    """A LaTeX source that could not be read or converted.

    ``path`` names the file (or folder), ``reason`` is a short machine-readable code a stage can put
    in a ``Decision`` row (``no_main_file``, ``unreadable``, ``source_too_large``,
    ``converter_error``, ``empty_output``, ``no_document_body``, ``macro_expansion_limit``),
    ``detail`` says more for a person.
    """

    def __init__(self, path: str | Path | None, reason: str, detail: str = "") -> None:
        self.path = str(path) if path is not None else None
        self.reason = reason
        self.detail = detail
        where = self.path or "<latex source>"
        super().__init__(f"{where}: {reason}" + (f": {detail}" if detail else ""))
