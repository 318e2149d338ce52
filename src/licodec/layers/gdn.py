"""Generalized divisive normalization (Ballé et al. 2016), as used in Ballé 2018 / Minnen 2018.

GDN:  y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²)      IGDN: y_i = x_i · sqrt(β_i + Σ_j γ_ij x_j²)

β and γ are kept non-negative by the reparameterization of Ballé 2018 (stored as square roots,
lower-bounded with a gradient that still pushes them back up). Computed in float32 even under
bfloat16 autocast (`licodec.layers.float32`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .bound import lower_bound
from .float32 import as_float32, float32_region

_PEDESTAL = 2.0**-18


def _reparam(p: torch.Tensor, minimum: float) -> torch.Tensor:
    bound = (minimum + _PEDESTAL**2) ** 0.5
    return lower_bound(p, bound) ** 2 - _PEDESTAL**2


class GDN(nn.Module):
    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + _PEDESTAL**2))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + _PEDESTAL**2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with float32_region(x):  # float32 also under bfloat16 autocast
            x = as_float32(x)
            c = x.shape[1]
            beta = _reparam(self.beta, self.beta_min)
            gamma = _reparam(self.gamma, 0.0).reshape(c, c, 1, 1)
            norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
            return x * norm if self.inverse else x / norm
