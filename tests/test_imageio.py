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


# --- metadata: ICC profile and Exif (issue 16, item 5) --------------------------------------------

def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _fake_profile(space: bytes) -> bytes:
    return bytes(16) + space + bytes(108)  # only the colour-space field matters here


def _exif(orientation=None) -> Image.Exif:
    ex = Image.Exif()
    ex[0x010F] = "licodec-test-camera"  # Make
    if orientation:
        ex[0x0112] = orientation
    ex.get_ifd(0x8769)[0x9003] = "2026:12:03 08:00:00"  # DateTimeOriginal, in the Exif sub-IFD
    return ex


def test_icc_profile_and_exif_are_read_without_the_applied_orientation(tmp_path):
    from licodec.imageio import save_image

    arr = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    icc = _srgb_profile()
    img = read_image(_save(tmp_path, arr, name="a.png", icc_profile=icc, exif=_exif(orientation=6)))
    assert img.rgb.shape == (10, 6, 3)  # rotated as a viewer shows it
    assert img.metadata["icc"] == icc
    ex = Image.Exif()
    ex.load(img.metadata["exif"])
    assert 0x0112 not in ex and ex[0x010F] == "licodec-test-camera"
    assert ex.get_ifd(0x8769)[0x9003] == "2026:12:03 08:00:00"
    for fmt, name in (("PNG", "o.png"), ("TIFF", "o.tif")):
        assert save_image(Image.fromarray(img.rgb), tmp_path / name, fmt, img.metadata) == []
        back = read_image(tmp_path / name)
        assert back.metadata["icc"] == icc and np.array_equal(back.rgb, img.rgb)
        assert Image.open(tmp_path / name).getexif()[0x010F] == "licodec-test-camera"
    notes = save_image(Image.fromarray(img.rgb), tmp_path / "o.ppm", "PPM", img.metadata)
    assert notes == ["ICC profile and Exif not written (PPM cannot carry them)"]


def test_no_metadata_when_the_image_has_none(tmp_path):
    img = read_image(_save(tmp_path, np.zeros((4, 4, 3), np.uint8)))
    assert img.metadata == {} and img.notes == []


def test_a_profile_of_another_colour_space_is_dropped_with_a_note(tmp_path):
    cmyk = np.full((4, 4, 4), 100, np.uint8)
    p = tmp_path / "c.jpg"
    Image.fromarray(cmyk, "CMYK").save(p, icc_profile=_fake_profile(b"CMYK"))
    img = read_image(p)
    assert "icc" not in img.metadata and any("CMYK ICC profile dropped" in n for n in img.notes)


def test_a_gray_profile_stays_with_a_gray_image_and_an_rgb_profile_keeps_it_rgb(tmp_path):
    arr = np.arange(16, dtype=np.uint8).reshape(4, 4)
    gray = read_image(_save(tmp_path, arr, name="g.png", icc_profile=_fake_profile(b"GRAY")))
    assert gray.channels == 1 and gray.metadata["icc"][16:20] == b"GRAY"
    rgb = read_image(_save(tmp_path, arr, name="r.png", icc_profile=_srgb_profile()))
    assert rgb.channels == 3 and rgb.metadata["icc"][16:20] == b"RGB "
