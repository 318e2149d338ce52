"""The ``.lic`` container, format versions 1 and 2.

All integers little-endian. Layout::

    offset  size   field
    0       4      magic  b"\\x89LIC"
    4       1      format version (2; 1 is still read, see below)
    5       1      flags (reserved, 0)
    6       1      n = length of the model name (1..64)
    7       n      model name, ASCII [a-z0-9][a-z0-9.-]*: the registry key (e.g. "mbt2018-mean")
    7+n     8      weights fingerprint (first 8 bytes of SHA-256 over the weight tensors)
    +8      4      quality, float32
    +4      4      image height, u32
    +4      4      image width, u32
    +4      1      channels of the decoded image (1 = grayscale, 3 = RGB)
    +1      1      bit depth of the decoded image (8)
    +1      4      CRC32 of the decoded latents ẑ, ŷ (float32 bytes), checked after decoding
    +4      1      k = number of entropy-coded streams (1..16)
    +1      4k     stream lengths, u32 each
    ...            the k streams, concatenated
    end-4   4      CRC32 of every byte before it (header and payload)

Versions 1 and 2 share this layout and differ in how the decoder computes the entropy parameters
(the means and scale indices of the Gaussian conditional) from ẑ and the decoded ŷ: version 2 in
exact arithmetic (`licodec.entropy.exact`: the same symbols on every machine, device and thread
count); version 1 (licodec before 0.3) in float32 on one thread, which decodes on the machine type
that wrote the file. Writers make version 2; readers decode both, each as it was made.

Rules that keep old files decodable: the header never depends on registry order (models are
named, not numbered); a new model adds a name, never changes how an existing name decodes;
a reader refuses versions newer than it knows. Sizes are validated against `MAX_SIDE` and
`MAX_PIXELS` before anything is allocated.

How the encoder tiled its transforms (`licodec.models.tiling`) is deliberately not recorded (the
flags byte stays 0): decoding depends only on the coded latents, which the streams carry
exactly, and the decoder tiles its synthesis transform as it chooses.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from .errors import FormatError

MAGIC = b"\x89LIC"
VERSION = 2  # written; every version from 1 up to it is read
MAX_SIDE = 65_535
MAX_PIXELS = 2**26  # 67 Mpx (64 Mi): coding tiles the transforms, but the latents and the uint8 image stay whole
MAX_STREAMS = 16
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")  # registry keys; nothing a terminal would interpret
_FIXED = struct.Struct("<8sfIIBBIB")  # fingerprint, quality, h, w, channels, bit depth, latent crc, k


@dataclass
class LicFile:
    model: str
    fingerprint: bytes
    quality: float
    height: int
    width: int
    channels: int
    bit_depth: int
    latent_crc: int
    streams: list[bytes]
    version: int = VERSION

    @property
    def num_pixels(self) -> int:
        return self.height * self.width


def check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise FormatError(f"invalid image size {width}x{height}")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise FormatError(
            f"image size {width}x{height} exceeds the limit ({MAX_SIDE} per side, {MAX_PIXELS // 2**20} Mpx)"
        )


def pack(f: LicFile) -> bytes:
    if not MODEL_NAME.fullmatch(f.model):
        raise ValueError(f"model name must match {MODEL_NAME.pattern}, got {f.model!r}")
    name = f.model.encode("ascii")
    if len(f.fingerprint) != 8:
        raise ValueError("fingerprint must be 8 bytes")
    if not 1 <= len(f.streams) <= MAX_STREAMS:
        raise ValueError("1..16 streams")
    check_size(f.height, f.width)
    if not 1 <= f.version <= VERSION:
        raise ValueError(f"format version must be in 1..{VERSION}, got {f.version}")
    head = bytearray(MAGIC + bytes([f.version, 0, len(name)]) + name)
    head += _FIXED.pack(f.fingerprint, f.quality, f.height, f.width, f.channels, f.bit_depth,
                        f.latent_crc, len(f.streams))
    head += b"".join(struct.pack("<I", len(s)) for s in f.streams)
    body = bytes(head) + b"".join(f.streams)
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes) -> LicFile:
    """Parse and validate a whole .lic file; raises FormatError with a one-line reason."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise FormatError("not a .lic file (bad magic bytes)")
    if len(data) < 7:
        raise FormatError("truncated .lic file")
    version, flags, n = data[4], data[5], data[6]
    if version > VERSION:
        raise FormatError(f".lic format version {version} is newer than this licodec supports ({VERSION}); upgrade licodec")
    if version < 1:
        raise FormatError(f"invalid .lic format version {version}")
    pos = 7 + n
    if len(data) < pos + _FIXED.size + 4:
        raise FormatError("truncated .lic file")
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]):
        raise FormatError("corrupt or truncated .lic file (checksum mismatch)")
    if flags != 0 or not 1 <= n <= 64:
        raise FormatError("corrupt .lic header")
    model = data[7:pos].decode("latin-1")
    if not MODEL_NAME.fullmatch(model):
        raise FormatError("corrupt .lic header (model name)")
    fp, quality, h, w, channels, depth, lcrc, k = _FIXED.unpack_from(data, pos)
    pos += _FIXED.size
    check_size(h, w)
    if channels not in (1, 3) or depth != 8:
        raise FormatError(f"unsupported image layout in header ({channels} channels, {depth} bits)")
    if not 1 <= k <= MAX_STREAMS or len(data) < pos + 4 * k + 4:
        raise FormatError("corrupt .lic header (stream table)")
    lengths = struct.unpack_from(f"<{k}I", data, pos)
    pos += 4 * k
    if pos + sum(lengths) + 4 != len(data):
        raise FormatError("corrupt .lic file (stream lengths do not match the file size)")
    streams = []
    for ln in lengths:
        streams.append(data[pos : pos + ln])
        pos += ln
    return LicFile(model, fp, quality, h, w, channels, depth, lcrc, streams, version)
