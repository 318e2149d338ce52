"""Fully factorized (non-parametric) prior for the hyper-latent z (Ballé et al. 2018, appendix 6.1).

Per channel c, a monotone function f_c: R -> (0, 1) is built as a chain of small dense layers

    f_c = g_K ∘ ... ∘ g_1,   g_k(x) = h_k(H_k x + b_k),   h_k(x) = x + tanh(a_k) ⊙ tanh(x)  (k < K)

with H_k = softplus(raw) ≥ 0 so f_c is a CDF. The likelihood of a quantized value is
f_c(z + 1/2) - f_c(z - 1/2).

No auxiliary loss and no ``update()`` call: coding uses a fixed integer support
[-Z_RANGE, Z_RANGE] and per-channel tables. z is rounded to integers.

The tables (format version 4) are integer frequencies (`licodec.entropy.coder.quantize_pmf` of
the float64 pmf of each channel). `licodec.weights.save_weights` computes them once and stores
them in the weight file; `load_weights` attaches them (`freeze_tables`), and coding uses them as
long as the prior's parameters are those they were made from (`frozen_tables`; a model trained
further, or one never saved, computes them from its current parameters). Weight files without
stored tables (made before) get them computed at load, on that machine: the pmf is float64
(softplus, tanh, sigmoid), so in rare cases machines with other CPU kernels can compute another
table for such a file; re-export it to freeze them. Files of format versions 1 to 3 use the
float64 pmfs quantized by constriction, recomputed at each use (`legacy_tables`), as they were made.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import exact
from .coder import CodingError, RangeDecoder, RangeEncoder, TableSet, check_frequencies, legacy_active, quantize_pmf
from ..layers.bound import lower_bound
from .quantize import quantize

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
    def table_pmfs(self) -> np.ndarray:
        """float64 pmf of every channel over -Z_RANGE..Z_RANGE, on the CPU: (C, 2*Z_RANGE+1)."""
        k = torch.arange(-Z_RANGE, Z_RANGE + 1, dtype=torch.float64)
        x = k.expand(self.channels, 1, -1)  # float64 on the CPU whatever the model's device
        return self._likelihood(x)[:, 0, :].numpy()

    def _parameter_digest(self) -> bytes:
        """SHA-256 of the prior's parameters and buffers (what its tables are a function of)."""
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.digest()

    def integer_tables(self) -> np.ndarray:
        """Integer frequencies of every channel, (C, 2*Z_RANGE+1) int32: the frozen ones when they
        fit the current parameters, else computed from them (`quantize_pmf`)."""
        frozen = self.frozen_tables()
        if frozen is not None:
            return frozen
        with exact.suspended():  # constants of the weights, not a network: plain float64 on the CPU
            pmf = self.table_pmfs()
        try:
            return np.stack([quantize_pmf(p) for p in pmf]).astype(np.int32)
        except CodingError as e:
            raise CodingError(f"z probability table is not a distribution ({e}; damaged weights?)") from None

    def freeze_tables(self, freqs: np.ndarray | None = None) -> None:
        """Use ``freqs`` ((C, 2*Z_RANGE+1) integers; default: computed now) while the parameters stay."""
        if freqs is None:
            self.__dict__.pop("_frozen", None)
            freqs = self.integer_tables()
        freqs = np.asarray(freqs)
        if freqs.shape != (self.channels, 2 * Z_RANGE + 1):
            raise CodingError(f"z tables of shape {freqs.shape}, expected {(self.channels, 2 * Z_RANGE + 1)}")
        for c in range(self.channels):
            check_frequencies(freqs[c], f"z table {c}")
        self.__dict__["_frozen"] = (self._parameter_digest(), freqs.astype(np.int32))

    def frozen_tables(self) -> np.ndarray | None:
        frozen = self.__dict__.get("_frozen")
        if frozen is None or frozen[0] != self._parameter_digest():
            return None
        return frozen[1]

    def tables(self) -> TableSet:
        lows = np.full(self.channels, -Z_RANGE)
        if legacy_active():  # format versions 1 to 3: float64 pmfs, quantized by constriction
            with exact.suspended():
                pmf = self.table_pmfs()
            return TableSet.from_pmfs(list(pmf), lows)
        return TableSet.from_pmfs(list(self.integer_tables()), lows)

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
