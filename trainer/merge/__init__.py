"""Merge models: linear, SLERP, task arithmetic, TIES, DARE-TIES, from mergekit's YAML config.

    from trainer.merge import merge
    result = merge("merge.yaml", "models/merged")   # result.out_dir, result.manifest, result.card

Streams tensor by tensor over safetensors shards (bounded memory), writes sharded safetensors with an
index, checks architecture, tensors and vocabularies first, records a manifest and a model card. See
:mod:`trainer.merge.run` (the steps), :mod:`trainer.merge.config` (the config format) and
:mod:`trainer.merge.methods` (the methods, a registry keyed by name).
"""

from __future__ import annotations

import importlib

__all__ = ["MergeCheckError", "MergeConfig", "MergeConfigError", "MergeResult", "load_config", "merge"]

_WHERE = {"MergeCheckError": "checks", "MergeConfig": "config", "MergeConfigError": "config",
          "load_config": "config", "MergeResult": "run", "merge": "run"}


def __getattr__(name: str):
    """Lazy: importing the package (the CLI mounts ``trainer.merge.cli``) does not import torch."""
    if name in _WHERE:
        return getattr(importlib.import_module(f"trainer.merge.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
