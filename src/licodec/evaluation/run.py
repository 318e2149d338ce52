"""``licodec eval``: rate-distortion evaluation of learned models against classical codecs.

For every image, every curve (a learned model over its qualities, or a classical codec over its
sweep) and every setting: encode → write the file to disk → read it back → decode → measure.
The rate is the size of that file (bpp = 8 · bytes / pixels); learned models also get the rate
their entropy model estimates (Σ −log2 p of the latents), so the gap between the two shows.

Typical workflow::

    from licodec.evaluation.run import EvalOptions, evaluate
    results = evaluate(EvalOptions(folder="kodak", out_dir="report", models=["mbt2018-mean"],
                                   codecs=["jpeg", "webp", "hevc"]))
    results["bd_rate"]["psnr"]       # {curve key: BD-rate in % against results["anchor"]}

Curves are averaged per setting as the papers do (mean bpp and mean PSNR over the images), then
compared with `licodec.evaluation.bdrate.bd_rate` against an anchor curve.

A report can be rendered again from its ``results.json`` alone, without running any codec, e.g.
against another anchor: `rerender` (``licodec eval --from REPORT_DIR/results.json --anchor KEY``).
`evaluate` and `rerender` share one path from the results dict to the files: `render`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LicodecError, notice
from .codecs import CODEC_KEYS, make_codec
from .curves import summarize
from .quality import ms_ssim_db, ms_ssim_rgb8, psnr_rgb8

METRICS = ("psnr", "ms_ssim_db")  # the quality axes BD-rates are computed on
ANCHOR_PREFERENCE = ("hevc", "vvc", "jpeg2000", "jpeg")  # default anchor: the first one evaluated
CROP_SIDE = 256
REPORT_FILES = ("results.json", "summary.md", "rd_psnr.png", "rd_msssim.png", "report.html")
RESULTS_FORMAT = "licodec-eval-1"


@dataclass
class EvalOptions:
    folder: str | Path
    out_dir: str | Path = "licodec-eval"
    models: list[str] = field(default_factory=list)  # shipped models, all their qualities (or `qualities`)
    qualities: list[float] | None = None
    weights: list[str | Path] = field(default_factory=list)  # extra weight files, grouped into curves by model
    codecs: list[str] = field(default_factory=lambda: list(CODEC_KEYS))
    anchor: str | None = None  # curve key; default: the first of ANCHOR_PREFERENCE evaluated
    per_image: bool = False  # per-image BD-rates and points in summary.md
    device: str = "cpu"
    fast: bool = False  # quicker presets for the slow classical encoders
    threads: int = 0  # torch and encoder threads (0: library defaults)
    crop_image: str | None = None  # image (file name) for the side-by-side crops; default the first
    crop_bpp: float = 0.4  # each codec's crop is its setting closest to this rate on that image
    keep_streams: bool = False  # keep the coded files in OUT/streams
    force: bool = False
    progress: bool = True
    ignore_alpha: bool = False  # drop a transparent alpha channel instead of refusing the image
    command: list[str] | None = None  # recorded in results.json (the CLI passes its command line)


@dataclass
class Curve:
    """One rate-distortion curve: a coder and the settings it is swept over."""

    key: str  # id in results.json and for --anchor
    label: str  # legend / table name
    kind: str  # "learned" or "classical"
    param: str  # what the settings are (quality, QP, ...)
    params: list[float]
    suffix: str
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes, tuple[int, int], float], np.ndarray]
    estimate: Callable[[np.ndarray, float], float] | None = None  # estimated bpp (learned models)
    warm_up: Callable[[np.ndarray, float], None] | None = None
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# what to evaluate


def find_images(folder: str | Path) -> list[Path]:
    from ..data import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise LicodecError(f"{folder}: no such directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LicodecError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def classical_curves(keys: list[str], fast: bool, threads: int) -> tuple[list[Curve], dict[str, str]]:
    """The usable codecs among ``keys``, and {label: reason} for those to skip."""
    unknown = [k for k in keys if k not in CODEC_KEYS]
    if unknown:
        raise LicodecError(f"unknown codec {unknown[0]!r} (known: {', '.join(CODEC_KEYS)})")
    curves, skipped = [], {}
    for key in dict.fromkeys(keys):
        codec = make_codec(key, fast=fast, threads=threads)
        reason = codec.unavailable()
        if reason:
            skipped[key] = f"{codec.label}: {reason}"
            continue
        curves.append(Curve(
            key, codec.label, "classical", codec.param, list(codec.sweep), codec.suffix,
            codec.encode, lambda data, hw, p, c=codec: c.decode(data, hw),
            info={"settings": codec.settings, "sweep": list(codec.sweep)},
        ))
    return curves, skipped


class _LearnedCoder:
    """A learned model at several qualities, through the public `licodec.codec` API."""

    def __init__(self, paths: dict[float, Path], device: str) -> None:
        self.paths, self.device = paths, device

    def codec(self, q: float):
        from ..codec import Codec

        return Codec.from_weights(str(self.paths[q]), self.device, q)

    def encode(self, rgb: np.ndarray, q: float) -> bytes:
        return self.codec(q).encode(rgb)

    def decode(self, data: bytes, hw: tuple[int, int], q: float) -> np.ndarray:
        from ..codec import decode

        rgb, header = decode(data, self.device, weights=str(self.paths[q]))
        if (header.height, header.width) != tuple(hw):
            raise LicodecError(f"decoded size {header.width}x{header.height} differs from the input's")
        return rgb

    def estimate(self, rgb: np.ndarray, q: float) -> float:
        import torch

        from ..codec import to_tensor
        from ..metrics import bpp_from_likelihoods

        model = self.codec(q).model
        with torch.no_grad():
            out = model(to_tensor(rgb, model.device), q)
            return float(bpp_from_likelihoods(out["likelihoods"], rgb.shape[0] * rgb.shape[1]))

    def warm_up(self, rgb: np.ndarray, q: float) -> None:
        """Load the weights and run the networks once, so the first timed image is not penalised."""
        small = np.ascontiguousarray(rgb[:64, :64])
        self.decode(self.encode(small, q), small.shape[:2], q)


def learned_curves(models: list[str], qualities: list[float] | None, weights: list, device: str) -> list[Curve]:
    from ..codec import resolve_device
    from ..models import get_model_class
    from ..weights import (
        WeightsError, find_weights, load_weights, metadata_quality, read_metadata, shipped_variable_rate,
        shipped_weights,
    )

    resolve_device(device)  # a clear error for an unusable --device before any work
    groups: dict[str, dict] = {}
    for name in dict.fromkeys(models):
        get_model_class(name)  # unknown model -> one-line error
        shipped = shipped_weights().get(name, {})
        vr = shipped_variable_rate().get(name)
        if not shipped and vr is None:
            raise WeightsError(f"no shipped weights for {name!r}; pass --weights FILE (see `licodec models`)")
        # default settings: what `licodec compress -q` gives (`find_weights`): the integer qualities
        # of the variable-rate weights when there are some, else every fixed-rate quality
        qs = qualities if qualities is not None else (list(range(1, vr[0] + 1)) if vr else sorted(shipped))
        paths = {float(q): find_weights(name, float(q)) for q in qs}
        groups[name] = {"key": name, "label": name, "model": name, "paths": paths, "weights": "shipped"}
    for w in weights:
        meta = read_metadata(w)
        load_weights(w, "cpu")  # validates the file (strict, fingerprint) before the run starts
        config = json.loads(meta["config"])
        gid = f"custom|{meta['model']}|{json.dumps(config, sort_keys=True)}"
        if gid not in groups:
            key = f"{meta['model']}-custom"
            n = sum(g["key"].startswith(key) for g in groups.values())
            key = key if n == 0 else f"{key}{n + 1}"
            groups[gid] = {"key": key, "label": _custom_label(meta["model"], config), "model": meta["model"],
                           "paths": {}, "weights": "custom", "config": config}
        q = metadata_quality(meta)
        if q is None:  # variable rate: one file for every quality asked for
            levels = int(config.get("rate_levels", 0))
            for q in qualities if qualities is not None else range(1, levels + 1):
                groups[gid]["paths"][float(q)] = Path(w)
            continue
        if q in groups[gid]["paths"]:
            raise LicodecError(f"{w} and {groups[gid]['paths'][q]} are both {meta['model']} quality {q:g} weights")
        groups[gid]["paths"][q] = Path(w)
    curves = []
    for g in groups.values():
        coder = _LearnedCoder(dict(sorted(g["paths"].items())), device)
        info = {"model": g["model"], "weights": g["weights"],
                "files": {f"{q:g}": _display_path(p) for q, p in coder.paths.items()}}
        if "config" in g:
            info["config"] = g["config"]
        curves.append(Curve(g["key"], g["label"], "learned", "quality", list(coder.paths), ".lic",
                            coder.encode, coder.decode, coder.estimate, coder.warm_up, info))
    return curves


def _display_path(path) -> str:
    """A weight file as the report shows it: relative to the working directory when inside it
    (no machine-specific absolute paths in committed reports), else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _custom_label(model: str, config: dict) -> str:
    """'mbt2018-mean (M=96, N=64)': the config fields that differ from the model's defaults."""
    import dataclasses

    from ..models import get_model_class

    defaults = dataclasses.asdict(get_model_class(model).config_cls())
    changed = ", ".join(f"{k}={v}" for k, v in sorted(config.items()) if defaults.get(k, object()) != v)
    return f"{model} ({changed or 'custom weights'})"


def _require_eval_dependencies() -> None:
    import importlib.util

    need = {"pytorch_msssim": "pytorch-msssim", "matplotlib": "matplotlib", "scipy": "scipy"}
    missing = [pip for mod, pip in need.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise LicodecError(f"licodec eval needs {', '.join(missing)}: pip install 'licodec[eval]'")


# ----------------------------------------------------------------------------------------------
# the run


def evaluate(opts: EvalOptions) -> dict:
    """Run the evaluation and write the report into ``opts.out_dir``; returns the results dict."""
    from tqdm import tqdm

    from ..imageio import read_image
    from .machine import machine_info

    _require_eval_dependencies()
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    images = find_images(opts.folder)
    if opts.qualities is not None and not opts.models:
        raise LicodecError("-q selects qualities of the shipped models named with -m")
    classical, skipped = classical_curves(list(opts.codecs), opts.fast, opts.threads)
    learned = learned_curves(list(opts.models), opts.qualities, list(opts.weights), opts.device)
    curves = learned + classical
    if not curves:
        raise LicodecError("nothing to evaluate: no model (-m / --weights) and no usable classical codec")
    anchor = _choose_anchor([c.key for c in curves], opts.anchor)
    crop_name = opts.crop_image or images[0].name
    if crop_name not in {p.name for p in images}:
        raise LicodecError(f"--crop-image {crop_name}: not one of the images in {opts.folder}")
    out_dir = _prepare_out_dir(Path(opts.out_dir), opts.force)
    for why in skipped.values():  # only now: a bad argument gives one error line, not notices first
        notice(f"skipping {why}")
    jpegs = [p for p in images if p.suffix.lower() in (".jpg", ".jpeg")]
    if jpegs:
        notice(f"{len(jpegs)} of {len(images)} source images are JPEG files: their compression artefacts "
               "favour codecs that reproduce them (JPEG above all); lossless sources (PNG) give fairer curves")
    if not learned:
        from ..weights import shipped_models

        if not shipped_models():
            notice("no learned model evaluated: no shipped weights are installed (pass --weights FILE)")

    started = time.time()
    machine = machine_info(opts.device)  # before the run: the load average is the other work on the machine
    rows: list[dict] = []
    crops: dict[str, dict] = {}
    original_crop = None
    warmed: set = set()
    total = len(images) * sum(len(c.params) for c in curves)
    with tempfile.TemporaryDirectory(prefix="licodec-eval-") as tmp:
        streams = out_dir / "streams" if opts.keep_streams else Path(tmp)
        bar = tqdm(total=total, desc="eval", unit="file", disable=not opts.progress, dynamic_ncols=True)
        try:
            for path in images:
                img = read_image(path, ignore_alpha=opts.ignore_alpha)
                rgb = img.rgb
                h, w = rgb.shape[:2]
                box = _center_box(h, w) if path.name == crop_name else None
                if box is not None:
                    original_crop = rgb[box]
                for curve in curves:
                    folder = streams / curve.key
                    folder.mkdir(parents=True, exist_ok=True)
                    for p in curve.params:
                        bar.set_postfix_str(f"{path.name} {curve.key} {curve.param} {p:g}", refresh=False)
                        if curve.warm_up is not None and (curve.key, p) not in warmed:
                            curve.warm_up(rgb, p)
                            warmed.add((curve.key, p))
                        row, rec = _code_one(curve, p, path.stem, rgb, folder)
                        rows.append({"image": path.name, "width": w, "height": h, **row})
                        if box is not None:
                            _keep_crop(crops, curve.key, row, rec[box], opts.crop_bpp)
                        bar.update(1)
        finally:
            bar.close()

    results = {
        "format": RESULTS_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": opts.command,
        "machine": machine,
        "seconds": round(time.time() - started, 1),
        "folder": str(opts.folder),
        "images": [{"name": p.name} for p in images],
        "anchor": anchor,
        "curves": {c.key: {"label": c.label, "kind": c.kind, "param": c.param, **c.info,
                           "points": summarize(rows, c.key)} for c in curves},
        "skipped": skipped,
        "bd_rate": {},  # filled in by `render`
        "rows": rows,
        "crop": {"image": crop_name, "target_bpp": opts.crop_bpp,
                 "box": None if original_crop is None else list(original_crop.shape[:2]),
                 "picked": {k: {key: v[key] for key in ("param", "bpp", "psnr")} for k, v in crops.items()}},
    }
    sizes = {r["image"]: (r["width"], r["height"]) for r in rows}
    for entry in results["images"]:
        entry["width"], entry["height"] = sizes[entry["name"]]
    render(results, out_dir, anchor, opts.per_image, original_crop, {k: v["crop"] for k, v in crops.items()})
    return results


# ----------------------------------------------------------------------------------------------
# results dict -> report files (shared by `evaluate` and `rerender`)


def render(results: dict, out_dir: str | Path, anchor: str, per_image: bool = False,
           original_crop: np.ndarray | None = None, crops: dict[str, np.ndarray] | None = None) -> dict:
    """Compute the BD-rates of ``results`` against ``anchor`` (and per image if ``per_image``),
    store them in ``results`` and write every report file into ``out_dir``. Without the pixels of
    the crops (``original_crop`` None) the crop images already in ``out_dir/crops`` are used, if any."""
    from .report import write_report

    set_bd_rates(results, anchor, per_image)
    write_report(results, Path(out_dir), original_crop, crops or {}, per_image)
    return results


def set_bd_rates(results: dict, anchor: str, per_image: bool = False) -> None:
    """``results["anchor"]``, ``["bd_rate"]`` and (``per_image``) ``["bd_rate_per_image"]`` from the
    curves' points and the measured rows; nothing measured is changed."""
    keys = list(results["curves"])
    anchor = _choose_anchor(keys, anchor)
    points = {k: results["curves"][k]["points"] for k in keys}
    results["anchor"] = anchor
    results["bd_rate"] = {m: bd_rates(points, anchor, m) for m in METRICS}
    results.pop("bd_rate_per_image", None)
    if per_image:
        rows = results["rows"]
        results["bd_rate_per_image"] = {
            m: {img["name"]: bd_rates({k: summarize(rows, k, img["name"]) for k in keys}, anchor, m)
                for img in results["images"]} for m in METRICS}


def rerender(results_file: str | Path, anchor: str | None = None, out_dir: str | Path | None = None,
             per_image: bool = False, force: bool = False, command: list[str] | None = None) -> tuple[dict, Path]:
    """Render a report again from an existing ``results.json``, without running any codec.

    ``anchor``: the curve for the BD-rates (default: the one recorded). ``out_dir``: default the
    folder of ``results.json``; re-rendering there needs no ``force`` (only derived files are
    replaced, and results.json keeps every measured field: only its anchor, BD-rates and
    ``rerendered`` entry change). Another folder that already holds a report needs ``force``.
    Per-image BD-rates are computed if ``per_image`` or if results.json had them. The crops are
    kept if their images are in the output folder (or are copied from the source folder), else
    the report says they are not available. Returns (results, output folder)."""
    import shutil

    _require_eval_dependencies()
    results_file = Path(results_file)
    if results_file.is_dir():
        results_file = results_file / "results.json"
    results = load_results(results_file)
    anchor = _choose_anchor(list(results["curves"]), anchor or results["anchor"])
    src = results_file.parent
    out = src if out_dir is None else Path(out_dir)
    in_place = out.exists() and out.resolve() == src.resolve()
    if not in_place:
        out = _prepare_out_dir(out, force)
        for name in _crop_names(results):  # the crops cannot be made again: copy them over when there
            if (src / name).is_file() and not (out / name).is_file():
                (out / name).parent.mkdir(exist_ok=True)
                shutil.copyfile(src / name, out / name)
    per_image = per_image or "bd_rate_per_image" in results
    results["rerendered"] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command, "previous_anchor": results["anchor"],
    }
    return render(results, out, anchor, per_image), out


def _crop_names(results: dict) -> list[str]:
    return [f"crops/{k}.png" for k in ("original", *results["crop"]["picked"])]


def load_results(path: Path) -> dict:
    """A results.json written by `evaluate`, checked enough to render it; else a one-line error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LicodecError(f"{path}: no such file (--from expects REPORT_DIR/results.json)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LicodecError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LicodecError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    problem = _results_problem(data)
    if problem:
        raise LicodecError(f"{path}: not a licodec eval results.json ({problem})")
    return data


def _results_problem(d) -> str | None:
    """What makes ``d`` unusable as results (None if nothing)."""
    def num(v):
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    if not isinstance(d, dict):
        return f"a JSON {type(d).__name__}, not an object"
    if d.get("format") != RESULTS_FORMAT:
        return f"format {d.get('format')!r}, expected {RESULTS_FORMAT!r}"
    kinds = {"curves": dict, "rows": list, "images": list, "machine": dict, "skipped": dict, "crop": dict,
             "anchor": str, "folder": str, "created": str, "seconds": (int, float)}
    for k, t in kinds.items():
        if not isinstance(d.get(k), t):
            return f"missing or malformed {k!r}"
    if not d["curves"]:
        return "no curves"
    if d["anchor"] not in d["curves"]:
        return f"anchor {d['anchor']!r} is not one of its curves"
    for key, c in d["curves"].items():
        if not isinstance(c, dict) or not isinstance(c.get("points"), list) or not all(
                isinstance(c.get(f), str) for f in ("label", "kind", "param")):
            return f"malformed curve {key!r}"
        for q in c["points"]:
            if not isinstance(q, dict) or not isinstance(q.get("bpp"), (int, float)) or not all(
                    num(q.get(f, 0)) for f in ("param", "bpp_est", "psnr", "ms_ssim", "ms_ssim_db")):
                return f"malformed point in curve {key!r}"
    for img in d["images"]:
        if not isinstance(img, dict) or not isinstance(img.get("name"), str) or not all(
                isinstance(img.get(f), int) for f in ("width", "height")):
            return "malformed 'images'"
    fields = ("param", "bpp", "bpp_est", "psnr", "ms_ssim", "ms_ssim_db", "enc_s", "dec_s")
    for r in d["rows"]:
        if not isinstance(r, dict) or r.get("codec") not in d["curves"] or not isinstance(r.get("image"), str) \
                or not all(f in r and num(r[f]) for f in fields) or not isinstance(r["bpp"], (int, float)):
            return "malformed 'rows'"
    crop = d["crop"]
    if not isinstance(crop.get("picked"), dict) or not isinstance(crop.get("image"), str):
        return "malformed 'crop'"
    return None


def _code_one(curve: Curve, p: float, stem: str, rgb: np.ndarray, folder: Path) -> tuple[dict, np.ndarray]:
    """Encode, write, read back, decode and measure one setting on one image."""
    h, w = rgb.shape[:2]
    t0 = time.perf_counter()
    data = curve.encode(rgb, p)
    t1 = time.perf_counter()
    path = folder / f"{stem}-{p:g}{curve.suffix}"
    path.write_bytes(data)
    on_disk = path.read_bytes()
    t2 = time.perf_counter()
    rec = curve.decode(on_disk, (h, w), p)
    t3 = time.perf_counter()
    if rec.shape != rgb.shape:
        raise LicodecError(f"{curve.label} decoded {path.name} to {rec.shape}, expected {rgb.shape}")
    size = len(on_disk)
    ms = ms_ssim_rgb8(rgb, rec)
    row = {
        "codec": curve.key, "param": p, "bytes": size, "bpp": 8 * size / (h * w),
        "bpp_est": curve.estimate(rgb, p) if curve.estimate else None,
        "psnr": psnr_rgb8(rgb, rec), "ms_ssim": ms, "ms_ssim_db": ms_ssim_db(ms),
        "enc_s": t1 - t0, "dec_s": t3 - t2,
    }
    return row, rec


def bd_rates(curve_points: dict[str, list[dict]], anchor: str, metric: str) -> dict[str, float]:
    """{curve key: BD-rate in % against ``anchor`` on ``metric``} (NaN where undefined)."""
    from .bdrate import bd_rate

    def axes(points):
        if any(q[metric] is None for q in points):
            return None
        return [q["bpp"] for q in points], [q[metric] for q in points]

    ref = axes(curve_points[anchor])
    out = {}
    for key, points in curve_points.items():
        test = axes(points)
        out[key] = math.nan if ref is None or test is None else bd_rate(*ref, *test)
    return out


def _choose_anchor(keys: list[str], requested: str | None) -> str:
    if requested is not None:
        if requested not in keys:
            raise LicodecError(f"--anchor {requested!r} is not among the evaluated curves ({', '.join(keys)})")
        return requested
    return next((k for k in ANCHOR_PREFERENCE if k in keys), keys[0])


def _prepare_out_dir(out: Path, force: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise LicodecError(f"{out} exists and is not a directory")
    existing = [f for f in REPORT_FILES if (out / f).exists()]
    if existing and not force:
        raise LicodecError(f"{out} already holds a report ({existing[0]}); pass --force to overwrite or -o to choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _center_box(h: int, w: int) -> tuple[slice, slice]:
    s = min(CROP_SIDE, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return slice(top, top + s), slice(left, left + s)


def _keep_crop(crops: dict, key: str, row: dict, crop: np.ndarray, target_bpp: float) -> None:
    """Keep, per curve, the crop of the setting whose bpp is closest to the target (in log-rate)."""
    dist = abs(math.log(max(row["bpp"], 1e-9) / target_bpp))
    if key not in crops or dist < crops[key]["dist"]:
        crops[key] = {"dist": dist, "param": row["param"], "bpp": row["bpp"], "psnr": row["psnr"],
                      "crop": crop.copy()}
