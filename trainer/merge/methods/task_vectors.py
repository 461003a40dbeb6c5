"""What task arithmetic, TIES and DARE-TIES share: task vectors (model - base), pruned, weighted,
sign-elected and added back to the base.

For one tensor with base ``b`` and models ``x_i`` (weights ``w_i``, densities ``d_i``):

1. ``delta_i = prune(x_i - b, d_i)``: TIES keeps the ``d_i`` fraction of largest magnitudes; DARE keeps
   each element with probability ``d_i`` (seeded); ``rescale: true`` scales the kept values so the L1
   norm is unchanged (mergekit 0.1.5's rescaling).
2. ``delta_i *= w_i``.
3. With sign election (TIES, DARE-TIES): the elected sign of each element is the sign of
   ``sum_i delta_i`` (0 counts as +); only the deltas of that sign are kept (a zero delta never).
   ``mixed = sum of the kept deltas``, ``divisor = sum of the weights of the kept deltas`` (1 where none).
   Without (task arithmetic): ``mixed = sum_i delta_i``, ``divisor = sum_i w_i`` (1 when ~0).
4. ``result = b + lambda * (mixed / divisor if normalize else mixed)``.

The operations and their order are mergekit 0.1.5's (``generalized_task_arithmetic``), in the inputs'
dtype, so the tensors are the same.
"""

from __future__ import annotations

import hashlib

import torch

from trainer.merge.methods.base import REQUIRED, Inputs, MergeMethod


def rescale_l1(tensor: torch.Tensor, mask: torch.Tensor, rescale: bool, eps: float = 1e-7) -> torch.Tensor:
    """``tensor * mask``, scaled back to the L1 norm of ``tensor`` when ``rescale`` (and both norms are > eps)."""
    masked = tensor * mask
    if not rescale:
        return masked
    before, after = tensor.abs().sum(), masked.abs().sum()
    if before < eps or after < eps:
        return masked
    return masked * (before / after)


def keep_largest(tensor: torch.Tensor, density: float, rescale: bool) -> torch.Tensor:
    """TIES trimming: keep the ``density`` fraction of entries of largest magnitude (at least one)."""
    if density >= 1:
        return tensor
    if density <= 0 or tensor.numel() == 0:
        return torch.zeros_like(tensor)
    k = max(1, int(density * tensor.numel()))
    mask = torch.zeros(tensor.numel(), dtype=tensor.dtype)
    magnitude = tensor.abs().reshape(-1)
    if magnitude.device.type == "cpu":
        magnitude = magnitude.float()
    mask[torch.argsort(magnitude, descending=True)[:k]] = 1
    return rescale_l1(tensor, mask.reshape_as(tensor), rescale)


def drop_random(tensor: torch.Tensor, density: float, rescale: bool, generator: torch.Generator) -> torch.Tensor:
    """DARE: keep each entry with probability ``density`` (draws from ``generator``)."""
    if density >= 1:
        return tensor
    work = tensor.dtype if tensor.dtype == torch.bfloat16 else torch.float32  # no CPU bernoulli in float16
    mask = torch.bernoulli(torch.full_like(tensor, density, dtype=work), generator=generator)
    return rescale_l1(tensor.to(work), mask, rescale).to(tensor.dtype)


def tensor_generator(seed: int, tensor_name: str, model_index: int) -> torch.Generator:
    """A generator for one model's tensor: the same seed gives the same draws whatever the order of work."""
    digest = hashlib.sha256(f"{seed}\0{tensor_name}\0{model_index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def elect_signs(deltas: torch.Tensor, mask_dtype: torch.dtype) -> torch.Tensor:
    """TIES sign election: True where a delta has the sign of the deltas' sum (0 counts as +)."""
    sign = deltas.sign().to(mask_dtype)
    majority = (deltas.sum(dim=0) >= 0).to(mask_dtype) * 2 - 1
    return sign == majority


class TaskVectorMethod(MergeMethod):
    """Task arithmetic and its pruned / sign-elected variants (see the module doc)."""

    needs_base = True
    min_models = 1
    prune: str | None = None  # None, "largest" or "random"
    elect: bool = False
    default_normalize = False
    default_rescale = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.shared_parameters = {"int8_mask": (bool, False), "normalize": (bool, cls.default_normalize),
                                 "rescale": (bool, cls.default_rescale), "lambda": (float, 1.0)}
        cls.input_parameters = {"weight": (float, REQUIRED), "density": (float, 1.0)}

    def merge(self, inputs: Inputs, **shared) -> torch.Tensor:
        base = inputs.tensors[inputs.base]
        others = inputs.non_base
        if not others:
            return base
        deltas = base.new_empty((len(others), *base.shape))
        for row, index in enumerate(others):
            delta = inputs.tensors[index] - base
            density = inputs.per_input[index]["density"]
            if self.prune == "largest":
                delta = keep_largest(delta, density, shared["rescale"])
            elif self.prune == "random":
                delta = drop_random(delta, density, shared["rescale"],
                                    tensor_generator(inputs.seed, inputs.name, index))
            deltas[row] = delta
            del delta
        weights = torch.tensor([inputs.per_input[i]["weight"] for i in others], dtype=deltas.dtype)
        while deltas.dim() > weights.dim():
            weights.unsqueeze_(-1)
        deltas.mul_(weights)
        if self.elect:
            mask = elect_signs(deltas, torch.int8 if shared["int8_mask"] else base.dtype)
            mixed = (deltas * mask).sum(dim=0)
            divisor = (weights * mask).sum(dim=0)
            divisor[divisor == 0] = 1
        else:
            mixed = deltas.sum(dim=0)
            divisor = weights.sum(dim=0)
            divisor[divisor.abs() < 1e-8] = 1
        if shared["normalize"]:
            mixed /= divisor
        if shared["lambda"] != 1:
            mixed *= shared["lambda"]
        return (base + mixed).to(base.dtype)
