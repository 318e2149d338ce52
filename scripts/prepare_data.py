#!/usr/bin/env python3
"""Reproducible training-data recipe for licodec (stdlib + numpy + pillow only).

Sources (downloaded once into the cache, everything afterwards works offline):

* Debian packages ``mate-backgrounds`` and ``plasma-workspace-wallpapers``
  (``apt-get download`` + ``dpkg-deb -x``); only the photographs are kept.
* The colour photographs bundled in the ``scikit-image`` wheel
  (``pip download scikit-image --no-deps --only-binary=:all:`` for the running
  interpreter; read straight from the zip).

JPEG sources are downsampled with a box filter (``Image.reduce``), which
averages away most of the compression artefacts, by the smallest factor the
recipe allows, f = 2 (to keep as many training pixels as possible), or f = 3
if the short side after 2x downsampling would exceed 1200 px.  A JPEG whose
short side would drop below 256 px at f = 2 is dropped.  PNG sources (the
scikit-image photos) are used as they are (f = 1).  Results are written as
PNG to ``<out>/train`` and ``<out>/val`` with the name
``<source>-<stem>.png``, plus ``<out>/manifest.json``.

A 768x512 centre crop of the first Debian validation photo (after its
downsampling) is written to ``<out>/val768/`` for timing benchmarks (not part
of the package; recorded under ``val768`` in the manifest).

scikit-image's ``coffee.png`` (600x400, CC0) is copied byte-for-byte to
``src/licodec/data/sample.png`` (with ``SAMPLE_LICENSE.txt``) for the quick
start.

Usage::

    python scripts/prepare_data.py [--out data] [--cache data/cache]

Re-running with the cache present performs no downloads.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "src" / "licodec" / "data"

JPEG_FACTOR = 2  # minimum downsampling factor for JPEG sources
LARGE_JPEG_FACTOR = 3  # used when the short side at JPEG_FACTOR would exceed MAX_SHORT
MAX_SHORT = 1200  # largest short side allowed at JPEG_FACTOR
MIN_SHORT = 256  # JPEGs whose short side at JPEG_FACTOR is below this are dropped
BENCH_SIZE = (768, 512)  # centre crop written to <out>/val768

DEBIAN_PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers")

# --- Allow-lists -----------------------------------------------------------
# Chosen by looking at every image in the packages (Debian bookworm versions
# mate-backgrounds 1.26.0-1, plasma-workspace-wallpapers 4:5.27.5-2).
#
# mate-backgrounds: all 12 files in nature/ are photographs.  abstract/ and
# desktop/ are vector art, gradients, stripes, logos or painted/"aurora"
# renders (Elephants is a painting) -> excluded.
MATE_PHOTOS = (
    "nature/Aqua.jpg",
    "nature/Blinds.jpg",
    "nature/Dune.jpg",
    "nature/FreshFlower.jpg",
    "nature/Garden.jpg",
    "nature/GreenMeadow.jpg",
    "nature/LadyBird.jpg",
    "nature/RainDrops.jpg",
    "nature/Storm.jpg",
    "nature/TwoWings.jpg",
    "nature/Wood.jpg",
    "nature/YellowFlower.jpg",
)
# plasma-workspace-wallpapers: most wallpapers are renders (Altai, Canopee,
# Cascade, Cluster, Elarun, Flow, FlyingKonqui, Honeywave, IceCold, Kay,
# Kokkini, MilkyWay, Opal, PastelHills, Patak, SafeLanding, Shell, Volna) or
# paintings (Autumn) -> excluded.  The photographs are listed below.  Grey and
# ColdRipple are photographs too but purely grayscale (R == G == B), which is
# useless for a colour codec -> excluded.  Only contents/images/ is used
# (never images_dark/), and of its files only the largest one (by real pixel
# count; most "resolutions" are symlinks to the same file).
PLASMA_PHOTOS = (
    "BytheWater",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
# scikit-image skimage/data: real colour photographs only.  Grayscale images
# (camera, moon, coins, brick, grass, gravel, ...), synthetic ones (color,
# phantom, chessboard, logo, horse) and scientific imagery (hubble_deep_field,
# retina, ihc) are excluded; motorcycle_right is the other half of the stereo
# pair of motorcycle_left (near-duplicate) -> excluded.  rocket.jpg is a JPEG
# too small for 2x downsampling (short side 213 < 256), so the size rule
# drops it.
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "rocket.jpg",
)
SKIMAGE_WHEEL: Path | None = None  # set by collect_sources()

SKIMAGE_LICENSES = {  # as stated in the docstrings of skimage/data/_fetchers.py
    "astronaut.png": "public domain (NASA; no known copyright restrictions)",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "motorcycle_left.png": "Middlebury 2014 stereo benchmark (no licence stated)",
    "rocket.jpg": "public domain (SpaceX)",
}

# --- Validation split ------------------------------------------------------
# Four photos with varied content, never used for training: three Debian
# photos (a landscape with grass/sea/sky, a macro shot, an HDR sunset scene
# with boats) and scikit-image's coffee (saturated man-made objects, smooth
# porcelain and wood grain; CC0).  coffee replaced plasma-ColorfulCups, which
# covered the same kind of content and is now used for training.
VAL_NAMES = (
    "mate-Dune",
    "mate-LadyBird",
    "plasma-EveningGlow",
    "skimage-coffee",
)
# First Debian validation photo; its 768x512 centre crop goes to <out>/val768.
BENCH_SOURCE = "mate-Dune"

# --- Bundled sample --------------------------------------------------------
# scikit-image's coffee.png at its native size (600x400), copied byte-for-byte
# from the wheel (lossless; it is already an 8-bit RGB PNG).  Licence: the
# coffee() docstring in skimage/data/_fetchers.py says "No copyright
# restrictions.  CC0 by the photographer (Rachel Michetti)."; the wheel's
# dist-info/LICENSE.txt covers all files ("Files: *") as BSD-3-Clause,
# (c) 2009-2022 the scikit-image team.  skimage/data/README.txt states no
# licence.
SAMPLE_SOURCE = "skimage-coffee"
SAMPLE_MEMBER = "skimage/data/coffee.png"
SAMPLE_LICENSE_TEXT = """\
sample.png -- scikit-image's "coffee" photograph (coffee cup), 600x400,
an unmodified, byte-for-byte copy of the file in the scikit-image wheel.

Source:    scikit-image {version} (PyPI wheel {wheel}),
           package data file skimage/data/coffee.png
           (upstream: https://github.com/scikit-image/scikit-image)
           sha256 {sha256}
Author:    Rachel Michetti; photograph courtesy of Pikolo Espresso Bar.
License:   CC0 -- the coffee() docstring in skimage/data/_fetchers.py of
           the wheel states:
             "No copyright restrictions.  CC0 by the photographer
              (Rachel Michetti)."
           (https://creativecommons.org/publicdomain/zero/1.0/)
           The wheel's scikit_image-{version}.dist-info/LICENSE.txt covers
           all files of the package ("Files: *") under
             Copyright: 2009-2022 the scikit-image team
             License: BSD-3-Clause
           (skimage/data/README.txt in the wheel states no licence.)

Regenerate with: python scripts/prepare_data.py
"""


class RecipeError(Exception):
    pass


# --------------------------------------------------------------------------
# Download / extraction (cached)
# --------------------------------------------------------------------------


def fetch_deb(pkg: str, deb_dir: Path) -> Path:
    deb_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(deb_dir.glob(f"{pkg}_*.deb"))
    if not found:
        if shutil.which("apt-get") is None:
            raise RecipeError(f"apt-get not found; cannot download {pkg}")
        print(f"downloading {pkg} with apt-get ...", flush=True)
        proc = subprocess.run(
            ["apt-get", "download", pkg], cwd=deb_dir, capture_output=True, text=True
        )
        found = sorted(deb_dir.glob(f"{pkg}_*.deb"))
        if proc.returncode != 0 or not found:
            err = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise RecipeError(f"apt-get download {pkg} failed: {err}")
    return found[-1]


def extract_deb(deb: Path, dest: Path) -> Path:
    marker = dest / ".extracted"
    if marker.exists() and marker.read_text() == deb.name:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RecipeError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()}")
    marker.write_text(deb.name)
    return dest


def deb_version(deb: Path) -> str:
    proc = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def fetch_skimage_wheel(wheel_dir: Path) -> Path:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = sorted(wheel_dir.glob(f"scikit_image-*-{tag}-*.whl"))
    if not found:
        print("downloading scikit-image wheel with pip ...", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "scikit-image", "--no-deps",
             "--only-binary=:all:", "-d", str(wheel_dir)],
            capture_output=True, text=True,
        )
        found = sorted(wheel_dir.glob(f"scikit_image-*-{tag}-*.whl"))
        if proc.returncode != 0 or not found:
            err = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise RecipeError(f"pip download scikit-image failed: {err}")
    return found[-1]


# --------------------------------------------------------------------------
# Source enumeration
# --------------------------------------------------------------------------


def pixel_count(path: str) -> int:
    with Image.open(path) as im:
        return im.size[0] * im.size[1]


def collect_sources(cache: Path) -> list[dict]:
    """Return a list of dicts: name, source, version, source_file, license, loader."""
    sources: list[dict] = []

    debs = {pkg: fetch_deb(pkg, cache / "debs") for pkg in DEBIAN_PACKAGES}
    roots = {pkg: extract_deb(deb, cache / "extract" / pkg) for pkg, deb in debs.items()}

    pkg = "mate-backgrounds"
    base = roots[pkg] / "usr/share/backgrounds/mate"
    for rel in MATE_PHOTOS:
        path = base / rel
        if not path.is_file():
            raise RecipeError(f"{pkg}: expected file {rel} missing (package changed?)")
        sources.append(dict(
            name=f"mate-{path.stem}", source=pkg, version=deb_version(debs[pkg]),
            source_file=f"/usr/share/backgrounds/mate/{rel}", license="GPL-2+",
            open=lambda p=path: Image.open(p),
        ))

    pkg = "plasma-workspace-wallpapers"
    base = roots[pkg] / "usr/share/wallpapers"
    for wp in PLASMA_PHOTOS:
        cands = sorted(glob.glob(str(base / wp / "contents" / "images" / "*")))
        # Many entries are symlinks to the same file; dedupe on the real path.
        real = sorted({os.path.realpath(c) for c in cands if os.path.isfile(c)})
        if not real:
            raise RecipeError(f"{pkg}: wallpaper {wp} missing (package changed?)")
        best = max(real, key=lambda p: (pixel_count(p), os.path.basename(p)))
        rel = os.path.relpath(best, roots[pkg])
        sources.append(dict(
            name=f"plasma-{wp}", source=pkg, version=deb_version(debs[pkg]),
            source_file=f"/{rel}", license="GPL-2+ (debian/copyright); LGPLv3 (metadata.json)",
            open=lambda p=best: Image.open(p),
        ))

    wheel = fetch_skimage_wheel(cache / "wheels")
    zf = zipfile.ZipFile(wheel)
    version = wheel.name.split("-")[1]
    global SKIMAGE_WHEEL
    SKIMAGE_WHEEL = wheel
    for fname in SKIMAGE_PHOTOS:
        member = f"skimage/data/{fname}"
        try:
            data = zf.read(member)
        except KeyError:
            print(f"  note: {member} not in {wheel.name}, skipped")
            continue
        sources.append(dict(
            name=f"skimage-{Path(fname).stem}", source="scikit-image", version=version,
            source_file=member, license=SKIMAGE_LICENSES.get(fname, "see skimage/data/_fetchers.py"),
            open=lambda d=data: Image.open(io.BytesIO(d)), raw=data,
        ))
    return sources


# --------------------------------------------------------------------------
# Processing
# --------------------------------------------------------------------------


def choose_factor(size: tuple[int, int], fmt: str) -> int | None:
    if fmt == "PNG":
        return 1
    short = min(size) // JPEG_FACTOR
    if short < MIN_SHORT:
        return None
    return LARGE_JPEG_FACTOR if short > MAX_SHORT else JPEG_FACTOR


def downsample(im: Image.Image, f: int) -> Image.Image:
    im = im.convert("RGB")
    if f == 1:
        return im
    w, h = im.size
    im = im.crop((0, 0, w - w % f, h - h % f))  # whole f x f boxes only
    return im.reduce(f)  # box filter


def save_png(im: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    im.save(tmp, format="PNG", optimize=False, compress_level=9)
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "data",
                    help="output directory (default: <repo>/data)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="download/extract cache (default: <out>/cache)")
    ap.add_argument("--sample-dir", type=Path, default=SAMPLE_DIR,
                    help="where sample.png goes (default: src/licodec/data)")
    args = ap.parse_args(argv)
    out: Path = args.out
    cache: Path = args.cache if args.cache is not None else out / "cache"

    try:
        sources = collect_sources(cache)
    except RecipeError as e:
        print(f"prepare_data: error: {e}", file=sys.stderr)
        return 1

    missing_val = set(VAL_NAMES) - {s["name"] for s in sources}
    if missing_val:
        print(f"prepare_data: error: validation photos missing: {sorted(missing_val)}",
              file=sys.stderr)
        return 1

    entries, skipped, written = [], [], set()
    bench_img, sample_raw = None, None
    for s in sources:
        with s["open"]() as im:
            fmt, orig = im.format, im.size
            f = choose_factor(orig, fmt)
            if f is None:
                skipped.append(f"{s['name']} ({fmt} {orig[0]}x{orig[1]}: too small for 2x)")
                continue
            small = downsample(im, f)
        split = "val" if s["name"] in VAL_NAMES else "train"
        rel = Path(split) / f"{s['name']}.png"
        save_png(small, out / rel)
        written.add(out / rel)
        if s["name"] == BENCH_SOURCE:
            bench_img, bench_entry = small, s
        if s["name"] == SAMPLE_SOURCE:
            sample_raw = s["raw"]
        entries.append(dict(
            file=rel.as_posix(), split=split, source=s["source"], source_version=s["version"],
            source_file=s["source_file"], source_format=fmt, license=s["license"],
            original_size=list(orig), factor=f, size=list(small.size),
            sha256=sha256(out / rel),
        ))

    # Timing-benchmark crop of the first Debian validation photo.
    if bench_img is None:
        print(f"prepare_data: error: {BENCH_SOURCE} not produced", file=sys.stderr)
        return 1
    w, h = bench_img.size
    bw, bh = BENCH_SIZE
    if w < bw or h < bh:
        print(f"prepare_data: error: {BENCH_SOURCE} is {w}x{h}, too small for a "
              f"{bw}x{bh} crop", file=sys.stderr)
        return 1
    left, top = (w - bw) // 2, (h - bh) // 2
    box = (left, top, left + bw, top + bh)
    rel = Path("val768") / f"{BENCH_SOURCE}.png"
    save_png(bench_img.crop(box), out / rel)
    written.add(out / rel)
    src_entry = next(e for e in entries if e["file"] == f"val/{BENCH_SOURCE}.png")
    bench_entries = [dict(
        file=rel.as_posix(), split="val768", purpose="timing benchmarks (not packaged)",
        derived_from=src_entry["file"], crop_box=list(box),
        source=bench_entry["source"], source_version=bench_entry["version"],
        source_file=bench_entry["source_file"], source_format=src_entry["source_format"],
        license=bench_entry["license"], original_size=src_entry["original_size"],
        factor=src_entry["factor"], size=[bw, bh], sha256=sha256(out / rel),
    )]

    # Remove stale outputs from earlier runs (only PNGs in our own split dirs).
    for split in ("train", "val", "val768"):
        for p in sorted((out / split).glob("*.png")):
            if p not in written:
                p.unlink()

    manifest = dict(
        description="licodec training/validation photos; generated by scripts/prepare_data.py",
        downsampling=f"JPEG sources: box filter (PIL Image.reduce), factor {JPEG_FACTOR} "
                     f"({LARGE_JPEG_FACTOR} if the short side at {JPEG_FACTOR}x would exceed "
                     f"{MAX_SHORT} px); JPEGs whose short side at {JPEG_FACTOR}x is below "
                     f"{MIN_SHORT} px are dropped. PNG sources: factor 1 (unchanged)",
        skipped=skipped,
        files=entries,
        val768=bench_entries,
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    # Bundled quick-start sample: byte-for-byte copy of coffee.png.
    if sample_raw is None or SKIMAGE_WHEEL is None:
        print("prepare_data: error: sample source not produced", file=sys.stderr)
        return 1
    with Image.open(io.BytesIO(sample_raw)) as im:
        sample_size, sample_mode = im.size, im.mode
    if im.format != "PNG" or sample_size != (600, 400) or sample_mode != "RGB":
        print(f"prepare_data: error: {SAMPLE_MEMBER} is {im.format} {sample_mode} "
              f"{sample_size}, expected an RGB PNG 600x400", file=sys.stderr)
        return 1
    args.sample_dir.mkdir(parents=True, exist_ok=True)
    tmp = args.sample_dir / "sample.tmp.png"
    tmp.write_bytes(sample_raw)
    os.replace(tmp, args.sample_dir / "sample.png")
    (args.sample_dir / "SAMPLE_LICENSE.txt").write_text(SAMPLE_LICENSE_TEXT.format(
        version=SKIMAGE_WHEEL.name.split("-")[1], wheel=SKIMAGE_WHEEL.name,
        sha256=hashlib.sha256(sample_raw).hexdigest()))

    # Summary.
    for split in ("train", "val"):
        es = [e for e in entries if e["split"] == split]
        px = sum(e["size"][0] * e["size"][1] for e in es)
        sizes = sorted(tuple(e["size"]) for e in es)
        shorts = [min(sz) for sz in sizes]
        nbytes = sum((out / e["file"]).stat().st_size for e in es)
        print(f"{split}: {len(es)} images, {px / 1e6:.2f} Mpx, {nbytes / 2**20:.1f} MiB, "
              f"short side {min(shorts)}-{max(shorts)} px")
        if split == "val":
            print("  val: " + ", ".join(e["file"] for e in es))
    for sk in skipped:
        print(f"skipped: {sk}")
    print("by source: " + ", ".join(
        f"{src}={sum(e['source'] == src for e in entries)}"
        for src in ("mate-backgrounds", "plasma-workspace-wallpapers", "scikit-image")))
    print(f"val768: {out / bench_entries[0]['file']} ({bw}x{bh} crop of "
          f"{bench_entries[0]['derived_from']})")
    print(f"sample: {args.sample_dir / 'sample.png'} ({sample_size[0]}x{sample_size[1]}, "
          f"copy of {SAMPLE_MEMBER})")
    print(f"manifest: {out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
