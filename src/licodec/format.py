"""The ``.lic`` container, format versions 1 to 4.

All integers little-endian. Layout::

    offset  size   field
    0       4      magic  b"\\x89LIC"
    4       1      format version (4; 1 to 3 are still read, see below)
    5       1      flags (reserved, 0)
    6       1      n = length of the model name (1..64)
    7       n      model name, ASCII [a-z0-9][a-z0-9.-]*: the registry key (e.g. "mbt2018-mean")
    7+n     8      weights fingerprint (first 8 bytes of SHA-256 over the model's weight tensors;
                   not the coding tables a weight file also stores)
    +8      4      quality, float32
    +4      4      image height, u32
    +4      4      image width, u32
    +4      1      channels of the decoded image (1 = grayscale, 3 = RGB)
    +1      1      bit depth of the decoded image (8)
    +1      4      latent check: CRC32 of the decoded latents ẑ, ŷ (float32 bytes), checked after
                   decoding; version 3: XOR the CRC32 of the header bytes 0 .. 7+n+21 (magic to
                   bit depth: `header_crc`)
    +4      1      k = number of entropy-coded streams (1..16)
    +1      4k     stream lengths, u32 each
    +4k     4      version 4: m = length of the metadata section, u32 (0: none)
    ...            the k streams, concatenated
    ...     m      version 4: the metadata section (below)
    end-4   4      CRC32 of every byte before it (header, payload and metadata)

The metadata section (version 4) is a sequence of chunks, each a 4-byte ASCII tag, a u32 length
and that many bytes: ``ICCP`` the image's ICC colour profile, ``EXIF`` its Exif block (TIFF
structure, as in a PNG ``eXIf`` chunk; orientation already applied to the pixels). A tag appears
at most once; readers skip tags they do not know (later versions may add some) and the decoder
never depends on the metadata. The section is at most `MAX_METADATA` bytes.

The versions share this layout (version 4 adds the metadata length and section). Versions 1 and 2 differ in how the decoder computes the entropy
parameters (the means and scale indices of the Gaussian conditional) from ẑ and the decoded ŷ:
version 2 in exact arithmetic (`licodec.entropy.exact`: the same symbols on every machine, device
and thread count); version 1 (licodec before 0.3) in float32 on one thread, which decodes on the
machine type that wrote the file. Version 3 decodes as version 2 and binds the header to the
latents: the latent check also covers every header field the decoder depends on (model name,
fingerprint, quality, size, channels, bit depth, version), so that a header edited or mis-written
behind a recomputed file CRC — a quality, a size within the same 64-pixel padding, a channel
count — fails the check instead of decoding to a wrong image. Version 4 decodes as version 3 and
carries the metadata, and is coded with licodec's integer tables (`INTEGER_TABLES`): the Gaussian
tables are integer constants of the format (`licodec.entropy.tables`), the factorized prior's are
stored in the weight file (or, for weight files saved before, computed at load), and licodec
quantizes probabilities into integer frequencies itself (`licodec.entropy.coder.quantize_pmf`), so
no float kernel, libm or constriction version decides a table. Versions 1 to 3 keep the tables
they were made with: float64 pmfs (the z pmf recomputed from the weights), quantized by
constriction (`licodec.entropy.coder.legacy_tables`); their bytes and latents do not change.
(Version 4 files written before the integer tables, by unreleased development versions, do not
decode.) Writers make version 4; readers decode all four, each as it was made (in versions 1 and
2 only the file CRC covers the header).

Rules that keep old files decodable: the header never depends on registry order (models are
named, not numbered); a new model adds a name, never changes how an existing name decodes;
a reader refuses versions newer than it knows. Sizes are validated against `MAX_SIDE` and
`MAX_PIXELS`, and the stream lengths against what the declared image can need (`max_payload`),
before anything is allocated; `read_header` does all of it from the first `HEADER_MAX` bytes and
the file size, so a reader can refuse a file before reading it.

How the encoder tiled its transforms (`licodec.codec.tiling`) is deliberately not recorded (the
flags byte stays 0): decoding depends only on the coded latents, which the streams carry
exactly, and the decoder tiles its synthesis transform as it chooses.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .errors import FormatError
from .registry import MODEL_NAME

MAGIC = b"\x89LIC"
VERSION = 4  # written; every version from 1 up to it is read
HEADER_BINDING = 3  # the first version whose latent check covers the header (`header_crc`)
METADATA_VERSION = 4  # the first version with a metadata section
INTEGER_TABLES = 4  # the first version coded with licodec's integer tables (`licodec.entropy.coder`)
MAX_METADATA = 1 << 24  # 16 MiB: above any real ICC profile plus Exif block
METADATA_TAGS = {"icc": b"ICCP", "exif": b"EXIF"}  # LicFile.metadata keys -> chunk tags
MAX_SIDE = 65_535
MAX_PIXELS = 2**26  # 67 Mpx (64 Mi): coding tiles the transforms, but the latents and the uint8 image stay whole
MAX_STREAMS = 16
_FIXED = struct.Struct("<8sfIIBBIB")  # fingerprint, quality, h, w, channels, bit depth, latent crc, k
_BOUND = struct.Struct("<8sfIIBB")  # the part of _FIXED that `header_crc` covers (up to the bit depth)
HEADER_MAX = 7 + 64 + _FIXED.size + 4 * MAX_STREAMS + 4  # the longest header: up to the streams
# Stream lengths are bounded by what the declared image can need: MAX_BITS_PER_PIXEL bits per pixel
# of the image padded to 64 (all streams together) plus STREAM_SLACK bytes per stream. Real files are
# far below (the shipped default at q8 on noise: ~10 bpp; random-init tiny models: < 30 bpp of the
# padded area); the encoder refuses to write more (`licodec.codec.Codec.encode`).
MAX_BITS_PER_PIXEL = 64
STREAM_SLACK = 4096
MAX_FILE_BYTES = 9 * MAX_PIXELS  # above every file a valid header allows (max_payload + MAX_METADATA <= 8.9 * MAX_PIXELS)


def _hex(b) -> str:
    return repr(b.hex()) if isinstance(b, (bytes, bytearray)) else repr(b)


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
    metadata: dict[str, bytes] = field(default_factory=dict)  # "icc", "exif" (version 4): not decoded, carried

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    def __repr__(self) -> str:  # the stream lengths, not their bytes (a header repr of 80 KB helps nobody)
        return (f"LicFile(model={self.model!r}, fingerprint={_hex(self.fingerprint)}, quality={self.quality!r}, "
                f"height={self.height}, width={self.width}, channels={self.channels}, bit_depth={self.bit_depth}, "
                f"latent_crc=0x{self.latent_crc:08x}, streams=<{len(self.streams)} streams: "
                f"{', '.join(str(len(x)) for x in self.streams)} bytes>, version={self.version}"
                + (f", metadata=<{', '.join(f'{k}: {len(v)} bytes' for k, v in self.metadata.items())}>"
                   if self.metadata else "") + ")")


def check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise FormatError(f"invalid image size {width}x{height}")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise FormatError(
            f"image size {width}x{height} exceeds the limit ({MAX_SIDE} per side, {MAX_PIXELS // 2**20} Mpx)"
        )


def max_payload(height: int, width: int, streams: int) -> int:
    """The most stream bytes (all streams together) a file of a height x width image may carry."""
    padded = -(-height // 64) * 64 * (-(-width // 64) * 64)
    return padded * MAX_BITS_PER_PIXEL // 8 + STREAM_SLACK * streams


def header_crc(f: LicFile) -> int:
    """CRC32 of the header bytes from the magic to the bit depth, as `pack` writes them for ``f``."""
    name = f.model.encode("latin-1")
    head = MAGIC + bytes([f.version, 0, len(name)]) + name
    return zlib.crc32(head + _BOUND.pack(f.fingerprint, f.quality, f.height, f.width, f.channels, f.bit_depth))


def latent_check(f: LicFile, latent_crc: int) -> int:
    """The header's latent-check field for latents whose CRC32 is ``latent_crc``, and back: the
    CRC32 the decoded latents must have for the field ``f.latent_crc`` (an involution). Version 3:
    XOR `header_crc`, so that the check covers the header too; older versions: unchanged."""
    return latent_crc ^ header_crc(f) if f.version >= HEADER_BINDING else latent_crc


def as_bytes(data) -> bytes:
    """``data`` (bytes, bytearray, memoryview or any buffer) as bytes; FormatError for other types
    and for buffers larger than any .lic file (checked before copying)."""
    if isinstance(data, bytes):
        return data
    try:
        view = memoryview(data)
    except TypeError:
        raise FormatError(f"a .lic file is bytes (or a bytearray or memoryview), not {type(data).__name__}") from None
    if view.nbytes > MAX_FILE_BYTES:
        raise FormatError(f"{view.nbytes} bytes: too large to be a .lic file")
    return view.tobytes()


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
    if sum(map(len, f.streams)) > max_payload(f.height, f.width, len(f.streams)):
        raise ValueError(f"{sum(map(len, f.streams))} bytes of streams: more than a {f.width}x{f.height} file may carry")
    head = bytearray(MAGIC + bytes([f.version, 0, len(name)]) + name)
    head += _FIXED.pack(f.fingerprint, f.quality, f.height, f.width, f.channels, f.bit_depth,
                        f.latent_crc, len(f.streams))
    head += b"".join(struct.pack("<I", len(s)) for s in f.streams)
    meta = pack_metadata(f.metadata)
    if meta and f.version < METADATA_VERSION:
        raise ValueError(f"format version {f.version} cannot carry metadata (version {METADATA_VERSION} can)")
    if f.version >= METADATA_VERSION:
        head += struct.pack("<I", len(meta))
    body = bytes(head) + b"".join(f.streams) + meta
    return body + struct.pack("<I", zlib.crc32(body))


def pack_metadata(metadata: dict[str, bytes]) -> bytes:
    """The metadata section for ``metadata`` (keys of `METADATA_TAGS`; empty values are left out)."""
    unknown = set(metadata) - set(METADATA_TAGS)
    if unknown:
        raise ValueError(f"unknown metadata {sorted(unknown)} (known: {sorted(METADATA_TAGS)})")
    out = b"".join(METADATA_TAGS[k] + struct.pack("<I", len(v)) + bytes(v) for k, v in metadata.items() if v)
    if len(out) > MAX_METADATA:
        raise ValueError(f"{len(out)} bytes of metadata: more than the format allows ({MAX_METADATA})")
    return out


def unpack_metadata(section: bytes) -> dict[str, bytes]:
    """Parse a metadata section; FormatError if it is malformed. Unknown tags are skipped."""
    keys = {tag: k for k, tag in METADATA_TAGS.items()}
    out: dict[str, bytes] = {}
    seen: set[bytes] = set()
    pos = 0
    while pos < len(section):
        if pos + 8 > len(section):
            raise FormatError("corrupt .lic file (metadata section)")
        tag, n = section[pos:pos + 4], struct.unpack_from("<I", section, pos + 4)[0]
        pos += 8
        if pos + n > len(section) or tag in seen:
            raise FormatError("corrupt .lic file (metadata section)")
        seen.add(tag)
        if tag in keys:
            out[keys[tag]] = bytes(section[pos:pos + n])
        pos += n
    return out


def _preamble(data: bytes, size: int) -> int:
    """Checks that need only the first 7 bytes and the size; returns the offset of the fingerprint."""
    if size < 4 or data[:4] != MAGIC:
        raise FormatError("not a .lic file (bad magic bytes)")
    if size < 7:
        raise FormatError("truncated .lic file")
    version = data[4]
    if version > VERSION:
        raise FormatError(f".lic format version {version} is newer than this licodec supports ({VERSION}); upgrade licodec")
    if version < 1:
        raise FormatError(f"invalid .lic format version {version}")
    pos = 7 + data[6]
    if size < pos + _FIXED.size + 4:
        raise FormatError("truncated .lic file")
    return pos


def read_header(data: bytes, size: int | None = None) -> tuple[LicFile, list[int], int]:
    """Validate a header from the first bytes of a file of ``size`` bytes (default: ``len(data)``;
    ``data`` must hold the first ``min(size, HEADER_MAX)`` bytes). Everything `unpack` checks but
    the file CRC, in the same order: magic, version, sizes, layout, stream table, stream lengths
    against the file size and against `max_payload`. Returns (the header with no streams, the
    stream lengths, the offset of the first stream); raises FormatError with a one-line reason."""
    size = len(data) if size is None else size
    pos = _preamble(data, size)
    flags, n = data[5], data[6]
    if flags != 0 or not 1 <= n <= 64:
        raise FormatError("corrupt .lic header")
    model = bytes(data[7:pos]).decode("latin-1")
    if not MODEL_NAME.fullmatch(model):
        raise FormatError("corrupt .lic header (model name)")
    fp, quality, h, w, channels, depth, lcrc, k = _FIXED.unpack_from(data, pos)
    pos += _FIXED.size
    check_size(h, w)
    if channels not in (1, 3) or depth != 8:
        raise FormatError(f"unsupported image layout in header ({channels} channels, {depth} bits)")
    if not 1 <= k <= MAX_STREAMS or size < pos + 4 * k + 4:
        raise FormatError("corrupt .lic header (stream table)")
    lengths = list(struct.unpack_from(f"<{k}I", data, pos))
    pos += 4 * k
    meta = 0
    if data[4] >= METADATA_VERSION:
        if size < pos + 4 + 4:
            raise FormatError("truncated .lic file")
        meta = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        if meta > MAX_METADATA:
            raise FormatError(f"corrupt .lic header ({meta} bytes of metadata, more than {MAX_METADATA})")
    total = sum(lengths)
    if pos + total + meta + 4 != size:
        raise FormatError("corrupt .lic file (stream lengths do not match the file size)")
    if total > max_payload(h, w, k):
        raise FormatError(f"corrupt .lic file ({total} bytes of streams, more than a {w}x{h} image can need: "
                          f"{max_payload(h, w, k)})")
    return LicFile(model, fp, quality, h, w, channels, depth, lcrc, [], data[4]), lengths, pos


def unpack(data) -> LicFile:
    """Parse and validate a whole .lic file (bytes, bytearray or memoryview); raises FormatError
    with a one-line reason."""
    data = as_bytes(data)
    _preamble(data, len(data))
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]):
        raise FormatError("corrupt or truncated .lic file (checksum mismatch)")
    f, lengths, pos = read_header(data)
    for ln in lengths:
        f.streams.append(data[pos : pos + ln])
        pos += ln
    if f.version >= METADATA_VERSION:
        f.metadata = unpack_metadata(data[pos:-4])
    return f
