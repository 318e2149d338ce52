"""Hyperprior models: Ballé et al. 2018 (scale hyperprior) and Minnen et al. 2018 (mean-scale).

Data flow (names as in the papers)::

    x ──g_a──> y ──h_a──> z ──Q──> ẑ ──[factorized prior, stream 0]
                                   │
                                   h_s ──> ψ ──> (μ, σ) ──[Gaussian conditional, stream 1]──> ŷ ──g_s──> x̂

`HyperpriorModel` owns everything up to ψ = h_s(ẑ); subclasses say how ŷ is modelled given ψ
through three hooks (``y_forward``, ``y_compress``, ``y_decompress``) so that context models
(Lee 2019, He 2021, Han 2024) reuse the same z path, padding, streams and checksums.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..entropy import CodingError, FactorizedPrior, GaussianConditional, RangeDecoder, RangeEncoder
from ..layers import GDN, conv, deconv
from ..registry import register_model
from .base import CompressionModel, Encoded, RateConfig, latent_checksum, pad_to


@dataclass
class HyperpriorConfig(RateConfig):
    N: int = 128  # channels of the hidden layers of g_a/g_s and of z
    M: int = 192  # channels of y


def analysis_gdn(N: int, M: int) -> nn.Sequential:
    """g_a of Ballé 2018: four stride-2 5x5 convolutions with GDN. (B,3,H,W) -> (B,M,H/16,W/16)."""
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis_gdn(N: int, M: int) -> nn.Sequential:
    """g_s of Ballé 2018 (IGDN). (B,M,h,w) -> (B,3,16h,16w)."""
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
    )


def hyper_analysis(N: int, M: int) -> nn.Sequential:
    """h_a of Minnen 2018 (mean-scale and joint models): (B,M,h,w) -> (B,N,h/4,w/4)."""
    return nn.Sequential(
        conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N)
    )


def hyper_synthesis(N: int, M: int, out: int) -> nn.Sequential:
    """h_s of Minnen 2018: (B,N,h/4,w/4) -> (B,out,h,w) (out = 2M: σ and μ, or c′)."""
    return nn.Sequential(
        deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
        conv(M * 3 // 2, out, 3, 1),
    )


class HyperpriorModel(CompressionModel):
    config_cls = HyperpriorConfig

    def __init__(self, config) -> None:
        super().__init__(config)
        self.entropy_bottleneck = FactorizedPrior(config.N)
        self.gaussian_conditional = GaussianConditional()

    # -- how ŷ is modelled given ψ = h_s(ẑ); the default is a Gaussian with (μ, σ) from ψ alone --
    def gaussian_parameters(self, psi: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def y_forward(self, y: Tensor, psi: Tensor) -> tuple[Tensor, Tensor]:
        mu, sigma = self.gaussian_parameters(psi)
        return self.gaussian_conditional(y, mu, sigma)

    def y_compress(self, enc: RangeEncoder, y: Tensor, psi: Tensor) -> Tensor:
        mu, sigma = self.gaussian_parameters(psi)
        return self.gaussian_conditional.compress(enc, y, mu, sigma)

    def y_decompress(self, dec: RangeDecoder, psi: Tensor, y_shape: tuple[int, ...]) -> Tensor:
        mu, sigma = self.gaussian_parameters(psi)
        return self.gaussian_conditional.decompress(dec, mu, sigma)

    # -- shared by every hyperprior-based model --
    def forward(self, x: Tensor, quality=None) -> dict:
        """x: (B,3,H,W) in [0,1]; sizes that are not multiples of 64 are padded as in `compress`.
        quality: a number or a (B,) tensor (one per image), for variable-rate models."""
        q = self.quality_tensor(quality, x.shape[0], x.device)
        y = self.analysis(pad_to(x, self.downsample), q)
        return self.forward_latents(y, self.h_a(y), q, x.shape[-2:])

    def forward_latents(self, y: Tensor, z: Tensor, q: Tensor | None, hw: tuple[int, int]) -> dict:
        """The part of `forward` after the analysis transforms, from y (B,M,h,w) and z (B,N,h/4,w/4):
        also what the encoder-effort refinement differentiates (`licodec.models.refine`). q: the
        quality tensor (`quality_tensor`); hw: the image size x̂ is cropped to."""
        z_hat, z_lik = self.entropy_bottleneck(z)
        psi = self.h_s(z_hat)
        y_hat, y_lik = self.y_forward(y, psi)
        x_hat = self.synthesis(y_hat, q)[..., : hw[0], : hw[1]]
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}, "y_hat": y_hat, "z_hat": z_hat,
                "y": y, "psi": psi}

    @torch.no_grad()
    def analysis_latents(self, x: Tensor, quality=None) -> tuple[Tensor, Tensor]:
        """(y, z) of x as `compress` codes them: y = g_a(x)·γ(q) of x padded to `downsample`, z = h_a(y)."""
        with self.runner.symbols():  # these floats become symbols
            y = self.analysis(pad_to(x, self.downsample), self.quality_tensor(quality, x.shape[0], x.device))
            return y, self.h_a(y)

    @torch.no_grad()
    def compress(self, x: Tensor, quality=None, exact: bool = True, effort: int = 0) -> Encoded:
        """``effort`` > 0: refine the latents for this image first (`licodec.models.refine`)."""
        y, z = self.analysis_latents(x, quality)
        if effort:
            from .refine import refine_and_choose

            return refine_and_choose(self, x, quality, y, z, effort, exact)
        return self.compress_latents(y, z, exact)

    @torch.no_grad()
    def compress_latents(self, y: Tensor, z: Tensor, exact: bool = True) -> Encoded:
        """Entropy-code given latents: ẑ = round(z) and ŷ (rounded as the context model does)."""
        with self.runner.symbols():
            enc_z, enc_y = RangeEncoder(), RangeEncoder()
            z_hat = self.entropy_bottleneck.compress(enc_z, z, self.entropy_bottleneck.tables())
        with self.parameter_arithmetic(exact):  # the entropy parameters, as the decoder will compute them
            y_hat = self.y_compress(enc_y, y, self.h_s(z_hat))
        return Encoded([enc_z.finish(), enc_y.finish()], latent_checksum(z_hat, y_hat), {"z_hat": z_hat, "y_hat": y_hat})

    def latent_shapes(self, hw: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        s = self.downsample
        hp, wp = -(-hw[0] // s) * s, -(-hw[1] // s) * s
        return (1, self.config.M, hp // 16, wp // 16), (1, self.config.N, hp // s, wp // s)

    @torch.no_grad()
    def decode_latents(self, streams: list[bytes], hw: tuple[int, int], exact: bool = True) -> dict[str, Tensor]:
        if len(streams) != 2:
            raise ValueError(f"{self.name} expects 2 streams, got {len(streams)}")
        if not all(streams):  # every model codes at least one symbol per stream: never empty
            raise CodingError("empty entropy-coded stream")
        y_shape, z_shape = self.latent_shapes(hw)
        dec_z, dec_y = RangeDecoder(streams[0]), RangeDecoder(streams[1])
        z_hat = self.entropy_bottleneck.decompress(dec_z, z_shape, self.entropy_bottleneck.tables(), self.device)
        dec_z.check_finished()
        with self.parameter_arithmetic(exact):  # as in compress
            y_hat = self.y_decompress(dec_y, self.h_s(z_hat), y_shape)
            dec_y.check_finished()
        return {"z_hat": z_hat, "y_hat": y_hat}


@register_model("bmshj2018-hyperprior")
class ScaleHyperprior(HyperpriorModel):
    """Ballé et al. 2018, "Variational image compression with a scale hyperprior": ŷ ~ N(0, σ²), σ = h_s(ẑ)."""

    def __init__(self, config: HyperpriorConfig) -> None:
        super().__init__(config)
        N, M = config.N, config.M
        self.g_a = analysis_gdn(N, M)
        self.g_s = synthesis_gdn(N, M)
        # h_a takes |y| (Ballé 2018 fig. 4): (B,M,h,w) -> (B,N,h/4,w/4)
        self.h_a = nn.Sequential(
            _Abs(), conv(M, N, 3, 1), nn.ReLU(inplace=True), conv(N, N), nn.ReLU(inplace=True), conv(N, N)
        )
        # h_s: (B,N,h/4,w/4) -> σ (B,M,h,w)
        self.h_s = nn.Sequential(
            deconv(N, N), nn.ReLU(inplace=True), deconv(N, N), nn.ReLU(inplace=True),
            conv(N, M, 3, 1), nn.ReLU(inplace=True),
        )

    def gaussian_parameters(self, psi: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(psi), psi


@register_model("mbt2018-mean")
class MeanScaleHyperprior(HyperpriorModel):
    """Minnen et al. 2018, mean-scale hyperprior (their fig. 2 without the context model):
    ŷ ~ N(μ, σ²) with (μ, σ) = h_s(ẑ) — Lee 2019's bit-consuming context c′ alone."""

    def __init__(self, config: HyperpriorConfig) -> None:
        super().__init__(config)
        N, M = config.N, config.M
        self.g_a = analysis_gdn(N, M)
        self.g_s = synthesis_gdn(N, M)
        self.h_a = hyper_analysis(N, M)
        self.h_s = hyper_synthesis(N, M, 2 * M)  # (B,2M,h,w) = [σ ; μ]

    stacked_outputs = {"h_s.4": 2}  # h_s's last layer stacks [σ; μ] (for `licodec.train.widen`)

    def gaussian_parameters(self, psi: Tensor) -> tuple[Tensor, Tensor]:
        sigma, mu = psi.chunk(2, dim=1)  # (B,2M,h,w) -> 2 x (B,M,h,w)
        return mu, sigma


class _Abs(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.abs()
