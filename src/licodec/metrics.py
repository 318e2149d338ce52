"""Rate and distortion measures shared by training, evaluation and the CLI."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .entropy.gaussian import LIKELIHOOD_MIN


def bpp_from_likelihoods(likelihoods: dict[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated rate in bits per pixel: Σ −log2 p over every latent, per image pixel."""
    return sum(-torch.log2(l).sum() for l in likelihoods.values()) / num_pixels


def psnr(a: Tensor, b: Tensor, peak: float = 1.0) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)


CCA_LAMBDA = 0.05  # the official CCA training's fixed distortion weight (``--lambda``, `rd_loss`)


def rd_loss(out: dict, x: Tensor, lmbda: float | Tensor, weight: Tensor | None = None) -> dict[str, Tensor]:
    """L = λ·255²·MSE + bpp (the CompressAI/Minnen convention of the λ ladder), plus the CCA
    term (Han et al. 2024) when the model returns an auxiliary model's likelihoods.

    λ is a number, or a (B,) tensor with one λ per image (variable-rate training): the
    distortion term is then the batch mean of λ_b·255²·MSE_b. "mse" is the batch mean either way.

    CCA: the official loss is lmbda·255²·MSE + β·bpp + alpha·L_CCA with lmbda = 0.05 and β the
    rate point; divided by β = 0.05/λ it is ours plus α(λ)·L_CCA with α(λ) = alpha·λ/0.05, per
    image. L_CCA = R_main(y) − R_aux(y). The auxiliary likelihoods arrive with their input
    gradient reversed (`licodec.models.cca.HanCCA._aux_likelihoods`), so the term added to the
    loss is α·(R_main + R_aux): the encoder descends α·(R_main − R_aux), the auxiliary model
    α·R_aux (its own rate). "cca" reports α·(R_main − R_aux), "r_aux" R_aux, "aux_floor" the
    share of auxiliary likelihoods at the floor (a collapsed auxiliary model).

    ``weight`` (B,): each image's loss (and CCA term) times its weight, e.g. `licodec.rate.balance_weights`
    (the reported terms stay unweighted).

    Returns "loss" (what is back-propagated), "bpp", "mse", "r_y", "r_z" (bits per pixel of each
    likelihood tensor), "r_groups" (per channel group, when the model has groups) and, with
    CCA, "cca", "r_aux", "aux_floor" and "aux" (the CCA part of "loss"); all but "loss" detached
    except "bpp"/"mse"/"aux".
    """
    n, _, h, w = x.shape
    pixels = n * h * w
    lik = out["likelihoods"]
    nll = {k: -torch.log2(l) for k, l in lik.items()}  # bits of every latent, (B,C,h,w) each
    bits = {k: b.sum(dim=(1, 2, 3)) for k, b in nll.items()}  # (B,) per likelihood tensor
    bpp = sum(b.sum() for b in bits.values()) / pixels
    mse_b = torch.mean((out["x_hat"] - x) ** 2, dim=(1, 2, 3))  # (B,)
    lam = torch.as_tensor(lmbda, dtype=mse_b.dtype, device=mse_b.device).expand(n)  # (B,)
    if weight is None:
        loss = torch.mean(lam * mse_b) * 255**2 + bpp
    else:  # per image: w_b·(λ_b·255²·MSE_b + bpp_b)
        weight = weight.to(mse_b)
        bpp_b = sum(bits.values()) / (h * w)  # (B,)
        loss = torch.mean(weight * (lam * mse_b * 255**2 + bpp_b))
    terms = {"bpp": bpp, "mse": mse_b.mean(), "aux": torch.zeros((), device=x.device)}
    for key, b in bits.items():
        terms[f"r_{key}"] = b.sum().detach() / pixels
    if "y_groups" in out:
        groups = nll["y"].detach().split(out["y_groups"], dim=1)  # K x (B,|g_i|,h,w)
        terms["r_groups"] = [g.sum() / pixels for g in groups]
    if "aux_likelihoods" in out:
        aux_lik = out["aux_likelihoods"]
        bits_aux = -torch.log2(aux_lik).sum(dim=(1, 2, 3))  # (B,)
        alpha = out["cca_alpha"] * lam / CCA_LAMBDA  # (B,)
        terms["aux"] = ((alpha if weight is None else alpha * weight) * (bits["y"] + bits_aux)).sum() / pixels
        loss = loss + terms["aux"]
        terms["cca"] = (alpha * (bits["y"] - bits_aux)).sum().detach() / pixels
        terms["r_aux"] = bits_aux.sum().detach() / pixels
        terms["aux_floor"] = (aux_lik.detach() <= AUX_FLOOR).float().mean()
    terms["loss"] = loss
    return terms


AUX_FLOOR = LIKELIHOOD_MIN * (1 + 1e-6)  # float32 likelihoods at the lower bound compare <= this
