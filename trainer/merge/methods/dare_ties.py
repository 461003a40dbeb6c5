"""DARE-TIES: drop each task-vector element at random (kept with probability ``density``, rescaled to
the same L1 norm: ``rescale`` on by default), then TIES sign election, mergekit's ``dare_ties``.

The drops are seeded (the config's ``seed``, default 0) per tensor and model, so the same seed gives
the same bytes; with ``density: 1`` nothing is dropped and the result is TIES's with ``density: 1``
(given the same ``normalize``)."""

from __future__ import annotations

from trainer.merge.methods.task_vectors import TaskVectorMethod


class DareTies(TaskVectorMethod):
    name = "dare_ties"
    title = "DARE-TIES"
    reference = "https://arxiv.org/abs/2311.03099"
    prune = "random"
    elect = True
    default_rescale = True
