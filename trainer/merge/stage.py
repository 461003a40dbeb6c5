"""The recipe step ``merge``: merge models (the run's own, e.g. ``{out}/models/sft``, and outside ones)
into ``{out}/models/merged/``, from a mergekit-style config file.

    - stage: merge
      config:
        config: merge.yaml        # mergekit's format; a model path may start with {out}/
        max_shard_size: 5GB

A model path in the merge config that starts with ``{out}/`` is a folder output of an earlier step of
the same run (``models/sft/``): the step reads it by the digest of its files. Other model folders and
the config file are inputs (hashed file by file, in the step's identity). The merge is deterministic, so
``rebuild`` merges again (and checks the bytes). The folder holds the model and its card (README.md) but
no manifest.json of its own: the run's manifest records the step, the inputs' hashes and every file.
Recipe-only: the command form is ``sagecorpus merge CONFIG OUT_DIR``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import Field

from corpus.run.stage import OUT, OneTaskStage, StageConfig, folder_in_run, path_field, register_stage

__all__ = ["MergeStage", "MergeStepConfig"]

MERGED = "models/merged/"


class MergeStepConfig(StageConfig):
    """``merge`` step: a mergekit-style config file and the output's shard size."""

    config: str = path_field(description=(
        "merge config (YAML, mergekit's format: merge_method, models, base_model, parameters, dtype, out_dtype, "
        "tokenizer_source, chat_template; ours: vocab_policy, seed); model paths may start with {out}/"))
    max_shard_size: str = Field("5GB", description="largest safetensors shard written (e.g. 5GB, 500MB)")


@register_stage
class MergeStage(OneTaskStage):
    name = "merge"
    recipe_only = True
    config_class = MergeStepConfig
    description = "merge models (linear, slerp, task_arithmetic, ties, dare_ties) -> models/merged/ " \
                  "(recipe step of `sagecorpus merge CONFIG OUT_DIR`)"

    def _references(self) -> list[str]:
        from trainer.merge.config import model_references

        try:
            data = yaml.safe_load(Path(self.config.config).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"step merge: {self.config.config}: unreadable merge config ({e})") from e
        if not isinstance(data, dict):
            raise TypeError(f"step merge: {self.config.config}: a merge config is a mapping")
        return model_references(data)

    def _external_models(self) -> list[str]:
        folder = Path(self.config.config).parent
        found = []
        for ref in self._references():
            if ref.startswith(OUT):
                continue
            path = Path(ref).expanduser()
            if not path.is_absolute() and (folder / path).is_dir():
                path = folder / path  # as load_config resolves it
            found.append(str(path.resolve()))
        return found

    def outputs(self) -> dict:
        return {**super().outputs(), MERGED: None}

    def reads(self) -> list[str]:
        return [*super().reads(), *filter(None, map(folder_in_run, self._references()))]

    def input_files(self) -> list[str]:
        return [self.config.config, *self._external_models()]

    def requirements(self) -> dict[str, str]:
        return {"torch": "train", "transformers": "train"}

    def models(self) -> list[dict]:
        """Each input model once (id, licence, weights sha256), and the merged one, for the manifest and the cards."""
        from corpus.model_files import ModelFolderError, model_fingerprint

        external = iter(self._external_models())
        folders = [self.path(ref) if ref.startswith(OUT) else next(external) for ref in self._references()]
        found = []
        for role, folder in [*(("merge input", f) for f in dict.fromkeys(folders)), ("merged", self.path(f"{OUT}/{MERGED}"))]:
            try:
                found.append({"stage": self.name, "role": role, **model_fingerprint(folder)})
            except ModelFolderError:  # not there yet (a manifest written before the step ran)
                continue
        return found

    def validate(self) -> None:
        if not any(ref.startswith(OUT) for ref in self._references()):  # all there already: check it whole now
            from trainer.merge.config import load_config

            load_config(self.config.config)

    def run_task(self) -> Iterator[tuple[str, list[dict]]]:
        import shutil

        from trainer.merge.config import load_config
        from trainer.merge.run import merge

        config = load_config(self.config.config, run_dir=self.out_dir)
        out = self.out_dir / MERGED
        if out.exists():  # a step redone: the framework's folder output is made again whole
            shutil.rmtree(out)
        result = merge(config, out, max_shard_size=self.config.max_shard_size, quiet=self.quiet, write_manifest=False)
        self.stat_update("tensors", value=result.stats["tensors"])
        self.stat_update("shards", value=result.stats["shards"])
        yield self.decisions_file, [self.decision(
            MERGED.rstrip("/"), "merged", config.merge_method, tensors=result.stats["tensors"],
            shards=result.stats["shards"], out_dtype=result.stats["out_dtype"], inputs=result.stats["inputs"],
            vocabulary=result.stats["vocabulary"])]

    def summary(self, stats: dict) -> str:
        return f"{MERGED.rstrip('/')}: {int(stats.get('tensors', 0))} tensors in {int(stats.get('shards', 0))} shard(s)"
