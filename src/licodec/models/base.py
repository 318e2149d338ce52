"""Common interface of every licodec model.

A model is an ``nn.Module`` with a dataclass ``config`` and three entry points that share the
same transforms and context model:

- ``forward(x, quality)``               training / evaluation: ``{"x_hat", "likelihoods": {"y", "z"}}``
- ``compress(x, quality)``              -> `Encoded` (entropy-coded streams + checksum of ẑ and ŷ)
- ``decompress(streams, hw, quality)``  -> x̂ of size hw

``quality`` matters only for variable-rate models (config ``rate_levels`` > 0: gain units,
`licodec.models.gain`); a fixed-rate model's quality is a property of its weights and the
argument is ignored.

Inputs are (1, 3, H, W) tensors in [0, 1] of any size: `compress` pads (replicate) to a multiple
of ``downsample`` and `decompress` crops back.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..rate import check_quality
from .gain import GainUnits


@dataclass
class RateConfig:
    """Base of every model config: the variable-rate switch (fields of subclasses come after it)."""

    rate_levels: int = 0  # 0: fixed-rate weights; L >= 2: one set of weights for q ∈ [1, L] (gain units)


@dataclass
class Encoded:
    streams: list[bytes]
    checksum: int  # CRC32 of ẑ and ŷ (float32 bytes): catches encoder/decoder divergence
    latents: dict[str, Tensor] = field(default_factory=dict, repr=False)  # {"z_hat", "y_hat"} as coded


class LatentMismatchError(ValueError):
    """The decoder reconstructed different latents than the encoder produced."""


def latent_checksum(*latents: Tensor) -> int:
    crc = 0
    for t in latents:
        crc = zlib.crc32(t.detach().float().cpu().contiguous().numpy().tobytes(), crc)
    return crc


def pad_to(x: Tensor, multiple: int) -> Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # replicate needs a non-empty border; 1x1 images pad fine
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


class CompressionModel(nn.Module):
    name: ClassVar[str] = ""  # set by @register_model
    config_cls: ClassVar[type]
    downsample: ClassVar[int] = 64  # total stride of g_a ∘ h_a

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.bf16_transforms = False  # training option: run g_a/g_s under bfloat16 autocast (never when coding)
        levels = getattr(config, "rate_levels", 0)
        self.gain = GainUnits(config.M, levels) if levels else None

    @property
    def variable_rate(self) -> bool:
        return self.gain is not None

    def quality_tensor(self, quality, batch: int, device) -> Optional[Tensor]:
        """``quality`` (a number or a (B,) tensor) as a float32 (B,) tensor for the gain units;
        None for fixed-rate models. Raises ValueError when a variable-rate model gets none or one
        outside [1, rate_levels]."""
        if self.gain is None:
            return None
        if quality is None:
            raise ValueError(f"{self.name} weights are variable-rate: a quality in 1..{self.gain.levels} is needed")
        if not isinstance(quality, Tensor):
            quality = torch.tensor([check_quality(quality, self.gain.levels)])
        q = quality.to(device=device, dtype=torch.float32).reshape(-1)
        if not bool(((q >= 1) & (q <= self.gain.levels)).all()):
            raise ValueError(f"quality outside the range 1..{self.gain.levels}")
        return q.expand(batch) if q.numel() == 1 else q

    def analysis(self, x: Tensor, q: Optional[Tensor]) -> Tensor:
        """y = g_a(x), times the gain γ(q) for variable-rate models: (B,3,H,W) -> (B,M,H/16,W/16)."""
        y = self.transform(self.g_a, x)
        return y if q is None else y * self.gain.gain(q)

    def synthesis(self, y_hat: Tensor, q: Optional[Tensor]) -> Tensor:
        """x̂ = g_s(ŷ), ŷ first times the inverse gain γ'(q) for variable-rate models."""
        if q is not None:
            y_hat = y_hat * self.gain.inverse_gain(q)
        return self.transform(self.g_s, y_hat)

    def transform(self, f: nn.Module, x: Tensor) -> Tensor:
        """Apply g_a or g_s; in training with ``bf16_transforms`` under bfloat16 autocast, returning
        float32 so that entropy models always compute in float32. Coding always runs in float32."""
        if self.training and self.bf16_transforms:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return f(x).float()
        return f(x)

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: Tensor, quality=None) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def compress(self, x: Tensor, quality=None) -> Encoded:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode_latents(self, streams: list[bytes], hw: tuple[int, int]) -> dict[str, Tensor]:
        """Entropy-decode the streams into {"z_hat", "y_hat"} (the latents `compress` coded)."""
        raise NotImplementedError  # pragma: no cover - abstract

    @torch.no_grad()
    def decompress(self, streams: list[bytes], hw: tuple[int, int], checksum: int | None = None,
                   quality=None) -> Tensor:
        """Streams -> x̂ (1, 3, H, W) in [0, 1]; verifies the latent checksum when given."""
        q = self.quality_tensor(quality, 1, self.device)
        lat = self.decode_latents(streams, hw)
        self.check_latents(checksum, lat["z_hat"], lat["y_hat"])
        return self.synthesis(lat["y_hat"], q).clamp_(0, 1)[..., : hw[0], : hw[1]]

    @staticmethod
    def check_latents(checksum: int | None, *latents: Tensor) -> None:
        if checksum is not None and latent_checksum(*latents) != checksum:
            raise LatentMismatchError(
                "decoded latents do not match the encoder's checksum "
                "(corrupt stream, or encoder/decoder numerical divergence)"
            )
