"""Where inputs are and how they are opened, local or remote, and how small files are written safely.

One place for what every stage and the run framework share about files: whether a location is a URL
(any fsspec scheme but ``file://``), the fsspec options a URL needs, opening an input without ever
blocking on a FIFO, printable names for file names that are not UTF-8, URLs without their credentials,
and JSON written so that no reader sees half of it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec


def is_url(path: str) -> bool:
    """A remote location: any fsspec URL but ``file://`` (which is a local path)."""
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    """A local location as a plain path (``file:///x`` -> ``/x``)."""
    return path.removeprefix("file://")


class SourceError(Exception):
    """A location, chunk or member that could not be listed, fetched or read.

    ``location`` names it (credentials redacted), ``reason`` says what went wrong.
    """

    def __init__(self, location: str, reason: str):
        location = redact_url(location)
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


def redact_url(url: str) -> str:
    """Drop ``user:password@`` from a URL so it can be logged or recorded."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def storage_options_for(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fsspec options for ``url``: the caller's, plus ``requester_pays=True`` for ``s3://arxiv/``
    unless the caller set it."""
    opts = dict(storage_options or {})
    if url.startswith(("s3://arxiv/", "s3a://arxiv/")):
        opts.setdefault("requester_pays", True)
    return opts


def printable_name(name: str) -> str:
    """A file name or URL as valid UTF-8 text (what Parquet strings must be): bytes that are not UTF-8
    (held by Python as surrogate escapes, e.g. ``b"caf\\xe9.pdf"``) are shown as ``\\xe9``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def open_input(url: str, storage_options: dict[str, Any] | None = None):
    """Open one input file for binary reading (local path, fsspec URL or ``tar://member::<tar>``).

    A local file (or the local tar holding a member) is checked first and refused with a
    :class:`SourceError` when it is missing (a dangling link), unreadable, or not a regular file:
    opening a FIFO for reading would wait forever for a writer.
    """
    outer = url.rsplit("::", 1)[-1]
    if not is_url(outer):
        path = local_path(outer)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError as e:
            raise SourceError(url, "not found (a missing file or a dangling link)") from e
        except OSError as e:
            raise SourceError(url, f"cannot read: {type(e).__name__}: {e.strerror}") from e
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a device or socket"
            raise SourceError(url, f"is {kind}, not a regular file; not read")
    return fsspec.open(url, "rb", **storage_options_for(outer, storage_options))


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int | None = None) -> None:
    """Write JSON so that a reader never sees half a file: a per-process temp name, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=indent))
    tmp.replace(path)


def iter_records(path: str | os.PathLike, error: type[Exception] = ValueError, columns: list[str] | None = None,
                 what: str = "file"):
    """``(where, row)`` for each row of a ``.parquet`` file or each object line of a ``.jsonl`` file, in file
    order (``where``: ``"row N"`` / ``"line N"``, 1-based; blank lines skipped). A file that cannot be read,
    a line that is not JSON or not an object, or another suffix raises ``error`` naming the file and where."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:
            raise error(f"{path}: not a readable Parquet file: {e}") from e
        missing = [c for c in columns or () if c not in pf.schema_arrow.names]
        if missing:
            raise error(f"{path}: no {', '.join(f'`{c}`' for c in missing)} column (columns: {pf.schema_arrow.names})")
        n = 0
        for batch in pf.iter_batches(batch_size=1024, columns=columns):
            for row in batch.to_pylist():
                n += 1
                yield f"row {n}", row
    elif suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise error(f"{path}: line {n}: not valid JSON: {e}") from e
                if not isinstance(row, dict):
                    raise error(f"{path}: line {n}: not a JSON object")
                yield f"line {n}", row
    else:
        raise error(f"{path}: unknown {what} type {suffix!r} (use .parquet or .jsonl)")
