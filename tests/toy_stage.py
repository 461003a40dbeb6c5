"""Small stages used by the framework tests: count the words of each text file in a folder, and a
second step that reads what the first wrote (a chain)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from corpus.run.stage import OneTaskStage, folder_in_run, Stage, StageConfig, how_field, path_field, register_stage
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


class ModelDirConfig(StageConfig):
    folder: str = path_field(description="folder of .txt files (the 'training data')")
    seed: int = 0


@register_stage
class ToyTrain(OneTaskStage):
    """A one-task stage that writes a folder ("a model") whose bytes differ on every run, as training
    on GPUs does: a rebuild must replay it, never make it again."""

    name = "toy_train"
    config_class = ModelDirConfig
    recipe_only = True

    def outputs(self):
        return {**super().outputs(), "models/toy/": None}

    def run_task(self):
        _log_call("toy_train")
        if not self.replay_folder("models/toy/"):
            model = self.out_dir / "models" / "toy"
            (model / "shards").mkdir(parents=True, exist_ok=True)
            words = sum(len(p.read_text().split()) for p in Path(self.config.folder).glob("*.txt"))
            (model / "config.json").write_text(f'{{"words": {words}, "seed": {self.config.seed}}}')
            (model / "shards" / "weights.bin").write_bytes(os.urandom(64))
        yield self.decisions_file, [self.decision("model", "trained", "ok")]


class UsesModelConfig(StageConfig):
    model: str = path_field("{out}/models/toy", "the toy model folder")


@register_stage
class ToyUse(OneTaskStage):
    """Reads the toy model folder: its identity follows the folder's files."""

    name = "toy_use"
    config_class = UsesModelConfig
    recipe_only = True

    def reads(self):
        return [folder_in_run(self.config.model)]

    def outputs(self):
        return {**super().outputs(), "used.txt": None}

    def run_task(self):
        _log_call("toy_use")
        weights = (Path(self.path(self.config.model)) / "shards" / "weights.bin").read_bytes()
        (self.out_dir / "used.txt").write_text(weights.hex())
        yield self.decisions_file, [self.decision("model", "used", "ok")]


# -- fixtures of the framework tests (a pytest plugin: tests/conftest.py) ------------------------


def write_texts(folder: Path, n: int) -> Path:
    """``n`` small text files, 1 to 4 words each (some too short for wordcount's default)."""
    folder.mkdir()
    for i in range(n):
        (folder / f"f{i:03d}.txt").write_text("lorem ipsum dolor " * (i % 4) + f"doc{i}")
    return folder


@pytest.fixture
def texts(tmp_path) -> Path:
    return write_texts(tmp_path / "texts", 12)


@pytest.fixture
def calls(tmp_path, monkeypatch):
    path = tmp_path / "calls.txt"
    monkeypatch.setenv("TOY_CALLS", str(path))

    def taken() -> list[str]:
        """Items processed since the last call."""
        seen = path.read_text().split() if path.exists() else []
        new = seen[taken.n:]
        taken.n = len(seen)
        return new

    taken.n = 0
    return taken
