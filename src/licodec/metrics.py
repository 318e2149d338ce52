"""Rate and distortion measures shared by training, evaluation and the CLI."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def bpp_from_likelihoods(likelihoods: dict[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated rate in bits per pixel: Σ −log2 p over every latent, per image pixel."""
    return sum(-torch.log2(l).sum() for l in likelihoods.values()) / num_pixels


def psnr(a: Tensor, b: Tensor, peak: float = 1.0) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)


def rd_loss(out: dict, x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """L = λ·255²·MSE + bpp (the CompressAI/Minnen convention of the λ ladder) + ``out["aux_loss"]``,
    a model's own already-weighted training term when it has one (e.g. han2024-cca's CCA loss),
    also reported as "aux"."""
    n, _, h, w = x.shape
    bpp = bpp_from_likelihoods(out["likelihoods"], n * h * w)
    mse = torch.mean((out["x_hat"] - x) ** 2)
    aux = out.get("aux_loss", 0)
    return {"loss": lmbda * 255**2 * mse + bpp + aux, "bpp": bpp, "mse": mse, "aux": aux}
