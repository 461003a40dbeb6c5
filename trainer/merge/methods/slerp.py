"""SLERP: spherical interpolation from the base model (t = 0) to the other model (t = 1), mergekit's ``slerp``.

Each tensor is one vector: with ``cos(theta) = <a/|a|, b/|b|>``, the result is
``sin((1-t) theta)/sin(theta) * a + sin(t theta)/sin(theta) * b``, or plain ``(1-t) a + t b`` when the
two are nearly collinear (``|cos| > 0.9995``). ``t`` may be a gradient over the layers or depend on the
tensor's name (filters), as in mergekit. The arithmetic is mergekit 0.1.5's: float32 (float64 for
float64 inputs), the norms as the norm of the norms of 2^20-element chunks, the dot product of the
normalised chunks summed chunk by chunk; the result is cast to the inputs' dtype.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from trainer.merge.methods.base import REQUIRED, Inputs, MergeMethod

CHUNK = 1024 * 1024
DOT_THRESHOLD = 0.9995
EPS = 1e-8


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    """Interpolate ``v0`` (t = 0) to ``v1`` (t = 1) along the great circle; same dtype as ``v0``."""
    dtype = torch.float64 if v0.dtype == torch.float64 else torch.float32
    a = v0.reshape(1, -1)
    b = v1.reshape(1, -1)
    tt = torch.tensor([t], dtype=dtype).reshape(-1, 1)
    if not a.shape[1]:
        return ((1 - tt) * a + tt * b).reshape(v0.shape).to(v0.dtype)
    starts = range(0, a.shape[1], CHUNK)

    def chunk(x: torch.Tensor, start: int) -> torch.Tensor:
        return x[:, start:start + CHUNK].to(dtype)

    norm_a = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(chunk(a, s), dim=1, keepdim=True)
                                                   for s in starts]), dim=0)
    norm_b = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(chunk(b, s), dim=1, keepdim=True)
                                                   for s in starts]), dim=0)
    norm_a = torch.where(norm_a > EPS, norm_a, 1)
    norm_b = torch.where(norm_b > EPS, norm_b, 1)
    dot = torch.stack([((chunk(a, s) / norm_a) * (chunk(b, s) / norm_b)).sum(dim=1, keepdim=True)
                       for s in starts]).sum(dim=0).clamp(-1, 1)
    linear = dot.abs() > DOT_THRESHOLD
    theta = torch.acos(torch.where(linear, 0, dot))
    sin_theta = torch.sin(theta)
    coef_a = torch.where(linear, 1 - tt, torch.sin((1 - tt) * theta) / sin_theta)
    coef_b = torch.where(linear, tt, torch.sin(tt * theta) / sin_theta)
    result = torch.empty_like(a)
    for s in starts:
        result[:, s:s + CHUNK] = coef_a * chunk(a, s) + coef_b * chunk(b, s)
    return result.reshape(v0.shape)


class Slerp(MergeMethod):
    name = "slerp"
    title = "SLERP (spherical interpolation)"
    reference = "https://en.wikipedia.org/wiki/Slerp"
    needs_base = True
    min_models = max_models = 2
    shared_parameters: ClassVar[dict] = {"t": (float, REQUIRED)}

    def merge(self, inputs: Inputs, t: float) -> torch.Tensor:
        if not inputs.tensors[0].is_floating_point():
            raise TypeError(f"{inputs.name}: SLERP needs floating-point tensors")
        other = inputs.non_base[0]
        return slerp(t, inputs.tensors[inputs.base], inputs.tensors[other])
