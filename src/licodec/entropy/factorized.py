"""Fully factorized (non-parametric) prior for the hyper-latent z (Ballé et al. 2018, appendix 6.1).

Per channel c, a monotone function f_c: R -> (0, 1) is built as a chain of small dense layers

    f_c = g_K ∘ ... ∘ g_1,   g_k(x) = h_k(H_k x + b_k),   h_k(x) = x + tanh(a_k) ⊙ tanh(x)  (k < K)

with H_k = softplus(raw) ≥ 0 so f_c is a CDF. The likelihood of a quantized value is
f_c(z + 1/2) - f_c(z - 1/2).

No auxiliary loss and no ``update()`` call: coding uses a fixed integer support
[-Z_RANGE, Z_RANGE] and per-channel tables are recomputed from the current parameters (in
float64, on the CPU, with elementwise ops only, hence identical on every machine that loads
the same weights) whenever `compress`/`decompress` needs them. z is rounded to integers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .coder import CodingError, RangeDecoder, RangeEncoder, TableSet
from .quantize import lower_bound, quantize

Z_RANGE = 64  # coded support of z is the integers in [-Z_RANGE, Z_RANGE]; values outside are clamped
LIKELIHOOD_MIN = 1e-9


class FactorizedPrior(nn.Module):
    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        self.soft_round: Callable[[Tensor], Tensor] | None = None  # eval mode: stands in for rounding (encoder effort)
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    def _logits_cdf(self, x: Tensor) -> Tensor:
        """x: (C, 1, n) -> logits of f_c(x): (C, 1, n). Sums over ≤3 terms, no BLAS, deterministic."""
        for k, (m, b) in enumerate(zip(self.matrices, self.biases)):
            h = F.softplus(m.to(x))  # (C, out, in), on x's device and dtype
            x = (h.unsqueeze(-1) * x.unsqueeze(1)).sum(dim=2) + b.to(x)  # (C, out, n)
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k].to(x)) * torch.tanh(x)
        return x

    def _likelihood(self, z_q: Tensor) -> Tensor:
        """z_q: (C, 1, n) -> p(z_q): (C, 1, n)."""
        lower = self._logits_cdf(z_q - 0.5)
        upper = self._logits_cdf(z_q + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail where sigmoid is accurate
        return (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z: (B, C, h, w) -> (ẑ for h_s, likelihoods (B, C, h, w))."""
        if self.training:
            z_rate, z_hat = quantize(z, "noise"), quantize(z, "ste")
        elif self.soft_round is not None:  # encoder effort (`licodec.models.refine`)
            z_rate = z_hat = self.soft_round(z)
        else:
            z_rate = z_hat = quantize(z, "round")
        b, c, h, w = z.shape
        flat = z_rate.permute(1, 0, 2, 3).reshape(c, 1, -1)  # (C, 1, B*h*w)
        lik = self._likelihood(flat).reshape(c, b, h, w).permute(1, 0, 2, 3)
        return z_hat, lower_bound(lik, LIKELIHOOD_MIN)

    @torch.no_grad()
    def tables(self) -> TableSet:
        k = torch.arange(-Z_RANGE, Z_RANGE + 1, dtype=torch.float64)
        x = k.expand(self.channels, 1, -1)  # float64 on the CPU whatever the model's device
        pmf = self._likelihood(x)[:, 0, :].numpy()  # (C, 2*Z_RANGE+1)
        return TableSet.from_pmfs(list(pmf), np.full(self.channels, -Z_RANGE))

    def _indices(self, shape) -> np.ndarray:
        b, c, h, w = shape
        return np.broadcast_to(np.arange(c).reshape(1, c, 1, 1), (b, c, h, w))

    def compress(self, enc: RangeEncoder, z: Tensor, tables: TableSet) -> Tensor:
        idx = self._indices(z.shape)
        z = z.detach().float()
        if not bool(torch.isfinite(z).all()):
            raise CodingError("the hyper-latent z is not finite (NaN or inf: weights that overflow)")
        sym = tables.clamp(torch.round(z).cpu().numpy().astype(np.int64), idx)
        tables.encode(enc, sym, idx)
        return torch.from_numpy(sym).float().to(z.device)

    def decompress(self, dec: RangeDecoder, shape, tables: TableSet, device) -> Tensor:
        sym = tables.decode(dec, self._indices(shape))
        return torch.from_numpy(sym).float().to(device)
