"""Gaussian conditional entropy model for y (Lee et al. 2019 eq. 4; Minnen et al. 2018).

Each latent y_i is modelled as a Gaussian N(μ_i, σ_i²) convolved with U(-1/2, 1/2):

    p(ŷ_i | μ_i, σ_i) = Φ((ŷ_i - μ_i + 1/2) / σ_i) - Φ((ŷ_i - μ_i - 1/2) / σ_i)

The context model (hyperprior, spatial context, channel context ...) only has to produce μ and σ;
this module turns them into likelihoods for training and into integer coding decisions:

- σ is mapped to the nearest entry of a fixed log-spaced *scale table* (an integer index);
- μ is snapped to a grid of step 1/64 (``μ_q``), and the coded symbol is ``round(y - μ_q)``,
  so ŷ = symbol + μ_q is exact in float32 and identical on encoder and decoder.

The coder therefore only sees integer symbols and integer table indices; the tables are
float64 constants computed on the CPU (see `licodec.entropy.coder`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from .coder import RangeDecoder, RangeEncoder, TableSet
from .quantize import lower_bound, quantize

SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 128
MEAN_STEP = 1.0 / 64.0  # grid of μ_q; a power of two so ŷ = s + μ_q is exact in float32
LIKELIHOOD_MIN = 1e-9
_LOG_STEP = math.log(SCALE_MAX / SCALE_MIN) / (SCALE_LEVELS - 1)


def scale_table() -> np.ndarray:
    return np.exp(np.log(SCALE_MIN) + _LOG_STEP * np.arange(SCALE_LEVELS, dtype=np.float64))


@lru_cache(maxsize=1)
def gaussian_tables() -> TableSet:
    """One zero-mean discretized Gaussian per scale-table entry, support ±max(32, ⌈24σ⌉)."""
    scales = scale_table()
    radii = [max(32, math.ceil(24 * s)) for s in scales]
    # all tables in one float64 evaluation: k and σ laid out side by side
    k = torch.cat([torch.arange(-r, r + 1, dtype=torch.float64) for r in radii])
    s = torch.cat([torch.full((2 * r + 1,), v, dtype=torch.float64) for r, v in zip(radii, scales)])
    pmf = (torch.special.ndtr((k + 0.5) / s) - torch.special.ndtr((k - 0.5) / s)).numpy()
    pmfs = np.split(pmf, np.cumsum([2 * r + 1 for r in radii])[:-1])
    return TableSet(pmfs, -np.array(radii))


def scale_index(sigma: Tensor) -> Tensor:
    """Nearest scale-table entry in log space (int64, same shape)."""
    sigma = sigma.detach().float().clamp(SCALE_MIN, SCALE_MAX)
    idx = torch.round((torch.log(sigma) - math.log(SCALE_MIN)) / _LOG_STEP)
    return idx.clamp(0, SCALE_LEVELS - 1).long()


def quantize_mean(mu: Tensor) -> Tensor:
    # "+ 0.0" turns -0.0 into 0.0 so checksums over ŷ's bytes see one zero.
    return torch.round(mu.detach().float() / MEAN_STEP) * MEAN_STEP + 0.0


def gaussian_likelihood(y_q: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """p(ŷ | μ, σ) of Lee 2019 eq. 4, evaluated on the side of the mean where it is accurate."""
    sigma = lower_bound(sigma, SCALE_MIN)
    v = (y_q - mu).abs()
    upper = torch.special.ndtr((0.5 - v) / sigma)
    lower = torch.special.ndtr((-0.5 - v) / sigma)
    return lower_bound(upper - lower, LIKELIHOOD_MIN)


class GaussianConditional(nn.Module):
    """Stateless: turns (y, μ, σ) into ŷ and likelihoods, and codes ŷ given (μ, σ).

    ``forward`` is the training/evaluation path; ``compress``/``decompress`` code a *subset*
    of latents (whatever the calling context model passes) so that serial, checkerboard and
    channel-wise context models all share this one implementation.
    """

    def forward(self, y: Tensor, mu: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (ŷ for the synthesis/context path, likelihoods for the rate term)."""
        if self.training:
            y_rate = quantize(y, "noise", mu)
            y_hat = quantize(y, "ste", mu)
        else:
            y_hat = y_rate = quantize(y, "round", mu)
        return y_hat, gaussian_likelihood(y_rate, mu, sigma)

    @staticmethod
    def compress(enc: RangeEncoder, y: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
        """Encode y (any shape) and return the ŷ the decoder will reconstruct."""
        tables = gaussian_tables()
        mu_q = quantize_mean(mu)
        idx = scale_index(sigma).cpu().numpy()
        sym = torch.round(y.detach().float() - mu_q).cpu().numpy().astype(np.int64)
        sym = tables.clamp(sym, idx)
        tables.encode(enc, sym, idx)
        return torch.from_numpy(sym).to(mu_q) + mu_q

    @staticmethod
    def decompress(dec: RangeDecoder, mu: Tensor, sigma: Tensor) -> Tensor:
        tables = gaussian_tables()
        mu_q = quantize_mean(mu)
        idx = scale_index(sigma).cpu().numpy()
        sym = tables.decode(dec, idx)
        return torch.from_numpy(sym).to(mu_q) + mu_q
