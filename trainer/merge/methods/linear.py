"""Linear: the weighted average of the models (model soups), mergekit's ``linear``.

``result = sum_i w_i * x_i / sum_i w_i`` (``normalize: true``, the default) or the plain weighted sum.
As mergekit does, the sum is accumulated in float32 (float64 for float64 inputs), one model at a time
in config order, divided once, and cast back to the inputs' dtype: the same operations in the same order
give the same bits.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from trainer.merge.methods.base import REQUIRED, Inputs, MergeMethod


class Linear(MergeMethod):
    name = "linear"
    title = "Linear (weighted average)"
    reference = "https://arxiv.org/abs/2203.05482"
    base_takes_input_parameters = True
    elementwise = True
    shared_parameters: ClassVar[dict] = {"normalize": (bool, True)}
    input_parameters: ClassVar[dict] = {"weight": (float, REQUIRED)}

    def merge(self, inputs: Inputs, normalize: bool = True) -> torch.Tensor:
        first = inputs.tensors[0]
        if not first.is_floating_point():
            raise TypeError(f"{inputs.name}: linear merging needs floating-point tensors")
        dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
        # a batch of one, as mergekit's kernel sees it: (1, n) weights, (1, ...) tensors
        weights = torch.tensor([[p["weight"] for p in inputs.per_input]], dtype=dtype)
        shape = (1,) + (1,) * first.ndim
        # 0 + x0 * w0 (out of place from a scalar 0: no zero-filled buffer), then + x_i * w_i in place
        zero = torch.zeros((), dtype=dtype)
        result = None
        for tensor, weight in zip(inputs.tensors, weights.unbind(1)):
            if result is None:
                result = torch.addcmul(zero, tensor.unsqueeze(0), weight.reshape(shape))
            else:
                result.addcmul_(tensor.unsqueeze(0), weight.reshape(shape))
        if normalize:
            result.div_(weights.sum(dim=1).reshape(shape))
        return result.to(first.dtype)[0]
