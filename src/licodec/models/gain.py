"""Gain units for variable-rate coding: Cui et al. 2021, "Asymmetric Gained Deep Image
Compression With Continuous Rate Adaptation" (CVPR), sec. 3.2–3.3.

One set of weights covers the whole quality range q ∈ [1, L]. The latent is scaled channel-wise
before quantization and scaled back before synthesis::

    y_g = g_a(x) ⊙ γ(q)        (B,M,h,w) ⊙ (B,M,1,1)   gain unit        (their Eq. 5)
    ŷ_g = Q(y_g)               entropy-coded with the model's own entropy model (h_a sees y_g)
    x̂   = g_s(ŷ_g ⊙ γ'(q))                              inverse gain unit (their Eq. 6)

γ_l, γ'_l are learned vectors for the L integer levels (one per λ of the ladder); between levels
they are interpolated exponentially, γ(q) = γ_l^(1−f)·γ_{l+1}^f with l = ⌊q⌋, f = q − l (their
Eq. 9), i.e. linearly in the log domain, which is how they are stored. Cui et al. also put gain
units on the hyper-latent z; here h_a reads the gained y, so z adapts to the rate through h_a
and no hyper gain is needed.

The gains act only on the encoder input and the decoder output side of the coded latents, so
the entropy-coded values and their checksum do not depend on how exp() rounds on a device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..rate import LAMBDAS, level_weights


class GainUnits(nn.Module):
    def __init__(self, M: int, levels: int) -> None:
        super().__init__()
        if not 2 <= levels <= len(LAMBDAS):
            raise ValueError(f"rate_levels must be 0 (fixed rate) or 2..{len(LAMBDAS)}, got {levels}")
        self.levels = levels
        # High-rate theory: the optimal quantizer step ∝ 1/√λ, so start with γ_l ∝ √λ_l around the
        # middle of the ladder (γ' = 1/γ); training then shapes each channel.
        lam = torch.tensor([math.log(LAMBDAS[k]) for k in range(1, levels + 1)])
        init = 0.5 * (lam - lam.mean())  # (L,)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M))  # (L, M)
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M))  # (L, M)

    @torch.no_grad()
    def center(self, quality: float) -> None:
        """Shift the gains so that γ(quality) = γ'(quality) = 1: the start for fine-tuning fixed-rate
        weights trained at that quality into a variable-rate model (its transforms then see, at that
        quality, the very latents they were trained on)."""
        q = torch.tensor([float(quality)])
        self.log_gain -= torch.log(self.gain(q)).reshape(1, -1)
        self.log_inv_gain -= torch.log(self.inverse_gain(q)).reshape(1, -1)

    def _interp(self, table: Tensor, q: Tensor) -> Tensor:
        w = level_weights(q.to(table.dtype), self.levels)  # (B, L)
        return torch.exp(w @ table)[:, :, None, None]  # (B, M, 1, 1)

    def gain(self, q: Tensor) -> Tensor:
        """γ(q): q (B,) -> (B,M,1,1)."""
        return self._interp(self.log_gain, q)

    def inverse_gain(self, q: Tensor) -> Tensor:
        """γ'(q): q (B,) -> (B,M,1,1)."""
        return self._interp(self.log_inv_gain, q)
