"""What every merge method is: a small class with its parameters and one ``merge`` of one tensor."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from trainer.merge.config import REQUIRED, MergeConfig, MergeConfigError

__all__ = ["REQUIRED", "Inputs", "MergeMethod"]


class Inputs:
    """One output tensor's inputs, all in the compute dtype: ``tensors`` in the config's order (the models
    as listed, then the base model when it is not listed), ``base`` the base model's index or None,
    ``per_input`` each input's resolved per-model parameters, ``name`` the tensor's name, ``seed`` the
    config's seed."""

    def __init__(self, name: str, tensors: list[torch.Tensor], base: int | None, per_input: list[dict[str, Any]],
                 seed: int = 0):
        self.name, self.tensors, self.base, self.per_input, self.seed = name, tensors, base, per_input, seed

    @property
    def non_base(self) -> list[int]:
        return [i for i in range(len(self.tensors)) if i != self.base]


class MergeMethod:
    """A merge method: ``name`` (the config's ``merge_method``), whether it needs a ``base_model``, its
    shared parameters (the config's top-level ``parameters``) and per-model ones, each ``name: (type,
    default)`` with :data:`REQUIRED` for no default; ``merge`` computes one output tensor."""

    name: ClassVar[str]
    title: ClassVar[str]
    reference: ClassVar[str]
    needs_base: ClassVar[bool] = False
    base_takes_input_parameters: ClassVar[bool] = False
    """True when the base model (if any) is an input like the others and takes per-model parameters."""
    elementwise: ClassVar[bool] = False
    """True when each output element depends only on the same element of the inputs: the tensor may then be
    merged a block of rows at a time (same bits, less memory)."""
    min_models: ClassVar[int] = 1
    max_models: ClassVar[int | None] = None
    shared_parameters: ClassVar[dict[str, tuple[type, Any]]] = {}
    input_parameters: ClassVar[dict[str, tuple[type, Any]]] = {}

    @classmethod
    def check_config(cls, config: MergeConfig) -> None:
        """Structural checks of a config for this method (raise :class:`MergeConfigError`)."""
        if cls.needs_base and config.base_model is None:
            raise MergeConfigError(f"{config.origin}: `base_model`: {cls.name} needs a base model")
        n = len(config.inputs)
        if n < cls.min_models or (cls.max_models is not None and n > cls.max_models):
            wanted = f"{cls.min_models}" if cls.max_models == cls.min_models else \
                f"at least {cls.min_models}" + (f" and at most {cls.max_models}" if cls.max_models else "")
            raise MergeConfigError(f"{config.origin}: `models`: {cls.name} merges {wanted} models "
                                   f"(base included), got {n}")

    def merge(self, inputs: Inputs, **shared: Any) -> torch.Tensor:
        """The merged tensor, in the inputs' dtype."""
        raise NotImplementedError
