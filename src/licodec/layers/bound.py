"""The lower bound with a gradient (Ballé et al. 2018, "Variational image compression with a scale
hyperprior", appendix 6.1): GDN's reparameterised parameters and the entropy models' scales and
likelihoods are kept above a floor without cutting the gradient that would lift them off it."""

from __future__ import annotations

import torch
from torch import Tensor


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
