"""Task arithmetic: the base plus the weighted sum of the task vectors (model - base), mergekit's
``task_arithmetic`` (no pruning, no sign election, ``normalize`` off by default)."""

from __future__ import annotations

from trainer.merge.methods.task_vectors import TaskVectorMethod


class TaskArithmetic(TaskVectorMethod):
    name = "task_arithmetic"
    title = "Task arithmetic"
    reference = "https://arxiv.org/abs/2212.04089"
