"""Merge models: linear, SLERP, task arithmetic, TIES, DARE-TIES, from mergekit's YAML config.

    from trainer.merge import merge
    result = merge("merge.yaml", "models/merged")   # result.out_dir, result.manifest, result.card

Streams tensor by tensor over safetensors shards (bounded memory), writes sharded safetensors with an
index, checks architecture, tensors and vocabularies first, records a manifest and a model card. See
:mod:`trainer.merge.run` (the steps), :mod:`trainer.merge.config` (the config format) and
:mod:`trainer.merge.methods` (the methods, a registry keyed by name).
"""

from trainer.merge.checks import MergeCheckError
from trainer.merge.config import MergeConfig, MergeConfigError, load_config
from trainer.merge.run import MergeResult, merge

__all__ = ["MergeCheckError", "MergeConfig", "MergeConfigError", "MergeResult", "load_config", "merge"]
