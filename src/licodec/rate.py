"""The quality scale: the standard λ ladder and its continuous interpolation.

Quality q ∈ [1, 8] names a rate-distortion trade-off λ in the loss λ·255²·MSE + bpp. Integers
are CompressAI's MSE ladder (0.0018 … 0.18, about ×1.93 per step); in between, λ is
interpolated log-linearly, so q = 3.5 is the geometric mean of λ(3) and λ(4). Fixed-rate
weights are trained at one ladder point; variable-rate weights (`licodec.models.gain`) at
every q in [1, 8] and interpolate their gains with the same hat weights (`level_weights`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800}
MIN_QUALITY, MAX_QUALITY = 1.0, float(len(LAMBDAS))


def check_quality(q: float, levels: int = len(LAMBDAS)) -> float:
    """q as a float in [1, levels], or ValueError with a one-line reason."""
    try:
        q = float(q)
    except (TypeError, ValueError):
        raise ValueError(f"quality must be a number, got {q!r}") from None
    if not (1.0 <= q <= levels):  # also refuses NaN
        raise ValueError(f"quality {q:g} is outside the range 1..{levels}")
    return q


def level_weights(q: Tensor, levels: int) -> Tensor:
    """Hat (linear-interpolation) weights of each quality over the integer levels 1..L.

    q: (B,) in [1, L] -> (B, L); rows sum to 1, an integer q gives exactly one 1 (so integer
    qualities use their level's parameters bit-exactly) and every level takes part in the
    product with a weight, which keeps all gain parameters in the graph (DDP needs that).
    """
    centres = torch.arange(1, levels + 1, dtype=q.dtype, device=q.device)  # (L,)
    return (1 - (q[:, None] - centres[None, :]).abs()).clamp(min=0)  # (B, L)


def lambda_for(q: float | Tensor) -> float | Tensor:
    """λ of quality q: the ladder at integers, log-linear in between."""
    log_l = torch.tensor([math.log(LAMBDAS[k]) for k in sorted(LAMBDAS)], dtype=torch.float64)
    if isinstance(q, Tensor):
        return torch.exp(level_weights(q.double(), len(LAMBDAS)) @ log_l).to(q.dtype)
    check_quality(q)
    return float(torch.exp(level_weights(torch.tensor([float(q)], dtype=torch.float64), len(LAMBDAS)) @ log_l))


def balance_weights(q: Tensor, power: float) -> Tensor:
    """Loss weights that even out how much each quality pulls on shared weights in variable-rate
    training: w(q) = (λ(q)/λ(8))^(−power), scaled to mean 1 over the integer ladder. q: (B,) -> (B,).

    The gradient of λ·255²·MSE + bpp grows about in proportion to λ (55× from q1 to q8 on the
    campaign's transforms, benchmarks/results/vr_balance.md); power 1 about equalizes it, 0 leaves
    the loss as it is. Each image's λ, hence the trade-off it is trained at, is unchanged."""
    top = LAMBDAS[max(LAMBDAS)]
    mean = sum((lam / top) ** -power for lam in LAMBDAS.values()) / len(LAMBDAS)
    return (lambda_for(q) / top) ** -power / mean
