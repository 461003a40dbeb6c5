"""TIES: trim each task vector to its largest ``density`` fraction, elect a sign per element, average
the agreeing deltas (``normalize`` on by default), mergekit's ``ties``."""

from __future__ import annotations

from trainer.merge.methods.task_vectors import TaskVectorMethod


class Ties(TaskVectorMethod):
    name = "ties"
    title = "TIES"
    reference = "https://arxiv.org/abs/2306.01708"
    prune = "largest"
    elect = True
    default_normalize = True
