"""Encoder effort: refine one image's latents against the fixed decoder before coding them.

Campos et al. 2019 ("Content adaptive optimization for neural image compression") and Yang et
al. 2020 ("Improving inference for neural image compression") optimise y (and z) of each image
at encode time for the loss the decoder will really see; the decoder and the file format do not
change. This is the straight-through baseline of Yang et al.: the latents y and z are free
tensors, started at the analysis transforms' output, and Adam minimises

    L(y, z) = λ(q)·255²·MSE(g_s(ŷ), x) + (bits of ŷ and ẑ) / pixels

where ŷ, ẑ are rounded as the coder rounds them (around the context model's means for ŷ) with a
straight-through gradient, and the bits are those of the model's own likelihoods of the rounded
values (``forward_latents`` of the model in eval mode, its entropy models in
``straight_through`` mode): every registered model, every quality, the same code path as training.

Large images (larger than the tile of the model's runner: the codec's ``--tile``) are refined
tile by tile: each tile of y with a margin (and its z) is optimised on its own pixels, and only
its interior is kept. At the end both the refined and the starting latents are coded, decoded by
the synthesis transform as the decoder does (uint8 pixels) and measured with the real stream
sizes; the lower loss is kept, so effort never codes an image worse than effort 0 does.

Deterministic on a given machine and thread count (no randomness; the same operations in the same
order). Effort levels: `EFFORT_STEPS` (the optimiser steps per image, or per tile).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

from ..entropy.quantize import sga_round
from ..progress import report
from ..defaults import MAX_EFFORT, check_effort  # noqa: F401  (the rule for effort levels)
from ..rate import lambda_for
from .base import Encoded, _as_float, _clamp_to

EFFORT_STEPS = {0: 0, 1: 10, 2: 30, 3: 100, 4: 160}  # effort level -> Adam steps (per tile)
LEARNING_RATE = 0.03  # Adam's step on y and z (units of the quantisation bin)
TAU_START, TAU_END = 0.5, 0.05  # SGA temperature, annealed over the steps
CHECK_EVERY = 5  # steps between evaluations of the loss under real rounding
STAGE = "refinement"  # the stage named in progress reports (`licodec.progress`)


@contextmanager
def soft_rounding(model, fn):
    """The model's entropy models (eval mode) use ``fn`` instead of rounding meanwhile."""
    mods = [m for m in model.modules() if hasattr(m, "soft_round")]
    before = [m.soft_round for m in mods]
    for m in mods:
        m.soft_round = fn
    try:
        yield
    finally:
        for m, b in zip(mods, before):
            m.soft_round = b


def rd_objective(model, x: Tensor, y: Tensor, z: Tensor, q: Tensor | None, lam: float) -> Tensor:
    """L(y, z) of the module docstring for x (1,3,h,w) in [0, 1], y (1,M,h',w'), z (1,N,h'/4,w'/4)."""
    h, w = x.shape[-2:]
    out = model.forward_latents(y, z, q, (h, w))
    bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
    return lam * 255**2 * torch.mean((out["x_hat"] - x) ** 2) + bits / (h * w)


def temperature(i: int, steps: int) -> float:
    """SGA's temperature at step i: annealed geometrically from TAU_START to TAU_END."""
    return TAU_START * (TAU_END / TAU_START) ** (i / max(steps - 1, 1))


def _optimise(model, x: Tensor, y0: Tensor, z0: Tensor, q: Tensor | None, lam: float, steps: int,
              done: list[int], total: int) -> tuple[Tensor, Tensor]:
    """Adam on (y, z) through SGA; returns the latents with the lowest loss under real rounding
    among the start and the checks every `CHECK_EVERY` steps (and the last)."""
    y = y0.detach().clone().requires_grad_(True)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y, z], lr=LEARNING_RATE)
    gen = torch.Generator(device=y.device).manual_seed(0)
    with torch.no_grad():
        best = (float(rd_objective(model, x, y, z, q, lam)), y0, z0)
    for i in range(steps):
        tau = temperature(i, steps)
        opt.zero_grad(set_to_none=True)
        with soft_rounding(model, lambda v: sga_round(v, tau, gen)):
            rd_objective(model, x, y, z, q, lam).backward()
        opt.step()
        done[0] += 1
        report(STAGE, done[0], total)
        if (i + 1) % CHECK_EVERY == 0 or i + 1 == steps:
            with torch.no_grad():
                loss = float(rd_objective(model, x, y, z, q, lam))  # real rounding
            if loss < best[0]:
                best = (loss, y.detach().clone(), z.detach().clone())
    return best[1], best[2]


def _lambda(model, quality, device) -> tuple[Tensor | None, float]:
    """(the model's quality tensor, λ(q)) for coding at ``quality``."""
    q = model.quality_tensor(quality, 1, device)
    return q, lambda_for(float(quality) if q is None else float(q[0]))


def _spans(n: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(start, end, start with margin, end with margin) along a latent axis of n positions."""
    return [(a, min(a + tile, n), max(a - margin, 0), min(a + tile + margin, n)) for a in range(0, n, tile)]


def _tile_in_y(model, H: int, W: int, s: int, r: int) -> tuple[int, int]:
    """(tile, margin) in y positions, both multiples of r (one z position), for refining an HxW
    image tile by tile under the model's runner (s pixels per y position); (0, 0) when the image is
    not larger than its tile. The margin covers g_s's reach, which the runner gives in y positions."""
    tile = model.runner.tile
    if not (tile and max(H, W) > tile):
        return 0, 0
    return max(r, tile // s // r * r), -(-model.runner.margins(model)[1] // r) * r


def refine(model, x: Tensor, quality, y0: Tensor, z0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Refined (y, z) for image x (1,3,H,W), float in [0, 1] or uint8, from the analysis output
    (y0, z0) of `analysis_latents`; tile by tile when the image is larger than the tile of the
    model's runner (``model.runner.tile``: the codec's, while it codes)."""
    q, lam = _lambda(model, quality, x.device)
    H, W = x.shape[-2:]
    s, r = model.analysis_stride, model.downsample // model.analysis_stride  # pixels per y position (16); y per z (4)
    n_h, n_w = y0.shape[-2:]
    t, margin = _tile_in_y(model, H, W, s, r)
    t = t or max(n_h, n_w)  # not tiled: one span of the whole y
    rows, cols = _spans(n_h, t, margin), _spans(n_w, t, margin)
    y, z = y0.clone(), z0.clone()
    done, total = [0], steps * len(rows) * len(cols)
    report(STAGE, 0, total)
    with torch.enable_grad():
        for a, b, a0, b0 in rows:
            for c, d, c0, d0 in cols:
                xt = _as_float(x[..., s * a0 : min(s * b0, H), s * c0 : min(s * d0, W)])  # (1,3,≤,≤)
                yt, zt = _optimise(model, xt, y0[..., a0:b0, c0:d0], z0[..., a0 // r : b0 // r, c0 // r : d0 // r],
                                   q, lam, steps, done, total)
                y[..., a:b, c:d] = yt[..., a - a0 : b - a0, c - c0 : d - c0]  # the interior only
                z[..., a // r : b // r, c // r : d // r] = zt[..., (a - a0) // r : (b - a0) // r,
                                                             (c - c0) // r : (d - c0) // r]
    return y, z


@torch.no_grad()
def coded_loss(model, x: Tensor, quality, enc: Encoded) -> float:
    """The loss of coded latents as the decoder sees them: λ·255²·MSE of the uint8 image the
    synthesis transform makes from ŷ, plus the real stream bits per pixel."""
    H, W = x.shape[-2:]
    q, lam = _lambda(model, quality, x.device)
    out = torch.empty((1, 3, H, W), dtype=torch.uint8, device=x.device)
    model.synthesis(enc.latents["y_hat"], q, out=out)
    target = x if x.dtype == torch.uint8 else _clamp_to(torch.uint8)(x)
    sse = 0.0
    for top in range(0, H, 256):  # in row bands: no whole-image float copy
        diff = out[..., top : top + 256, :].double() - target[..., top : top + 256, :].double()
        sse += float((diff * diff).sum())
    return lam * sse / (3 * H * W) + 8 * sum(map(len, enc.streams)) / (H * W)


def refine_and_choose(model, x: Tensor, quality, y0: Tensor, z0: Tensor, effort: int, exact: bool = True) -> Encoded:
    """Code the refined latents, or the starting ones if those code the image at a lower loss."""
    steps = EFFORT_STEPS[check_effort(effort)]
    start = model.compress_latents(y0, z0, exact)
    if steps == 0:
        return start
    y, z = refine(model, x, quality, y0, z0, steps)
    refined = model.compress_latents(y, z, exact)
    return refined if coded_loss(model, x, quality, refined) < coded_loss(model, x, quality, start) else start

