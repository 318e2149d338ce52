import struct
import zlib

import pytest

from licodec.errors import FormatError
from licodec.format import MAGIC, LicFile, pack, unpack


def _file(**kw):
    d = dict(model="mbt2018-mean", fingerprint=b"12345678", quality=3.0, height=40, width=60,
             channels=3, bit_depth=8, latent_crc=0xDEADBEEF, streams=[b"abcd", b"efghijkl"])
    d.update(kw)
    return LicFile(**d)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_roundtrip():
    f = _file()
    assert unpack(pack(f)) == f


@pytest.mark.parametrize("data,msg", [
    (b"", "not a .lic"),
    (b"\x89PNG\r\n\x1a\n" + b"0" * 100, "not a .lic"),
    (MAGIC + b"\x01", "truncated"),
])
def test_foreign_and_tiny(data, msg):
    with pytest.raises(FormatError, match=msg):
        unpack(data)


def test_every_truncation_is_refused():
    data = pack(_file())
    for n in range(len(data)):
        with pytest.raises(FormatError):
            unpack(data[:n])


def test_every_single_bit_flip_is_refused():
    data = pack(_file())
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(FormatError):
            unpack(bytes(bad))


def test_every_version_roundtrips_and_new_files_are_version_4():
    assert pack(_file())[4] == 4
    for v in (1, 2, 3):
        old = _file(version=v)
        assert unpack(pack(old)) == old
        assert len(pack(old)) == len(pack(_file())) - 4  # no metadata length before version 4
    with pytest.raises(ValueError):
        pack(_file(version=5))


def test_metadata_roundtrips_and_is_covered_by_the_crc():
    f = _file()
    f.metadata = {"icc": b"\x00" * 16 + b"RGB " + bytes(range(100)), "exif": b"MM\x00*" + b"x" * 30}
    data = pack(f)
    assert unpack(data) == f and unpack(data).metadata == f.metadata
    assert len(data) == len(pack(_file())) + sum(8 + len(v) for v in f.metadata.values())
    for i in range(len(data) - 150, len(data)):  # the metadata section (and the CRC)
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(FormatError):
            unpack(bytes(bad))


def test_metadata_needs_version_4_and_known_keys():
    with pytest.raises(ValueError, match="cannot carry metadata"):
        pack(_file(version=3, metadata={"icc": b"abc"}))
    with pytest.raises(ValueError, match="unknown metadata"):
        pack(_file(metadata={"xmp": b"abc"}))


def test_unknown_metadata_chunks_are_skipped_and_malformed_ones_refused():
    from licodec.format import unpack_metadata

    known = b"ICCP" + struct.pack("<I", 3) + b"abc"
    assert unpack_metadata(b"XMP " + struct.pack("<I", 2) + b"<>" + known) == {"icc": b"abc"}
    for bad in (known + known, known[:-1], known + b"EXI", b"EXIF" + struct.pack("<I", 99) + b"x"):
        with pytest.raises(FormatError, match="metadata"):
            unpack_metadata(bad)


def test_metadata_length_that_contradicts_the_file_size_is_refused():
    data = bytearray(pack(_file()))
    pos = len(data) - 4 - sum(len(s) for s in _file().streams) - 4  # the metadata length field
    assert struct.unpack_from("<I", data, pos)[0] == 0
    struct.pack_into("<I", data, pos, 1 << 30)
    with pytest.raises(FormatError, match="metadata"):
        unpack(_recrc(bytes(data[:-4])))
    struct.pack_into("<I", data, pos, 5)
    with pytest.raises(FormatError, match="do not match the file size"):
        unpack(_recrc(bytes(data[:-4])))


def test_newer_version_refused_with_upgrade_hint():
    data = bytearray(pack(_file()))
    data[4] = 9
    with pytest.raises(FormatError, match="newer"):
        unpack(_recrc(bytes(data[:-4])))


def test_absurd_size_refused_before_allocation():
    data = bytearray(pack(_file()))
    pos = 7 + len("mbt2018-mean") + 8 + 4
    struct.pack_into("<II", data, pos, 100_000, 100_000)
    with pytest.raises(FormatError, match="exceeds the limit"):
        unpack(_recrc(bytes(data[:-4])))


def test_stream_table_must_match_file_size():
    data = bytearray(pack(_file()))
    pos = 7 + len("mbt2018-mean") + _file_fixed_size()
    struct.pack_into("<I", data, pos, 5)  # first stream claims 5 bytes instead of 4
    with pytest.raises(FormatError, match="stream lengths"):
        unpack(_recrc(bytes(data[:-4])))


def _file_fixed_size():
    from licodec.format import _FIXED

    return _FIXED.size


def test_pack_rejects_bad_fields():
    with pytest.raises(ValueError):
        pack(_file(model=""))
    with pytest.raises(FormatError):
        pack(_file(height=0))


@pytest.mark.parametrize("name", [b"evil\x1b[31m", b"a\rb", b"A-model", b"-x", b"x\x00"])
def test_model_names_with_control_or_odd_characters_are_refused(name):
    """The name ends up in error messages and `licodec info` output: only registry-key characters."""
    good = pack(LicFile("mbt2018-mean", b"\x00" * 8, 3.0, 8, 8, 3, 8, 0, [b"\x00" * 4, b"\x00" * 4]))
    n = good[6]
    body = good[:6] + bytes([len(name)]) + name + good[7 + n : -4]
    with pytest.raises(FormatError, match="model name"):
        unpack(body + struct.pack("<I", zlib.crc32(body)))
