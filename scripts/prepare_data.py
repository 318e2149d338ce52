#!/usr/bin/env python3
"""Reproducible training-data recipe for licodec (stdlib + numpy + pillow only).

Sources (downloaded once into the cache, everything afterwards works offline):

* Debian packages, fetched with ``apt-get download`` and unpacked with
  ``dpkg-deb -x`` (package versions seen when the allow-lists were made: Debian
  12 "bookworm"; see ``PACKAGES`` / ``SEEN_VERSIONS``).  Only photographs are
  used -- no renders, drawings, paintings, textures or screenshots -- chosen by
  looking at every candidate image and written down as path globs per package
  (``ALLOW``):

  - ``mate-backgrounds``, ``plasma-workspace-wallpapers`` (wallpapers),
  - ``enlightenment-data`` (the photo wallpapers: the largest JPEG embedded in
    each ``.edj`` Eet archive, found by scanning for JPEG markers),
  - ``krank`` (underwater photos), ``gcompris-qt-data`` (animal, monument and
    music photos inside Qt ``.rcc`` resource bundles, parsed here; lossy WebP;
    per-image credits from the READMEs inside the bundles),
  - ``lxqt-themes``, ``focuswriter``, ``forensics-samples-files`` (phone
    photos), ``zoph``, ``budgie-core``, ``palapeli-data``,
    ``liblemonldap-ng-portal-perl`` (used under its GFDL-1.3 option),
    ``libjxl-testdata`` (lossless photos), ``sddm-theme-maldives``,
  - lower value: ``kphotoalbum`` (demo album), ``plasma-workspace-data``
    (avatar photos), ``gnome-control-center-data`` (user "faces"),
    ``lifeograph`` (tone-squeezed backgrounds, normalised).

* The colour photographs bundled in the ``scikit-image`` wheel
  (``pip download scikit-image --no-deps --only-binary=:all:`` for the running
  interpreter; read straight from the zip).

Rules:

* Lossy sources (JPEG, lossy WebP, and PNGs known to be decoded JPEGs) are
  downsampled with a box filter (``Image.reduce``), which averages away most
  of the compression artefacts, by the smallest factor the recipe allows,
  f = 2 (to keep as many training pixels as possible), or f = 3 if the short
  side after 2x downsampling would exceed 1200 px.  Lossless sources (PNG,
  lossless WebP) are used at f = 1.  An image whose short side after
  downsampling would be below 256 px is dropped.
* EXIF orientation is applied (``ImageOps.exif_transpose``); KPhotoAlbum's demo
  photos are turned by the angle its ``index.xml`` records.  Embedded ICC
  profiles other than sRGB are converted to sRGB (``ImageCms``).
* Images with transparency, or without colour (greyscale), are dropped.
* Tone-squeezed images (``lifeograph``: robust range below 200 of 255 levels)
  get a linear stretch of their 0.1-99.9 % percentiles to 0-255, computed on
  the box-filtered float pixels.
* Perceptual de-duplication: a 128-bit dHash of each prepared image (the
  64-bit horizontal dHash of a 9x8 grey thumbnail plus the vertical one of an
  8x9 thumbnail); an image within ``DEDUP_DISTANCE`` = 12 bits of one already
  kept (in a fixed source order, across packages) is
  dropped, as is an exact copy (same source sha256); both are recorded in the
  manifest.  (Unrelated photos here are >= 19 bits apart; a JPEG re-encoding
  is 0-8, a 2 % crop 8.)
* Validation: a fixed list of photos (``VAL_NAMES``) spread over the sources,
  never used for training.

Outputs: PNGs in ``<out>/train`` and ``<out>/val`` named
``<prefix>-<stem>.png``, ``<out>/manifest.json`` (with the sha256 of the
written files) and ``scripts/dataset-manifest.json`` (committed; one entry
per image: package, version, path inside the package and inside the bundle,
licence, source sha256, size after preparation, split, sha256 of the RGB
pixels; plus everything that was dropped and why).

A 768x512 centre crop of the first Debian validation photo (after its
downsampling) is written to ``<out>/val768/`` for timing benchmarks (not part
of the package; recorded under ``val768`` in the manifest).

scikit-image's ``coffee.png`` (600x400, CC0) is copied byte-for-byte to
``src/licodec/data/sample.png`` (with ``SAMPLE_LICENSE.txt``) for the quick
start.

Usage::

    python scripts/prepare_data.py [--out data] [--cache data/cache]

The first run needs ``apt-get`` (with Debian 12 "bookworm" sources; run
``apt-get update`` once), ``dpkg-deb`` and pip: ~800 MB of downloads and
~1 GB unpacked in the cache.  On another release the packages may have other
versions (a note is printed; the allow-lists then need a look).  Re-running
with the cache present performs no downloads and writes identical files and
manifests; it takes ~2.5 min on 2 cores.

Result at the versions in PACKAGES: 281 training photos (150.9 Mpx) from 19
sources and 16 validation photos (11.0 Mpx); per-package counts and all drops
are in scripts/dataset-manifest.json.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "src" / "licodec" / "data"
DATASET_MANIFEST = REPO_ROOT / "scripts" / "dataset-manifest.json"

JPEG_FACTOR = 2  # minimum downsampling factor for lossy sources
LARGE_JPEG_FACTOR = 3  # used when the short side at JPEG_FACTOR would exceed MAX_SHORT
MAX_SHORT = 1200  # largest short side allowed at JPEG_FACTOR
MIN_SHORT = 256  # images whose short side after downsampling is below this are dropped
BENCH_SIZE = (768, 512)  # centre crop written to <out>/val768
DEDUP_DISTANCE = 12  # dHash Hamming distance (of 128 bits) at or below which images are duplicates
# Greyscale: the 99th percentile of max(R,G,B) - min(R,G,B) on a 256x256 thumbnail is <= this.
GREY_CHROMA = 4
SQUEEZED_RANGE = 200  # robust (0.1-99.9 %) range below this: tone-squeezed (if normalise is set)

# --- Packages ----------------------------------------------------------------
# (package, file-name prefix, version seen when the allow-list was made).  The
# de-duplication order (earlier images win) is this order, except that the
# scikit-image photos come right after the first two packages (as before).
PACKAGES = (
    ("mate-backgrounds", "mate", "1.26.0-1"),
    ("plasma-workspace-wallpapers", "plasma", "4:5.27.5-2"),
    ("enlightenment-data", "enlightenment", "0.25.4-2"),
    ("krank", "krank", "0.7+dfsg2-4"),
    ("gcompris-qt-data", "gcompris", "3.1-2"),
    ("lxqt-themes", "lxqt", "1.2.0-1"),
    ("focuswriter", "focuswriter", "1.8.4-1"),
    ("forensics-samples-files", "forensics", "1.1.4-5"),
    ("zoph", "zoph", "1.0.1-3"),
    ("budgie-core", "budgie", "10.7.1-1"),
    ("palapeli-data", "palapeli", "4:22.12.3-1"),
    ("liblemonldap-ng-portal-perl", "lemonldap", "2.16.1+ds-deb12u10"),
    ("libjxl-testdata", "libjxl", "0.0~git20230110.d6168ff-1"),
    ("sddm-theme-maldives", "sddm", "0.19.0-5"),
    ("kphotoalbum", "kphotoalbum", "5.9.1-1"),
    ("plasma-workspace-data", "plasma-avatar", "4:5.27.5-2+deb12u2"),
    ("gnome-control-center-data", "gnome-face", "1:43.6-2~deb12u1"),
    ("lifeograph", "lifeograph", "2.0.3-1"),
)
DEBIAN_PACKAGES = tuple(p for p, _, _ in PACKAGES)
PREFIX = {p: pre for p, pre, _ in PACKAGES}
SEEN_VERSIONS = {p: v for p, _, v in PACKAGES}

# --- Allow-lists -------------------------------------------------------------
# Paths are globs relative to the unpacked package (``glob_match``: ``*`` and
# ``?`` stay within one path segment, ``**`` spans segments).  For bundles
# (.edj, .rcc) the entry is (bundle glob, member glob).  Every glob must
# match at least one file.  Chosen by looking at every image of each package
# at the versions in PACKAGES (contact sheets of all candidates).
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

_E17 = "usr/share/enlightenment/data/backgrounds/"
_GC = "usr/share/gcompris-qt/rcc/"
_GCA = "gcompris/src/activities/"
ALLOW: dict[str, tuple] = {
    # 14 of the 23 wallpapers are photos.  Dunes, Flat-Fan, Flat-Stone-Pattern,
    # Paper-Flower, Squiggle*, Sunset-Hills are vector art/renders/drawings.
    # Each .edj holds the photo at several sizes (plus previews); the largest
    # JPEG (3840x2160 or close) is used.
    "enlightenment-data": tuple(
        (f"{_E17}{n}.edj", "largest JPEG") for n in (
            "Bamboo", "Foggy-Trees", "God-Rays", "Green-Maple", "Lichen-Branches",
            "Mountain", "Peaks", "Red-Maple", "Sea-of-Lanterns", "Snow-Trees",
            "Spruce-Needles", "Sunset-Clouds", "White-Flower", "Yellow-Flower")),
    # All 41 JPEGs (2000x1500) are underwater photos; menu-scores1.jpg is a
    # byte-identical copy of bonus-01.jpg (dropped by the de-duplication).
    "krank": ("usr/share/games/krank/levels/unera-backgrounds/*.jpg",),
    # Qt resource bundles (rcc format version 3, entries raw or zlib).  Photos
    # with a short side >= 512 (the others would fall below 256 px at 2x) are in
    # erase (33 animals, 1920x1080), clickgame (6 underwater scenes, sea*.webp;
    # the fish sprites are drawings), explore_monuments (47), explore_world_animals
    # (14), explore_farm_animals (9) and explore_world_music (8; middleeast is a
    # museum photo of a dutar on white).  Excluded: lang.rcc (116 drawings on
    # transparent backgrounds), solar_system.rcc (planet renders/cut-outs with
    # alpha), paintings.rcc (paintings), hangman fog.png (palette image); the
    # *.svg drawings are not matched.  explore_monuments/usa/castleClinton is a
    # black-and-white photo (dropped by the greyscale rule); smaller images
    # matched by the globs (victoriaMemorial, cabrillo, ireland, crocodile...)
    # are dropped by the size rule.
    "gcompris-qt-data": (
        (f"{_GC}erase.rcc", f"{_GCA}erase/resource/*.webp"),
        (f"{_GC}clickgame.rcc", f"{_GCA}clickgame/resource/sea*.webp"),
        (f"{_GC}explore_monuments.rcc", f"{_GCA}explore_monuments/resource/*/*.webp"),
        (f"{_GC}explore_world_animals.rcc", f"{_GCA}explore_world_animals/resource/animals/*.webp"),
        (f"{_GC}explore_farm_animals.rcc", f"{_GCA}explore_farm_animals/resource/animals/*.webp"),
        (f"{_GC}explore_world_music.rcc", f"{_GCA}explore_world_music/resource/music/*.webp"),
    ),
    # 11 photos.  The PNGs are decoded JPEGs (8x8 block grid visible, e.g.
    # beam.png), so they are treated as lossy.  Excluded: kde-plasma, origami-*,
    # plasma-logo-*, plasma_arch, simple_blue_widescreen, triangles*, waves-*
    # (renders/logos), themes/ (UI graphics).
    "lxqt-themes": tuple(f"usr/share/lxqt/wallpapers/{n}" for n in (
        "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png",
        "beam.png", "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg",
        "this-is-not-windows.jpg")),
    # 4 of 6 theme backgrounds (5120x2880).  Excluded: spacedreams (Orion
    # nebula, astronomical composite) and writingdesk (wood texture).
    "focuswriter": tuple(f"usr/share/focuswriter/themes/images/{n}.jpg" for n in (
        "bitterskies", "enchantment", "spygames", "tranquility")),
    # 6 phone photos (EXIF orientation applied).  Excluded: debian*/d-debian*
    # (logos), empty.jpg.
    "forensics-samples-files": tuple(f"usr/share/forensics-samples/original-files/{n}" for n in (
        "pic1/IMG-20191006-WA0002.jpg", "pic1/IMG_1054.JPG", "pic1/IMG_20200827_231612.jpg",
        "pic2/IMG_20191224_234846.jpg", "pic2/IMG_20200124_231153.jpg",
        "pic2/IMG_20200608_111614.jpg")),
    # The 2 background photos (fir, flower; 5184x3456).
    "zoph": ("usr/share/zoph/www/php/templates/default/images/backgrounds/*.jpg",),
    # The default wallpaper (Colosseum, 3840x2160).
    "budgie-core": ("usr/share/backgrounds/budgie/default.jpg",),
    # The 5 puzzle photos in collection/ (credits and licence in the .desktop
    # files).  backgrounds/ holds 512x512 textures -> excluded.
    "palapeli-data": ("usr/share/palapeli/collection/*.jpg",),
    # The 6 login-page backgrounds (Wikimedia Commons photos, 1280 px wide).
    "liblemonldap-ng-portal-perl": (
        "usr/share/lemonldap-ng/portal/htdocs/static/common/backgrounds/*.jpg",),
    # True lossless photos, used at f = 1: flower.png (2268x1512; the
    # flower.png.im_q85_*.jpg files are JPEG encodings of it) and the three
    # 8-bit sRGB wesaturate crops (500x500, resized from camera raws by
    # darktable; *_grayscale/*_alpha are derived variants, 64px/ are tiny).
    # Excluded: hdr_room.png (16-bit HLG/BT.2020, not sRGB), wide-gamut test
    # charts, raw.pixls (tiny), pngsuite, synthetic test images.
    "libjxl-testdata": (
        "usr/share/libjxl-testdata/jxl/flower/flower.png",
        "usr/share/libjxl-testdata/external/wesaturate/500px/*_srgb8.png",
    ),
    # background.jpg (Nevit Dilmen, 2592x1754).  maldives.jpg is a screenshot
    # of the login screen -> excluded.
    "sddm-theme-maldives": ("usr/share/sddm/themes/maldives/background.jpg",),
    # All 24 demo photos (800 px wide, 400x266..300 at 2x; anne_helene, 400x600,
    # falls below 256 px and is dropped by the size rule), turned by the angle
    # in demo/index.xml.  Excluded: pics/ (splash, search icon),
    # demo/CategoryImages/ (128 px thumbnails), the handbook screenshots.
    "kphotoalbum": ("usr/share/kphotoalbum/demo/*.jpg",),
    # 19 of the 20 avatar photos (512x512 PNGs without block artefacts, used
    # at f = 1).  Car.png is excluded (synthetic motion blur/composite); the
    # Konqi avatars are drawings.
    "plasma-workspace-data": tuple(f"usr/share/plasma/avatars/photos/{n}.png" for n in (
        "Air Balloon", "Astronaut", "Books", "Brushes", "Bulb", "Cat", "Chameleon",
        "Cocktail", "Dog", "Fish", "Gamepad", "Owl", "Pancakes", "Parrot", "Pencils",
        "Shuttle", "Soccer", "Sunflower", "Sushi")),
    # The 15 user faces at 512x512 (256x256 at 2x; all photos).  The other 24
    # (96x96 and legacy/) are too small.
    "gnome-control-center-data": tuple(f"usr/share/pixmaps/faces/{n}.jpg" for n in (
        "bicycle", "book", "calculator", "cat", "coffee2", "flower2", "gamepad", "guitar2",
        "headphones", "hummingbird", "mountain", "plane", "surfer", "tomatoes", "tree")),
    # Backgrounds, stored tone-squeezed (blended towards white or black for
    # use behind text); those whose robust range is below 200 levels are
    # stretched back.  Excluded: horizon (a smooth sunset squeezed to ~70
    # levels: bands when stretched) and trams (~36 levels: noise when
    # stretched); the diaries/images/ PNGs are screenshots.
    "lifeograph": tuple(f"usr/share/net.sourceforge.Lifeograph/backgrounds/{n}.jpg" for n in (
        "cloister", "fog", "pier", "sands", "snow", "street")),
}
# PNG sources known to be decoded JPEGs (downsampled like JPEGs).
PNG_FROM_JPEG = {"lxqt-themes"}
# Packages whose images are tone-squeezed (see SQUEEZED_RANGE).
NORMALISE = {"lifeograph"}

# Licences (from the package's debian/copyright unless noted; per-image
# credits where the package carries them are added in collect_sources).
LICENSES = {
    "mate-backgrounds": "GPL-2+",
    "plasma-workspace-wallpapers": "GPL-2+ (debian/copyright); LGPLv3 (metadata.json)",
    "enlightenment-data": "BSD-2-clause (debian/copyright Files: *)",
    "krank": "Public Domain (images by Slava Anishenko, debian/copyright)",
    "lxqt-themes": "CC-BY-SA-3.0 (usr/share/lxqt/wallpapers/License; debian/copyright "
                   "Files: * says LGPL-2.1+)",
    "focuswriter": "GPL-3+ (debian/copyright Files: *)",
    "forensics-samples-files": "CC-BY-SA-4.0 (Joao Eriberto Mota Filho; debian/copyright "
                               "Files: original-files/*)",
    "zoph": "GPL-2+ (debian/copyright Files: *)",
    "budgie-core": "GPL-2+ (debian/copyright Files: *)",
    "palapeli-data": "GPL-2+ (debian/copyright Files: *)",
    "liblemonldap-ng-portal-perl": "GFDL-1.3 (used under this option of 'CC-BY-NC-ND-3.0 or "
                                   "GFDL-1.3', debian/copyright; Wikimedia Commons photos)",
    "libjxl-testdata": "BSD-3-clause-Google (debian/copyright Files: *)",
    "sddm-theme-maldives": "CC-BY-3.0 (Nevit Dilmen, 2008; debian/copyright)",
    "kphotoalbum": "GPL-2+ (debian/copyright)",
    "plasma-workspace-data": "CC0-1.0 (debian/copyright, kcms/users/avatars/photos/*)",
    "gnome-control-center-data": "debian/copyright Files: *: GPL-2+ and GPL-3+ and LGPL-2.1+ "
                                 "and LGPL-2+ and Expat and CC0-1.0",
    "lifeograph": "GPL-3+ (debian/copyright Files: *)",
    "gcompris-qt-data": "GPL-3+ (debian/copyright Files: *)",  # overridden per image by README
}
LICENSE_PATTERNS = {  # (package, glob) -> licence, where it differs from LICENSES
    ("libjxl-testdata", "**/wesaturate/**"): "CC0 (wesaturate.com; debian/copyright "
                                           "Files: external/wesaturate/*)",
}
# explore_monuments' README names aulaPalatina.webp "audaPalatina.webp".
README_ALIASES = {"germany/aulaPalatina.webp": "germany/audaPalatina.webp"}

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
# Fixed list, never used for training.  The first four are the original
# validation photos: three Debian photos (a landscape with grass/sea/sky, a
# macro shot, an HDR sunset scene with boats) and scikit-image's coffee
# (saturated man-made objects, smooth porcelain and wood grain; CC0).  The
# others add one photo from each of twelve more packages, chosen for varied
# content: foliage, coral reef, architecture (fine detail), an animal with
# fur, flowers, an indoor phone photo, a mountain glacier, fruit, a wooden
# pier over water (the least stretched lifeograph photo), an indoor party
# photo, a studio-lit object and a cat close-up.
VAL_NAMES = (
    "mate-Dune",
    "mate-LadyBird",
    "plasma-EveningGlow",
    "skimage-coffee",
    "enlightenment-Green-Maple",
    "krank-level-09",
    "gcompris-explore_monuments-hawaMahal",
    "gcompris-erase-red_panda",
    "lxqt-flowers",
    "forensics-IMG_20191224_234846",
    "lemonldap-Aletschgletscher_mit_Pinus_cembra1",
    "palapeli-citrus-fruits",
    "lifeograph-pier",
    "kphotoalbum-bar55",
    "plasma-avatar-Brushes",
    "gnome-face-cat",
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
# Pure helpers (unit-tested in tests/test_prepare_data.py)
# --------------------------------------------------------------------------


def dhash(im: Image.Image) -> int:
    """128-bit difference hash: the 64-bit horizontal dHash (9x8 grey thumbnail, box
    filter, bit = right neighbour brighter) followed by the 64-bit vertical one (8x9,
    bit = lower neighbour brighter).  Either half alone puts some unrelated smooth
    photos within 4-6 bits of each other; the sum of both distances does not."""
    g = im.convert("L")
    a = np.asarray(g.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    b = np.asarray(g.resize((8, 9), Image.Resampling.BOX), dtype=np.int16)
    bits = np.concatenate([(a[:, 1:] > a[:, :-1]).ravel(), (b[1:, :] > b[:-1, :]).ravel()])
    return int("".join("1" if x else "0" for x in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_ECS_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # end of entropy-coded data: a real marker


def jpeg_span(buf: bytes, start: int) -> tuple[int, int, int] | None:
    """Walk the JPEG marker structure from an SOI at `start`; (end, width, height) or None."""
    n = len(buf)
    if buf[start:start + 2] != b"\xff\xd8":
        return None
    p, size = start + 2, None
    while p + 1 < n:
        if buf[p] != 0xFF:
            return None
        m = buf[p + 1]
        if m == 0xFF:  # fill byte
            p += 1
            continue
        if m == 0xD9:  # EOI
            return (p + 2, size[0], size[1]) if size else None
        if m == 0xD8 or m == 0x00:
            return None
        if 0xD0 <= m <= 0xD7 or m == 0x01:  # standalone markers
            p += 2
            continue
        if p + 4 > n:
            return None
        seg = struct.unpack(">H", buf[p + 2:p + 4])[0]
        if seg < 2:
            return None
        if m in _SOF:
            if p + 9 > n:
                return None
            h, w = struct.unpack(">HH", buf[p + 5:p + 9])
            if size is None:
                size = (w, h)
        p += 2 + seg
        if m == 0xDA:  # start of scan: skip the entropy-coded data
            mo = _ECS_END.search(buf, p)
            if mo is None:
                return None
            p = mo.start()
    return None


def embedded_jpegs(buf: bytes) -> list[tuple[int, int, int, int]]:
    """All structurally complete JPEGs in `buf`: (start, end, width, height)."""
    out = []
    for mo in re.finditer(rb"\xff\xd8\xff", buf):
        span = jpeg_span(buf, mo.start())
        if span is not None and span[1] > 0 and span[2] > 0:
            out.append((mo.start(), *span))
    return out


def largest_jpeg(buf: bytes) -> bytes:
    """The embedded JPEG with the most pixels that Pillow decodes (earliest on ties)."""
    cands = sorted(embedded_jpegs(buf), key=lambda c: (-c[2] * c[3], c[0]))
    for s, e, _, _ in cands:
        data = buf[s:e]
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
            return data
        except Exception:
            continue
    raise RecipeError("no decodable JPEG found")


def rcc_entries(buf: bytes) -> dict[str, bytes]:
    """Files of a Qt binary resource bundle (rcc format 1-3): path -> (decompressed) bytes.

    Layout: "qres", version, tree/data/names offsets (big-endian u32), [flags in v3].
    Tree node: name offset u32, flags u16 (1: zlib, 2: directory, 4: zstd), then
    child count u32 + first child u32 (directory) or country u16, language u16,
    data offset u32 (file); v2+ adds a u64 mtime.  Names: u16 length, u32 hash,
    UTF-16BE.  Data: u32 size + bytes; zlib entries are qCompress'ed (u32 size + zlib).
    """
    if buf[:4] != b"qres":
        raise RecipeError("not a Qt rcc bundle")
    version, tree, data, names = struct.unpack(">IIII", buf[4:20])
    if version not in (1, 2, 3):
        raise RecipeError(f"unsupported rcc version {version}")
    node = 14 if version == 1 else 22

    def name_at(off: int) -> str:
        p = names + off
        length = struct.unpack(">H", buf[p:p + 2])[0]
        return buf[p + 6:p + 6 + 2 * length].decode("utf-16-be")

    out: dict[str, bytes] = {}
    stack = [(0, "")]
    seen = set()
    while stack:
        i, prefix = stack.pop()
        if i in seen:
            raise RecipeError("rcc tree has a cycle")
        seen.add(i)
        p = tree + i * node
        name_off, flags = struct.unpack(">IH", buf[p:p + 6])
        path = f"{prefix}/{name_at(name_off)}".lstrip("/") if i else ""
        if flags & 2:
            count, first = struct.unpack(">II", buf[p + 6:p + 14])
            stack.extend((c, path) for c in range(first + count - 1, first - 1, -1))
            continue
        off = data + struct.unpack(">I", buf[p + 10:p + 14])[0]
        size = struct.unpack(">I", buf[off:off + 4])[0]
        blob = buf[off + 4:off + 4 + size]
        if flags & 1:
            blob = zlib.decompress(blob[4:])
        elif flags & 4:
            try:
                import zstandard  # only if a bundle needs it
            except ImportError:
                raise RecipeError(f"rcc entry {path} is zstd-compressed; "
                                  "pip install zstandard") from None
            blob = zstandard.ZstdDecompressor().decompress(blob)
        out[path] = blob
    return out


def webp_lossless(data: bytes) -> bool:
    """True for a lossless WebP (a VP8L bitstream and no lossy VP8 one)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    p, kinds = 12, set()
    while p + 8 <= len(data):
        kind = data[p:p + 4]
        n = struct.unpack("<I", data[p + 4:p + 8])[0]
        kinds.add(kind)
        p += 8 + n + (n & 1)
    return b"VP8L" in kinds and b"VP8 " not in kinds


def parse_credits(text: str) -> dict[str, dict]:
    """GCompris resource README: blank-line separated stanzas of "Key: value" lines
    (Copyright, License, Source, Comments, Files; Files may continue on later lines).
    Returns file name -> {license, copyright, source}."""
    out: dict[str, dict] = {}
    for stanza in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        fields: dict[str, str] = {}
        files: list[str] = []
        key = None
        for line in stanza.splitlines():
            mo = re.match(r"^([A-Za-z]+):\s*(.*)$", line)
            if mo:
                key = mo.group(1).lower()
                val = mo.group(2).strip()
                if key == "files":
                    files.extend(val.split())
                else:
                    fields[key] = val
            elif key == "files" and line.strip():
                files.extend(line.split())
        for f in files:
            out[f] = dict(license=fields.get("license", ""), copyright=fields.get("copyright", ""),
                          source=fields.get("source", ""))
    return out


def sanitize(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_")


def choose_factor(size: tuple[int, int], lossy: bool) -> int | None:
    """Downsampling factor, or None if the short side would fall below MIN_SHORT."""
    if not lossy:
        return 1 if min(size) >= MIN_SHORT else None
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


def downsample_normalised(im: Image.Image, f: int) -> tuple[Image.Image, list[float] | None]:
    """Box filter in float, then (if tone-squeezed) stretch the 0.1-99.9 % range to 0-255."""
    a = np.asarray(im.convert("RGB"), dtype=np.float64)
    h, w = a.shape[0] - a.shape[0] % f, a.shape[1] - a.shape[1] % f
    a = a[:h, :w].reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3))
    lo, hi = (float(v) for v in np.percentile(a, [0.1, 99.9]))
    stretch = None
    if hi - lo < SQUEEZED_RANGE:
        a = (a - lo) * (255.0 / (hi - lo))
        stretch = [round(lo, 3), round(hi, 3)]
    a = np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGB"), stretch


def is_greyscale(im: Image.Image) -> bool:
    """No colour to speak of: 99 % of the pixels of a 256x256 box thumbnail have
    max(R, G, B) - min(R, G, B) <= GREY_CHROMA (dark or muted colour photos exceed it)."""
    a = np.asarray(im.convert("RGB").resize((256, 256), Image.Resampling.BOX), dtype=np.int16)
    return float(np.percentile(a.max(axis=2) - a.min(axis=2), 99)) <= GREY_CHROMA


def glob_match(path: str, pattern: str) -> bool:
    """Whole-path glob: `*` and `?` stay within one path segment, `**` spans segments."""
    rx = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            rx, i = rx + ".*", i + 2
        elif pattern[i] == "*":
            rx, i = rx + "[^/]*", i + 1
        elif pattern[i] == "?":
            rx, i = rx + "[^/]", i + 1
        else:
            rx, i = rx + re.escape(pattern[i]), i + 1
    return re.fullmatch(rx, path) is not None


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
            raise RecipeError(f"apt-get download {pkg} failed: {err} "
                              "(run 'apt-get update' first?)")
    return found[-1]


def extract_deb(deb: Path, dest: Path) -> Path:
    marker = dest / ".extracted"
    if marker.exists() and marker.read_text() == deb.name:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    print(f"unpacking {deb.name} ...", flush=True)
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


def package_files(root: Path) -> list[str]:
    """All regular files (and links to them) under root, as sorted relative posix paths."""
    out = []
    for dp, _, fns in os.walk(root):
        for fn in fns:
            p = os.path.join(dp, fn)
            if os.path.isfile(p):
                out.append(Path(p).relative_to(root).as_posix())
    return sorted(out)


def match(files: list[str], pattern: str, pkg: str) -> list[str]:
    hits = [f for f in files if glob_match(f, pattern)]
    if not hits:
        raise RecipeError(f"{pkg}: allow-list glob {pattern!r} matches nothing (package changed?)")
    return hits


def kphotoalbum_angles(root: Path) -> dict[str, int]:
    """Rotation (degrees clockwise) that KPhotoAlbum's demo database records per file."""
    index = root / "usr/share/kphotoalbum/demo/index.xml"
    angles = {}
    if index.is_file():
        for el in ET.parse(index).iter("image"):
            if el.get("file") and el.get("angle"):
                angles[el.get("file")] = int(el.get("angle")) % 360
    return angles


def palapeli_credits(path: Path) -> str | None:
    desktop = path.with_suffix(".desktop")
    if not desktop.is_file():
        return None
    info = {}
    for line in desktop.read_text(errors="replace").splitlines():
        k, _, v = line.partition("=")
        info[k.strip()] = v.strip()
    lic = info.get("X-KDE-PluginInfo-License")
    if not lic:
        return None
    author, site = info.get("X-KDE-PluginInfo-Author", ""), info.get("X-KDE-PluginInfo-Website", "")
    return f"{lic} ({author}; {site}; from {desktop.name})"


def collect_sources(cache: Path) -> list[dict]:
    """Candidates in de-duplication order: dicts with name, source, version, source_file,
    member (path inside a bundle, or None), license, load (-> bytes), options."""
    sources: list[dict] = []
    debs = {pkg: fetch_deb(pkg, cache / "debs") for pkg in DEBIAN_PACKAGES}
    roots = {pkg: extract_deb(deb, cache / "extract" / pkg) for pkg, deb in debs.items()}
    versions = {pkg: deb_version(deb) for pkg, deb in debs.items()}
    for pkg, v in versions.items():
        if v != SEEN_VERSIONS[pkg]:
            print(f"  note: {pkg} is version {v}; the allow-list was made for "
                  f"{SEEN_VERSIONS[pkg]}", flush=True)

    def add(pkg: str, stem: str, rel: str, load, member=None, license=None, **opts):
        sources.append(dict(
            name=f"{PREFIX[pkg]}-{sanitize(stem)}", source=pkg, version=versions[pkg],
            source_file=f"/{rel}", member=member, license=license or LICENSES[pkg],
            load=load, **opts))

    def read(path: Path):
        return lambda p=path: p.read_bytes()

    for pkg in DEBIAN_PACKAGES:
        root = roots[pkg]
        if pkg == "mate-backgrounds":
            for rel in MATE_PHOTOS:
                path = root / "usr/share/backgrounds/mate" / rel
                if not path.is_file():
                    raise RecipeError(f"{pkg}: expected file {rel} missing (package changed?)")
                add(pkg, path.stem, f"usr/share/backgrounds/mate/{rel}", read(path))
            continue
        if pkg == "plasma-workspace-wallpapers":
            base = root / "usr/share/wallpapers"
            for wp in PLASMA_PHOTOS:
                cands = sorted(glob.glob(str(base / wp / "contents" / "images" / "*")))
                # Many entries are symlinks to the same file; dedupe on the real path.
                real = sorted({os.path.realpath(c) for c in cands if os.path.isfile(c)})
                if not real:
                    raise RecipeError(f"{pkg}: wallpaper {wp} missing (package changed?)")
                best = max(real, key=lambda p: (pixel_count(p), os.path.basename(p)))
                rel = os.path.relpath(best, root)
                add(pkg, wp, Path(rel).as_posix(), read(Path(best)))
            continue

        files = package_files(root)
        allow = ALLOW[pkg]
        if pkg == "enlightenment-data":
            for pattern, _ in allow:
                for rel in match(files, pattern, pkg):
                    add(pkg, Path(rel).stem, rel,
                        lambda p=root / rel: largest_jpeg(p.read_bytes()),
                        member="largest embedded JPEG")
            continue
        if pkg == "gcompris-qt-data":
            for bundle_pat, member_pat in allow:
                for rel in match(files, bundle_pat, pkg):
                    entries = rcc_entries((root / rel).read_bytes())
                    members = sorted(m for m in entries if glob_match(m, member_pat))
                    if not members:
                        raise RecipeError(f"{pkg}: {rel}: no member matches {member_pat!r}")
                    bundle = Path(rel).stem
                    credits = {}
                    for m, blob in entries.items():
                        if m.endswith("/README") and m.startswith(_GCA):
                            d = m[:-len("README")]
                            for f, c in parse_credits(blob.decode("utf-8", "replace")).items():
                                credits[d + f] = c
                    for m in members:
                        key = m
                        for a, b in README_ALIASES.items():
                            if m.endswith("/" + a):
                                key = m[: -len(a)] + b
                        c = credits.get(key)
                        lic = (f"{c['license']} ({c['copyright']}; {c['source']}; from the "
                               f"bundle's README)" if c else LICENSES[pkg])
                        add(pkg, f"{bundle}-{Path(m).stem}", rel,
                            lambda b=entries[m]: b, member=m, license=lic)
            continue
        angles = kphotoalbum_angles(root) if pkg == "kphotoalbum" else {}
        for pattern in allow:
            for rel in match(files, pattern, pkg):
                path = root / rel
                lic = LICENSES[pkg]
                for (p2, pat), l2 in LICENSE_PATTERNS.items():
                    if p2 == pkg and glob_match(rel, pat):
                        lic = l2
                if pkg == "palapeli-data":
                    lic = palapeli_credits(path) or lic
                add(pkg, path.stem, rel, read(path), license=lic,
                    rotate=angles.get(path.name, 0),
                    png_lossy=pkg in PNG_FROM_JPEG, normalise=pkg in NORMALISE)

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
            source_file=member, member=None,
            license=SKIMAGE_LICENSES.get(fname, "see skimage/data/_fetchers.py"),
            load=lambda d=data: d, raw=data))

    names = [s["name"] for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RecipeError(f"duplicate output names: {dup}")
    # De-duplication order: the packages in PACKAGES order, scikit-image after the
    # wallpapers (as before), then the rest.
    order = {"mate-backgrounds": 0, "plasma-workspace-wallpapers": 1, "scikit-image": 2}
    sources.sort(key=lambda s: order.get(s["source"], 3))  # stable
    return sources


# --------------------------------------------------------------------------
# Processing
# --------------------------------------------------------------------------

_SRGB = ImageCms.createProfile("sRGB")


def to_srgb(im: Image.Image) -> tuple[Image.Image, str | None]:
    """Convert an image with a non-sRGB ICC profile to sRGB; (image, profile description)."""
    icc = im.info.get("icc_profile")
    if not icc:
        return im, None
    try:
        prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        desc = (ImageCms.getProfileDescription(prof) or "").strip()
    except Exception:
        return im, None  # unreadable profile: assume sRGB
    if "srgb" in desc.lower():  # sRGB variants (GIMP built-in, Nikon sRGB, IEC61966-2.1, ...)
        return im, None
    if im.mode not in ("RGB", "RGBA", "CMYK", "L"):
        im = im.convert("RGB")
    out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
    im = ImageCms.profileToProfile(im, prof, _SRGB, renderingIntent=0, outputMode=out_mode)
    # Pillow attaches the generated sRGB profile, which carries a creation time: drop it
    # (the PNG is sRGB without one) so that re-runs write identical files.
    im.info.pop("icc_profile", None)
    return im, desc


def prepare(s: dict) -> tuple[Image.Image | None, dict]:
    """Decode, orient, convert and downsample one candidate; (image or None, info)."""
    raw = s["load"]()
    info = dict(source_sha256=hashlib.sha256(raw).hexdigest())
    with Image.open(io.BytesIO(raw)) as im:
        im.load()
        fmt = im.format
        info.update(source_format=fmt, original_size=list(im.size))
        lossy = fmt == "JPEG" or (fmt == "WEBP" and not webp_lossless(raw)) or \
            (fmt == "PNG" and s.get("png_lossy", False))
        if fmt not in ("JPEG", "WEBP", "PNG"):
            return None, dict(info, reason=f"unsupported format {fmt}")
        if im.mode in ("I;16", "I;16B", "I", "F"):
            return None, dict(info, reason=f"not 8-bit sRGB ({im.mode})")
        orientation = im.getexif().get(0x0112, 1)
        im2 = ImageOps.exif_transpose(im)
        if orientation in range(2, 9):
            info["exif_orientation"] = orientation
        im2, icc_desc = to_srgb(im2)
        if icc_desc:
            info["icc_converted_from"] = icc_desc
    if s.get("rotate"):
        turn = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
                270: Image.Transpose.ROTATE_90}[s["rotate"]]
        im2 = im2.transpose(turn)
        info["rotated_clockwise"] = s["rotate"]
    if im2.mode == "P":
        im2 = im2.convert("RGBA")
    if im2.mode in ("RGBA", "LA", "PA"):
        alpha = im2.getchannel("A")
        if alpha.getextrema()[0] < 255:
            return None, dict(info, reason="has transparency")
    f = choose_factor(im2.size, lossy)
    info.update(lossy=lossy)
    if f is None:
        w, h = im2.size
        return None, dict(info, reason=f"too small ({w}x{h}, {'lossy' if lossy else 'lossless'})")
    if s.get("normalise"):
        small, stretch = downsample_normalised(im2, f)
        if stretch:
            info["tone_stretch_from"] = stretch
    else:
        small = downsample(im2, f)
    if is_greyscale(small):
        return None, dict(info, reason="greyscale")
    info.update(factor=f, size=list(small.size))
    return small, info


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
    ap.add_argument("--dataset-manifest", type=Path, default=DATASET_MANIFEST,
                    help="where the committed per-image manifest goes "
                         "(default: scripts/dataset-manifest.json)")
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

    print(f"{len(sources)} candidates; preparing ...", flush=True)
    entries, dropped, written = [], [], set()
    kept_hashes: list[tuple[int, str]] = []
    kept_sha: dict[str, str] = {}
    bench_img, bench_entry, sample_raw = None, None, None
    for i, s in enumerate(sources):
        try:
            small, info = prepare(s)
        except RecipeError as e:
            print(f"prepare_data: error: {s['name']}: {e}", file=sys.stderr)
            return 1
        where = dict(name=s["name"], package=s["source"], package_version=s["version"],
                     path=s["source_file"], member=s["member"])
        if small is None:
            dropped.append(dict(where, reason=info["reason"], source_sha256=info["source_sha256"]))
            continue
        h = dhash(small)
        dup = kept_sha.get(info["source_sha256"])
        reason = f"exact copy of {dup}" if dup else None
        if reason is None:
            near = [(hamming(h, k), n) for k, n in kept_hashes]
            near = [x for x in near if x[0] <= DEDUP_DISTANCE]
            if near:
                d, n = min(near)
                reason = f"near-duplicate of {n} (dHash distance {d})"
        if reason:
            if s["name"] in VAL_NAMES:
                print(f"prepare_data: error: validation photo {s['name']} dropped: {reason}",
                      file=sys.stderr)
                return 1
            dropped.append(dict(where, reason=reason, source_sha256=info["source_sha256"]))
            continue
        kept_hashes.append((h, s["name"]))
        kept_sha[info["source_sha256"]] = s["name"]
        split = "val" if s["name"] in VAL_NAMES else "train"
        rel = Path(split) / f"{s['name']}.png"
        save_png(small, out / rel)
        written.add(out / rel)
        if s["name"] == BENCH_SOURCE:
            bench_img, bench_entry = small, s
        if s["name"] == SAMPLE_SOURCE:
            sample_raw = s["raw"]
        entries.append(dict(
            file=rel.as_posix(), split=split, **{k: v for k, v in where.items() if k != "name"},
            license=s["license"], **info, dhash=f"{h:032x}",
            pixels_sha256=hashlib.sha256(small.tobytes()).hexdigest(),
            sha256=sha256(out / rel),
        ))
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(sources)}", flush=True)

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

    rules = dict(
        downsampling=f"lossy sources (JPEG, lossy WebP, PNGs decoded from JPEGs): box filter "
                     f"(PIL Image.reduce), factor {JPEG_FACTOR} ({LARGE_JPEG_FACTOR} if the "
                     f"short side at {JPEG_FACTOR}x would exceed {MAX_SHORT} px); lossless "
                     f"sources: factor 1; images whose short side after downsampling is below "
                     f"{MIN_SHORT} px are dropped",
        dedup=f"128-bit dHash (horizontal 9x8 + vertical 8x9 grey thumbnails) of the prepared "
              f"image; Hamming distance <= {DEDUP_DISTANCE} to an image kept earlier, or the same "
              f"source sha256: dropped",
        other="EXIF orientation applied; non-sRGB ICC profiles converted to sRGB; images with "
              "transparency or without colour dropped; tone-squeezed lifeograph images "
              f"(0.1-99.9 % range < {SQUEEZED_RANGE}) stretched to 0-255",
    )
    manifest = dict(
        description="licodec training/validation photos; generated by scripts/prepare_data.py",
        **rules, dropped=dropped, files=entries, val768=bench_entries,
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    # Committed manifest: no file hashes of the PNG encoding (zlib versions differ),
    # the RGB pixel hash instead.
    keys = ("file", "split", "package", "package_version", "path", "member", "license",
            "source_sha256", "source_format", "original_size", "lossy", "factor", "size",
            "exif_orientation", "icc_converted_from", "rotated_clockwise", "tone_stretch_from",
            "dhash", "pixels_sha256")
    counts = {}
    for e in entries:
        c = counts.setdefault(e["package"], {"train": 0, "val": 0})
        c[e["split"]] += 1
    dataset = dict(
        description="Photos produced by scripts/prepare_data.py (python scripts/prepare_data.py "
                    "--out data); regenerate rather than edit",
        **rules,
        totals=dict(
            train=sum(e["split"] == "train" for e in entries),
            val=sum(e["split"] == "val" for e in entries),
            train_mpx=round(sum(e["size"][0] * e["size"][1] for e in entries
                                if e["split"] == "train") / 1e6, 2),
            val_mpx=round(sum(e["size"][0] * e["size"][1] for e in entries
                              if e["split"] == "val") / 1e6, 2),
            packages=len(counts),
        ),
        per_package=counts,
        images=[{k: e[k] for k in keys if k in e} for e in entries],
        dropped=dropped,
        val768=[{k: v for k, v in bench_entries[0].items() if k != "sha256"}],
    )
    args.dataset_manifest.parent.mkdir(parents=True, exist_ok=True)
    args.dataset_manifest.write_text(json.dumps(dataset, indent=1, ensure_ascii=False) + "\n")

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
        shorts = [min(e["size"]) for e in es]
        nbytes = sum((out / e["file"]).stat().st_size for e in es)
        print(f"{split}: {len(es)} images, {px / 1e6:.2f} Mpx, {nbytes / 2**20:.1f} MiB, "
              f"short side {min(shorts)}-{max(shorts)} px")
    print("by package (train/val): " + ", ".join(
        f"{p}={c['train']}/{c['val']}" for p, c in counts.items()))
    for d in dropped:
        print(f"dropped: {d['name']}: {d['reason']}")
    print(f"val768: {out / bench_entries[0]['file']} ({bw}x{bh} crop of "
          f"{bench_entries[0]['derived_from']})")
    print(f"sample: {args.sample_dir / 'sample.png'} ({sample_size[0]}x{sample_size[1]}, "
          f"copy of {SAMPLE_MEMBER})")
    print(f"manifests: {out / 'manifest.json'}, {args.dataset_manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
