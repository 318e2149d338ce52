"""Spatial context models on the Minnen 2018 joint backbone.

Shared backbone (`SpatialContextModel`; Minnen et al. 2018 fig. 2, Lee et al. 2019 fig. 4)::

    x ──g_a──> y ──h_a──> z ──Q──> ẑ ──h_s──> c′ (bit-consuming context, 2M channels)
                                                 │
    ŷ (already decoded) ──masked 5x5 conv──> c″ ─┤ (bit-free context, 2M channels)
                                                 ▼
                         f = entropy_parameters([c′, c″]) ──> (σ, μ) ──> p(ŷ | …)

- `lee2019-ctx` (Lee et al. 2019): c″ from the 12 latents before the current one in raster
  order; training computes c″ for all positions in one masked convolution, coding visits the
  positions one by one (`_serial`, one routine for encoder and decoder). As in Lee 2019 §2.3
  and Minnen 2018, the context and the synthesis see ŷ = round(y) (straight-through in
  training), so coding uses integer latents with fractional-mean tables.
  ``M2 > 0`` gives the hybrid model of Lee 2019 appendix 6.1: the last M2 channels (y₂) are
  coded with a zero-mean Gaussian whose σ₂ comes straight from h_s.
  ``random_mask=True`` trains the context convolution with a new random mask every step
  (He et al. 2021 §4.1, the random-mask model); coding then uses the serial mask, and
  `licodec.analysis.masks` evaluates arbitrary masks on it.
- `he2021-checkerboard` (He et al. 2021): anchors (h + w even) are coded from c′ alone (c″ = 0),
  non-anchors with c″ from a checkerboard-masked convolution over the anchors. The same
  two-pass routine (`_two_pass`) is the training forward, the one-pass encoder (both passes need
  no serial loop) and the two-pass parallel decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..entropy import GaussianConditional, RangeDecoder, RangeEncoder
from ..layers import MaskedConv2d, random_mask
from ..registry import register_model
from .base import RateConfig
from .hyperprior import HyperpriorModel, analysis_gdn, hyper_analysis, hyper_synthesis, synthesis_gdn

Coder = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class SerialContextConfig(RateConfig):
    N: int = 128  # channels of g_a/g_s hidden layers and of z
    M: int = 192  # channels of y
    M2: int = 0  # Lee 2019 hybrid: channels of y₂ coded scale-only from h_s (0 = base model)
    random_mask: bool = False  # He 2021 §4.1: random context mask every training step

    def __post_init__(self):
        if not 0 <= self.M2 < self.M:
            raise ValueError(f"M2 must be in [0, M) (got M2={self.M2}, M={self.M})")


@dataclass
class HybridContextConfig(SerialContextConfig):
    M2: int = 96  # channels of y₂ (scale-only); Lee 2019 uses M1 = 192 with M2 = 228 or 408 at N = 320/400


@dataclass
class CheckerboardConfig(RateConfig):
    N: int = 128  # channels of g_a/g_s hidden layers and of z
    M: int = 192  # channels of y


def entropy_parameters_net(M: int) -> nn.Sequential:
    """f of Lee 2019 / Minnen 2018: 1x1 convolutions from [c′, c″] (4M) to (σ, μ) (2M)."""
    return nn.Sequential(
        nn.Conv2d(4 * M, 10 * M // 3, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(10 * M // 3, 8 * M // 3, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(8 * M // 3, 2 * M, 1),
    )


class SpatialContextModel(HyperpriorModel):
    """Minnen 2018 joint backbone; subclasses decide how the context is scheduled."""

    mask_name = "serial"

    def __init__(self, config) -> None:
        super().__init__(config)
        N, M = config.N, config.M
        self.M1 = M - getattr(config, "M2", 0)  # channels with spatial context
        self.g_a = analysis_gdn(N, M)
        self.g_s = synthesis_gdn(N, M)
        self.h_a = hyper_analysis(N, M)
        self.h_s = hyper_synthesis(N, M, 2 * self.M1 + (M - self.M1))  # c′ (2·M1) and, for the hybrid, σ₂ (M2)
        self.context_prediction = MaskedConv2d(self.M1, 2 * self.M1, 5, mask=self.mask_name)
        self.entropy_parameters = entropy_parameters_net(self.M1)

    def params(self, c1: Tensor, c2: Tensor) -> tuple[Tensor, Tensor]:
        """f([c′, c″]) -> (μ, σ), each (B, M1, h, w)."""
        sigma, mu = self.entropy_parameters(torch.cat([c1, c2], dim=1)).chunk(2, dim=1)
        return mu, sigma


@register_model("lee2019-ctx")
class SerialContextModel(SpatialContextModel):
    """Lee et al. 2019, context-adaptive entropy model: μ, σ from the hyperprior (c′) and the
    already-decoded latents in raster order (c″); serial decoding."""

    config_cls = SerialContextConfig
    mask_name = "serial"

    def __init__(self, config: SerialContextConfig) -> None:
        super().__init__(config)
        self.gaussian_conditional = GaussianConditional(round_around_mean=False)
        self.scale_only = GaussianConditional()  # y₂ of the hybrid model (μ = 0)

    def _split(self, y: Tensor, psi: Tensor):
        """y -> (y₁, y₂) and ψ -> (c′, σ₂) along channels; y₂, σ₂ are empty for the base model."""
        return y[:, : self.M1], y[:, self.M1 :], psi[:, : 2 * self.M1], psi[:, 2 * self.M1 :]

    def context_mask(self) -> Tensor | None:
        if self.config.random_mask and self.training:
            return random_mask(5)
        return None

    def y_forward(self, y: Tensor, psi: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y1, y2, c1, sigma2 = self._split(y, psi)
        y1_hat = self.gaussian_conditional.quantize(y1)  # ŷ₁ = round(y₁) (straight-through)
        c2 = self.context_prediction(y1_hat, mask if mask is not None else self.context_mask())
        mu, sigma = self.params(c1, c2)
        _, lik1 = self.gaussian_conditional(y1, mu, sigma)
        if y2.shape[1] == 0:
            return y1_hat, lik1
        y2_hat, lik2 = self.scale_only(y2, torch.zeros_like(sigma2), sigma2)
        return torch.cat([y1_hat, y2_hat], 1), torch.cat([lik1, lik2], 1)

    @torch.no_grad()
    def _serial(self, c1: Tensor, code: Coder) -> Tensor:
        """Visit the latents in raster order; ``code(y_index, μ, σ)`` codes the M1 latents at one
        position and returns their ŷ. The context at each position is the masked convolution
        evaluated there only (a matrix-vector product over the 12 causal taps), and f is applied
        to that one position, so a step costs O(M²) whatever the image size."""
        _, m1, H, W = c1.shape
        pad = 2
        rows, cols, w_ctx = self.context_prediction.taps()  # w_ctx: (2·M1, M1·T)
        b_ctx = self.context_prediction.bias
        layers = [(l.weight[:, :, 0, 0], l.bias) if isinstance(l, nn.Conv2d) else l for l in self.entropy_parameters]
        y_hat = c1.new_zeros(self.M1, H + 2 * pad, W + 2 * pad)  # zero border = "nothing decoded"
        for h in range(H):
            for w in range(W):
                patch = y_hat[:, h + rows, w + cols]  # (M1, T)
                ctx = torch.addmv(b_ctx, w_ctx, patch.reshape(-1))  # c″ at (h, w): (2·M1,)
                v = torch.cat([c1[0, :, h, w], ctx])  # [c′, c″]: (4·M1,)
                for layer in layers:
                    v = torch.addmv(layer[1], layer[0], v) if isinstance(layer, tuple) else layer(v)
                sigma, mu = v.view(2, self.M1)
                y_hat[:, h + pad, w + pad] = code((h, w), mu, sigma)
        return y_hat[None, :, pad:-pad, pad:-pad]

    def y_compress(self, enc: RangeEncoder, y: Tensor, psi: Tensor) -> Tensor:
        if y.shape[0] != 1:
            raise ValueError("compress codes one image at a time")
        y1, y2, c1, sigma2 = self._split(y, psi)
        y2_hat = self.scale_only.compress(enc, y2, torch.zeros_like(sigma2), sigma2)
        y1_hat = self._serial(
            c1, lambda hw, mu, sigma: self.gaussian_conditional.compress(enc, y1[0, :, hw[0], hw[1]], mu, sigma)
        )
        return torch.cat([y1_hat, y2_hat], 1)

    def y_decompress(self, dec: RangeDecoder, psi: Tensor, y_shape: tuple[int, ...]) -> Tensor:
        _, _, c1, sigma2 = self._split(psi.new_empty(y_shape), psi)
        y2_hat = self.scale_only.decompress(dec, torch.zeros_like(sigma2), sigma2)
        y1_hat = self._serial(c1, lambda hw, mu, sigma: self.gaussian_conditional.decompress(dec, mu, sigma))
        return torch.cat([y1_hat, y2_hat], 1)


@register_model("lee2019-ctx-hybrid")
class HybridContextModel(SerialContextModel):
    """Lee et al. 2019 hybrid model (appendix 6.1): y = [y₁; y₂], y₁ context-adaptive, y₂
    zero-mean with σ₂ from the hyperprior; for high rates."""

    config_cls = HybridContextConfig


@register_model("he2021-checkerboard")
class CheckerboardContextModel(SpatialContextModel):
    """He et al. 2021, checkerboard context model: anchors from the hyperprior alone, non-anchors
    with a checkerboard-masked context over the anchors; two-pass parallel decoding."""

    config_cls = CheckerboardConfig
    mask_name = "checkerboard"

    @staticmethod
    def anchor_mask(h: int, w: int, device=None) -> Tensor:
        """(1, 1, h, w) bool, True at anchors (h + w even)."""
        i = torch.arange(h, device=device).view(-1, 1)
        j = torch.arange(w, device=device).view(1, -1)
        return ((i + j) % 2 == 0).view(1, 1, h, w)

    def _two_pass(self, c1: Tensor, code: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Tensor:
        """Pass 1 codes the anchors with c″ = 0; pass 2 codes the non-anchors with c″ computed from
        the anchors' ŷ. ``code(sel, μ, σ)`` codes the latents where ``sel`` (1, 1, h, w) is True
        and returns a (B, M, h, w) ŷ that is zero elsewhere."""
        b, _, h, w = c1.shape
        anchors = self.anchor_mask(h, w, c1.device)
        mu, sigma = self.params(c1, torch.zeros_like(c1))
        y_anchor = code(anchors, mu, sigma)
        mu, sigma = self.params(c1, self.context_prediction(y_anchor))
        return y_anchor + code(~anchors, mu, sigma)

    def y_forward(self, y: Tensor, psi: Tensor) -> tuple[Tensor, Tensor]:
        liks: list[Tensor] = []

        def code(sel, mu, sigma):
            y_hat, lik = self.gaussian_conditional(y, mu, sigma)
            liks.append(lik)
            return y_hat * sel

        y_hat = self._two_pass(psi, code)
        anchors = self.anchor_mask(*y.shape[-2:], y.device)
        return y_hat, torch.where(anchors, liks[0], liks[1])

    def y_compress(self, enc: RangeEncoder, y: Tensor, psi: Tensor) -> Tensor:
        def code(sel, mu, sigma):
            sel = sel.expand_as(mu)
            out = torch.zeros_like(mu)
            out[sel] = self.gaussian_conditional.compress(enc, y[sel], mu[sel], sigma[sel])
            return out

        return self._two_pass(psi, code)

    def y_decompress(self, dec: RangeDecoder, psi: Tensor, y_shape: tuple[int, ...]) -> Tensor:
        def code(sel, mu, sigma):
            sel = sel.expand_as(mu)
            out = torch.zeros_like(mu)
            out[sel] = self.gaussian_conditional.decompress(dec, mu[sel], sigma[sel])
            return out

        return self._two_pass(psi, code)
