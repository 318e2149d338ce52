"""He et al. 2021 §4.1 / §5.1: evaluate context masks on a random-mask model.

A random-mask model is a `lee2019-ctx` model trained with ``random_mask=True``: its context
convolution saw a new random mask at every step, so it can be evaluated with any mask. Feeding
the same ŷ = round(y) with different masks gives the rate each context pattern achieves at equal
distortion; the rate saving ratio (He 2021 eq. 7) of a mask m is

    R_m = (B_0 − B_m) / B_0

where B_0 is the bpp with the all-zero mask (no context: the mean-scale hyperprior) and B_m the
bpp with mask m, both of y alone (the paper's "non-reference bpp"; `mask_bpp` also gives the
totals with z, whose bits dilute the ratio). Masks that are not causal (``all``, single locations after the centre) are not
decodable; they are analysis tools, as in the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..entropy.gaussian import gaussian_likelihood
from ..layers import named_mask
from ..models.base import pad_to


def standard_masks(k: int = 5) -> dict[str, Tensor]:
    """The masks of He 2021 Table 1 / Figure 4 for a k x k context."""
    c = k // 2
    masks = {name: named_mask(name, k) for name in ("none", "serial", "checkerboard", "all")}
    cross = torch.zeros(k, k)
    cross[c - 1, c] = cross[c + 1, c] = cross[c, c - 1] = cross[c, c + 1] = 1
    masks["checkerboard 3x3 (4 neighbours)"] = cross
    ring = torch.zeros(k, k)
    ring[c - 1 : c + 2, c - 1 : c + 2] = 1
    ring[c, c] = 0
    masks["all 3x3 (8 neighbours)"] = ring
    serial3 = named_mask("serial", k) * ring
    masks["serial 3x3 (4 neighbours)"] = serial3
    for i in range(k):
        for j in range(k):
            if (i, j) != (c, c):
                m = torch.zeros(k, k)
                m[i, j] = 1
                masks[f"single ({i - c:+d},{j - c:+d})"] = m
    return masks


@torch.no_grad()
def mask_bpp(model, images: list[Tensor], masks: dict[str, Tensor]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean bpp over ``images`` for each mask, from the model's likelihoods: (y₁ only — the rate
    the mask acts on, He 2021's "non-reference bpp" —, total: ẑ + ŷ). images: (1, 3, H, W) in [0, 1]."""
    if not hasattr(model, "context_prediction") or not hasattr(model, "_split"):
        raise ValueError(f"{model.name} has no serial context convolution to mask (use lee2019-ctx)")
    if model.variable_rate:
        raise ValueError("the mask analysis needs fixed-rate weights (these are variable-rate)")
    model.eval()
    y_only = {name: 0.0 for name in masks}
    totals = {name: 0.0 for name in masks}
    for x in images:
        n = x.shape[2] * x.shape[3]
        y = model.g_a(pad_to(x, model.downsample))
        z_hat, z_lik = model.entropy_bottleneck(model.h_a(y))
        y1, y2, c1, sigma2 = model._split(y, model.h_s(z_hat))
        y1_hat = torch.round(y1)
        other = -torch.log2(z_lik).sum()
        if y2.shape[1]:
            other = other - torch.log2(model.scale_only(y2, torch.zeros_like(sigma2), sigma2)[1]).sum()
        for name, m in masks.items():
            mu, sigma = model.params(c1, model.context_prediction(y1_hat, m))
            bits = -torch.log2(gaussian_likelihood(y1_hat, mu, sigma)).sum()
            y_only[name] += bits.item() / n
            totals[name] += (other + bits).item() / n
    k = len(images)
    return {name: t / k for name, t in y_only.items()}, {name: t / k for name, t in totals.items()}


def rate_saving(bpp: dict[str, float], reference: str = "none") -> dict[str, float]:
    """He 2021 eq. 7: R_m = (B_0 − B_m) / B_0 for every mask."""
    b0 = bpp[reference]
    return {name: (b0 - b) / b0 for name, b in bpp.items()}
