"""Classical codecs for the rate-distortion comparison: an (H, W, 3) uint8 image in, the bytes of
a real file out, and back. Every codec has a quality sweep chosen to cover about 0.1–1.5 bpp on
photographs (Kodak-like content); the label says library, settings and chroma format.

=========  ==========================  ==================================  ===========
key        library                     settings                            chroma
=========  ==========================  ==================================  ===========
jpeg       Pillow (libjpeg-turbo)      quality 5…80, baseline Huffman       4:2:0
webp       Pillow (libwebp)            quality 0…90, method 6               4:2:0
avif       Pillow (libavif + aom)      quality 5…75, speed 4 (fast: 8)      4:4:4
jxl        imagecodecs (libjxl)        distance 20…1, effort 7              XYB (none)
jpeg2000   Pillow (OpenJPEG)           target 0.1…1.5 bpp, 9/7 + ICT        4:4:4
hevc       ffmpeg (x265), raw .hevc    QP 47…26, intra, preset veryslow     4:4:4
                                       (fast: medium), tune ssim, as BPG
vvc        ffmpeg (vvenc), raw .266    QP 44…23, preset medium (fast:       4:2:0 10-bit
                                       faster), QPA off
=========  ==========================  ==================================  ===========

HEVC and VVC: the RGB → Y'CbCr conversion is done here, in float64 with the BT.601 full-range
matrix (JFIF; BPG's default), so that nothing depends on swscale's fixed-point arithmetic. x265
is configured as ``bpgenc`` configures it (CQP, every frame intra, tune ssim, no info SEI), and
the bitstream is the raw Annex-B stream without container, like BPG's payload. vvenc only codes
4:2:0 at 10 bits: the chroma planes are resampled by ffmpeg (lanczos) in both directions, and
odd sizes are padded by edge replication to even ones; both pad pictures smaller than 16 pixels
a side (bpp always counts the original pixels).

A codec whose library is missing is reported by `ClassicalCodec.unavailable` (a reason string)
and skipped by the caller, never a crash.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = ["CODEC_KEYS", "ClassicalCodec", "CodecFailed", "make_codec"]

CODEC_KEYS = ("jpeg", "webp", "avif", "jxl", "jpeg2000", "hevc", "vvc")


class CodecFailed(RuntimeError):
    """An encoder or decoder failed on an input (the run stops: results would be incomplete)."""


@dataclass
class ClassicalCodec:
    key: str  # the name used by --codecs and --anchor
    label: str  # legend / table name
    param: str  # what the sweep varies
    sweep: tuple[float, ...]  # from low to high rate
    suffix: str  # file extension of the written files
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes, tuple[int, int]], np.ndarray]
    check: Callable[[], str | None]  # None when usable, else why not
    settings: dict = field(default_factory=dict)

    def unavailable(self) -> str | None:
        return self.check()

    def version(self) -> str:
        return self.settings.get("version", "")

    def roundtrip(self, rgb: np.ndarray, data: bytes) -> np.ndarray:
        """Decode ``data`` and check it is an image of ``rgb``'s size."""
        h, w = rgb.shape[:2]
        out = self.decode(data, (h, w))
        if out.shape != (h, w, 3) or out.dtype != np.uint8:
            raise CodecFailed(f"{self.key}: decoder returned {out.shape} {out.dtype}, expected ({h}, {w}, 3) uint8")
        return out


def make_codec(key: str, *, fast: bool = False, threads: int = 0) -> ClassicalCodec:
    """The codec named ``key`` (one of `CODEC_KEYS`). ``fast`` picks quicker encoder presets for
    AVIF, HEVC and VVC (the label says so); ``threads`` > 0 limits the encoders' threads."""
    makers = {"jpeg": _jpeg, "webp": _webp, "avif": _avif, "jxl": _jxl, "jpeg2000": _jpeg2000,
              "hevc": _hevc, "vvc": _vvc}
    if key not in makers:
        raise KeyError(key)
    return makers[key](fast=fast, threads=threads)


# ----------------------------------------------------------------------------------------------
# Pillow: JPEG, WebP, AVIF, JPEG 2000


def _pillow_check(feature: str, what: str) -> Callable[[], str | None]:
    def check() -> str | None:
        from PIL import features

        return None if features.check(feature) else f"this Pillow was built without {what}"

    return check


def _pillow_encode(fmt: str, options: Callable[[float], dict]) -> Callable[[np.ndarray, float], bytes]:
    def encode(rgb: np.ndarray, param: float) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, fmt, **options(param))
        return buf.getvalue()

    return encode


def _pillow_decode(data: bytes, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _pillow_version(feature: str) -> str:
    from PIL import __version__, features

    return f"Pillow {__version__}, {feature} {features.version(feature) or '?'}"


def _jpeg(fast: bool, threads: int) -> ClassicalCodec:
    def settings() -> dict:
        from PIL import features

        turbo = "libjpeg-turbo" if features.check("libjpeg_turbo") else "libjpeg"
        return {"library": f"Pillow ({turbo})", "chroma": "4:2:0", "optimize": False}

    c = ClassicalCodec(
        "jpeg", "JPEG (4:2:0)", "quality", (5, 10, 15, 20, 30, 40, 50, 60, 70, 80), ".jpg",
        _pillow_encode("JPEG", lambda q: {"quality": int(q), "subsampling": "4:2:0"}),
        _pillow_decode, _pillow_check("jpg", "JPEG support"),
    )
    return _describe(c, lambda: {**settings(), "version": _pillow_version("jpg")})


def _webp(fast: bool, threads: int) -> ClassicalCodec:
    c = ClassicalCodec(
        "webp", "WebP (4:2:0)", "quality", (0, 10, 20, 30, 40, 50, 60, 70, 80, 90), ".webp",
        _pillow_encode("WEBP", lambda q: {"quality": int(q), "method": 6}),
        _pillow_decode, _pillow_check("webp", "WebP support"),
    )
    return _describe(c, lambda: {"library": "Pillow (libwebp)", "chroma": "4:2:0", "method": 6,
                                 "version": _pillow_version("webp")})


def _avif(fast: bool, threads: int) -> ClassicalCodec:
    speed = 8 if fast else 4

    def options(q: float) -> dict:
        opts = {"quality": int(q), "subsampling": "4:4:4", "speed": speed}
        if threads:
            opts["max_threads"] = threads
        return opts

    def check() -> str | None:
        from PIL import features

        if not features.check("avif"):
            return "this Pillow was built without AVIF (Pillow >= 11.2 wheels include it)"
        from PIL import _avif  # type: ignore[attr-defined]

        if not any(_avif.encoder_codec_available(c) for c in ("aom", "svt", "rav1e")):
            return "Pillow's libavif has no AV1 encoder"
        return None

    def version() -> str:
        from PIL import _avif  # type: ignore[attr-defined]

        return f"{_pillow_version('avif')} ({_avif.codec_versions()})"

    c = ClassicalCodec("avif", f"AVIF (4:4:4, speed {speed})", "quality", (5, 10, 20, 30, 40, 50, 60, 70, 75),
                       ".avif", _pillow_encode("AVIF", options), _pillow_decode, check)
    return _describe(c, lambda: {"library": "Pillow (libavif)", "chroma": "4:4:4", "speed": speed,
                                 "version": version()})


def _jpeg2000(fast: bool, threads: int) -> ClassicalCodec:
    def options(bpp: float) -> dict:
        # OpenJPEG rate control: compression ratio relative to 24-bit RGB; 9/7 wavelet with the
        # irreversible colour transform (ICT, Y'CbCr without subsampling); raw .j2k codestream.
        return {"quality_mode": "rates", "quality_layers": [24.0 / bpp], "irreversible": True,
                "mct": 1, "no_jp2": True}

    c = ClassicalCodec(
        "jpeg2000", "JPEG 2000 (4:4:4)", "target bpp", (0.1, 0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.5), ".j2k",
        _pillow_encode("JPEG2000", options), _pillow_decode, _pillow_check("jpg_2000", "JPEG 2000 (OpenJPEG)"),
    )
    return _describe(c, lambda: {"library": "Pillow (OpenJPEG)", "chroma": "4:4:4 (ICT)", "wavelet": "9/7",
                                 "version": _pillow_version("jpg_2000")})


# ----------------------------------------------------------------------------------------------
# imagecodecs: JPEG XL


def _jxl(fast: bool, threads: int) -> ClassicalCodec:
    effort = 7

    def check() -> str | None:
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed (pip install 'licodec[eval]')"
        available = getattr(getattr(imagecodecs, "JPEGXL", None), "available", False)
        return None if available else "this imagecodecs was built without JPEG XL"

    def encode(rgb: np.ndarray, distance: float) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(rgb, distance=float(distance), effort=effort,
                                               numthreads=threads or None))

    def decode(data: bytes, hw: tuple[int, int]) -> np.ndarray:
        import imagecodecs

        return np.asarray(imagecodecs.jpegxl_decode(data, numthreads=threads or None))

    def version() -> str:
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__}, {imagecodecs.jpegxl_version()}"

    c = ClassicalCodec("jxl", f"JPEG XL (effort {effort})", "distance", (20, 13, 9, 6, 4, 3, 2, 1.4, 1), ".jxl",
                       encode, decode, check)
    return _describe(c, lambda: {"library": "imagecodecs (libjxl)", "chroma": "XYB, no subsampling",
                                 "effort": effort, "version": version()})


# ----------------------------------------------------------------------------------------------
# ffmpeg (from imageio-ffmpeg): HEVC with x265, VVC with vvenc

# BT.601 luma weights; full range (JFIF, and BPG's default).
_KR, _KB = 0.299, 0.114
_KG = 1 - _KR - _KB
_RGB_TO_YCC = np.array([
    [_KR, _KG, _KB],
    [-_KR / (2 * (1 - _KB)), -_KG / (2 * (1 - _KB)), 0.5],
    [0.5, -_KG / (2 * (1 - _KR)), -_KB / (2 * (1 - _KR))],
])
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def rgb_to_ycbcr(rgb: np.ndarray, bits: int = 8) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) planar Y'CbCr, BT.601 full range, ``bits`` per sample."""
    ycc = rgb.astype(np.float64) @ _RGB_TO_YCC.T
    ycc[..., 1:] += 128.0
    scaled = np.rint(ycc * 2 ** (bits - 8))
    out = np.clip(scaled, 0, 2**bits - 1).astype(np.uint8 if bits == 8 else np.uint16)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def ycbcr_to_rgb(planes: np.ndarray, bits: int = 8) -> np.ndarray:
    """Inverse of `rgb_to_ycbcr`: (3, H, W) planar Y'CbCr -> (H, W, 3) uint8 RGB."""
    ycc = planes.transpose(1, 2, 0).astype(np.float64) / 2 ** (bits - 8)
    ycc[..., 1:] -= 128.0
    return np.clip(np.rint(ycc @ _YCC_TO_RGB.T), 0, 255).astype(np.uint8)


_FFMPEG_TIMING = "an ffmpeg process per call, including its start-up"


def _ffmpeg_exe() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


@lru_cache(maxsize=4)
def _ffmpeg_components(exe: str) -> tuple[frozenset[str], frozenset[str]]:
    """Names of the encoders and decoders this ffmpeg was built with."""

    def names(flag: str) -> frozenset[str]:
        out = subprocess.run([exe, "-hide_banner", flag], capture_output=True, text=True, timeout=60).stdout
        return frozenset(line.split()[1] for line in out.splitlines()
                         if len(line.split()) > 1 and len(line.split()[0]) == 6 and line.split()[0][0] in "VAS.")

    return names("-encoders"), names("-decoders")


def _ffmpeg_check(encoder: str, decoder: str) -> Callable[[], str | None]:
    def check() -> str | None:
        exe = _ffmpeg_exe()
        if exe is None:
            return "imageio-ffmpeg (which ships ffmpeg) is not installed (pip install 'licodec[eval]')"
        encoders, decoders = _ffmpeg_components(exe)
        if encoder not in encoders:
            return f"the ffmpeg of imageio-ffmpeg has no {encoder} encoder"
        if decoder not in decoders:
            return f"the ffmpeg of imageio-ffmpeg has no {decoder} decoder"
        return None

    return check


def _ffmpeg(args: list[str], data: bytes) -> bytes:
    exe = _ffmpeg_exe()
    r = subprocess.run([exe, "-hide_banner", "-nostdin", "-loglevel", "error", *args], input=data,
                       capture_output=True, timeout=3600)
    if r.returncode != 0 or not r.stdout:
        msg = r.stderr.decode(errors="replace").strip().splitlines()
        raise CodecFailed(f"ffmpeg failed: {msg[0] if msg else f'exit status {r.returncode}'}")
    return r.stdout


def _ffmpeg_version() -> str:
    import imageio_ffmpeg

    return f"ffmpeg {imageio_ffmpeg.get_ffmpeg_version()} (imageio-ffmpeg {imageio_ffmpeg.__version__})"


def _hevc(fast: bool, threads: int) -> ClassicalCodec:
    preset = "medium" if fast else "veryslow"  # bpgenc's default level 8 is x265's veryslow

    def encode(rgb: np.ndarray, qp: float) -> bytes:
        rgb = _pad(rgb, multiple=1)
        h, w = rgb.shape[:2]
        x265 = f"qp={int(qp)}:keyint=1:info=0:log-level=error"
        if threads:
            x265 += f":pools={threads}:frame-threads=1"
        return _ffmpeg(["-f", "rawvideo", "-pix_fmt", "yuv444p", "-s", f"{w}x{h}", "-i", "-", "-frames:v", "1",
                        "-c:v", "libx265", "-preset", preset, "-tune", "ssim", "-x265-params", x265,
                        "-f", "hevc", "-"], rgb_to_ycbcr(rgb, 8).tobytes())

    def decode(data: bytes, hw: tuple[int, int]) -> np.ndarray:
        h, w = hw
        hp, wp = _padded(h, 1), _padded(w, 1)
        raw = _ffmpeg(["-f", "hevc", "-i", "-", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "yuv444p", "-"], data)
        return ycbcr_to_rgb(_planes(raw, np.uint8, hp, wp), 8)[:h, :w]

    c = ClassicalCodec("hevc", f"HEVC (x265 4:4:4, {preset})", "QP", (47, 44, 41, 38, 35, 32, 29, 26), ".hevc",
                       encode, decode, _ffmpeg_check("libx265", "hevc"))
    return _describe(c, lambda: {"library": "ffmpeg (libx265), raw Annex-B stream", "chroma": "4:4:4, 8-bit",
                                 "colour": "BT.601 full range", "preset": preset, "tune": "ssim",
                                 "rate control": "constant QP, intra only", "timing": _FFMPEG_TIMING,
                                 "version": _ffmpeg_version()})


def _vvc(fast: bool, threads: int) -> ClassicalCodec:
    preset = "faster" if fast else "medium"
    resample = "scale=flags=lanczos+accurate_rnd"

    def encode(rgb: np.ndarray, qp: float) -> bytes:
        rgb = _pad(rgb, multiple=2)
        h, w = rgb.shape[:2]
        thr = ["-threads", str(threads)] if threads else []
        return _ffmpeg(["-f", "rawvideo", "-pix_fmt", "yuv444p10le", "-s", f"{w}x{h}", "-i", "-", "-frames:v", "1",
                        "-vf", resample, "-pix_fmt", "yuv420p10le", "-c:v", "libvvenc", "-preset", preset,
                        "-qp", str(int(qp)), "-qpa", "0", *thr, "-f", "vvc", "-"],
                       rgb_to_ycbcr(rgb, 10).astype("<u2").tobytes())

    def decode(data: bytes, hw: tuple[int, int]) -> np.ndarray:
        h, w = hw
        hp, wp = _padded(h, 2), _padded(w, 2)
        raw = _ffmpeg(["-f", "vvc", "-i", "-", "-frames:v", "1", "-vf", resample, "-f", "rawvideo",
                       "-pix_fmt", "yuv444p10le", "-"], data)
        return ycbcr_to_rgb(_planes(raw, np.dtype("<u2"), hp, wp), 10)[:h, :w]

    c = ClassicalCodec("vvc", f"VVC (vvenc 4:2:0, {preset})", "QP", (44, 41, 38, 35, 32, 29, 26, 23), ".266",
                       encode, decode, _ffmpeg_check("libvvenc", "vvc"))
    return _describe(c, lambda: {"library": "ffmpeg (libvvenc), raw Annex-B stream", "chroma": "4:2:0, 10-bit",
                                 "colour": "BT.601 full range", "preset": preset, "qpa": False,
                                 "rate control": "constant QP, single intra frame", "timing": _FFMPEG_TIMING,
                                 "version": _ffmpeg_version()})


def _planes(raw: bytes, dtype, h: int, w: int) -> np.ndarray:
    n = 3 * h * w * np.dtype(dtype).itemsize
    if len(raw) < n:
        raise CodecFailed(f"decoder returned {len(raw)} bytes, expected {n} for a {w}x{h} 4:4:4 frame")
    return np.frombuffer(raw[:n], dtype=dtype).reshape(3, h, w)


_MIN_SIDE = 16  # x265 and vvenc refuse pictures smaller than their minimum coding block


def _padded(n: int, multiple: int) -> int:
    return max(_MIN_SIDE, -(-n // multiple) * multiple)


def _pad(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate to a multiple of ``multiple`` and at least 16 pixels a side (cropped after decoding)."""
    h, w = rgb.shape[:2]
    hp, wp = _padded(h, multiple), _padded(w, multiple)
    if (hp, wp) != (h, w):
        rgb = np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    return rgb


def _describe(codec: ClassicalCodec, settings: Callable[[], dict]) -> ClassicalCodec:
    """Fill ``codec.settings`` (library versions) when the codec is usable."""
    if codec.unavailable() is None:
        codec.settings = settings()
    return codec
