"""Python API: images in, ``.lic`` bytes out, and back.

    from licodec.codec import Codec, decode
    codec = Codec.pretrained("mbt2018-mean", quality=3)
    data = codec.encode(rgb)                  # rgb: (H, W, 3) uint8 array
    rgb_hat, header = decode(data)            # finds the weights named by the file's fingerprint

Fixed-rate weights code at the quality they were trained for; variable-rate weights at any
quality in their range (``Codec.pretrained(name, 3.5)``), which the file header records.

Encoder effort (``Codec.pretrained(name, 3, effort=2)``, 0..4 or "max"): the encoder refines each
image's latents against the fixed decoder before coding them (`licodec.models.refine`): fewer
bits at the same quality for more encoding time; files decode as any other.

Large images: the transforms run tile by tile on images larger than ``tile`` pixels (default
1024; ``tile=0``: never; `licodec.codec.runner`, `licodec.codec.tiling`), the input is converted to float and the
output to uint8 tile by tile, so that peak memory grows with the image only through the uint8
image itself and the entropy models' work on the latents. Tiling is not recorded in the file:
decoding does not depend on how the encoder tiled (y is coded exactly), and the decoder may tile
differently.

Errors: every failure caused by the input — the data, a weight file, an argument — raises a
`licodec.errors.LicodecError` subclass with a one-line message: `FormatError` (a corrupt, foreign,
edited or over-budget ``.lic`` file), `ImageError` (an image the codec does not take),
`WeightsError` (a weight file that is missing, unreadable, inconsistent or out of bounds, or
weights that do not fit the file; also a ValueError), `UnknownModelError` (also a KeyError),
`ConfigError`, and `LicodecError` itself for bad arguments (device, tile, quality, max_pixels,
version). Anything else is a bug.
"""

from __future__ import annotations

import math
import numbers
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import FormatError, ImageError, LicodecError
from ..format import (HEADER_BINDING, INTEGER_TABLES, MAX_METADATA, METADATA_TAGS, METADATA_VERSION,
                     VERSION as FORMAT_VERSION, LicFile, check_size, latent_check, max_payload, pack, unpack)
from ..defaults import DEFAULT_MODEL, DEFAULT_QUALITY, DEFAULT_TILE, check_effort, check_tile  # noqa: F401
from ..entropy.coder import CodingError, legacy_tables
from ..entropy.exact import InexactOperationError
from ..rate import check_quality
from ..models.base import LatentMismatchError, _clamp_to
from ..weights import (WeightsError, find_by_fingerprint, find_weights, load_weights, retired_release,
                       shipped_models)
from .runner import coding


def resolve_device(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        device = str(device)
    if device is not None and not isinstance(device, str):
        raise LicodecError(f"device must be 'cpu' or 'cuda', not {type(device).__name__}")
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
    return _clamp_to(torch.uint8)(x[0]).permute(1, 2, 0).cpu().numpy()


def _number(value, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LicodecError(f"{what} must be a number, got {value!r:.40}") from None


def _check_image(rgb) -> np.ndarray:
    """An (H, W, 3) uint8 array, or ImageError."""
    if not isinstance(rgb, np.ndarray):
        try:
            rgb = np.asarray(rgb)
        except Exception:  # noqa: BLE001 - whatever the object is, it is not an image
            raise ImageError(f"the image must be an (H, W, 3) uint8 array, not {type(rgb).__name__}") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"the image must be an (H, W, 3) uint8 array, got shape {rgb.shape} {rgb.dtype}")
    return rgb


def _check_metadata(metadata, version: int) -> dict[str, bytes]:
    """``metadata`` as the dict `licodec.format.LicFile` carries, or LicodecError (checked before coding)."""
    if not metadata:
        return {}
    if not isinstance(metadata, dict) or set(metadata) - set(METADATA_TAGS) \
            or not all(isinstance(v, (bytes, bytearray)) for v in metadata.values()):
        raise LicodecError(f"metadata must be a dict of bytes with keys among {sorted(METADATA_TAGS)}")
    if version < METADATA_VERSION:
        raise LicodecError(f"format version {version} cannot carry metadata (version {METADATA_VERSION} can)")
    out = {k: bytes(v) for k, v in metadata.items() if v}
    if sum(len(v) + 8 for v in out.values()) > MAX_METADATA:
        raise ImageError(f"the image's metadata is larger than the format allows ({MAX_METADATA} bytes); "
                         "pass --strip to leave it out")
    return out


def _header_quality(q: float) -> float:
    """q as the float32 the header stores, so encoder and decoder use the very same value."""
    return float(np.float32(q))


class Codec:
    """A model with its weights, at one quality: the trained one of fixed-rate weights, or the
    chosen one (any value in 1..rate_levels) of variable-rate weights."""

    def __init__(self, model, info: dict, quality: float | None = None, tile: int = DEFAULT_TILE,
                 effort: int | str = 0):
        self.model, self.info = model, info
        try:
            self.effort = check_effort(effort)  # encoder effort: 0 (none) .. MAX_EFFORT (`licodec.models.refine`)
        except ValueError as e:
            raise LicodecError(str(e)) from None
        try:
            self.tile = check_tile(tile)  # pixels, or 0: never tile the transforms
        except (TypeError, ValueError) as e:
            raise LicodecError(f"tile: {e}") from None
        if info["quality"] is not None:  # fixed-rate weights: the quality is theirs
            if quality is not None and _number(quality, "quality") != info["quality"]:
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
                   tile: int = DEFAULT_TILE, effort: int | str = 0) -> Codec:
        return cls.from_weights(find_weights(name, _number(quality, "quality")), device, quality, tile, effort)

    @classmethod
    def from_weights(cls, path, device: str = "cpu", quality: float | None = None, tile: int = DEFAULT_TILE,
                     effort: int | str = 0) -> Codec:
        model, info = _load(str(path), str(resolve_device(device)))
        return cls(model, info, quality, tile, effort)

    def _coding(self, deterministic: bool = False):
        """The model (cached and shared between codecs) runs through the codec's runner with this
        codec's tile size meanwhile (`licodec.codec.runner.coding`)."""
        return coding(self.model, self.tile, deterministic)

    def encode(self, rgb: np.ndarray, channels: int = 3, version: int = FORMAT_VERSION,
               metadata: dict[str, bytes] | None = None) -> bytes:
        """rgb: an (H, W, 3) uint8 array; ``channels``: what the decoder restores (1: grayscale, the
        three channels equal; 3: RGB). ``version``: the .lic format version to write (1 to 3 only
        to make files for old readers and tests; see `licodec.format`). ``metadata``: carried, not
        coded: ``{"icc": profile bytes, "exif": Exif bytes}`` (either may be absent; version 4).
        Raises ImageError for an image the codec does not take and WeightsError for weights that
        cannot code it (values that overflow)."""
        rgb = _check_image(rgb)
        if channels not in (1, 3):
            raise ImageError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r:.20}")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise LicodecError(f"format version must be in 1..{FORMAT_VERSION}, got {version!r:.20}")
        metadata = _check_metadata(metadata, version)
        h, w = rgb.shape[:2]
        try:
            check_size(h, w)
        except FormatError as e:
            raise ImageError(str(e)) from None
        try:
            with self._coding(), legacy_tables(version < INTEGER_TABLES):
                enc = self.model.compress(to_uint8_tensor(rgb, self.model.device), self.quality, exact=version >= 2,
                                          effort=self.effort)
        except (CodingError, InexactOperationError) as e:
            raise WeightsError(f"{self.info.get('path', 'these weights')}: cannot code with these weights ({e})") from None
        if sum(map(len, enc.streams)) > max_payload(h, w, len(enc.streams)):
            raise WeightsError(f"{self.info.get('path', 'these weights')}: coded {sum(map(len, enc.streams))} bytes, "
                               f"more than the format allows for a {w}x{h} image (broken weights?)")
        f = LicFile(self.model.name, self.info["fingerprint"], self.quality, h, w, channels, 8, 0, enc.streams, version,
                    metadata)
        f.latent_crc = latent_check(f, enc.checksum)
        return pack(f)

    @contextmanager
    def _decoding(self, f: LicFile, deterministic: bool = False):
        """Decoding ``f`` meanwhile: the codec's runner and the file's tables; failures caused by
        the file or the weights become one-line `FormatError` / `WeightsError`."""
        if f.model != self.model.name or f.fingerprint != self.info["fingerprint"]:
            raise WeightsError(
                f"file was made with {f.model} weights {f.fingerprint.hex()}, "
                f"but these weights are {self.model.name} {self.info['fingerprint'].hex()}"
            )
        try:
            with self._coding(deterministic), legacy_tables(f.version < INTEGER_TABLES):
                yield
        except LatentMismatchError as e:
            if f.version < HEADER_BINDING:
                raise FormatError(f"cannot decode: {e}") from None
            raise FormatError("cannot decode: the decoded latents and the header (quality, size, channels, ...) do "
                              "not match the file's latent check (corrupt stream, edited header, or "
                              "encoder/decoder numerical divergence)") from None
        except InexactOperationError as e:
            raise WeightsError(f"{self.info.get('path', 'these weights')}: cannot decode with these weights ({e})") from None
        except (CodingError, ValueError) as e:
            raise FormatError(f"cannot decode: {e}") from None

    def decode_file(self, f: LicFile, deterministic: bool = False) -> np.ndarray:
        """``deterministic``: the same pixels whatever torch's thread count (g_s on one thread;
        the latents are the same in any case)."""
        rgb = torch.empty((1, f.height, f.width, 3), dtype=torch.uint8)  # the result, filled tile by tile
        with self._decoding(f, deterministic):
            self.model.decompress(f.streams, (f.height, f.width), latent_check(f, f.latent_crc), f.quality,
                                  out=rgb.permute(0, 3, 1, 2), exact=f.version >= 2)
        return rgb[0].numpy()

    def latents(self, f: LicFile) -> dict[str, torch.Tensor]:
        """The latents coded in ``f``, entropy-decoded as `decode_file` decodes them and checked
        against the file's latent check: ``{"z_hat": (1,N,H/64,W/64), "y_hat": (1,M,H/16,W/16)}``
        (H, W padded to multiples of 64; float32). Raises as `decode_file` does."""
        with self._decoding(f):
            lat = self.model.decode_latents(f.streams, (f.height, f.width), exact=f.version >= 2)
            self.model.check_latents(latent_check(f, f.latent_crc), lat["z_hat"], lat["y_hat"])
        return lat


def codec_for(f: LicFile, device: str = "cpu", weights: str | Path | None = None, tile: int = DEFAULT_TILE) -> Codec:
    """The codec that decodes ``f``: explicit weights, or the shipped ones with the same fingerprint."""
    if weights is not None:
        return Codec.from_weights(weights, device, tile=tile)
    from ..models import get_model_class

    get_model_class(f.model)  # unknown model name -> clear error
    path = find_by_fingerprint(f.model, f.fingerprint)
    if path is None:
        made = f"file was made with {f.model} weights {f.fingerprint.hex()}"
        release = retired_release(f.fingerprint)
        if release is not None:
            raise WeightsError(f"{made}, retired from this licodec: decode it with licodec {release} "
                               f"(pip install 'licodec=={release}.*') or pass --weights FILE")
        have = ", ".join(shipped_models()) or "none"
        raise WeightsError(
            f"{made} which are not installed "
            f"(shipped models: {have}); pass --weights FILE"
        )
    return Codec.from_weights(path, device, tile=tile)


def check_decode_budget(f: LicFile, max_pixels: int | None) -> None:
    """Refuse a file that declares more pixels than ``max_pixels`` before any decoding work.

    Decoding costs time and memory in proportion to the image size the header declares, and a
    tiny file can declare a huge image (every format's "decompression bomb"); `unpack` caps it
    at `licodec.format.MAX_PIXELS`, and a service decoding untrusted files sets a lower budget.
    ``max_pixels``: None (the format's limit) or a number (inf: no budget); NaN, a negative number
    or another type raises LicodecError rather than disabling the budget."""
    check_budget_argument(max_pixels)
    if max_pixels is not None and f.num_pixels > max_pixels:
        raise FormatError(f"the file declares a {f.width}x{f.height} image ({f.num_pixels / 1e6:.1f} Mpx), "
                          f"above the decode limit of {max_pixels / 1e6:.1f} Mpx (--max-pixels)")


def check_budget_argument(max_pixels) -> None:
    if max_pixels is None:
        return
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Real) or math.isnan(max_pixels) \
            or max_pixels < 0:
        raise LicodecError(f"max_pixels must be None or a number >= 0, got {max_pixels!r:.40}")


def decode(data, device: str = "cpu", weights=None, tile: int = DEFAULT_TILE,
           max_pixels: int | None = None, deterministic: bool = False) -> tuple[np.ndarray, LicFile]:
    """Decode a ``.lic`` file: (the (H, W, 3) uint8 image, the parsed header).

    data: the file's bytes (bytes, bytearray or memoryview). weights: the weight file to decode with
    (default: the shipped weights with the file's fingerprint). max_pixels: refuse files that
    declare more pixels, before any decoding work (`check_decode_budget`). deterministic: the same
    pixels whatever the thread count. Raises a `LicodecError` subclass for any input-caused
    failure (see the module docstring)."""
    check_budget_argument(max_pixels)
    f = unpack(data)
    check_decode_budget(f, max_pixels)
    return codec_for(f, device, weights, tile).decode_file(f, deterministic), f
