"""Small stages used by the framework tests: count the words of each text file in a folder, and a
second step that reads what the first wrote (a chain)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from corpus.run.stage import Stage, StageConfig, how_field, path_field, register_stage
from schemas import DECISION, iter_rows


class WordCountConfig(StageConfig):
    folder: str = path_field(description="folder of .txt files")
    min_words: int = 3
    api_key: str | None = how_field(None, "a secret: recorded redacted, never part of the identity")
    batch_hint: int = how_field(1, "how many files at a time (changes nothing written)")
    crash_on: str | None = None  # file name that raises once (marker file next to it) to simulate a crash
    min_kept: int = 0  # finish raises when fewer are kept (a whole-output check, like the curation guards)
    seed: int = 0


def _log_call(name: str) -> None:
    if "TOY_CALLS" in os.environ:
        with Path(os.environ["TOY_CALLS"]).open("a") as f:
            f.write(name + "\n")


@register_stage
class WordCount(Stage):
    name = "wordcount"
    config_class = WordCountConfig
    description = "count the words of each .txt file (a test stage)"

    def begin(self):
        if "TOY_BEGINS" in os.environ:
            with Path(os.environ["TOY_BEGINS"]).open("a") as f:
                f.write(self.name + "\n")

    def plan(self):
        return sorted(p.name for p in Path(self.config.folder).glob("*.txt"))

    def process(self, items):
        for name in items:
            _log_call(name)
            if name == self.config.crash_on and not (self.out_dir / "crashed-once").exists():
                (self.out_dir / "crashed-once").touch()
                raise RuntimeError(f"simulated crash on {name}")
            n = len((Path(self.config.folder) / name).read_text().split())
            keep = n >= self.config.min_words
            self.stat_update("words", value=n)
            yield self.decisions_file, [self.decision(name, "kept" if keep else "dropped", "ok" if keep else "too_short", score=float(n))]

    def finish(self, stats):
        if stats.get("decisions.kept", 0) < self.config.min_kept:
            raise ValueError(f"wordcount kept {stats.get('decisions.kept', 0)} files, fewer than {self.config.min_kept}")


class KeptConfig(StageConfig):
    counts: str = path_field("{out}/decisions/wordcount.parquet", "the wordcount step's decisions")


@register_stage
class Kept(Stage):
    """Reads the decisions of ``wordcount`` (a run-folder file): the second step of a chain."""

    name = "kept"
    config_class = KeptConfig
    verb = "toy kept"
    description = "list the files wordcount kept (a test stage)"

    def plan(self):
        return [r for r in iter_rows(self.path(self.config.counts), DECISION) if r["action"] == "kept"]

    def process(self, items):
        for row in items:
            _log_call("kept:" + row["item_id"])
            yield self.decisions_file, [self.decision(row["item_id"], "kept", "kept_by_wordcount", score=row["score"])]


class DeviceConfig(StageConfig):
    folder: str = path_field(description="folder of .txt files")


@register_stage
class DeviceProbe(Stage):
    """A GPU stage that only records which devices its worker process was given."""

    name = "device_probe"
    config_class = DeviceConfig
    gpus_per_task = 1

    def plan(self):
        return sorted(p.name for p in Path(self.config.folder).glob("*.txt"))

    def process(self, items):
        for name in items:
            time.sleep(0.1)  # long enough that both workers take tasks
            yield self.decisions_file, [self.decision(name, "kept", "probed", devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                                                      pid=os.getpid())]


class NeedsConfig(StageConfig):
    pass


@register_stage
class NeedsMissing(Stage):
    name = "needs_missing"
    config_class = NeedsConfig

    def requirements(self):
        return {"sagecorpus_no_such_module": "nothing"}

    def plan(self):
        return []

    def process(self, items):
        yield from ()
