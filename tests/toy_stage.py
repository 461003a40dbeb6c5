"""A small stage used by the framework tests: counts the words of each text file in a folder."""

from __future__ import annotations

import os
from pathlib import Path

from corpus.run.stage import Stage, StageConfig, path_field, register_stage


class WordCountConfig(StageConfig):
    folder: str = path_field(description="folder of .txt files")
    min_words: int = 3
    api_key: str | None = None
    crash_on: str | None = None  # file name that raises once (marker file next to it) to simulate a crash
    seed: int = 0


@register_stage
class WordCount(Stage):
    name = "wordcount"
    config_class = WordCountConfig

    def input_files(self):
        return [self.config.folder]

    def plan(self):
        return sorted(p.name for p in Path(self.config.folder).glob("*.txt"))

    def process(self, items):
        for name in items:
            calls = Path(os.environ["TOY_CALLS"]) if "TOY_CALLS" in os.environ else None
            if calls:
                with calls.open("a") as f:
                    f.write(name + "\n")
            if name == self.config.crash_on and not (self.out_dir / "crashed-once").exists():
                (self.out_dir / "crashed-once").touch()
                raise RuntimeError(f"simulated crash on {name}")
            n = len((Path(self.config.folder) / name).read_text().split())
            keep = n >= self.config.min_words
            yield self.outputs_name, [self.decision(name, "kept" if keep else "dropped", "ok" if keep else "too_short", score=float(n))]

    @property
    def outputs_name(self):
        return f"decisions/{self.name}.parquet"
