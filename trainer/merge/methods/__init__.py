"""The merge methods, a registry keyed by the config's ``merge_method`` (one module per method)."""

from __future__ import annotations

from trainer.merge.methods.base import REQUIRED, Inputs, MergeMethod
from trainer.merge.methods.dare_ties import DareTies
from trainer.merge.methods.linear import Linear
from trainer.merge.methods.slerp import Slerp
from trainer.merge.methods.task_arithmetic import TaskArithmetic
from trainer.merge.methods.ties import Ties

__all__ = ["METHODS", "REQUIRED", "Inputs", "MergeMethod", "get_method", "register"]

METHODS: dict[str, type[MergeMethod]] = {}


def register(method: type[MergeMethod]) -> type[MergeMethod]:
    """Make a method available by its name (a second method with the same name is an error)."""
    if method.name in METHODS:
        raise ValueError(f"merge method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> MergeMethod:
    try:
        return METHODS[name]()
    except KeyError:
        raise KeyError(f"no merge method {name!r} (known: {', '.join(METHODS)})") from None


for _method in (Linear, Slerp, TaskArithmetic, Ties, DareTies):
    register(_method)
del _method
