"""Gaussian conditional entropy model for y (Lee et al. 2019 eq. 4; Minnen et al. 2018).

Each latent y_i is modelled as a Gaussian N(μ_i, σ_i²) convolved with U(-1/2, 1/2):

    p(ŷ_i | μ_i, σ_i) = Φ((ŷ_i - μ_i + 1/2) / σ_i) - Φ((ŷ_i - μ_i - 1/2) / σ_i)

The context model (hyperprior, spatial context, channel context ...) only has to produce μ and σ;
this module turns them into likelihoods for training and into integer coding decisions:

- σ is mapped to the nearest entry of a fixed log-spaced *scale table* (an integer index);
- rounding around the mean (default, Minnen & Singh 2020): μ is snapped to a grid of step 1/64
  (``μ_q``), the coded symbol is ``round(y - μ_q)`` under a zero-mean table, and
  ŷ = symbol + μ_q is exact in float32 and identical on encoder and decoder;
- integer latents (``round_around_mean=False``, Lee 2019 and Minnen 2018's serial context model,
  whose context must see the same ŷ = round(y) in training and coding): the symbol is
  ``ŷ - round(μ)`` under a table for N(o, σ) with the mean's fractional part o ∈ [-1/2, 1/2]
  snapped to a 1/16 grid (17 offsets x 128 scales).

The coder therefore only sees integer symbols and integer table indices. The tables (format
version 4) are integer constants of the format, `licodec.entropy.tables`; files of versions 1 to
3 use the float64 tables of `_gaussian_table` quantized by constriction, as they were made
(`licodec.entropy.coder.legacy_tables`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from . import exact
from . import tables as integer_tables
from .coder import CodingError, RangeDecoder, RangeEncoder, TableSet, legacy_active
from ..layers.bound import lower_bound
from .quantize import quantize
from .tables import LOG_STEP, OFFSET_STEPS, SCALE_LEVELS, SCALE_MAX, SCALE_MIN, scale_table, support  # noqa: F401  (the grid)

MEAN_STEP = 1.0 / 64.0  # grid of μ_q; a power of two so ŷ = s + μ_q is exact in float32
LIKELIHOOD_MIN = 1e-9


def _gaussian_table(o: float, s: float) -> tuple[np.ndarray, int]:
    """Format versions 1 to 3: N(o, σ=s) discretized at the integers -r..r, r = `support` (σ): (pmf, -r)."""
    r = support(s)
    edges = torch.arange(-r - 0.5, r + 1.0, 1.0, dtype=torch.float64)  # 2r + 2 bin edges
    cdf = torch.special.ndtr((edges - o) / s)
    return (cdf[1:] - cdf[:-1]).numpy(), -r


def gaussian_tables(legacy: bool | None = None) -> TableSet:
    """Table i: zero-mean discretized Gaussian with σ = scale_table()[i]. ``legacy`` (default:
    `legacy_active`): the float64 tables of format versions 1 to 3, else the integer constants."""
    return _legacy_gaussian_tables() if (legacy_active() if legacy is None else legacy) else _integer_gaussian_tables()


def offset_gaussian_tables(legacy: bool | None = None) -> TableSet:
    """Table j·SCALE_LEVELS + i: N(j/16 - 1/2, σ_i), j = 0..16 (``legacy``: as `gaussian_tables`)."""
    return (_legacy_offset_gaussian_tables() if (legacy_active() if legacy is None else legacy)
            else _integer_offset_gaussian_tables())


@lru_cache(maxsize=1)
def _integer_gaussian_tables() -> TableSet:
    return TableSet(SCALE_LEVELS, lambda i: integer_tables.frequencies(0, i))


@lru_cache(maxsize=1)
def _integer_offset_gaussian_tables() -> TableSet:
    return TableSet((OFFSET_STEPS + 1) * SCALE_LEVELS,
                    lambda t: integer_tables.frequencies(t // SCALE_LEVELS - OFFSET_STEPS // 2, t % SCALE_LEVELS))


@lru_cache(maxsize=1)
def _legacy_gaussian_tables() -> TableSet:
    scales = scale_table()
    return TableSet(SCALE_LEVELS, lambda i: _gaussian_table(0.0, float(scales[i])))


@lru_cache(maxsize=1)
def _legacy_offset_gaussian_tables() -> TableSet:
    scales = scale_table()
    return TableSet(
        (OFFSET_STEPS + 1) * SCALE_LEVELS,
        lambda t: _gaussian_table(t // SCALE_LEVELS / OFFSET_STEPS - 0.5, float(scales[t % SCALE_LEVELS])),
    )


@lru_cache(maxsize=1)
def scale_boundaries() -> Tensor:
    """The σ where the nearest scale-table entry (in log space) changes: between entries i and i + 1
    at SCALE_MIN·exp((i + 1/2)·step), float64 (127 values). Each is at least `exact.TABLE_MARGIN`
    grid steps away from every point of the exact-arithmetic grid, so that machines whose exp
    differs in the last bits still classify every grid value alike (checked here)."""
    with exact.suspended():
        b = torch.exp(math.log(SCALE_MIN) + LOG_STEP * (torch.arange(SCALE_LEVELS - 1, dtype=torch.float64) + 0.5))
        steps = b / exact.STEP
    if ((steps - torch.round(steps)).abs() < exact.TABLE_MARGIN).any():  # pragma: no cover - see the tests
        raise exact.InexactOperationError("a scale boundary is too close to a grid point")
    return b


def scale_index(sigma: Tensor) -> Tensor:
    """Nearest scale-table entry in log space (int64, same shape).

    Inside `exact.exact_arithmetic()` (format version 2), σ is a grid value and the index is found
    by comparing it with `scale_boundaries` — comparisons are exact everywhere, a float logarithm is
    not. Outside (files of format version 1), by rounding the logarithm as those files were made."""
    if exact.active():
        return torch.bucketize(sigma.detach().double().cpu(), scale_boundaries(), right=True)
    sigma = sigma.detach().float().clamp(SCALE_MIN, SCALE_MAX)
    idx = torch.round((torch.log(sigma) - math.log(SCALE_MIN)) / LOG_STEP)
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
    of latents (whatever the calling context model passes, any shape) so that serial,
    checkerboard and channel-wise context models all share this one implementation.
    """

    def __init__(self, round_around_mean: bool = True) -> None:
        super().__init__()
        self.round_around_mean = round_around_mean
        # eval mode: a differentiable stand-in for rounding, v -> ŷ (offset removed), used for ŷ and
        # for the rate (encoder effort, `licodec.models.refine`); None: round
        self.soft_round: Callable[[Tensor], Tensor] | None = None

    def quantize(self, y: Tensor, mu: Tensor | None = None) -> Tensor:
        """ŷ for the synthesis/context path: straight-through rounding in training, ``soft_round``
        when set, rounding otherwise."""
        offset = mu if self.round_around_mean else None
        if self.soft_round is not None and not self.training:
            return self.soft_round(y - offset) + offset if offset is not None else self.soft_round(y)
        return quantize(y, "ste" if self.training else "round", offset)

    def forward(self, y: Tensor, mu: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (ŷ for the synthesis/context path, likelihoods for the rate term)."""
        y_hat = self.quantize(y, mu)
        y_rate = quantize(y, "noise") if self.training else y_hat
        return y_hat, gaussian_likelihood(y_rate, mu, sigma)

    def _coding(self, mu: Tensor, sigma: Tensor):
        """(tables, table indices, additive offset of ŷ over the symbol) for these parameters."""
        idx = scale_index(sigma).cpu().numpy()
        if self.round_around_mean:
            return gaussian_tables(), idx, quantize_mean(mu)
        mu = mu.detach().float()
        base = torch.round(mu)
        frac = torch.round((mu - base) * OFFSET_STEPS).long() + OFFSET_STEPS // 2  # 0..16
        idx = frac.cpu().numpy() * SCALE_LEVELS + idx
        return offset_gaussian_tables(), idx, base + 0.0

    def compress(self, enc: RangeEncoder, y: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
        """Encode y (any shape) and return the ŷ the decoder will reconstruct."""
        tables, idx, base = self._coding(mu, sigma)
        r = y.detach().float() - base
        if not bool(torch.isfinite(r).all()):
            raise CodingError("the latent y or its mean is not finite (NaN or inf: weights that overflow)")
        sym = torch.round(r).cpu().numpy().astype(np.int64)
        sym = tables.clamp(sym, idx)
        tables.encode(enc, sym, idx)
        return torch.from_numpy(sym).to(base) + base

    def decompress(self, dec: RangeDecoder, mu: Tensor, sigma: Tensor) -> Tensor:
        tables, idx, base = self._coding(mu, sigma)
        sym = tables.decode(dec, idx)
        return torch.from_numpy(sym).to(base) + base
