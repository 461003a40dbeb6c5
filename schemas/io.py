"""Write and read typed Parquet.

Writing always casts to the table's explicit schema (never inferred from the first row), stores the
table's name and version in the Parquet key-value metadata, and cuts row groups at fixed row counts,
so the same rows give the same bytes however they were batched. Reading validates the file against
the table and raises :class:`SchemaError` naming the file, the column, what was expected and what was
found.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.tables import ALL_TABLES, Table

NAME_KEY = b"sagecorpus.schema"
VERSION_KEY = b"sagecorpus.schema_version"
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3


class SchemaError(ValueError):
    """A Parquet file does not match the table it is read as."""


def _metadata(table: Table) -> dict[bytes, bytes]:
    return {NAME_KEY: table.name.encode(), VERSION_KEY: str(table.version).encode()}


def to_arrow(table: Table, data: Any) -> pa.Table:
    """Cast rows (list of dicts, pyarrow Table or RecordBatch, polars DataFrame) to the table's schema exactly."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        arrow = data
    elif hasattr(data, "to_arrow"):  # polars
        arrow = data.to_arrow()
    else:
        rows = list(data)
        missing = [
            (i, f.name) for i, r in enumerate(rows) for f in table.schema
            if not f.nullable and r.get(f.name) is None
        ]
        if missing:
            i, col = missing[0]
            raise SchemaError(f"{table}: row {i} has no value for non-nullable column {col!r}")
        extra = {k for r in rows for k in r} - set(table.columns)
        if extra:
            raise SchemaError(f"{table}: unknown column(s) {sorted(extra)}; expected {table.columns}")
        return pa.Table.from_pylist(rows, schema=table.schema)
    extra = set(arrow.column_names) - set(table.columns)
    absent = set(table.columns) - set(arrow.column_names)
    if extra or absent:
        raise SchemaError(f"{table}: columns differ: missing {sorted(absent)}, unexpected {sorted(extra)}")
    arrow = arrow.select(table.columns)
    try:
        return arrow.cast(table.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise SchemaError(f"{table}: cannot cast to schema: {e}") from e


class TableWriter:
    """Stream rows of one table into one Parquet file, in fixed-size row groups.

    Rows are buffered until ``table.row_group_size`` are held, so memory stays bounded by one row
    group and the file's bytes do not depend on how the rows were batched.
    The file appears under its final name only on ``close()`` (written to ``.tmp`` first), so a
    crash never leaves a truncated file that looks finished.
    """

    def __init__(self, table: Table, path: str | os.PathLike, row_group_size: int | None = None):
        self.table = table
        self.path = Path(path)
        self.row_group_size = row_group_size or table.row_group_size
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        schema = table.schema.with_metadata(_metadata(table))
        self._writer = pq.ParquetWriter(
            self._tmp, schema, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL,
            write_statistics=True, use_dictionary=True,
        )

    def write(self, data: Any) -> None:
        arrow = to_arrow(self.table, data)
        if arrow.num_rows == 0:
            return
        self._pending.append(arrow)
        self._pending_rows += arrow.num_rows
        self.rows += arrow.num_rows
        while self._pending_rows >= self.row_group_size:
            self._flush(self.row_group_size)

    def _flush(self, n: int) -> None:
        buf = pa.concat_tables(self._pending)
        head, rest = buf.slice(0, n), buf.slice(n)
        self._writer.write_table(head.combine_chunks(), row_group_size=n)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> int:
        if self._pending_rows:
            self._flush(self._pending_rows)
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.rows

    def abort(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_table(table: Table, data: Any, path: str | os.PathLike) -> int:
    """Write ``data`` as ``table`` to ``path``; return the number of rows."""
    with TableWriter(table, path) as w:
        w.write(data)
    return w.rows


def _describe(t: pa.DataType) -> str:
    return str(t)


def validate_schema(path: str | os.PathLike, found: pa.Schema, table: Table) -> None:
    """Raise SchemaError unless ``found`` (a file's schema) is ``table``'s."""
    meta = found.metadata or {}
    name = meta.get(NAME_KEY, b"").decode() or None
    version = meta.get(VERSION_KEY, b"").decode() or None
    if name is not None and name != table.name:
        raise SchemaError(f"{path}: holds table {name!r} v{version}, expected table {table.name!r} v{table.version}")
    if version is not None and version != str(table.version):
        raise SchemaError(f"{path}: table {table.name!r} is version {version}, expected version {table.version}")
    for f in table.schema:
        idx = found.get_field_index(f.name)
        if idx < 0:
            raise SchemaError(f"{path}: column {f.name!r} is missing; expected type {_describe(f.type)}")
        got = found.field(idx)
        if not got.type.equals(f.type):
            raise SchemaError(
                f"{path}: column {f.name!r} has type {_describe(got.type)}; expected {_describe(f.type)}"
            )
    extra = [n for n in found.names if n not in table.columns]
    if extra:
        raise SchemaError(f"{path}: unexpected column(s) {extra} for table {table.name!r} v{table.version}")


def read_table(path: str | os.PathLike, table: Table, columns: list[str] | None = None) -> pa.Table:
    """Read a whole file as a validated Arrow table."""
    pf = _open(path, table)
    return pf.read(columns=columns)


def read_polars(path: str | os.PathLike, table: Table, columns: list[str] | None = None):
    """Read a whole file as a validated polars DataFrame."""
    import polars as pl

    return pl.from_arrow(read_table(path, table, columns))


def iter_batches(
    path: str | os.PathLike, table: Table, batch_size: int = 1024, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream a validated file in record batches (memory bounded by ``batch_size`` rows)."""
    pf = _open(path, table)
    yield from pf.iter_batches(batch_size=batch_size, columns=columns)


def iter_rows(
    path: str | os.PathLike, table: Table, batch_size: int = 1024, columns: list[str] | None = None
) -> Iterator[dict]:
    for batch in iter_batches(path, table, batch_size, columns):
        yield from batch.to_pylist()


def iter_row_range(
    path: str | os.PathLike, table: Table, lo: int, hi: int, columns: list[str] | None = None
) -> Iterator[dict]:
    """Rows ``lo`` to ``hi - 1`` of a validated file, reading only the row groups that hold them."""
    pf = _open(path, table)
    start = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if start + n > lo and start < hi:
            rows = pf.read_row_group(g, columns=columns).slice(max(lo - start, 0), hi - max(lo, start))
            yield from rows.to_pylist()
        start += n
        if start >= hi:
            break


def count_rows(path: str | os.PathLike, table: Table) -> int:
    return _open(path, table).metadata.num_rows


def _open(path: str | os.PathLike, table: Table) -> pq.ParquetFile:
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise SchemaError(f"{path}: not a readable Parquet file: {e}") from e
    validate_schema(path, pf.schema_arrow, table)
    return pf


def table_of(path: str | os.PathLike) -> Table | None:
    """The table a file says it holds (from its metadata), if it is one of ours."""
    meta = pq.read_schema(path).metadata or {}
    return ALL_TABLES.get(meta.get(NAME_KEY, b"").decode())


def sha256_file(
    file: str | os.PathLike | BinaryIO,
    chunk: int = 1 << 20,
    on_block: Callable[[bytes], object] | None = None,
) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks (1 MiB), never whole in memory.

    ``file`` is a local path (opened and closed here) or an open binary file object (any fsspec
    file, a tar member...), read from its current position to its end and left open.
    ``on_block``, when given, is called with each block as it is read, in order (a caller that
    also needs the first bytes keeps them there, so the file is read once).
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            return sha256_file(f, chunk, on_block)
    h = hashlib.sha256()
    while block := file.read(chunk):
        h.update(block)
        if on_block is not None:
            on_block(block)
    return h.hexdigest()

