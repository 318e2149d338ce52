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
of ``downsample`` and `decompress` crops back. `compress` also takes uint8 tensors (0..255, read as
x/255), converted tile by tile when the codec's runner tiles.

How the transforms run is not the model's business: `analysis` and `synthesis` call the model's
``runner`` (`Runner`: the whole image on torch's threads — training, evaluation, direct use),
which the codec replaces while it codes (`licodec.codec.runner`: g_a and g_s tile by tile on large
images, one CPU thread where float outputs become entropy-coded symbols). The model marks those
places with ``runner.symbols()`` and `parameter_arithmetic`.
"""

from __future__ import annotations

import dataclasses
import zlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy.exact import exact_arithmetic
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


def _as_float(x: Tensor) -> Tensor:
    """uint8 0..255 -> float32 x/255 (as `licodec.codec.to_tensor`); other dtypes unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def _clamp_to(dtype: torch.dtype):
    """x̂ -> what an output of ``dtype`` stores: clamped to [0, 1]; uint8: round(255·x̂) (as `licodec.codec.to_uint8`)."""
    if dtype == torch.uint8:
        return lambda t: t.clamp(0, 1).mul_(255).round_().to(torch.uint8)
    return lambda t: t.clamp(0, 1)


class Runner:
    """How a model runs its transforms: on the whole image, with torch's threads (training,
    evaluation, direct use). The codec installs `licodec.codec.runner.CodingRunner` instead while
    it codes; both take the same calls."""

    tile = 0  # pixels: the transforms run whole (the codec's runner may tile larger images)

    def analysis(self, model: "CompressionModel", x: Tensor) -> Tensor:
        """g_a(x): (B,3,H,W) float in [0, 1] or uint8 (read as x/255) -> (B,M,H/16,W/16)."""
        return model.transform(model.g_a, _as_float(x))

    def synthesis(self, model: "CompressionModel", y_hat: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """g_s(ŷ): (B,M,h,w) -> (B,3,16h,16w); with ``out``, written into it as `CompressionModel.synthesis` says."""
        x_hat = model.transform(model.g_s, y_hat)
        if out is None:
            return x_hat
        out.copy_(_clamp_to(out.dtype)(x_hat[..., : out.shape[-2], : out.shape[-1]]))
        return out

    def symbols(self):
        """Context for the float networks whose outputs the encoder rounds to symbols (g_a, h_a)."""
        return nullcontext()


class CompressionModel(nn.Module):
    name: ClassVar[str] = ""  # set by @register_model
    config_cls: ClassVar[type]
    downsample: ClassVar[int] = 64  # total stride of g_a ∘ h_a
    analysis_stride: ClassVar[int] = 16  # stride of g_a: y is (B,M,H/16,W/16)

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.bf16_transforms = False  # training option: run g_a/g_s under bfloat16 autocast (never when coding)
        self._compiled: dict = {}  # id(g_a or g_s) -> its torch.compile wrapper, used in training (a plain dict: not submodules)
        levels = getattr(config, "rate_levels", 0)
        self.gain = GainUnits(config.M, levels) if levels else None
        self.runner = Runner()  # how g_a and g_s run (see above); not a submodule, not in the weights

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
        """y = g_a(x), times the gain γ(q) for variable-rate models: (B,3,H,W) -> (B,M,H/16,W/16).

        x: float in [0, 1], or uint8 (read as x/255); H, W multiples of 16. Runs through `runner`."""
        y = self.runner.analysis(self, x)
        return y if q is None else y * self.gain.gain(q)

    def synthesis(self, y_hat: Tensor, q: Optional[Tensor], out: Optional[Tensor] = None) -> Tensor:
        """x̂ = g_s(ŷ), ŷ first times the inverse gain γ'(q) for variable-rate models:
        (B,M,h,w) -> (B,3,16h,16w). Runs through `runner`.

        out: when given, (B,3,H',W') with H' <= 16h, W' <= 16w: x̂ is written into it cropped to
        its size and clamped to [0, 1] — as round(255·x̂) if out is uint8 — and out is returned
        (the codec's runner then never builds the whole float x̂)."""
        if q is not None:
            y_hat = y_hat * self.gain.inverse_gain(q)
        return self.runner.synthesis(self, y_hat, out)

    def parameter_arithmetic(self, exact: bool):
        """Context for the networks that turn ẑ (and decoded ŷ) into table indices when coding:
        ``exact`` (files of format version 2 and later): exact arithmetic (`licodec.entropy.exact`),
        the same indices on every machine, device and thread count; otherwise (version 1 files,
        kept decodable): float32 under ``runner.symbols()``, reproducible on one machine only."""
        return exact_arithmetic() if exact else self.runner.symbols()

    def transform(self, f: nn.Module, x: Tensor) -> Tensor:
        """Apply g_a or g_s; in training with ``bf16_transforms`` under bfloat16 autocast on
        channels_last tensors (`licodec.precision`), returning float32 so that entropy models always
        compute in float32. Coding always runs in float32."""
        if self.training:
            f = self._compiled.get(id(f), f)
            if self.bf16_transforms:
                with torch.autocast(x.device.type, dtype=torch.bfloat16):
                    return f(x.contiguous(memory_format=torch.channels_last)).float()
        return f(x)

    def compile_transforms(self) -> None:
        """Training runs g_a and g_s through ``torch.compile`` (the same modules and parameters;
        evaluation and coding stay eager): bf16 training steps 1.7x faster on an AMD Zen 4 with
        AVX512-BF16 (benchmarks/results/train_speed_zen4.md) and about 2x on an Intel Xeon with AMX
        (train_speed.md), after ~10 s of compilation."""
        self._compiled.update({id(m): torch.compile(m) for m in (self.g_a, self.g_s)})

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: Tensor, quality=None) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def compress(self, x: Tensor, quality=None, exact: bool = True) -> Encoded:  # pragma: no cover - abstract
        """``exact``: the entropy parameters in exact arithmetic (`parameter_arithmetic`); False makes
        the streams of format version 1. Bytes independent of the thread count under the codec's
        runner (`licodec.codec.runner.coding`)."""
        raise NotImplementedError

    def decode_latents(self, streams: list[bytes], hw: tuple[int, int], exact: bool = True) -> dict[str, Tensor]:
        """Entropy-decode the streams into {"z_hat", "y_hat"} (the latents `compress` coded with the
        same ``exact``)."""
        raise NotImplementedError  # pragma: no cover - abstract

    @torch.no_grad()
    def decompress(self, streams: list[bytes], hw: tuple[int, int], checksum: int | None = None,
                   quality=None, out: Optional[Tensor] = None, exact: bool = True) -> Tensor:
        """Streams -> x̂ (1, 3, H, W) in [0, 1]; verifies the latent checksum when given.

        out: a (1, 3, H, W) tensor to write x̂ into (any dtype, device and strides; uint8 receives
        round(255·x̂)), returned instead of a new float tensor; see `synthesis`.
        exact: as the streams were made (`compress`)."""
        if out is not None and tuple(out.shape) != (1, 3, *hw):
            raise ValueError(f"out must have shape (1, 3, {hw[0]}, {hw[1]}), got {tuple(out.shape)}")
        q = self.quality_tensor(quality, 1, self.device)
        lat = self.decode_latents(streams, hw, exact)
        self.check_latents(checksum, lat["z_hat"], lat["y_hat"])
        if out is not None:
            return self.synthesis(lat["y_hat"], q, out=out)
        return self.synthesis(lat["y_hat"], q).clamp_(0, 1)[..., : hw[0], : hw[1]]

    @staticmethod
    def check_latents(checksum: int | None, *latents: Tensor) -> None:
        if checksum is not None and latent_checksum(*latents) != checksum:
            raise LatentMismatchError(
                "decoded latents do not match the encoder's checksum "
                "(corrupt stream, or encoder/decoder numerical divergence)"
            )
