"""Python API: images in, ``.lic`` bytes out, and back.

    from licodec.codec import Codec, decode
    codec = Codec.pretrained("mbt2018-mean", quality=3)
    data = codec.encode(rgb)                  # rgb: (H, W, 3) uint8 array
    rgb_hat, header = decode(data)            # finds the weights named by the file's fingerprint

Fixed-rate weights code at the quality they were trained for; variable-rate weights at any
quality in their range (``Codec.pretrained(name, 3.5)``), which the file header records.

Large images: the transforms run tile by tile on images larger than ``tile`` pixels (default
1024; ``tile=0``: never; `licodec.models.tiling`), the input is converted to float and the
output to uint8 tile by tile, so that peak memory grows with the image only through the uint8
image itself and the entropy models' work on the latents. Tiling is not recorded in the file:
decoding does not depend on how the encoder tiled (y is coded exactly), and the decoder may tile
differently.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .errors import FormatError, LicodecError
from .format import VERSION as FORMAT_VERSION, LicFile, check_size, pack, unpack
from .models.base import LatentMismatchError
from .models.tiling import DEFAULT_TILE, check_tile
from .entropy.coder import CodingError
from .rate import check_quality
from .weights import WeightsError, find_by_fingerprint, find_weights, load_weights, shipped_models

DEFAULT_MODEL = "mbt2018-mean"
DEFAULT_QUALITY = 3.0


def resolve_device(device: str | None) -> torch.device:
    device = device or "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LicodecError("--device cuda requested but no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise LicodecError(f"unknown device {device!r} (use cpu or cuda)")
    return torch.device(device)


@lru_cache(maxsize=8)
def _load(path: str, device: str):
    return load_weights(path, device=device)


def to_tensor(rgb: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float().div(255).to(device)


def to_uint8_tensor(rgb: np.ndarray, device) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (1, 3, H, W) uint8 tensor, a view of the array on the CPU (models
    read uint8 as x/255, converting tile by tile: no whole-image float copy). Never written to."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    with warnings.catch_warnings():  # a read-only array (np.asarray of a PIL image) is fine: nothing writes
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(rgb)
    return t.permute(2, 0, 1).unsqueeze(0).to(device)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def _header_quality(q: float) -> float:
    """q as the float32 the header stores, so encoder and decoder use the very same value."""
    return float(np.float32(q))


class Codec:
    """A model with its weights, at one quality: the trained one of fixed-rate weights, or the
    chosen one (any value in 1..rate_levels) of variable-rate weights."""

    def __init__(self, model, info: dict, quality: float | None = None, tile: int = DEFAULT_TILE):
        self.model, self.info = model, info
        try:
            self.tile = check_tile(tile)  # pixels, or 0: never tile the transforms
        except ValueError as e:
            raise LicodecError(str(e)) from None
        if info["quality"] is not None:  # fixed-rate weights: the quality is theirs
            if quality is not None and float(quality) != info["quality"]:
                raise WeightsError(f"{info.get('path', 'these weights')} are quality {info['quality']:g} weights "
                                   f"(fixed rate); quality {float(quality):g} needs other weights")
            self.quality = info["quality"]
        else:
            try:
                q = check_quality(DEFAULT_QUALITY if quality is None else quality, model.gain.levels)
            except ValueError as e:
                raise LicodecError(str(e)) from None
            self.quality = _header_quality(q)

    @classmethod
    def pretrained(cls, name: str = DEFAULT_MODEL, quality: float = DEFAULT_QUALITY, device: str = "cpu",
                   tile: int = DEFAULT_TILE) -> Codec:
        return cls.from_weights(find_weights(name, float(quality)), device, quality, tile)

    @classmethod
    def from_weights(cls, path, device: str = "cpu", quality: float | None = None, tile: int = DEFAULT_TILE) -> Codec:
        model, info = _load(str(path), str(resolve_device(device)))
        return cls(model, info, quality, tile)

    @contextmanager
    def _tiling(self):
        """The model (cached and shared between codecs) tiles with this codec's tile size meanwhile."""
        before, self.model.tile = self.model.tile, self.tile
        try:
            yield
        finally:
            self.model.tile = before

    def encode(self, rgb: np.ndarray, channels: int = 3, version: int = FORMAT_VERSION) -> bytes:
        """``version``: the .lic format version to write (1 only to make files for old readers
        and tests; see `licodec.format`)."""
        h, w = rgb.shape[:2]
        check_size(h, w)
        with self._tiling():
            enc = self.model.compress(to_uint8_tensor(rgb, self.model.device), self.quality, exact=version >= 2)
        return pack(LicFile(self.model.name, self.info["fingerprint"], self.quality, h, w,
                            channels, 8, enc.checksum, enc.streams, version))

    def decode_file(self, f: LicFile, deterministic: bool = False) -> np.ndarray:
        """``deterministic``: the same pixels whatever torch's thread count (g_s on one thread;
        the latents are the same in any case)."""
        if f.model != self.model.name or f.fingerprint != self.info["fingerprint"]:
            raise WeightsError(
                f"file was made with {f.model} weights {f.fingerprint.hex()}, "
                f"but these weights are {self.model.name} {self.info['fingerprint'].hex()}"
            )
        rgb = torch.empty((1, f.height, f.width, 3), dtype=torch.uint8)  # the result, filled tile by tile
        try:
            with self._tiling():
                self.model.decompress(f.streams, (f.height, f.width), f.latent_crc, f.quality,
                                      out=rgb.permute(0, 3, 1, 2), exact=f.version >= 2,
                                      deterministic=deterministic)
        except (CodingError, LatentMismatchError, ValueError) as e:
            raise FormatError(f"cannot decode: {e}") from None
        return rgb[0].numpy()


def codec_for(f: LicFile, device: str = "cpu", weights: str | Path | None = None, tile: int = DEFAULT_TILE) -> Codec:
    """The codec that decodes ``f``: explicit weights, or the shipped ones with the same fingerprint."""
    if weights is not None:
        return Codec.from_weights(weights, device, tile=tile)
    from .registry import get_model_class

    get_model_class(f.model)  # unknown model name -> clear error
    path = find_by_fingerprint(f.model, f.fingerprint)
    if path is None:
        have = ", ".join(shipped_models()) or "none"
        raise WeightsError(
            f"file was made with {f.model} weights {f.fingerprint.hex()} which are not installed "
            f"(shipped models: {have}); pass --weights FILE"
        )
    return Codec.from_weights(path, device, tile=tile)


def check_decode_budget(f: LicFile, max_pixels: int | None) -> None:
    """Refuse a file that declares more pixels than ``max_pixels`` before any decoding work.

    Decoding costs time and memory in proportion to the image size the header declares, and a
    tiny file can declare a huge image (every format's "decompression bomb"); `unpack` caps it
    at `licodec.format.MAX_PIXELS`, and a service decoding untrusted files sets a lower budget."""
    if max_pixels is not None and f.num_pixels > max_pixels:
        raise FormatError(f"the file declares a {f.width}x{f.height} image ({f.num_pixels / 1e6:.1f} Mpx), "
                          f"above the decode limit of {max_pixels / 1e6:.1f} Mpx (--max-pixels)")


def decode(data: bytes, device: str = "cpu", weights=None, tile: int = DEFAULT_TILE,
           max_pixels: int | None = None, deterministic: bool = False) -> tuple[np.ndarray, LicFile]:
    f = unpack(data)
    check_decode_budget(f, max_pixels)
    return codec_for(f, device, weights, tile).decode_file(f, deterministic), f
