"""Our Parquet datasets as training data, and the record of what a training run consumed.

- :func:`dataset_record`: path, size, sha256, table name/version and rows of one dataset file, and, when
  the file is an output of a run (a ``manifest.json`` in a folder above it lists it), that manifest's
  path and sha256. A file that no longer has the sha256 its run manifest recorded is refused
  (:class:`DatasetError`): never train on a file that does not match its manifest.
- :func:`read_rows`: a table's validated rows (through ``schemas``) with the file's record; what the
  SFT trainer uses for SFT_EXAMPLE files: ``rows, record = read_rows(path, SFT_EXAMPLE, ["messages"])``.
- :func:`read_documents`: the text of DOCUMENT files (CPT); :func:`read_general_text`: a general
  ``.parquet``/``.jsonl`` text dataset with a ``text`` column.
- :func:`mix_in`: draw general items against a ratio of the main data (by count or by size);
  :func:`split_validation`: the held-out split. Both seeded, both deterministic.

Everything is read into memory (lists of Python objects); a corpus of a few GB of text fits a
training node's RAM.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from corpus.files import iter_records
from corpus.run.manifest import MANIFEST_NAME, FileEntry, Manifest, input_entry
from schemas import DOCUMENT, SchemaError, Table, read_table, sha256_file, table_of

__all__ = [
    "DatasetError", "dataset_record", "input_entries", "mix_in", "read_documents", "read_general_text",
    "read_rows", "run_manifest_of", "split_validation",
]

T = TypeVar("T")


class DatasetError(ValueError):
    """A dataset cannot be trained on; the message names the file and the problem."""


def run_manifest_of(path: str | Path) -> tuple[Path, FileEntry] | None:
    """The run manifest that lists ``path`` as an output, and its entry: the nearest ``manifest.json``
    in a folder above the file whose outputs include it (by path relative to that folder); None when no
    manifest lists it (a file made outside a run). Manifests that are not run manifests are passed over."""
    path = Path(path).resolve()
    for folder in path.parents:
        candidate = folder / MANIFEST_NAME
        if not candidate.is_file():
            continue
        try:
            manifest = Manifest.load(candidate)
        except (ValueError, TypeError):
            continue
        relative = path.relative_to(folder).as_posix()
        for entry in manifest.outputs:
            if entry.path == relative:
                return candidate, entry
    return None


def dataset_record(path: str | Path, role: str, run_dir: str | Path | None = None) -> dict[str, Any]:
    """What the manifest says about one consumed dataset file (``role``: e.g. "corpus", "general").

    Keys: role, path (absolute), size, sha256, table and version (our Parquet tables), rows, and
    run_manifest / run_manifest_sha256 when a run's manifest lists the file. Raises
    :class:`DatasetError` when the file is missing, or when it differs from what its run manifest recorded.
    ``run_dir``: the run folder of the recipe step that trains (``train_cpt``/``train_sft``): its files are
    checked by the step's identity as they are written, not against the folder's earlier manifest, and are
    recorded with ``run_dir``.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    entry = input_entry(str(path))
    record: dict[str, Any] = {"role": role, "path": str(path), "size": entry.size, "sha256": entry.sha256}
    if path.suffix == ".parquet":
        try:
            table = table_of(path)
        except Exception as e:
            raise DatasetError(f"{path}: not a readable Parquet file: {e}") from e
        if table is not None:
            record.update(table=table.name, version=table.version)
    if run_dir is not None and path.is_relative_to(Path(run_dir).resolve()):
        record["run_dir"] = str(Path(run_dir).resolve())
        return record
    run = run_manifest_of(path)
    if run is not None:
        manifest_path, listed = run
        if listed.sha256 != entry.sha256:
            raise DatasetError(
                f"{path}: sha256 {entry.sha256[:16]}… differs from the {listed.sha256[:16]}… that its run manifest "
                f"{manifest_path} recorded: the file changed after its run. Rerun that run (or check it with "
                f"`sagecorpus verify {manifest_path}`) before training on it")
        record.update(run_manifest=str(manifest_path), run_manifest_sha256=sha256_file(manifest_path))
    return record


def input_entries(records: Sequence[dict]) -> list[FileEntry]:
    """The records as run-manifest input entries (so ``sagecorpus verify`` rechecks them)."""
    return [
        FileEntry(r["path"], r["size"], r["sha256"], r.get("table"), r.get("version"), r.get("rows"))
        for r in records
    ]


def read_rows(path: str | Path, table: Table, columns: list[str] | None = None,
              role: str = "dataset", run_dir: str | Path | None = None) -> tuple[list[dict], dict[str, Any]]:
    """A file of one of our tables, validated (schema errors name the file and column), as row dicts,
    with its :func:`dataset_record` (``rows`` set)."""
    record = dataset_record(path, role, run_dir)
    try:
        rows = read_table(record["path"], table, columns).to_pylist()
    except SchemaError as e:
        raise DatasetError(str(e)) from e
    record["rows"] = len(rows)
    return rows, record


def read_documents(path: str | Path, role: str = "corpus", run_dir: str | Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """The texts of a DOCUMENT file in file order, and its record. Rows with no text (failed
    extraction) or only whitespace are skipped and counted in the record (``skipped_no_text``)."""
    rows, record = read_rows(path, DOCUMENT, ["paper_id", "text"], role, run_dir)
    texts = [r["text"] for r in rows if r["text"] and r["text"].strip()]
    record.update(used=len(texts), skipped_no_text=len(rows) - len(texts))
    if not texts:
        raise DatasetError(f"{record['path']}: no document has text ({len(rows)} rows)")
    return texts, record


def read_general_text(path: str | Path, role: str = "general") -> tuple[list[str], dict[str, Any]]:
    """A general text dataset (``.parquet`` or ``.jsonl``, a string ``text`` column / key per row) and its
    record. Empty texts are skipped and counted; a row without a string ``text`` is an error naming it."""
    record = dataset_record(path, role)
    p = Path(record["path"])
    if p.suffix.lower() not in (".parquet", ".jsonl"):
        raise DatasetError(f"{p}: unknown general dataset type {p.suffix!r} (use .parquet or .jsonl with a `text` column)")
    raw: list[tuple[str, Any]] = []
    for where, row in iter_records(p, DatasetError, columns=["text"] if p.suffix.lower() == ".parquet" else None):
        if "text" not in row:
            raise DatasetError(f"{p}: {where}: no `text` key")
        raw.append((where, row["text"]))
    for where, text in raw:
        if text is not None and not isinstance(text, str):
            raise DatasetError(f"{p}: {where}: `text` is {type(text).__name__}, not a string")
    texts = [t for _, t in raw if t and t.strip()]
    record.update(rows=len(raw), used=len(texts), skipped_no_text=len(raw) - len(texts))
    if not texts:
        raise DatasetError(f"{p}: no row has text ({len(raw)} rows)")
    return texts, record


def mix_in(main: Sequence[T], general: Sequence[T], ratio: float, seed: int,
           size: Callable[[T], float] = lambda item: 1) -> tuple[list[T], dict[str, Any]]:
    """General items to add to ``main``: drawn in a random order (``seed``) until their total ``size``
    reaches ``ratio`` x the total size of ``main`` (``size`` 1 per item: by count, as SFT mixes examples;
    ``len``: by characters, as CPT mixes text). When ``general`` holds less, all of it is used and
    ``short`` says so. Returns (chosen items in draw order, stats for the manifest)."""
    wanted = ratio * sum(size(item) for item in main)
    chosen: list[T] = []
    total = 0.0
    for i in random.Random(seed).sample(range(len(general)), len(general)):
        if total >= wanted:
            break
        chosen.append(general[i])
        total += size(general[i])
    stats = {"ratio": ratio, "wanted": wanted, "mixed": total, "items": len(chosen), "available": len(general),
             "short": total < wanted}
    return chosen, stats


def split_validation(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """(train, held out): ``fraction`` of the items (at least one when > 0) drawn with ``seed``, both in
    their original order. Raises :class:`DatasetError` when nothing would be left to train on."""
    if fraction <= 0:
        return list(items), []
    n = max(1, round(fraction * len(items)))
    if n >= len(items):
        raise DatasetError(f"validation_fraction {fraction} of {len(items)} rows leaves nothing to train on: "
                           "lower it, or set it to 0 (no evaluation)")
    held = set(random.Random(seed).sample(range(len(items)), n))
    return ([x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held])
