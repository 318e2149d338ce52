"""Bjøntegaard delta rate (BD-rate): the average bitrate difference of two rate-distortion
curves at equal quality, in percent. Negative means the test curve needs fewer bits.

Bjøntegaard (VCEG-M33, 2001) fitted a cubic polynomial to log-rate as a function of PSNR through
four points. Polynomials oscillate when points are unevenly spaced or more numerous, so current
practice (and this module) interpolates with a *monotone* piecewise cubic instead:

1. each curve's points (rate R_i, quality D_i) are sorted by rate, and a point that does not
   improve quality over a lower-rate point is dropped (an encoder setting that spends more bits
   for less quality is dominated), so D is strictly increasing;
2. log10(R) is interpolated as a function of D with PCHIP (Fritsch–Carlson monotone cubic
   Hermite interpolation, `scipy.interpolate.PchipInterpolator`), which passes through every
   point and never overshoots;
3. both interpolants are integrated over the quality interval where the curves overlap, and the
   mean log-rate difference ``Δ = (∫ log10 R_test − ∫ log10 R_anchor) / (D_hi − D_lo)`` gives
   ``BD-rate = (10^Δ − 1) · 100 %``.

Nothing is extrapolated: curves that do not overlap in quality, or that keep fewer than two
points, have no BD-rate (NaN). For MS-SSIM the quality axis is MS-SSIM in dB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def monotone_points(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by rate, keeping only those whose quality beats every lower-rate point."""
    r = np.asarray(rate, dtype=np.float64)
    d = np.asarray(quality, dtype=np.float64)
    if r.shape != d.shape or r.ndim != 1:
        raise ValueError("rate and quality must be 1-D sequences of the same length")
    ok = np.isfinite(r) & np.isfinite(d)
    r, d = r[ok], d[ok]
    if np.any(r <= 0):
        raise ValueError("rates must be positive")
    order = np.lexsort((-d, r))  # by rate; at equal rate, best quality first
    keep_r, keep_d = [], []
    for ri, di in zip(r[order], d[order]):
        if not keep_d or di > keep_d[-1]:
            keep_r.append(ri)
            keep_d.append(di)
    return np.array(keep_r), np.array(keep_d)


def bd_rate(anchor_rate: Sequence[float], anchor_quality: Sequence[float],
            test_rate: Sequence[float], test_quality: Sequence[float]) -> float:
    """BD-rate of the test curve against the anchor, in percent (NaN if undefined)."""
    from scipy.interpolate import PchipInterpolator

    ra, da = monotone_points(anchor_rate, anchor_quality)
    rt, dt = monotone_points(test_rate, test_quality)
    if len(da) < 2 or len(dt) < 2:
        return math.nan
    lo, hi = max(da[0], dt[0]), min(da[-1], dt[-1])
    if not hi > lo:
        return math.nan
    area_a = PchipInterpolator(da, np.log10(ra)).integrate(lo, hi)
    area_t = PchipInterpolator(dt, np.log10(rt)).integrate(lo, hi)
    return float((10 ** ((area_t - area_a) / (hi - lo)) - 1) * 100)
