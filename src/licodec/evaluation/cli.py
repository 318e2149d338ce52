"""Arguments and handlers of ``licodec eval`` and ``licodec bench``. This module only imports
argparse; the handlers import the evaluation code (and its optional libraries) when they run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CODECS_HELP = "jpeg,webp,avif,jxl,jpeg2000,hevc,vvc"


def _list(values: list[str] | None) -> list[str]:
    """Accept both ``-q 1 2 3`` and ``-q 1,2,3``."""
    return [v for item in values or [] for v in item.split(",") if v.strip()]


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", nargs="?", default=None,
                   help="folder of images (e.g. Kodak or CLIC); not with --from")
    p.add_argument("--from", dest="from_results", metavar="RESULTS_JSON",
                   help="render the report again from REPORT_DIR/results.json, without running any codec "
                        "(e.g. with another --anchor); into its own folder unless -o is given")
    p.add_argument("-m", "--model", dest="models", nargs="+", metavar="MODEL", default=[],
                   help="shipped model(s) to evaluate at all their qualities (default: every shipped model)")
    p.add_argument("-q", "--quality", dest="qualities", nargs="+", metavar="Q",
                   help="only these qualities of the -m models (e.g. -q 1,3,5)")
    p.add_argument("--weights", nargs="+", metavar="FILE", default=[],
                   help="weight files to evaluate too (grouped into one curve per model and config)")
    p.add_argument("--codecs", default=CODECS_HELP,
                   help=f"classical codecs, comma-separated, or 'none' (default {CODECS_HELP})")
    p.add_argument("--anchor", help="curve the BD-rates are computed against (default: hevc, else vvc, "
                                    "jpeg2000, jpeg, else the first curve)")
    p.add_argument("-o", "--output", default=None, metavar="REPORT_DIR",
                   help="folder for results.json, summary.md, the plots and report.html (default licodec-eval; "
                        "with --from: the folder of that results.json)")
    p.add_argument("--per-image", action="store_true", help="per-image BD-rates in summary.md")
    p.add_argument("--device", default="cpu", help="cpu or cuda, for the learned models")
    p.add_argument("--fast", action="store_true",
                   help="faster presets for AVIF (speed 8), HEVC (x265 medium) and VVC (vvenc faster)")
    p.add_argument("--threads", type=int, default=0, help="torch and encoder threads (0: library defaults)")
    p.add_argument("--crop-image", metavar="NAME", help="image for the side-by-side crops (default: the first)")
    p.add_argument("--crop-bpp", type=float, default=0.4, help="rate of the crops (default 0.4 bpp)")
    p.add_argument("--keep-streams", action="store_true", help="keep every coded file in REPORT_DIR/streams")
    p.add_argument("--force", action="store_true", help="overwrite a report already in REPORT_DIR")
    p.add_argument("--ignore-alpha", action="store_true",
                   help="drop a transparent alpha channel instead of refusing the image (colour only is coded)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


# options that choose what to measure: meaningless when re-rendering from results.json
_RUN_ONLY = {"models": ("-m", []), "qualities": ("-q", None), "weights": ("--weights", []),
             "codecs": ("--codecs", CODECS_HELP), "device": ("--device", "cpu"), "fast": ("--fast", False),
             "threads": ("--threads", 0), "crop_image": ("--crop-image", None), "crop_bpp": ("--crop-bpp", 0.4),
             "keep_streams": ("--keep-streams", False), "ignore_alpha": ("--ignore-alpha", False)}


def run_eval(a: argparse.Namespace) -> int:
    from ..errors import LicodecError
    from .report import bd_table, markdown

    if (a.folder is None) == (a.from_results is None):
        raise LicodecError("licodec eval needs either DIR (a folder of images to evaluate) or --from "
                           "REPORT_DIR/results.json (to render a report again), not " +
                           ("both" if a.folder is not None else "neither"))
    command = [Path(sys.argv[0]).name, *sys.argv[1:]]  # the process's command line
    if a.from_results is not None:
        from .run import rerender

        given = [flag for dest, (flag, default) in _RUN_ONLY.items() if getattr(a, dest) != default]
        if given:
            raise LicodecError(f"{given[0]} chooses what to measure; it cannot be used with --from "
                               "(which runs no codec)")
        results, out = rerender(a.from_results, a.anchor, a.output, a.per_image, a.force, command)
        print(markdown(bd_table(results)), end="")
        print(f"report: {out / 'report.html'} (re-rendered from results.json; no codec run)")
        return 0

    from .run import EvalOptions, evaluate

    output = a.output if a.output is not None else "licodec-eval"
    codecs = [] if a.codecs.strip().lower() in ("", "none") else _list([a.codecs.lower()])
    try:
        qualities = [float(q) for q in _list(a.qualities)] if a.qualities else None
    except ValueError:
        raise LicodecError(f"-q expects numbers, got {' '.join(a.qualities)!r}") from None
    models = _list(a.models)
    if not models and not a.weights:
        from ..weights import shipped_models

        models = shipped_models()  # none while no weights are shipped: classical codecs only
    opts = EvalOptions(
        folder=a.folder, out_dir=output, models=models, qualities=qualities, weights=a.weights, codecs=codecs,
        anchor=a.anchor, per_image=a.per_image, device=a.device, fast=a.fast, threads=a.threads,
        crop_image=a.crop_image, crop_bpp=a.crop_bpp, keep_streams=a.keep_streams, force=a.force,
        progress=a.progress, ignore_alpha=a.ignore_alpha, command=command,
    )
    if opts.crop_bpp <= 0:
        raise LicodecError("--crop-bpp must be positive")
    results = evaluate(opts)
    print(markdown(bd_table(results)), end="")
    print(f"report: {Path(output) / 'report.html'} (results.json, summary.md, rd_psnr.png, rd_msssim.png, "
          "per_image/)")
    return 0


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", dest="models", nargs="+", metavar="MODEL", default=[],
                   help="registered model(s) (default: every registered model); shipped weights if installed, "
                        "else a randomly initialised model (timings only)")
    p.add_argument("-q", "--quality", type=float, default=None,
                   help="quality of the shipped weights (default: the default quality, else the median shipped)")
    p.add_argument("--weights", nargs="+", metavar="FILE", default=[], help="weight files to benchmark too")
    p.add_argument("--size", default="768x512", help="WIDTHxHEIGHT of the input (default 768x512)")
    p.add_argument("--image", help="input photo, resized to --size (default: the bundled sample)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--repeat", type=int, default=5, help="timed runs; the median is reported (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--format-version", type=int, choices=[1, 2], default=None,
                   help=".lic format version to write (default: the current one, 2: exact entropy parameters; "
                        "1: float32, as older files)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the peak-memory measurement (one subprocess per model on CPU)")
    p.add_argument("-o", "--output", metavar="FILE.md", help="also write the table here (and FILE.json)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def run_bench(a: argparse.Namespace) -> int:
    from .bench import bench_command

    return bench_command(a, _list(a.models))
