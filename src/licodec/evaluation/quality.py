"""Distortion measures on decoded 8-bit RGB images, as the learned-compression papers report them.

- PSNR: over all R, G and B samples of the 8-bit images, ``10·log10(255² / MSE)``.
- MS-SSIM: `pytorch_msssim.ms_ssim` on the 8-bit RGB images (data range 255, the standard 11x11
  Gaussian window and five scales, averaged over the three channels). Five scales need both sides
  larger than 160 pixels; for smaller images MS-SSIM is not defined and is reported as ``None``.
- MS-SSIM in dB: ``−10·log10(1 − MS-SSIM)``.
"""

from __future__ import annotations

import math

import numpy as np

MS_SSIM_MIN_SIDE = 161  # (win 11 − 1) · 2⁴ + 1: five scales of an 11x11 window


def psnr_rgb8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 images; ``inf`` when they are identical."""
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim_rgb8(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images, or ``None`` if a side is shorter than 161 pixels."""
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch
    from pytorch_msssim import ms_ssim

    def t(x):
        return torch.from_numpy(np.array(x, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float()

    with torch.no_grad():
        return float(ms_ssim(t(a), t(b), data_range=255.0, size_average=True))


def ms_ssim_db(value: float | None) -> float | None:
    if value is None:
        return None
    return math.inf if value >= 1 else -10 * math.log10(1 - value)
