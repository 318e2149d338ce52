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


def sga_round(v: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
    """Stochastic Gumbel annealing (Yang et al. 2020, "Improving inference for neural image
    compression", §3.3): a relaxed sample between ⌊v⌋ and ⌈v⌉, with probabilities
    ∝ exp(−atanh(v − ⌊v⌋)/τ) and ∝ exp(−atanh(⌈v⌉ − v)/τ), differentiable in v; as τ → 0 it
    becomes rounding. ``generator``: the Gumbel noise's source (a seeded one: reproducible)."""
    lo = torch.floor(v).detach()
    eps = 1e-5
    r = (v - lo).clamp(eps, 1 - eps)  # (…): the distance to ⌊v⌋, in (0, 1)
    logits = torch.stack([-torch.atanh(r), -torch.atanh(1 - r)], dim=-1) / tau  # (…, 2): ⌊v⌋, ⌈v⌉
    u = torch.rand(logits.shape, generator=generator, dtype=v.dtype, device=v.device).clamp_(1e-10, 1 - 1e-10)
    w = torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)  # relaxed one-hot (Gumbel-softmax)
    return lo + w[..., 1]
