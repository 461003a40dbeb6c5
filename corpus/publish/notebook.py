"""Runs and datasets in a notebook: ``Run(path)`` and ``Dataset(path)`` show a useful summary as their
``_repr_html_`` (Jupyter calls it when the object is the cell's value).

``Dataset``: one Parquet file of one of our tables (read through ``schemas/``, validated): its table
and description, the schema with each column's doc and null count, its rows, a few rows, the file's
row groups and size. ``Run``: a run folder: how it ran, its steps and their counters, the models it
called, its outputs, and each dataset folded beneath (from the manifest; see
:mod:`corpus.publish.runinfo`).

    >>> from corpus.publish.notebook import Run
    >>> run = Run("demo-out")
    >>> run                                  # the summary
    >>> run["corpus.parquet"].to_polars()    # a dataset, as polars
    >>> run.write_report("report.html")      # the HTML report with plots
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from corpus.publish.report import esc, html_table, models_table, steps_table, write_report
from corpus.publish.runinfo import RunInfo, load_run
from schemas import SchemaError, count_rows, iter_row_range, read_polars, table_of

HEAD_ROWS = 5
CELL_CHARS = 120  # a longer value is cut in the summary (documents' text, pages)


def _cell(value) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + f"… ({len(text):,} characters)"


class Dataset:
    """One Parquet file of a sagecorpus table (validated against it on opening)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        try:
            table = table_of(self.path)
        except Exception as e:  # not Parquet at all
            raise SchemaError(f"{self.path}: not a readable Parquet file: {e}") from e
        if table is None:
            raise SchemaError(f"{self.path}: not a sagecorpus table (no schema name in its Parquet metadata)")
        self.table = table
        self.rows = count_rows(self.path, table)  # validates the schema

    def head(self, n: int = HEAD_ROWS) -> list[dict]:
        """The first ``n`` rows, as dicts (reads only the row groups that hold them)."""
        return list(iter_row_range(self.path, self.table, 0, n))

    def to_polars(self, columns: list[str] | None = None):
        """The whole table (or ``columns``) as a validated polars DataFrame."""
        return read_polars(self.path, self.table, columns)

    def stats(self) -> dict:
        """Rows, row groups, bytes on disk and nulls per column (from the Parquet metadata: no data read)."""
        meta = pq.read_metadata(self.path)
        nulls = dict.fromkeys(self.table.columns, 0)
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                col = group.column(c)
                name = col.path_in_schema.split(".")[0]
                if name in nulls and col.statistics is not None and col.statistics.has_null_count and "." not in col.path_in_schema:
                    nulls[name] += col.statistics.null_count
        return {"rows": self.rows, "row_groups": meta.num_row_groups, "bytes": self.path.stat().st_size, "nulls": nulls}

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}: {self.table.name} v{self.table.version}, {self.rows:,} rows)"

    def _repr_html_(self) -> str:
        t, stats = self.table, self.stats()
        schema = html_table(
            ["column", "type", "nullable", "nulls", "description"],
            [[f.name, str(f.type), "yes" if f.nullable else "no", stats["nulls"][f.name] if f.nullable else 0,
              t.docs.get(f.name, "")] for f in t.schema],
            numeric={3})
        head = self.head()
        rows = (html_table(t.columns, [[_cell(r.get(c)) for c in t.columns] for r in head])
                if head else "<p><i>no rows</i></p>")
        return (f"<div><p><b>{esc(t.name)} v{t.version}</b>: <code>{esc(self.path)}</code>, {self.rows:,} rows, "
                f"{stats['row_groups']} row group(s), {stats['bytes']:,} bytes</p><p>{esc(t.description)}</p>"
                f"<details><summary>schema ({len(t.columns)} columns)</summary>{schema}</details>"
                f"<p>first {len(head)} row(s):</p><div style=\"overflow-x:auto\">{rows}</div></div>")


class Run:
    """A run folder: its manifest (or, before its first run ends, the steps finished so far) and datasets."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.info: RunInfo = load_run(self.path)

    @property
    def datasets(self) -> dict[str, Dataset]:
        """Every output that is one of our tables, by its path relative to the run folder."""
        if self.info.outputs is not None:
            paths = [o.path for o in self.info.outputs if o.table]
        else:
            paths = sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*.parquet")
                           if not p.relative_to(self.path).parts[0].startswith("_"))
        return {rel: Dataset(self.path / rel) for rel in paths if (self.path / rel).is_file()}

    def __getitem__(self, relative: str) -> Dataset:
        return Dataset(self.path / relative)

    def write_report(self, out: str | os.PathLike) -> Path:
        """Write the run's HTML report (plots embedded) to ``out``; see :mod:`corpus.publish.report`."""
        return write_report(self.path, out)

    def __repr__(self) -> str:
        steps = ", ".join(s.stage for s in self.info.steps)
        return f"Run({str(self.path)!r}: {len(self.info.steps)} steps: {steps})"

    def _repr_html_(self) -> str:
        info = self.info
        head = f"<p><b>sagecorpus run</b> <code>{esc(self.path)}</code>: {len(info.steps)} step(s)"
        if info.record:
            head += f", from {esc(info.record.get('start'))} to {esc(info.record.get('end'))}"
        head += "</p>"
        datasets = self.datasets
        outputs = html_table(["file", "table", "rows"], [[rel, f"{d.table.name} v{d.table.version}", d.rows]
                                                          for rel, d in datasets.items()], numeric={2})
        folded = "".join(f"<details><summary>{esc(rel)}</summary>{d._repr_html_()}</details>" for rel, d in datasets.items())
        return (f"<div>{head}<p>steps (counters):</p>{steps_table(info)}<p>models:</p>{models_table(info)}"
                f"<p>datasets:</p>{outputs}{folded}</div>")
