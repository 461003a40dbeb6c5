"""Pinned manifests: what a run read, how it was configured, what it wrote — and checking that again.

A manifest ties inputs (path, size, sha256), the fully resolved config of every step, package
versions and seeds to outputs (path, table, rows, sha256). The run record (start, end, host) sits in
its own section of the manifest, never inside a data file. Everything is passed through
:func:`corpus.run.secrets.redact` before it is written.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from corpus.files import is_url, open_input
from corpus.run.secrets import redact, redact_argv
from schemas import count_rows, sha256_file, table_of

FORMAT = 2  # 2: steps carry their identity and what they read; ``sources`` lists the input folders as given
READABLE_FORMATS = (1, 2)
MANIFEST_NAME = "manifest.json"

# Packages whose versions decide the bytes a run writes (those installed are recorded).
PACKAGES = [
    "sagecorpus", "pyarrow", "polars", "pymupdf", "datasketch", "datatrove", "numpy", "py3langid",
    "fasttext-numpy2-wheel", "pylatexenc", "fsspec", "pydantic", "torch", "transformers", "tokenizers",
    "trl", "accelerate", "datasets", "ray", "pillow",
]


@dataclass
class FileEntry:
    path: str
    size: int
    sha256: str
    table: str | None = None
    version: int | None = None
    rows: int | None = None


def input_entry(path: str) -> FileEntry:
    """Size and sha256 of one input file, local or any fsspec URL (read once, streamed; a local FIFO,
    folder or dangling link is refused with :class:`corpus.files.SourceError`, never waited on)."""
    blocks = []
    with open_input(path) as f:
        digest = sha256_file(f, on_block=lambda block: blocks.append(len(block)))
    return FileEntry(path, sum(blocks), digest)


def expand_inputs(paths: list[str]) -> list[str]:
    """Local folders become the sorted files below them; files and URLs stay as they are."""
    files: set[str] = set()
    for path in paths:
        p = Path(path)
        if not is_url(path) and p.is_dir():
            files.update(str(f) for f in p.rglob("*") if f.is_file())
        else:
            files.add(path)
    return sorted(files)


def new_input_files(manifest: Manifest) -> list[tuple[str, str]]:
    """(folder, file) for every file now in an input folder that the manifest does not list."""
    listed = {e.path for e in manifest.inputs}
    return [
        (folder, f) for folder in manifest.sources if not is_url(folder) and Path(folder).is_dir()
        for f in expand_inputs([folder]) if f not in listed
    ]


def output_entry(out_dir: Path, relative: str, sha256: str | None = None) -> FileEntry:
    """An output's entry; ``sha256`` when the caller has just hashed it (no second read)."""
    path = out_dir / relative
    entry = FileEntry(relative, path.stat().st_size, sha256 or sha256_file(path))
    table = table_of(path) if path.suffix == ".parquet" else None
    if table is not None:
        entry.table, entry.version, entry.rows = table.name, table.version, count_rows(path, table)
    return entry


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def collect_seeds(steps: list[dict]) -> dict[str, Any]:
    return {
        f"{i:02d}-{s['stage']}.{k}": v
        for i, s in enumerate(steps) for k, v in s["config"].items() if "seed" in k
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Manifest:
    steps: list[dict]
    sources: list[str] = field(default_factory=list)  # input files, folders and URLs as the steps name them
    inputs: list[FileEntry] = field(default_factory=list)
    outputs: list[FileEntry] = field(default_factory=list)
    executor: dict = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=package_versions)
    python: str = field(default_factory=lambda: platform.python_version())
    seeds: dict[str, Any] = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)
    stats: dict[str, dict] = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    format: int = FORMAT

    def to_json(self) -> str:
        data = asdict(self)
        for key in ("inputs", "outputs"):
            data[key] = [{k: v for k, v in e.items() if v is not None} for e in data[key]]
        data = redact(data)
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        # a file name that is not UTF-8 (read by Python as lone surrogates) is written as its JSON
        # escape (\udce9), which json reads back as the same name
        tmp.write_bytes(self.to_json().encode("utf-8", "backslashreplace"))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable manifest: {e}") from e
        if data.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{path}: manifest format {data.get('format')!r}, expected one of {READABLE_FORMATS}")
        data["inputs"] = [FileEntry(**e) for e in data.get("inputs", [])]
        data["outputs"] = [FileEntry(**e) for e in data.get("outputs", [])]
        return cls(**data)


def run_record(start: str, argv: list[str] | None = None) -> dict:
    """When and where the run ran, and its command line with every secret option value redacted."""
    return {"start": start, "end": now(), "host": socket.gethostname(), "argv": redact_argv(argv or sys.argv[1:])}


def check_inputs(manifest: Manifest) -> list[str]:
    """One line per input that changed, vanished or cannot be read, and per new file in an input folder."""
    problems = []
    for e in manifest.inputs:
        problems += _compare("input", e.path, e, lambda e=e: input_entry(e.path), not is_url(e.path) and not Path(e.path).exists())
    problems += [f"input {f}: new file in {folder}, not in the manifest" for folder, f in new_input_files(manifest)]
    return problems


def verify(manifest_path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[str]:
    """Recompute every input's and output's hash; return one line per difference (empty: all match)."""
    manifest = Manifest.load(manifest_path)
    out = Path(out_dir) if out_dir else Path(manifest_path).parent
    problems = check_inputs(manifest)
    for e in manifest.outputs:
        problems += _compare("output", str(out / e.path), e, lambda e=e: output_entry(out, e.path), not (out / e.path).exists())
    return problems


def _compare(kind: str, shown: str, expected: FileEntry, recompute, missing: bool) -> list[str]:
    if missing:
        return [f"{kind} {shown}: missing"]
    try:
        found = recompute()
    except Exception as e:  # unreadable file: a difference, not a crash
        return [f"{kind} {shown}: unreadable ({e})"]
    if found.sha256 != expected.sha256:
        return [f"{kind} {shown}: sha256 {found.sha256[:16]}… differs from the manifest's {expected.sha256[:16]}… (size {found.size} vs {expected.size})"]
    return []
