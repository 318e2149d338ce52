"""Quantization proxies (Lee et al. 2019, §2.3 and appendix 6.2; Ballé et al. 2018).

- ``noise``: additive uniform noise U(-1/2, 1/2), the differentiable proxy used for the *rate* term.
- ``ste``:   rounding with a straight-through gradient, used for the *synthesis input* so that
             g_s is trained on the rounded latents it will see at decoding time (Lee 2019 §6.2;
             Minnen & Singh 2020).
- ``round``: plain rounding, used at evaluation and coding time.

All three quantize *around* an offset (the predicted mean μ for y, 0 for z):
``q(v) = Q(v - μ) + μ``, so that the rounding error is centred on the Gaussian's mode.
"""

from __future__ import annotations

import torch
from torch import Tensor

MODES = ("noise", "ste", "round")


def quantize(v: Tensor, mode: str, offset: Tensor | None = None) -> Tensor:
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; expected one of {MODES}")
    if offset is not None:
        v = v - offset
    if mode == "noise":
        q = v + torch.empty_like(v).uniform_(-0.5, 0.5)
    elif mode == "ste":
        q = v + (torch.round(v) - v).detach()
    else:
        q = torch.round(v)
    return q + offset if offset is not None else q


class LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it pushes x upward (Ballé et al. 2018)."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    return LowerBound.apply(x, bound)
