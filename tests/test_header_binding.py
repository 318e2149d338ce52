"""Format version 3 (issue 17, item 4): the latent check covers the header fields the decoder
depends on, so a header edited behind a recomputed file CRC fails instead of decoding to a wrong
image; version 1 and 2 files decode as before."""

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from conftest import tiny_model
from licodec.codec import Codec, decode
from licodec.errors import FormatError
from licodec.format import VERSION, header_crc, latent_check, unpack
from testkit.fuzz import layout
from licodec.weights import save_weights


def fix_crc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def edit(data: bytes, field: str, raw: bytes) -> bytes:
    off, size = layout(data).fields[field]
    assert len(raw) == size
    return fix_crc(data[:off] + raw + data[off + size :])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("hb")
    out = {}
    for name, kw, q in (("fixed", {}, 3), ("vr", {"rate_levels": 8}, None)):
        m = tiny_model("mbt2018-mean", **kw)
        with torch.no_grad():
            m.g_a[-1].weight.mul_(20)
        save_weights(m, d / f"{name}.safetensors", quality=q)
        out[name] = d / f"{name}.safetensors"
    return out


@pytest.fixture(scope="module")
def rgb(sample_rgb):
    return np.ascontiguousarray(sample_rgb[:96, :128])


def test_new_files_are_version_3_and_decode(weights, rgb):
    data = Codec.from_weights(weights["fixed"]).encode(rgb)
    f = unpack(data)
    assert f.version == VERSION == 4
    assert latent_check(f, f.latent_crc) != f.latent_crc  # the stored field is bound to the header
    assert latent_check(f, latent_check(f, 12345)) == 12345
    out, _ = decode(data, weights=weights["fixed"])
    assert out.shape == rgb.shape


@pytest.mark.parametrize(("field", "value"), [
    ("quality", struct.pack("<f", 8.0)),  # a q3 file read as q8
    ("height", struct.pack("<I", 90)),  # 96 -> 90: the same 64-pixel padding, the same latents
    ("width", struct.pack("<I", 100)),
    ("channels", bytes([1])),  # RGB read as grayscale
])
def test_an_edited_header_behind_a_valid_crc_fails(weights, rgb, field, value):
    data = Codec.from_weights(weights["fixed"]).encode(rgb)
    bad = edit(data, field, value)
    unpack(bad)  # a valid container: only the latent check can tell
    with pytest.raises(FormatError, match="cannot decode"):
        decode(bad, weights=weights["fixed"])


def test_an_edited_version_behind_a_valid_crc_fails(weights, rgb):
    data = Codec.from_weights(weights["fixed"]).encode(rgb, version=3)
    bad = edit(data, "version", bytes([2]))  # versions 2 and 3 share the layout: only the latent check can tell
    unpack(bad)
    with pytest.raises(FormatError, match="cannot decode"):
        decode(bad, weights=weights["fixed"])
    with pytest.raises(FormatError, match="do not match the file size"):  # 4 -> 3: the layout differs
        unpack(edit(Codec.from_weights(weights["fixed"]).encode(rgb), "version", bytes([3])))


def test_an_edited_quality_of_variable_rate_weights_fails(weights, rgb):
    data = Codec.from_weights(weights["vr"], quality=3.0).encode(rgb)
    bad = edit(data, "quality", struct.pack("<f", 5.0))
    with pytest.raises(FormatError, match="header"):
        decode(bad, weights=weights["vr"])


@pytest.mark.parametrize("version", [1, 2])
def test_old_versions_decode_as_before(weights, rgb, version):
    """Versions 1 and 2 keep their meaning (the field is the latents' CRC alone) — and so their
    limit: an in-range edited quality still decodes."""
    codec = Codec.from_weights(weights["vr"], quality=3.0)
    data = codec.encode(rgb, version=version)
    f = unpack(data)
    assert f.version == version and latent_check(f, f.latent_crc) == f.latent_crc
    out, _ = decode(data, weights=weights["vr"])
    assert out.shape == rgb.shape
    decode(edit(data, "quality", struct.pack("<f", 5.0)), weights=weights["vr"])


def test_header_crc_covers_every_field_the_decoder_reads(weights, rgb):
    f = unpack(Codec.from_weights(weights["fixed"]).encode(rgb))
    base = header_crc(f)
    for change in ({"quality": 8.0}, {"height": 95}, {"width": 127}, {"channels": 1}, {"bit_depth": 7},
                   {"version": 2}, {"fingerprint": b"\0" * 8}, {"model": "mbt2018-meam"}):
        g = unpack(Codec.from_weights(weights["fixed"]).encode(rgb))
        for k, v in change.items():
            setattr(g, k, v)
        assert header_crc(g) != base, change


def test_edited_header_through_the_cli(weights, rgb, tmp_path):
    data = Codec.from_weights(weights["fixed"]).encode(rgb)
    (tmp_path / "a.lic").write_bytes(edit(data, "quality", struct.pack("<f", 8.0)))
    r = subprocess.run([sys.executable, "-m", "licodec.cli", "decompress", str(tmp_path / "a.lic"), "--weights",
                        str(weights["fixed"])], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("licodec: error: cannot decode") and r.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.lic"]
