"""A document's text as its pages joined, with where each page sits in it.

Extraction writes a document as page texts joined by a blank line and records each page's
``[start, end)`` offsets (``schemas.tables.PAGE``); curation rejoins cleaned pages the same way so
the offsets stay true. Both call ``join_texts``.
"""

from __future__ import annotations

from collections.abc import Sequence


def join_texts(texts: Sequence[str], sep: str = "\n\n") -> tuple[str, list[tuple[int, int]]]:
    """Page texts joined by ``sep`` (none around empty pages), and each page's ``[start, end)`` in it."""
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    pos = 0
    for text in texts:
        if parts and text:
            parts.append(sep)
            pos += len(sep)
        parts.append(text)
        offsets.append((pos, pos + len(text)))
        pos += len(text)
    return "".join(parts), offsets
