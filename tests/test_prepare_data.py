"""Pure helpers of scripts/prepare_data.py on small synthetic inputs (offline, fast)."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from testkit import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_data.py"


@pytest.fixture(scope="module")
def pd():
    return load_script(SCRIPT, "prepare_data")


def photo(seed: int, size=(320, 240)) -> Image.Image:
    """A smooth random 'scene' (low-frequency noise upsampled) with some texture."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    im = Image.fromarray(low, "RGB").resize(size, Image.Resampling.BICUBIC)
    a = np.asarray(im, dtype=np.float64) + rng.normal(0, 4, (size[1], size[0], 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_dhash_near_and_far(pd):
    a = photo(1)
    h = pd.dhash(a)
    assert 0 <= h < 2**128
    assert pd.hamming(h, pd.dhash(a.copy())) == 0
    jpeg = Image.open(io.BytesIO(encode(a, "JPEG", quality=60)))
    assert pd.hamming(h, pd.dhash(jpeg)) <= pd.DEDUP_DISTANCE
    assert pd.hamming(h, pd.dhash(a.reduce(2))) <= pd.DEDUP_DISTANCE
    others = [pd.hamming(h, pd.dhash(photo(s))) for s in range(2, 8)]
    assert min(others) > pd.DEDUP_DISTANCE


def test_largest_jpeg_in_blob(pd):
    small = encode(photo(3, (64, 48)), "JPEG", quality=80)
    big = encode(photo(4, (200, 150)), "JPEG", quality=80, progressive=True)
    mid = encode(photo(5, (120, 90)), "JPEG", quality=80)
    junk = bytes(range(256)) * 3 + b"\xff\xd8\xff\x00garbage\xff\xd9"  # a false SOI
    blob = b"EET\x1e" + junk + small + junk + big + b"\x00" * 17 + mid + junk
    spans = pd.embedded_jpegs(blob)
    assert sorted((w, h) for _, _, w, h in spans) == [(64, 48), (120, 90), (200, 150)]
    assert pd.largest_jpeg(blob) == big
    with pytest.raises(pd.RecipeError):
        pd.largest_jpeg(junk)


def _qcompress(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + zlib.compress(data)


def make_rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A Qt rcc (format 3) bundle: path -> (bytes, zlib-compressed?)."""
    # Build the directory tree.
    tree: dict = {}
    for path, val in files.items():
        node = tree
        *dirs, leaf = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = val
    names, name_off = b"", {}
    data, nodes = b"", []

    def name(n: str) -> int:
        nonlocal names
        if n not in name_off:
            name_off[n] = len(names)
            enc = n.encode("utf-16-be")
            names += struct.pack(">HI", len(n), 0) + enc
        return name_off[n]

    # Breadth-first numbering: children of a directory are contiguous.
    nodes.append(["", tree])
    i = 0
    records = []
    while i < len(nodes):
        nm, val = nodes[i]
        if isinstance(val, dict):
            first = len(nodes)
            for child in sorted(val):
                nodes.append([child, val[child]])
            records.append((nm, 2, len(val), first, None))
        else:
            blob, comp = val
            payload = _qcompress(blob) if comp else blob
            records.append((nm, 1 if comp else 0, None, None, len(data)))
            data += struct.pack(">I", len(payload)) + payload
        i += 1
    tree_bytes = b""
    for nm, flags, count, first, off in records:
        noff = name(nm) if nm else 0
        if flags & 2:
            tree_bytes += struct.pack(">IHII", noff, flags, count, first)
        else:
            tree_bytes += struct.pack(">IHHHI", noff, flags, 0, 0, off)
        tree_bytes += struct.pack(">Q", 0)  # mtime (format >= 2)
    header = 24
    tree_off, data_off = header, header + len(tree_bytes)
    names_off = data_off + len(data)
    return (b"qres" + struct.pack(">IIIII", 3, tree_off, data_off, names_off, 0)
            + tree_bytes + data + names)


def test_rcc_entries(pd):
    webp = encode(photo(6, (40, 30)), "WEBP", quality=80)
    readme = b"Copyright: A. Person\nLicense: CC0-1.0\nSource: https://x/y.jpg\nFiles: cat.webp\n"
    bundle = make_rcc({
        "gcompris/src/activities/x/resource/cat.webp": (webp, False),
        "gcompris/src/activities/x/resource/README": (readme, True),
        "gcompris/src/activities/x/x.qml": (b"import QtQuick 2.12\n" * 20, True),
    })
    entries = pd.rcc_entries(bundle)
    assert set(entries) == {"gcompris/src/activities/x/resource/cat.webp",
                            "gcompris/src/activities/x/resource/README",
                            "gcompris/src/activities/x/x.qml"}
    assert entries["gcompris/src/activities/x/resource/cat.webp"] == webp
    assert entries["gcompris/src/activities/x/resource/README"] == readme
    with pytest.raises(pd.RecipeError):
        pd.rcc_entries(b"nope" + bundle[4:])


def test_parse_credits(pd):
    text = ("Copyright: T. G., 2022\nLicense: CC-BY-SA 4.0\nFiles:\na.svg\nb/c.svg\n\n"
            "Files: giraffe.webp\nSource: https://commons/x.JPG\nLicense: Public domain\n"
            "Copyright: S. C.\nComments: cropping\n")
    c = pd.parse_credits(text)
    assert set(c) == {"a.svg", "b/c.svg", "giraffe.webp"}
    assert c["b/c.svg"]["license"] == "CC-BY-SA 4.0"
    assert c["giraffe.webp"] == dict(license="Public domain", copyright="S. C.",
                                     source="https://commons/x.JPG")


def test_webp_lossless(pd):
    im = photo(7, (32, 32))
    assert pd.webp_lossless(encode(im, "WEBP", lossless=True))
    assert not pd.webp_lossless(encode(im, "WEBP", quality=80))
    assert not pd.webp_lossless(encode(im, "PNG"))


def test_choose_factor(pd):
    assert pd.choose_factor((2000, 1500), lossy=True) == 2
    assert pd.choose_factor((5120, 2880), lossy=True) == 3
    assert pd.choose_factor((512, 512), lossy=True) == 2
    assert pd.choose_factor((1024, 510), lossy=True) is None
    assert pd.choose_factor((500, 500), lossy=False) == 1
    assert pd.choose_factor((300, 255), lossy=False) is None


def test_glob_match(pd):
    assert pd.glob_match("usr/share/a/b.jpg", "usr/share/a/*.jpg")
    assert not pd.glob_match("usr/share/a/sub/b.jpg", "usr/share/a/*.jpg")
    assert pd.glob_match("usr/share/a/sub/b.jpg", "usr/share/**/b.jpg")
    assert pd.glob_match("x/Air Balloon.png", "x/Air Balloon.png")
    assert not pd.glob_match("x/a.jpgx", "x/*.jpg")


def test_downsample_and_normalise(pd):
    a = np.zeros((6, 8, 3), np.uint8)
    a[:, :, 0] = np.arange(8) * 30
    im = Image.fromarray(a, "RGB")
    box = pd.downsample(im, 2)
    assert box.size == (4, 3)
    assert np.asarray(box)[0, :, 0].tolist() == [15, 75, 135, 195]
    # A tone-squeezed image (range 100..150) is stretched to 0..255; a full-range one is not.
    rng = np.random.default_rng(0)
    squeezed = Image.fromarray(rng.integers(100, 151, (64, 64, 3)).astype(np.uint8), "RGB")
    out, stretch = pd.downsample_normalised(squeezed, 2)
    o = np.asarray(out)
    assert stretch is not None and o.min() == 0 and o.max() == 255
    full = photo(8, (64, 64))
    full = Image.fromarray(np.clip(np.asarray(full, np.int16) * 3 - 200, 0, 255).astype(np.uint8))
    out, stretch = pd.downsample_normalised(full, 1)
    assert stretch is None and np.array_equal(np.asarray(out), np.asarray(full))


def test_is_greyscale(pd):
    grey = photo(9).convert("L").convert("RGB")
    assert pd.is_greyscale(grey)
    assert not pd.is_greyscale(photo(9))


def test_sanitize(pd):
    assert pd.sanitize("1280px-Anse_Source_d'Argent_2-La_Digue") == \
        "1280px-Anse_Source_d_Argent_2-La_Digue"
    assert pd.sanitize("Air Balloon") == "Air_Balloon"


def test_val_names_unique_and_allow_lists_cover_packages(pd):
    assert len(set(pd.VAL_NAMES)) == len(pd.VAL_NAMES) >= 16
    for pkg in pd.DEBIAN_PACKAGES:
        if pkg not in ("mate-backgrounds", "plasma-workspace-wallpapers"):
            assert pd.ALLOW[pkg], pkg
