"""A step's work folder and identity: when finished work may be reused, and when it must be redone.

A step's *identity* is its stage, its *what* config (every field but the ``how_field`` ones) and the
sha256 of everything it reads: its external inputs (folders listed file by file) and the files of the
run folder that earlier steps wrote. Its work folder ``_work/<NN>-<stage>/`` holds that identity,
the part files of unfinished shards and, once merged, ``done.json`` with the stats and the sha256 of
every output. A rerun reuses the step only if the identity is the same and every output still has
the recorded bytes; otherwise the step's work and outputs are removed and the step is redone. An
unreadable ``done.json`` (an interrupted write) is named and the step redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from corpus.files import SourceError, write_json_atomic
from corpus.run.manifest import FileEntry, input_entry
from corpus.run.progress import note
from corpus.run.secrets import redact_text
from corpus.run.stage import Stage
from schemas import sha256_file


@dataclass
class StepReads:
    """What a step reads: run-folder files (relative path -> sha256) and external input files."""

    run_files: dict[str, str] = field(default_factory=dict)
    inputs: list[FileEntry] = field(default_factory=list)


def step_identity(stage: Stage, reads: StepReads) -> str:
    blob = json.dumps({
        "stage": stage.name, "config": stage.what_config(), "reads": reads.run_files,
        "inputs": [[e.path, e.sha256] for e in reads.inputs],
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def is_folder(relative: str) -> bool:
    """A folder output or read (``models/cpt/``): a key ending in ``/``."""
    return relative.endswith("/")


def folder_files(out_dir: Path, relative: str) -> list[str]:
    """The files under a folder output, relative to the run folder, sorted."""
    root = out_dir / relative
    return sorted(f.relative_to(out_dir).as_posix() for f in root.rglob("*") if f.is_file()) if root.is_dir() else []


def output_files(stage: Stage) -> list[str]:
    """Every file a step wrote: its file outputs, and the files now in its folder outputs."""
    files = []
    for rel in stage.outputs():
        files += folder_files(stage.out_dir, rel) if is_folder(rel) else [rel]
    return sorted(files)


def folder_digest(out_dir: Path, relative: str, known: dict[str, str]) -> str:
    """sha256 of a folder's file names and their sha256 (files already hashed in this run are not read again)."""
    files = {}
    for f in folder_files(out_dir, relative):
        if f not in known:
            known[f] = sha256_file(out_dir / f)
        files[f] = known[f]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def hash_reads(stage: Stage, inputs: list[str], known: dict[str, str]) -> StepReads:
    """sha256 of what a step reads; ``known`` holds run-folder files already hashed in this run."""
    reads = StepReads()
    for rel in stage.reads():
        if rel not in known:
            path = stage.out_dir / rel
            if not (path.is_dir() if is_folder(rel) else path.is_file()):
                raise FileNotFoundError(missing_read_message(stage, rel))
            known[rel] = folder_digest(stage.out_dir, rel, known) if is_folder(rel) else sha256_file(path)
        reads.run_files[rel] = known[rel]
    reads.inputs = [_input_or_unavailable(stage, p) for p in inputs]
    return reads


UNAVAILABLE = "unavailable"


def _input_or_unavailable(stage: Stage, path: str) -> FileEntry:
    """An input's entry; one that cannot be read is recorded as unavailable (the stage's own rows say
    what it could not read), so one unreachable URL never stops the run before it starts."""
    try:
        return input_entry(path)
    except (OSError, ValueError, SourceError) as e:
        note(f"step {stage.name}: input {redact_text(path)} cannot be read ({type(e).__name__}: {redact_text(str(e))})")
        return FileEntry(path, 0, UNAVAILABLE)


def missing_read_message(stage: Stage, rel: str) -> str:
    from corpus.run.stage import get_stage, writers_of

    out = stage.out_dir
    writers = [get_stage(w) for w in writers_of(rel)]
    verbs = [f"'sagecorpus {w.verb or w.name} --out {out}'" if not w.recipe_only else f"a {w.name!r} step before it in the recipe"
             for w in writers]
    hint = f"run {' or '.join(verbs)} first" if verbs else "run the step that writes it first"
    return f"step {stage.name} reads {out / rel}, which does not exist: {hint}"


class StepDirs:
    """The work folder of one step of a run: identity, logs, part files, done marker."""

    def __init__(self, out_dir: Path, index: int, stage: Stage):
        self.stage = stage
        self.root = Path(out_dir) / "_work" / f"{index:02d}-{stage.name}"
        self.logs = self.root / "logs"
        self.parts = self.root / "parts"
        self.done = self.root / "done.json"
        self.identity_file = self.root / "identity"
        self.shards_file = self.root / "shards"

    def part(self, output: str, rank: int) -> Path:
        return self.parts / output.replace("/", "__") / f"{rank:05d}.parquet"

    def stats(self, rank: int) -> Path:
        """Written last by a shard, atomically: its presence says the shard finished."""
        return self.parts / "_stats" / f"{rank:05d}.json"

    def open(self, identity: str, tasks: int) -> dict | None:
        """Make the folder ready for a step of this identity; return its stats if it is already done.

        Work of another identity, or a finished step whose outputs changed or vanished, is removed
        with its outputs; unfinished shards of the same identity and shard count are kept.
        """
        stage = self.stage
        stage.work_dir = self.root
        if self.root.exists() and self._read(self.identity_file) != identity:
            self.reset("its config or what it reads changed" if self.identity_file.exists() else None)
        elif self.done.exists():
            done, problem = self._done_record()
            if problem is None and done["identity"] == identity:
                return done["stats"]
            self.reset(problem)
        elif self.root.exists() and self._read(self.shards_file) != str(tasks):
            self.reset(None)
        self.root.mkdir(parents=True, exist_ok=True)
        self.identity_file.write_text(identity)
        self.shards_file.write_text(str(tasks))
        return None

    def _done_record(self) -> tuple[dict, str | None]:
        try:
            done = json.loads(self.done.read_text())
            outputs = done["outputs"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return {}, f"{self.done} is unreadable ({type(e).__name__}: {e})"
        for rel, sha in sorted(outputs.items()):
            path = self.stage.out_dir / rel
            if not path.is_file():
                return done, f"output {path} is missing"
            found = sha256_file(path)
            if found != sha:
                return done, f"output {path} no longer has the bytes it was written with (sha256 {found[:16]}… vs {sha[:16]}…)"
        extra = sorted(set(output_files(self.stage)) - set(outputs))
        if extra:
            return done, f"output folder {self.stage.out_dir} holds file(s) the step did not write: {', '.join(extra[:3])}"
        return done, None

    def finished_outputs(self) -> dict[str, str]:
        """sha256 of every output of a done step, as recorded when it finished."""
        return json.loads(self.done.read_text())["outputs"]

    def reset(self, why: str | None, keep: set[str] = frozenset()) -> None:
        """Remove this step's work and outputs (the step is redone); ``keep``: outputs another step
        of the chain writes too."""
        if why:
            note(f"step {self.stage.name}: {why}; redoing it")
        shutil.rmtree(self.root, ignore_errors=True)
        self.remove_outputs(keep)

    def remove_outputs(self, keep: set[str] = frozenset()) -> None:
        for rel in set(self.stage.outputs()) - keep:
            if is_folder(rel):
                shutil.rmtree(self.stage.out_dir / rel, ignore_errors=True)
            else:
                (self.stage.out_dir / rel).unlink(missing_ok=True)

    def finish(self, stats: dict) -> None:
        """Mark the step done: its identity, counters and the sha256 of every output (every file of a folder output)."""
        outputs = {rel: sha256_file(self.stage.out_dir / rel) for rel in output_files(self.stage)}
        write_json_atomic(self.done, {"identity": self.identity_file.read_text(), "stats": stats, "outputs": outputs})

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text()
        except OSError:
            return None


def replay_folder(stage: Stage, relative: str) -> None:
    """Copy the original run's folder output ``relative`` into ``stage``'s run (see :meth:`Stage.replay_folder`)."""
    from corpus.run.item_store import ReplayMiss
    from corpus.run.manifest import MANIFEST_NAME, Manifest

    original = stage.replay_dir
    identity = (stage.work_dir / "identity").read_text()
    manifest = Manifest.load(original / MANIFEST_NAME)
    if not any(s.get("stage") == stage.name and s.get("identity") == identity for s in manifest.steps):
        raise ReplayMiss(f"{original}: the original run has no {stage.name} step made from these inputs and this config, "
                         f"so rebuild has no {relative} to replay (run the recipe with `sagecorpus run` to make it)")
    entries = [e for e in manifest.outputs if e.path.startswith(relative)]
    if not entries:
        raise ReplayMiss(f"{original / MANIFEST_NAME}: lists no file of {relative} to replay")
    target = stage.out_dir / relative
    shutil.rmtree(target, ignore_errors=True)
    for e in entries:
        source = original / e.path
        found = sha256_file(source) if source.is_file() else "missing"
        if found != e.sha256:
            raise ReplayMiss(f"{source}: {'missing' if found == 'missing' else 'no longer has the bytes its manifest recorded'}; "
                             f"rebuild cannot replay {relative}")
        dest = stage.out_dir / e.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        if sha256_file(dest) != e.sha256:  # a copy cut short (disk full) is not a replay
            raise OSError(f"{dest}: copied from {source} with other bytes")


@contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold the run folder for this process: a second run into it stops at once, naming the holder."""
    path = out_dir / "_work" / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RuntimeError(f"{out_dir} is in use by another sagecorpus run ({holder}); wait for it to finish") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
