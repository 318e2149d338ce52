"""Reading and writing images, with the documented conversions:

- RGB: coded as is. CMYK, YCbCr, LAB, HSV: converted to RGB.
- Grayscale (1-bit, 8-bit, 16-bit): coded as RGB with equal channels; decoded back to grayscale
  (header channels = 1).
- Palette: expanded to RGB (a palette with transparency follows the alpha rule).
- Alpha (RGBA, LA, PA): a fully opaque alpha channel is dropped silently; a transparent one is
  refused unless ``ignore_alpha`` (then it is dropped). licodec codes colour only.
- 16-bit samples: reduced to 8 bits (the codec works at 8 bits per channel).
- EXIF orientation is applied, so the decoded image looks as the photo did in a viewer.
- Metadata (`LoadedImage.metadata`, carried in the ``.lic`` file and written back by `save_image`):
  the ICC colour profile, when it describes the coded colour space (RGB, or gray for a grayscale
  image; a CMYK or Lab profile no longer applies once the pixels are converted, and is dropped with
  a note), and the Exif block (without the orientation tag, which is applied). XMP is not carried.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .format import check_size
from .errors import FormatError

Image.MAX_IMAGE_PIXELS = None  # we apply our own limit (format.MAX_PIXELS) before decoding pixels
WRITE_SUFFIXES = {".png": "PNG", ".ppm": "PPM", ".pnm": "PPM", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    channels: int  # 1 if the source was grayscale, else 3
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, bytes] = field(default_factory=dict)  # "icc", "exif": see the module docstring


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "f":
        return np.clip(np.round(arr * 255 if arr.max() <= 1.0 else arr), 0, 255).astype(np.uint8)
    return np.clip(np.round(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)  # 16-bit -> 8-bit


def read_image(path, ignore_alpha: bool = False, name: str | None = None) -> LoadedImage:
    """The image at ``path`` as the codec takes it; ImageError (one line, naming the file as ``name``,
    default the path: e.g. "<stdin>" for a temporary copy of standard input) if it cannot."""
    path = Path(path)
    label = name or str(path)
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a directory") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"{label}: not a readable image ({type(e).__name__})") from None
    with im:
        w, h = im.size
        try:
            check_size(h, w)
        except FormatError as e:
            raise ImageError(f"{label}: {e}") from None
        notes: list[str] = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
                im = ImageOps.exif_transpose(im)
        except Exception as e:  # truncated/corrupt pixel data
            raise ImageError(f"{label}: could not decode the image data ({e})") from None
        metadata = _metadata(im, notes)
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            mode = im.mode
        if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            alpha = np.asarray(im.getchannel("A"))
            if alpha.min() < 255 and not ignore_alpha:
                raise ImageError(
                    f"{label}: image has a transparent alpha channel; licodec codes colour only "
                    "(flatten it first, or pass --ignore-alpha to drop the alpha)"
                )
            if alpha.min() < 255:
                notes.append("alpha channel dropped")
            im = im.convert("L" if mode in ("LA", "La") else "RGB")
            mode = im.mode
        gray = mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
        if gray:
            arr = _to_uint8(np.asarray(im))
            if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                notes.append("16-bit samples reduced to 8 bits")
            rgb = np.repeat(arr[:, :, None], 3, axis=2)
        else:
            if mode != "RGB":
                im = im.convert("RGB")
            rgb = np.asarray(im)
    if gray and metadata.get("icc", b"")[16:20] == b"RGB ":  # an RGB profile on gray pixels: keep it RGB
        gray = False
    return LoadedImage(np.ascontiguousarray(rgb, dtype=np.uint8), 1 if gray else 3, notes, metadata)


_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _metadata(im: Image.Image, notes: list[str]) -> dict[str, bytes]:
    """The ICC profile that still describes the pixels once they are RGB or gray, and the Exif block
    without its orientation (already applied by `ImageOps.exif_transpose`)."""
    out: dict[str, bytes] = {}
    icc = im.info.get("icc_profile") or b""
    if icc:
        space = icc[16:20]
        gray_source = im.mode in _GRAY_MODES
        if space == b"RGB " or (space == b"GRAY" and gray_source):
            out["icc"] = bytes(icc)
        else:
            name = space.decode("latin-1").strip() or "unknown"
            notes.append(f"{name} ICC profile dropped (converted to RGB without colour management)")
    try:
        exif = im.getexif()
        exif.pop(0x0112, None)
        if len(exif):
            raw = exif.tobytes()
            out["exif"] = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    except Exception:  # noqa: BLE001 - a malformed Exif block is left out, the pixels still code
        notes.append("unreadable Exif block dropped")
    return out


# what each output type carries: ICC profile and Exif (Pillow's writers)
_CARRIES = {"PNG": ("icc", "exif"), "TIFF": ("icc", "exif"), "PPM": (), "BMP": ()}


def save_image(im: Image.Image, dest, fmt: str, metadata: dict[str, bytes] | None = None) -> list[str]:
    """Write ``im`` as ``fmt`` to a path or binary file, with the metadata the format can carry;
    returns a note for what it cannot (e.g. a PPM has no place for an ICC profile)."""
    metadata = metadata or {}
    carried = _CARRIES.get(fmt, ())
    kwargs = {}
    if "icc" in metadata and "icc" in carried:
        kwargs["icc_profile"] = metadata["icc"]
    if "exif" in metadata and "exif" in carried:
        kwargs["exif"] = metadata["exif"]
    im.save(dest, format=fmt, **kwargs)
    lost = [k for k in ("icc", "exif") if k in metadata and k not in carried]
    names = {"icc": "ICC profile", "exif": "Exif"}
    return [f"{' and '.join(names[k] for k in lost)} not written ({fmt} cannot carry {'it' if len(lost) == 1 else 'them'})"] \
        if lost else []


def to_output(rgb: np.ndarray, channels: int) -> Image.Image:
    im = Image.fromarray(rgb, "RGB")
    return im.convert("L") if channels == 1 else im


def output_format(path) -> str:
    fmt = WRITE_SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unsupported output type (use one of {', '.join(sorted(WRITE_SUFFIXES))})")
    return fmt
