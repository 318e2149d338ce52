"""Masked 5x5 convolutions for spatial context models.

The mask says which neighbours of a latent its context may read (1 = read). Masks are (k, k)
float tensors; the centre is always 0. Named masks:

- ``serial``       Minnen 2018 / Lee 2019: the 12 positions before the centre in raster order.
- ``checkerboard`` He 2021: the 12 positions of the other colour of a checkerboard (anchors,
                   seen from a non-anchor).
- ``all``          every neighbour (24 for 5x5) — not decodable, for the random-mask analysis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def named_mask(name: str, k: int = 5) -> Tensor:
    c = k // 2
    i, j = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    if name == "serial":
        m = (i < c) | ((i == c) & (j < c))
    elif name == "checkerboard":
        m = (i + j) % 2 == 1
    elif name == "all":
        m = torch.ones(k, k, dtype=torch.bool)
    elif name == "none":
        m = torch.zeros(k, k, dtype=torch.bool)
    else:
        raise ValueError(f"unknown mask {name!r}")
    m = m.clone()
    m[c, c] = False
    return m.float()


def random_mask(k: int = 5, generator: torch.Generator | None = None) -> Tensor:
    """He 2021 §5.1: every location (except the centre) is 1 with probability 1/2."""
    m = (torch.rand(k, k, generator=generator) < 0.5).float()
    m[k // 2, k // 2] = 0
    return m


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution whose weights are multiplied by a (k, k) mask (He 2021 eq. 5).

    ``forward(x, mask=None)`` uses the registered mask unless another one is given.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 5, mask: str = "serial"):
        super().__init__(cin, cout, kernel, padding=kernel // 2)
        self.register_buffer("mask", named_mask(mask, kernel), persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        m = self.mask if mask is None else mask.to(self.weight)
        return F.conv2d(x, self.weight * m, self.bias, padding=self.padding)

    def taps(self) -> tuple[Tensor, Tensor, Tensor]:
        """(rows, cols, weight (cout, cin * T)) of the registered mask's T non-zero taps, for
        evaluating the context at one position as a single matrix-vector product."""
        rows, cols = torch.nonzero(self.mask, as_tuple=True)
        w = self.weight[:, :, rows, cols]  # (cout, cin, T)
        return rows, cols, w.reshape(w.shape[0], -1)
