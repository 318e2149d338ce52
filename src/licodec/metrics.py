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


def rd_loss(out: dict, x: Tensor, lmbda: float | Tensor) -> dict[str, Tensor]:
    """L = λ·255²·MSE + bpp (the CompressAI/Minnen convention of the λ ladder) + ``out["aux_loss"]``,
    a model's own already-weighted training term when it has one (e.g. han2024-cca's CCA loss),
    also reported as "aux".

    λ is a number, or a (B,) tensor with one λ per image (variable-rate training): the
    distortion term is then the batch mean of λ_b·255²·MSE_b. "mse" is the batch mean either way.
    """
    n, _, h, w = x.shape
    bpp = bpp_from_likelihoods(out["likelihoods"], n * h * w)
    mse_b = torch.mean((out["x_hat"] - x) ** 2, dim=(1, 2, 3))  # (B,)
    aux = out.get("aux_loss", 0)
    distortion = torch.mean(torch.as_tensor(lmbda, dtype=mse_b.dtype, device=mse_b.device) * mse_b) * 255**2
    return {"loss": distortion + bpp + aux, "bpp": bpp, "mse": mse_b.mean(), "aux": aux}
