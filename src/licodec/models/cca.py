"""Han et al. 2024, "Causal Context Adjustment Loss for Learned Image Compression" (NeurIPS 2024).

A CNN codec (residual bottleneck + NAF blocks) with a channel-wise autoregressive entropy model
over *uneven* channel groups (Minnen & Singh 2020 with latent residual prediction; He et al. 2022's
uneven grouping with a power schedule), trained with the causal context adjustment (CCA) loss
against an auxiliary entropy model that is used only in training.

Data flow (names as in the paper / CompressAI)::

    x ──g_a──> y ──h_a──> z ──Q──> ẑ ──[factorized prior, stream 0]
               │                   │
               │                   h_s ──> ψ = [ψ_μ ; ψ_σ]                  2 x (B,M,h,w)
               │                           │
               └─ split: y_1 .. y_K ──┐    │        (|y_i| ∝ i^k, e.g. 8/28/56/92/136 of 320)
                                      ▼    ▼
          ┌── `_run_groups`: one loop for forward, compress and decompress ───────────┐
          │ for i = 1..K:                                                              │
          │   (μ_i, σ_i) = e_i(ψ, ŷ_<i)                      channel context           │
          │   ŷ_i = round(y_i − μ_i) + μ_i                   [Gaussian cond., stream 1]│
          │   ŷ_i += 0.5·tanh(lrp_i(features_i, ŷ_i))        latent residual prediction│
          └────────────────────────────────────────────────────────────────────────────┘
                                      │
                        ŷ = [ŷ_1 .. ŷ_K] ──g_s──> x̂

          training + use_cca only, after the loop (`_aux_likelihoods`):
            (μ'_i, σ'_i) = a_i(sg(ψ), ŷ_<i−1)   auxiliary model: group i without ŷ_{i−1}
            L_CCA = R_main(y) − R_aux(y)        (weighted α(λ) = alpha·λ/0.05, in `licodec.metrics.rd_loss`)

What implements what:

- g_a / g_s: paper Table 3 (official ``models/vae.py``: ``Encoder``/``Decoder``): three stride-2
  stages, each 3 residual bottleneck blocks (ELIC) + 4 NAF blocks (NAFNet), widths 192/224/256,
  a last stride-2 conv to M = 320 channels — 16x down. g_s mirrors it (NAF blocks first).
- h_a / h_s: conv3x3 + GELU + two stride-2 5x5 convs (4x down) to z with N = 192 channels (the
  official code hard-codes 192; no NAF blocks in the hyper transforms). h_s has two branches
  (the official ``h_mean_s``/``h_scale_s``) whose outputs are concatenated into ψ.
- Uneven grouping: group i gets a share ∝ i^k, i = 1..K (K = 5, k = 1.7 -> 8, 28, 56, 92, 136
  channels for M = 320): see `group_sizes`.
- Channel-wise context (Minnen & Singh 2020): for each group a NAF-block context transform of
  [ψ_μ, ŷ_<i] (resp. [ψ_σ, ŷ_<i]) followed by a 3-layer conv head gives μ_i (resp. σ_i); the
  latent residual prediction adds 0.5·tanh(lrp_i([mean features, ŷ_i])) to ŷ_i. When coding,
  the LRP is snapped to the 1/64 grid of the coded means, so the coded ŷ is exact in float32
  (it differs from the training/evaluation forward's ŷ by at most 1/128).
- Auxiliary entropy model and CCA loss (paper §3.2): see `HanCCA._aux_likelihoods` for the
  gradient flow; `docs/cca.md` for why it differs from the official code, the α mapping and the
  measurements.

Configs: `CCAConfig`'s defaults are the paper's full size: 65.0 M parameters for coding, plus
the auxiliary model (training only; the weights keep it while ``use_cca`` is set).
``SMALL_CONFIG`` (M = 96, N = 64, one NAF and one residual block per stage, narrow entropy
model) trains on a CPU::

    create_model("han2024-cca", SMALL_CONFIG)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable
from typing import Optional

import torch
from torch import Tensor, nn

from ..entropy import RangeDecoder, RangeEncoder
from ..entropy.gaussian import quantize_mean
from ..layers import NAFBlock, NAFStack, ResidualBottleneckBlock, conv, deconv
from ..registry import register_model
from .base import RateConfig
from .hyperprior import HyperpriorModel


@dataclass
class CCAConfig(RateConfig):
    """Defaults: the paper's model (official ``train.py`` defaults). Every field is stored in weight files."""

    N: int = 192  # channels of the hyper-latent z (hard-coded 192 in the official code)
    M: int = 320  # channels of the latent y (official ``--channel``)
    widths: tuple[int, ...] = (192, 224, 256)  # channels of the three g_a/g_s stages (official ``--ae_dim``)
    naf_blocks: tuple[int, ...] = (4, 4, 4)  # NAF blocks per g_a/g_s stage (official ``--ae_layers``)
    res_blocks: int = 3  # residual bottleneck blocks per g_a/g_s stage (hard-coded 3 in the official code)
    hyper_width: int = 256  # hidden channels of h_a and of each h_s branch (official: ae_dim[2])
    num_groups: int = 5  # K, channel groups of y coded one after another
    power: float = 1.7  # k of the power schedule: group i (1-based) ∝ i^k (official ``--prop-slices``)
    even_groups: bool = False  # True: K equal groups (Minnen & Singh 2020) instead of the power schedule
    em_width: int = 224  # channels inside each group's NAF context transform (official ``--em_dim``)
    em_blocks: int = 4  # NAF blocks in each group's context transform (official ``--em_layers``)
    head_widths: tuple[int, ...] = (224, 128)  # hidden channels of the 3x3 conv heads μ_i, σ_i, lrp_i
    use_cca: bool = True  # train with the auxiliary entropy model and the CCA loss (False: the paper's no-CCA ablation)
    alpha: float = 1.0  # the official ``--alpha``: L_CCA weighs α(λ) = alpha·λ/0.05 relative to the rate (docs/cca.md)


# A config that trains on a CPU in hours: ~2.8 s per training step at batch 4 of 256x256 crops on one
# (niced, shared) CPU thread, 2.5x mbt2018-mean {"N": 64, "M": 96}; 1/16 of the full model's
# parameters. Use it through the registry:
# ``create_model("han2024-cca", SMALL_CONFIG)`` or ``licodec train --config '<json of it>'``.
SMALL_CONFIG: dict = {
    "N": 64, "M": 96, "widths": [48, 64, 80], "naf_blocks": [1, 1, 1], "res_blocks": 1, "hyper_width": 96,
    "num_groups": 5, "power": 1.7, "em_width": 48, "em_blocks": 1, "head_widths": [64, 48],
}


# The CPU campaign size: the latent sizes of the GDN models' campaign (N = 128, M = 192) with a
# backbone whose training step costs about what mbt2018-mean's does on a 2-core CPU (1.14 vs 1.24 s
# per batch of 8 x 256², bf16; benchmarks/results/train_speed.md): no NAF block at the first
# (full-resolution) stage, one residual block per stage, narrow entropy model.
CPU_CONFIG: dict = {
    **SMALL_CONFIG, "N": 128, "M": 192, "widths": [64, 96, 128], "naf_blocks": [0, 1, 1], "hyper_width": 128,
    "em_width": 48, "head_widths": [64, 48],
}


def group_sizes(M: int, num_groups: int, power: float = 1.7, even: bool = False) -> list[int]:
    """Channels per group: M split in proportions 1, 2^k, 3^k, ..., K^k (or K equal shares).

    As in the official code: each share is rounded down and the last group takes what is left,
    so M = 320, K = 5, k = 1.7 gives [8, 28, 56, 92, 136] and even K = 5 gives 5 x 64. A share
    that rounds down to 0 is given 1 channel (tiny configs); a config that cannot give every group
    a channel is refused.
    """
    if num_groups < 1:
        raise ValueError(f"num_groups must be >= 1, got {num_groups}")
    props = [1.0] * num_groups if even else [float(i) ** power for i in range(1, num_groups + 1)]
    total = sum(props)
    sizes = [max(1, math.floor(M / total * p)) for p in props[:-1]]
    sizes.append(M - sum(sizes))
    if sizes[-1] < 1:
        raise ValueError(f"M={M} is too small for {num_groups} groups with power {power}: {sizes}")
    return sizes


class HyperSynthesis(nn.Module):
    """h_s: ẑ (B,N,h/4,w/4) -> ψ = [ψ_μ ; ψ_σ] (B,2M,h,w), two branches (official h_mean_s, h_scale_s)."""

    def __init__(self, N: int, M: int, width: int) -> None:
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(
                deconv(N, width), nn.GELU(), deconv(width, width), nn.GELU(), deconv(width, M, 3, 1),
            )

        self.mean = branch()
        self.scale = branch()

    def forward(self, z_hat: Tensor) -> Tensor:
        return torch.cat([self.mean(z_hat), self.scale(z_hat)], dim=1)


def _head(cin: int, cout: int, widths) -> nn.Sequential:
    """Three 3x3 convs with GELU: the official ``*_cc_transforms`` / ``lrp_transforms``."""
    w1, w2 = widths
    return nn.Sequential(conv(cin, w1, 3, 1), nn.GELU(), conv(w1, w2, 3, 1), nn.GELU(), conv(w2, cout, 3, 1))


class ChannelContext(nn.Module):
    """Per-group Gaussian parameters from [ψ, ŷ of the context groups] (Minnen & Singh 2020, sec. 3).

    ``context[i]`` is the number of leading groups group i may see: i for the main model
    (groups < i), max(i − 1, 0) for the auxiliary model (groups < i − 1). The main model also
    has the latent residual prediction (``lrp=True``).
    """

    def __init__(self, M: int, sizes: list[int], context: list[int], width: int, depth: int, head_widths,
                 lrp: bool) -> None:
        super().__init__()
        self.context = list(context)
        cin = [M + sum(sizes[:c]) for c in context]  # channels of [ψ_μ (M), ŷ of the context groups]
        self.mean_naf_transforms = nn.ModuleList(NAFStack(c, c, width, depth) for c in cin)
        self.scale_naf_transforms = nn.ModuleList(NAFStack(c, c, width, depth) for c in cin)
        self.cc_mean_transforms = nn.ModuleList(_head(c, s, head_widths) for c, s in zip(cin, sizes))
        self.cc_scale_transforms = nn.ModuleList(_head(c, s, head_widths) for c, s in zip(cin, sizes))
        self.lrp_transforms = (
            nn.ModuleList(_head(c + s, s, head_widths) for c, s in zip(cin, sizes)) if lrp else None
        )

    def forward(self, i: int, psi_mu: Tensor, psi_sigma: Tensor, y_hat: list[Tensor]):
        """-> (μ_i, σ_i, mean features for the LRP); ``y_hat`` must hold at least ``context[i]`` groups."""
        ctx = y_hat[: self.context[i]]  # list of (B,|g_j|,h,w)
        feat = self.mean_naf_transforms[i](torch.cat([psi_mu, *ctx], dim=1))  # (B,M+Σ|g_j|,h,w)
        mu = self.cc_mean_transforms[i](feat)  # (B,|g_i|,h,w)
        sigma = self.cc_scale_transforms[i](self.scale_naf_transforms[i](torch.cat([psi_sigma, *ctx], dim=1)))
        return mu, sigma, feat

    def residual(self, i: int, feat: Tensor, y_hat_i: Tensor) -> Tensor:
        """Latent residual prediction, bounded to (−1/2, 1/2) (Minnen & Singh 2020, sec. 3.2)."""
        return 0.5 * torch.tanh(self.lrp_transforms[i](torch.cat([feat, y_hat_i], dim=1)))


# code_group(i, y_i or None, μ_i, σ_i) -> (ŷ_i before the LRP, likelihoods of y_i or None)
CodeGroup = Callable[[int, Optional[Tensor], Tensor, Tensor], "tuple[Tensor, Optional[Tensor]]"]


@register_model("han2024-cca")
class HanCCA(HyperpriorModel):
    """Han et al. 2024 (CCA): NAF/residual CNN transforms, uneven channel-wise context + LRP, CCA loss.

    ``forward`` returns HyperpriorModel's dict; in training with ``use_cca`` it adds the
    auxiliary model's likelihoods, from which `licodec.metrics.rd_loss` forms the CCA term.
    `compress`/`decompress` never run the auxiliary model.
    """

    config_cls = CCAConfig

    def __init__(self, config: CCAConfig) -> None:
        super().__init__(config)
        c = config
        if not (len(c.widths) == len(c.naf_blocks) == 3):
            raise ValueError(f"widths and naf_blocks need 3 entries (one per stage), got {c.widths}, {c.naf_blocks}")
        if len(c.head_widths) != 2:
            raise ValueError(f"head_widths needs 2 entries, got {c.head_widths}")
        if c.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {c.alpha}")
        self.group_sizes = group_sizes(c.M, c.num_groups, c.power, c.even_groups)
        w, M, N = list(c.widths), c.M, c.N

        def stage(width: int, naf: int, decoder: bool) -> nn.Sequential:
            res = [ResidualBottleneckBlock(width) for _ in range(c.res_blocks)]
            nafs = [NAFBlock(width) for _ in range(naf)]
            return nn.Sequential(*(nafs + res if decoder else res + nafs))

        # g_a: (B,3,H,W) -> (B,M,H/16,W/16)
        self.g_a = nn.Sequential(
            conv(3, w[0]), stage(w[0], c.naf_blocks[0], False),
            conv(w[0], w[1]), stage(w[1], c.naf_blocks[1], False),
            conv(w[1], w[2]), stage(w[2], c.naf_blocks[2], False),
            conv(w[2], M),
        )
        # g_s: (B,M,h,w) -> (B,3,16h,16w)
        self.g_s = nn.Sequential(
            deconv(M, w[2]), stage(w[2], c.naf_blocks[2], True),
            deconv(w[2], w[1]), stage(w[1], c.naf_blocks[1], True),
            deconv(w[1], w[0]), stage(w[0], c.naf_blocks[0], True),
            deconv(w[0], 3),
        )
        # h_a: (B,M,h,w) -> (B,N,h/4,w/4)
        H = c.hyper_width
        self.h_a = nn.Sequential(conv(M, H, 3, 1), nn.GELU(), conv(H, H), nn.GELU(), conv(H, N))
        self.h_s = HyperSynthesis(N, M, H)
        K = c.num_groups
        self.context_model = ChannelContext(
            M, self.group_sizes, list(range(K)), c.em_width, c.em_blocks, c.head_widths, lrp=True
        )
        if c.use_cca:
            # training only: a_i(ψ, ŷ_<i−1)
            self.aux_context_model = ChannelContext(
                M, self.group_sizes, [max(i - 1, 0) for i in range(K)], c.em_width, c.em_blocks, c.head_widths,
                lrp=False,
            )

    # -- the channel-wise context loop, shared by forward, compress and decompress --
    def _run_groups(self, y: Tensor | None, psi: Tensor, code_group: CodeGroup, snap_lrp: bool = False):
        """Model (and code) y group by group.

        y: (B,M,h,w), or None when decoding; psi: (B,2M,h,w) = h_s(ẑ).
        ``code_group`` turns group i's (μ_i, σ_i) into ŷ_i (quantized, coded or decoded).
        ``snap_lrp``: put the LRP on the 1/64 grid of the means, so that the coded ŷ is exact
        in float32 (compress/decompress).
        Returns (ŷ (B,M,h,w), [likelihoods of each group, or None]).
        """
        psi_mu, psi_sigma = psi.chunk(2, dim=1)  # (B,2M,h,w) -> 2 x (B,M,h,w)
        y_groups = y.split(self.group_sizes, dim=1) if y is not None else [None] * len(self.group_sizes)
        y_hat: list[Tensor] = []  # ŷ_j, (B,|g_j|,h,w), after the LRP: the causal context
        likelihoods: list[Tensor | None] = []
        for i, y_i in enumerate(y_groups):
            mu, sigma, feat = self.context_model(i, psi_mu, psi_sigma, y_hat)
            y_hat_i, lik = code_group(i, y_i, mu, sigma)
            r = self.context_model.residual(i, feat, y_hat_i)
            y_hat.append(y_hat_i + (quantize_mean(r) if snap_lrp else r))
            likelihoods.append(lik)
        return torch.cat(y_hat, dim=1), likelihoods

    def _aux_likelihoods(self, y: Tensor, y_hat: Tensor, psi: Tensor) -> Tensor:
        """The auxiliary model's likelihoods of y (training only): group i from ψ and the main
        model's coded ŷ of groups < i − 1. y, y_hat: (B,M,h,w); psi: (B,2M,h,w) -> (B,M,h,w).

        Gradient flow (one backward pass serves both players of the CCA game):
        - the auxiliary parameters get +∂R_aux: the model is trained to *minimize* its own rate,
          so R_aux is a real estimate of the rate of group i without ŷ_{i−1};
        - y (hence g_a and the gain units) gets −∂R_aux, through a gradient reversal on y (the
          targets y_i and the context, whose values are the main ŷ with (ŷ − y) detached): the
          encoder *maximizes* the gap R_aux − R_main, moving information to early groups;
        - ψ is detached: h_a, h_s, the main context model and the factorized prior get nothing
          from R_aux (`licodec.metrics.rd_loss` adds α·R_main, which they do see).
        The official code back-propagates −R_aux and its L_Aux into the auxiliary parameters
        too; both push its likelihoods down, and it collapses to the likelihood floor.
        """
        psi_mu, psi_sigma = psi.detach().chunk(2, dim=1)  # (B,2M,h,w) -> 2 x (B,M,h,w)
        y_r = reverse_gradient(y)
        ctx = (y_r + (y_hat - y).detach()).split(self.group_sizes, dim=1)  # K x (B,|g_j|,h,w)
        liks = []
        for i, y_i in enumerate(y_r.split(self.group_sizes, dim=1)):
            mu, sigma, _ = self.aux_context_model(i, psi_mu, psi_sigma, list(ctx))
            liks.append(self.gaussian_conditional(y_i, mu, sigma)[1])
        return torch.cat(liks, dim=1)

    # -- HyperpriorModel hooks --
    def y_forward(self, y: Tensor, psi: Tensor) -> tuple[Tensor, Tensor]:
        def code(i, y_i, mu, sigma):
            return self.gaussian_conditional(y_i, mu, sigma)  # training: STE ŷ_i, noisy-y likelihoods

        y_hat, liks = self._run_groups(y, psi, code)
        return y_hat, torch.cat(liks, dim=1)  # (B,M,h,w)

    def y_compress(self, enc: RangeEncoder, y: Tensor, psi: Tensor) -> Tensor:
        def code(i, y_i, mu, sigma):
            return self.gaussian_conditional.compress(enc, y_i, mu, sigma), None

        return self._run_groups(y, psi, code, snap_lrp=True)[0]

    def y_decompress(self, dec: RangeDecoder, psi: Tensor, y_shape: tuple[int, ...]) -> Tensor:
        def code(i, y_i, mu, sigma):
            return self.gaussian_conditional.decompress(dec, mu, sigma), None

        y_hat = self._run_groups(None, psi, code, snap_lrp=True)[0]
        assert tuple(y_hat.shape) == tuple(y_shape), (y_hat.shape, y_shape)
        return y_hat

    def forward(self, x: Tensor, quality=None) -> dict:
        """HyperpriorModel.forward, plus ``"y_groups"`` (the group sizes, for per-group rates) and,
        in training with use_cca, ``"aux_likelihoods"`` (B,M,h,w) and ``"cca_alpha"`` (the
        official alpha), from which `licodec.metrics.rd_loss` forms the CCA term."""
        out = super().forward(x, quality)
        out["y_groups"] = self.group_sizes
        if self.config.use_cca and self.training:
            out["aux_likelihoods"] = self._aux_likelihoods(out["y"], out["y_hat"], out["psi"])
            out["cca_alpha"] = self.config.alpha
        return out


class _ReverseGradient(torch.autograd.Function):
    """Identity forward, negated gradient backward (Ganin & Lempitsky 2015's gradient reversal)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return -grad


def reverse_gradient(x: Tensor) -> Tensor:
    return _ReverseGradient.apply(x)
