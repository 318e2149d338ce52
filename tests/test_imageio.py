import numpy as np
import pytest
from PIL import Image

from licodec.errors import ImageError
from licodec.imageio import read_image, to_output


def _save(tmp_path, arr, mode=None, name="im.png", **kw):
    p = tmp_path / name
    Image.fromarray(arr, mode).save(p, **kw) if mode else Image.fromarray(arr).save(p, **kw)
    return p


def test_rgb(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    img = read_image(_save(tmp_path, arr))
    assert img.channels == 3 and np.array_equal(img.rgb, arr)


def test_grayscale_is_replicated_and_marked(tmp_path):
    arr = np.arange(60, dtype=np.uint8).reshape(6, 10)
    img = read_image(_save(tmp_path, arr))
    assert img.channels == 1 and img.rgb.shape == (6, 10, 3)
    assert np.array_equal(img.rgb[..., 1], arr)
    assert to_output(img.rgb, 1).mode == "L"


def test_16bit_grayscale_reduced_to_8bit(tmp_path):
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    p = tmp_path / "g16.png"
    Image.fromarray(arr).save(p)
    img = read_image(p)
    assert img.channels == 1 and "16-bit" in img.notes[0]
    assert img.rgb[..., 0].max() == round(63000 / 257)


def test_palette_expanded(tmp_path):
    im = Image.new("P", (5, 4))
    im.putpalette([255, 0, 0] * 256)
    p = tmp_path / "p.png"
    im.save(p)
    img = read_image(p)
    assert img.channels == 3 and (img.rgb[..., 0] == 255).all()


def test_opaque_alpha_dropped_transparent_refused(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 3] = 255
    assert read_image(_save(tmp_path, arr, name="a.png")).channels == 3
    arr[0, 0, 3] = 10
    p = _save(tmp_path, arr, name="b.png")
    with pytest.raises(ImageError, match="alpha"):
        read_image(p)
    img = read_image(p, ignore_alpha=True)
    assert img.notes == ["alpha channel dropped"]


def test_one_pixel(tmp_path):
    img = read_image(_save(tmp_path, np.full((1, 1, 3), 7, dtype=np.uint8)))
    assert img.rgb.shape == (1, 1, 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_unreadable(tmp_path, content):
    p = tmp_path / "x.png"
    p.write_bytes(content)
    with pytest.raises(ImageError):
        read_image(p)


def test_truncated_pixel_data(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    p = _save(tmp_path, arr)
    p.write_bytes(p.read_bytes()[:-200])
    with pytest.raises(ImageError):
        read_image(p)


def test_missing_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError):
        read_image(tmp_path)


def test_absurd_size_refused_without_decoding(tmp_path):
    # a valid PNG header claiming 70000 x 70000 pixels, with no pixel data behind it
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 70000, 70000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    p = tmp_path / "huge.png"
    p.write_bytes(png)
    with pytest.raises(ImageError, match="exceeds the limit"):
        read_image(p)
