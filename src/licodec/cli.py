"""Command-line interface.

    licodec compress IN... [-o OUT.lic] [-m MODEL] [-q QUALITY] [--device cpu|cuda] [--tile N]
    licodec decompress IN.lic... [-o OUT.png] [--tile N] [--deterministic]
    licodec info IN.lic [--json]
    licodec models
    licodec demo
    licodec train ...

Errors caused by the input print one line and exit with status 1 (usage errors: 2); ``--debug``
shows the traceback. Outputs are written atomically and never replace an existing file or link
without ``--force``; the output is never the input, even with ``--force``; an output suffix that
contradicts the command (an image suffix out of ``compress``, ``.lic`` out of ``decompress``)
needs ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

EXIT_ERROR = 1


class _Fail(Exception):
    pass


def _handled() -> tuple[type[BaseException], ...]:
    """The errors caused by the input (one line, exit 1): ``except _handled()``, evaluated only when
    an exception is raised, so that importing this module does not import torch."""
    from .errors import LicodecError  # WeightsError, UnknownModelError, ConfigError are LicodecErrors

    return (_Fail, LicodecError, OSError)


# suffixes of the images that `compress` reads and `decompress` writes: a compress output with one
# of them (or a decompress output named .lic) contradicts the command and needs --force
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pbm", ".pnm", ".bmp", ".tif", ".tiff",
                            ".webp", ".gif"})


def _out_path(inp: Path, out: str | None, suffix: str, force: bool) -> Path:
    """The output path: never an existing file or link (a dangling one too) without --force, never
    the input itself (even with --force), and with a suffix that fits what is written (.lic for
    compress, an image type for decompress) unless --force."""
    path = Path(out) if out else inp.with_name(inp.stem + suffix)
    if path.is_dir():
        raise _Fail(f"{path} is a directory; -o names the output file (e.g. -o {path / (inp.stem + suffix)})")
    if os.path.abspath(path) == os.path.abspath(inp) or (path.exists() and inp.exists() and os.path.samefile(path, inp)):
        raise _Fail(f"{path} is the input file; choose another output name (-o)")
    if os.path.lexists(path) and not force:
        what = "exists as a symbolic link" if path.is_symlink() else "exists"
        raise _Fail(f"{path} {what}; pass --force to overwrite or -o to choose another name")
    ext = path.suffix.lower()
    if not force and suffix == ".lic" and ext in IMAGE_SUFFIXES:
        raise _Fail(f"{path}: compress writes a .lic file, not a {ext} image; name it .lic (or pass --force)")
    if not force and suffix != ".lic" and ext == ".lic":
        raise _Fail(f"{path}: decompress writes an image, not a .lic file; name it .png (or pass --force)")
    _check_parent(path.parent)
    return path


def _check_parent(parent: Path) -> None:
    """The output folder exists, is a folder and takes a new file: checked before any work (a probe
    file is made and removed), so that a 6 s encode does not end in 'permission denied'."""
    import tempfile

    for p in (parent, *parent.parents):  # an existing ancestor that is not a folder
        if os.path.exists(p) and not p.is_dir():
            raise _Fail(f"{p} is a file, not a directory")
    if not parent.is_dir():
        raise _Fail(f"{parent}: no such directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".licodec-probe.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise _Fail(f"{parent}: cannot write there ({e.strerror or type(e).__name__})") from None
    os.close(fd)
    os.unlink(probe)


def _write_bytes(path: Path, data: bytes) -> None:
    from .weights import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def _read_lic(path: str) -> bytes:
    """The bytes of a .lic file, its header validated before the rest is read: a file larger than
    its declared image can need (`licodec.format.max_payload`) is refused without reading it."""
    from .format import HEADER_MAX, MAX_FILE_BYTES, read_header

    p = Path(path)
    if not p.is_file():
        raise _Fail(f"{p}: no such file")
    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_FILE_BYTES:  # far above any real .lic for the largest allowed image
            raise _Fail(f"{p}: file too large to be a .lic file")
        read_header(fh.read(HEADER_MAX), size)  # everything but the file CRC
        fh.seek(0)
        return fh.read()


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _each(a, one, verb: str) -> int:
    """Run ``one(a, input)`` on every input. One input: as before (an error ends the command). Several
    (``licodec compress *.png``): a failure is reported in one line and the others go on; a summary
    line at the end; exit status 1 if any failed."""
    if len(a.inputs) == 1:
        return one(a, a.inputs[0])
    if "-" in a.inputs:
        raise _Fail("- (standard input) must be the only input")
    if a.output is not None:
        raise _Fail("-o names one output: with several inputs each output goes next to its input")
    failed = 0
    for name in a.inputs:
        try:
            one(a, name)
        except _handled() as e:
            if a.debug:
                raise
            failed += 1
            print(f"licodec: error: {_first_line(e)}", file=sys.stderr)
    n = len(a.inputs)
    print(f"{n} files: {n - failed} {verb}, {failed} failed")
    return EXIT_ERROR if failed else 0


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def cmd_compress(a) -> int:
    return _each(a, _compress_one, "compressed")


def cmd_decompress(a) -> int:
    return _each(a, _decompress_one, "decompressed")


STDIO = "-"


@contextmanager
def _input_file(name: str):
    """The input as a file path: the named file, or standard input ("-") copied to a temporary file."""
    if name != STDIO:
        yield Path(name)
        return
    import shutil
    import tempfile

    from .format import MAX_FILE_BYTES

    with tempfile.TemporaryDirectory(prefix="licodec-stdin-") as d:
        path = Path(d) / "stdin"
        with open(path, "wb") as f:
            n = 0
            while chunk := sys.stdin.buffer.read(1 << 20):
                n += len(chunk)
                if n > MAX_FILE_BYTES:
                    raise _Fail("standard input: too large")
                f.write(chunk)
        yield path


def _to_stdout(a, name: str) -> bool:
    """-o - writes to standard output, and so does input "-" without -o; never to a terminal."""
    if not (a.output == STDIO or (name == STDIO and a.output is None)):
        return False
    if sys.stdout.isatty():
        raise _Fail("refusing to write binary data to a terminal; redirect standard output or pass -o FILE")
    return True


def _write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@contextmanager
def _progress_bar(what: str):
    """A progress bar on standard error over the tiles of each transform of a large image (none
    when standard error is not a terminal, or when the image is small enough not to be tiled)."""
    from tqdm import tqdm

    from .progress import reporting

    bars: dict = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = tqdm(total=total, desc=f"{what}: {stage}", unit="tile", leave=False, disable=None,
                               file=sys.stderr, dynamic_ncols=True)
        bars[stage].update(done - bars[stage].n)

    try:
        with reporting(update):
            yield
    finally:
        for bar in bars.values():
            bar.close()


def _compress_one(a, name: str) -> int:
    with _input_file(name) as path:
        return _compress_path(a, name, path)


def _compress_path(a, name: str, inp: Path) -> int:
    from .codec import DEFAULT_MODEL, DEFAULT_QUALITY, Codec
    from .imageio import read_image

    _threads(a.threads)
    to_stdout = _to_stdout(a, name)
    # the output is checked before loading anything: fail fast
    out = "<stdout>" if to_stdout else _out_path(inp, a.output, ".lic", a.force)
    if a.weights:
        codec = Codec.from_weights(a.weights, a.device, a.quality, a.tile, a.effort)
        if a.model is not None and codec.model.name != a.model:
            raise _Fail(f"{a.weights} holds {codec.model.name} weights, not {a.model}")
    else:
        codec = Codec.pretrained(a.model or DEFAULT_MODEL, DEFAULT_QUALITY if a.quality is None else a.quality,
                                 a.device, a.tile, a.effort)
    img = read_image(inp, ignore_alpha=a.ignore_alpha, name="<stdin>" if name == STDIO else None)
    t0 = time.perf_counter()
    metadata = {} if a.strip else img.metadata
    with _progress_bar("compress"):
        data = codec.encode(img.rgb, img.channels, metadata=metadata)
    dt = time.perf_counter() - t0
    if to_stdout:
        _write_stdout(data)
    else:
        _write_bytes(out, data)
    h, w = img.rgb.shape[:2]
    meta_bytes = sum(len(v) + 8 for v in metadata.values())
    notes = [*img.notes, *([f"{meta_bytes} bytes of metadata ({', '.join(_META_NAMES[k] for k in metadata)})"]
                           if metadata else [])]
    notes = f" [{'; '.join(notes)}]" if notes else ""
    print(f"{'<stdin>' if name == STDIO else inp} -> {out}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, "
          f"{dt:.2f} s ({codec.model.name} q{codec.quality:g}){notes}", file=sys.stderr if to_stdout else sys.stdout)
    return 0


_META_NAMES = {"icc": "ICC profile", "exif": "Exif"}


def _decompress_one(a, name: str) -> int:
    with _input_file(name) as path:
        return _decompress_path(a, name, path)


def _decompress_path(a, name: str, inp: Path) -> int:
    from .codec import check_decode_budget, codec_for
    from .format import unpack
    from .imageio import output_format, save_image, to_output

    _threads(a.threads)
    data = _read_lic(str(inp))
    to_stdout = _to_stdout(a, name)
    out = "<stdout>" if to_stdout else _out_path(inp, a.output, ".decoded.png", a.force)
    # PNG to standard output; a .lic name only with --force
    fmt = "PNG" if to_stdout or out.suffix.lower() == ".lic" else output_format(out)
    f = unpack(data)
    check_decode_budget(f, a.max_pixels)
    codec = codec_for(f, a.device, a.weights, a.tile)
    t0 = time.perf_counter()
    with _progress_bar("decompress"):
        rgb = codec.decode_file(f, a.deterministic)
    dt = time.perf_counter() - t0
    im = to_output(rgb, f.channels)
    from .weights import atomic_write

    notes: list[str] = []
    if to_stdout:
        import io

        buf = io.BytesIO()
        notes = save_image(im, buf, fmt, f.metadata)
        _write_stdout(buf.getvalue())
    else:
        atomic_write(out, lambda tmp: notes.extend(save_image(im, tmp, fmt, f.metadata)))
    notes = f" [{'; '.join(notes)}]" if notes else ""
    print(f"{'<stdin>' if name == STDIO else inp} -> {out}: {f.width}x{f.height}, {dt:.2f} s{notes}",
          file=sys.stderr if to_stdout else sys.stdout)
    return 0


def cmd_info(a) -> int:
    from .format import unpack

    data = _read_lic(a.input)
    f = unpack(data)
    d = {
        "model": f.model, "format_version": f.version, "fingerprint": f.fingerprint.hex(),
        "quality": f.quality, "width": f.width, "height": f.height, "channels": f.channels,
        "bit_depth": f.bit_depth, "streams": [len(s) for s in f.streams],
        "latent_crc32": f"{f.latent_crc:08x}", "bytes": len(data), "bpp": 8 * len(data) / f.num_pixels,
        "metadata": {k: len(v) for k, v in f.metadata.items()},
    }
    if a.json:
        print(json.dumps(d, indent=2))
    else:
        for k, v in d.items():
            print(f"{k:15s} {v:.4f}" if k == "bpp" else f"{k:15s} {v}")
    return 0


def cmd_models(a) -> int:
    from .codec import DEFAULT_MODEL
    from .models import get_model_class, model_names
    from .weights import shipped_variable_rate, shipped_weights

    shipped, vr = shipped_weights(), shipped_variable_rate()
    for name in model_names():
        doc = " ".join((get_model_class(name).__doc__ or "").split("\n\n")[0].split())
        fixed = ", ".join(f"q{q:g}" for q in sorted(shipped.get(name, {})))
        qs = fixed
        if name in vr:
            qs = f"variable rate, any q in 1..{vr[name][0]}" + (
                f" (fixed-rate {fixed} kept to decode older files)" if fixed else "")
        flag = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{flag}\n    {doc}\n    shipped weights: {qs or 'none (train with `licodec train`)'}")
    from .weights import user_weight_files, user_weights_dir

    mine = user_weight_files()
    print(f"\nuser weights in {user_weights_dir()} (imported with `licodec import`, or your own): "
          f"{'' if mine else 'none'}")
    for path, meta in mine:
        extra = json.loads(meta.get("extra") or "{}")
        src = f", from {extra['source']} {extra.get('source_file', '')}".rstrip() if "source" in extra else ""
        print(f"    {path.name}: {meta.get('model')}, quality {meta.get('quality')}{src}")
    return 0


def cmd_demo(a) -> int:
    """Compress + decompress the bundled sample with the default model; print bpp and PSNR."""
    import tempfile
    from importlib import resources

    from .codec import DEFAULT_MODEL, DEFAULT_QUALITY, Codec, decode
    from .imageio import read_image
    from .metrics import psnr
    import torch

    sample = Path(str(resources.files("licodec") / "data" / "sample.png"))
    img = read_image(sample)
    h, w = img.rgb.shape[:2]
    codec = Codec.pretrained(a.model or DEFAULT_MODEL, a.quality or DEFAULT_QUALITY)
    with tempfile.TemporaryDirectory() as d:
        lic = Path(d) / "sample.lic"
        t0 = time.perf_counter()
        lic.write_bytes(codec.encode(img.rgb))
        t1 = time.perf_counter()
        rgb_hat, f = decode(lic.read_bytes())
        t2 = time.perf_counter()
        size = lic.stat().st_size
    p = psnr(torch.tensor(rgb_hat, dtype=torch.float32), torch.tensor(img.rgb, dtype=torch.float32), 255.0)
    print(f"sample {w}x{h} with {f.model} q{f.quality:g}: {size} bytes, {8 * size / (h * w):.4f} bpp, "
          f"PSNR {p:.2f} dB (encode {t1 - t0:.2f} s, decode {t2 - t1:.2f} s)")
    return 0


def cmd_masks(a) -> int:
    """He 2021 §4.1: bpp and rate saving ratio of context masks on a random-mask model."""
    from .analysis.masks import mask_bpp, rate_saving, standard_masks
    from .codec import to_tensor
    from .data import list_images
    from .errors import notice
    from .imageio import read_image
    from .weights import load_weights

    _threads(a.threads)
    model, info = load_weights(a.weights)
    if not getattr(model.config, "random_mask", False):
        notice(f"{a.weights} was not trained with --random-mask; masks other than 'serial' are out of distribution")
    images = [to_tensor(read_image(p).rgb, "cpu") for p in list_images(a.images)]
    masks = standard_masks()
    if a.only:
        masks = {k: v for k, v in masks.items() if k in a.only.split(",") or k == "none"}
    y_bpp, bpp = mask_bpp(model, images, masks)
    ratio, ratio_total = rate_saving(y_bpp), rate_saving(bpp)
    rows = [{"mask": k, "taps": int(masks[k].sum()), "y_bpp": y_bpp[k], "rate_saving": ratio[k], "bpp": bpp[k],
             "rate_saving_total": ratio_total[k]} for k in masks]
    if a.json:
        print(json.dumps({"weights": str(a.weights), "images": len(images), "masks": rows}, indent=2))
    else:
        print(f"{'mask':34s} {'taps':>4s} {'y bpp':>8s} {'R_m':>8s} {'bpp':>8s} {'R_m(+z)':>8s}")
        for r in rows:
            print(f"{r['mask']:34s} {r['taps']:4d} {r['y_bpp']:8.4f} {100 * r['rate_saving']:7.2f}% "
                  f"{r['bpp']:8.4f} {100 * r['rate_saving_total']:7.2f}%")
    return 0


def _tile(text: str) -> int:
    from .defaults import check_tile

    try:
        return check_tile(int(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _effort(text: str) -> int:
    from .defaults import MAX_EFFORT, check_effort

    try:
        return check_effort(text if text.strip().lower() == "max" else int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..{MAX_EFFORT} or max, got {text!r}") from None


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default (not None/False/empty, nor twice)."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if (d is None or d is False or d == argparse.SUPPRESS or d in ("", "{}", {}, [])
                or "default" in h or not action.option_strings):
            return h
        return h + " (default: %(default)s)"


def build_parser(args_files: bool = False, with_train: bool = True) -> argparse.ArgumentParser:
    """``args_files``: expand ``@FILE`` arguments into the lines of FILE (``licodec @run.args``,
    ``licodec train @run.args``); off for other commands so that file names starting with @ work.
    ``with_train``: the arguments of ``train`` (False: a stub, for the other commands)."""
    from .defaults import DEFAULT_MODEL, DEFAULT_QUALITY, DEFAULT_TILE

    p = argparse.ArgumentParser(prog="licodec", description="Learned image codec with real bitstreams.",
                                fromfile_prefix_chars="@" if args_files else None)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, weights_help):
        sp.add_argument("-o", "--output", help="output path (default: next to the input)")
        sp.add_argument("--force", action="store_true",
                        help="overwrite an existing output file or link, and allow an output suffix that "
                             "contradicts the command (never the input file itself)")
        sp.add_argument("--device", default="cpu", help="cpu or cuda")
        sp.add_argument("--weights", help=weights_help)
        sp.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
        sp.add_argument("--tile", type=_tile, default=DEFAULT_TILE, metavar="N",
                        help=f"run the transforms on N x N pixel tiles on larger images, bounding memory "
                             f"(a multiple of 64; 0: never; default {DEFAULT_TILE})")

    c = sub.add_parser("compress", help="image -> .lic (several images: one .lic each)")
    c.add_argument("inputs", nargs="+", metavar="input")
    c.add_argument("-m", "--model", default=None,
                   help=f"registry name (default {DEFAULT_MODEL}); with --weights, checked against the file")
    c.add_argument("-q", "--quality", type=float, default=None,
                   help=f"quality 1..8, higher: more bits (default {DEFAULT_QUALITY:g}); variable-rate weights take "
                        "any value in between, e.g. 3.5; fixed-rate weights only the ones shipped")
    c.add_argument("--ignore-alpha", action="store_true", help="drop a transparent alpha channel instead of refusing")
    c.add_argument("--effort", type=_effort, default=0, metavar="N",
                   help="encoder effort 0..4 or max: refine the latents of each image against the decoder "
                        "for fewer bits at the same quality, at more encoding time (default 0: none); "
                        "the file decodes as any other")
    c.add_argument("--strip", action="store_true",
                   help="leave the ICC colour profile and the Exif block out of the .lic file (default: carry them)")
    common(c, "use this weight file instead of the shipped weights")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help=".lic -> image (PNG by default; several files: one image each)")
    d.add_argument("inputs", nargs="+", metavar="input")
    common(d, "weight file, if the file was made with weights that are not shipped")
    d.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse files that declare more than N pixels (decoding untrusted files; "
                        "default: the format's limit, 64 Mi)")
    d.add_argument("--deterministic", action="store_true",
                   help="the same pixels whatever --threads: the synthesis transform on one CPU thread (slower)")
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="show a .lic header")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list registered models and shipped weights")
    m.set_defaults(func=cmd_models)

    dm = sub.add_parser("demo", help="compress + decompress the bundled sample image")
    dm.add_argument("-m", "--model", default=None)
    dm.add_argument("-q", "--quality", type=float, default=None)
    dm.set_defaults(func=cmd_demo)

    mk = sub.add_parser("masks", help="rate saving of context masks on a random-mask model (He 2021 §4.1, eq. 7)")
    mk.add_argument("weights", help="weights of a lee2019-ctx model trained with --random-mask")
    mk.add_argument("images", help="folder of images")
    mk.add_argument("--only", help="comma-separated mask names (default: all standard masks)")
    mk.add_argument("--json", action="store_true")
    mk.add_argument("--threads", type=int, default=0)
    mk.set_defaults(func=cmd_masks)

    from .evaluation import cli as evaluation_cli  # argparse only; the handlers import the rest

    ev = sub.add_parser("eval", help="rate-distortion evaluation against classical codecs (report + BD-rates)")
    evaluation_cli.add_eval_arguments(ev)
    ev.set_defaults(func=evaluation_cli.run_eval)

    be = sub.add_parser("bench", help="latency, parameters, FLOPs and peak memory of learned models")
    evaluation_cli.add_bench_arguments(be)
    be.set_defaults(func=evaluation_cli.run_bench)

    from .importers import cli as importers_cli  # argparse only; the handler imports torch

    im = sub.add_parser("import", help="convert CompressAI or official CCA checkpoints into licodec weights")
    importers_cli.add_import_arguments(im)
    im.set_defaults(func=importers_cli.run_import)

    t = sub.add_parser("train", help="train a model (RD loss λ·255²·MSE + bpp)",
                       formatter_class=_DefaultsFormatter)
    if with_train:  # licodec.train imports torch: only for `licodec train` (a fast `licodec --help`)
        from . import train

        train.add_arguments(t)
        t.set_defaults(func=lambda a: train.run(a) and 0)
    return p


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT, so that temporary files
    are removed on the way out (`licodec.weights.atomic_write`)."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _redeliver_signal(hook):
    """An unraisable-exception hook for while `main` handles the signals: a KeyboardInterrupt or
    `_Terminated` raised where Python cannot propagate it (a weakref callback of the import system,
    a ``__del__``) would be printed as "Exception ignored ..." with a traceback and lost; instead the
    signal is sent again, to be raised at the next point where it can reach `main`."""
    import signal

    def redeliver(unraisable):
        if isinstance(unraisable.exc_value, _Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
        elif isinstance(unraisable.exc_value, KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        else:
            hook(unraisable)

    return redeliver


def main(argv: list[str] | None = None, *, restore_signals: bool = True) -> int:
    """SIGINT and SIGTERM, at start-up too, end with one line (exit 130 / 143) and no partial file;
    `licodec train` handles its own signals (it checkpoints first). ``restore_signals=False`` (the
    console script, `entry`) ignores both once the work is over instead of restoring the previous
    handlers, so that a signal in the last moments of the exit does not kill a finished command."""
    import signal

    argv = sys.argv[1:] if argv is None else argv
    previous = None
    hook = sys.unraisablehook
    if not (argv and (argv[0] == "train" or argv[0].startswith("@"))):
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread: leave signals alone
            previous = None
        else:
            sys.unraisablehook = _redeliver_signal(hook)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("licodec: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("licodec: terminated", file=sys.stderr)
        return 143
    finally:
        sys.unraisablehook = hook
        if previous is not None:
            if restore_signals:
                signal.signal(signal.SIGTERM, previous)
            else:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)


def entry() -> None:
    """The console script (``licodec``, ``python -m licodec.cli``). An interrupted command leaves
    through ``os._exit`` after flushing: CPython re-raises SIGINT at exit (status -2 instead of 130)
    when a KeyboardInterrupt once passed through C-level code run during an import, even though
    `main` caught it; its files are already cleaned up by then."""
    try:
        code = main(restore_signals=False)
    except (KeyboardInterrupt, _Terminated):  # arrived while leaving `main`, after the work
        code = 0
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _import_torch_uninterrupted() -> None:
    """Import torch with SIGINT and SIGTERM blocked: a Python signal handler that raises inside torch's
    C++ module initialisation (pybind11) aborts the process (SIGABRT) instead of unwinding. A signal
    that arrives meanwhile stays pending and is handled as usual as soon as the import is done."""
    import signal

    if "torch" in sys.modules:
        return
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask (Windows)
        old = None
    try:
        import torch  # noqa: F401
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _main(argv: list[str]) -> int:
    train_like = "train" in argv or any(x.startswith("@") for x in argv)
    args = build_parser(bool(argv) and (argv[0] == "train" or argv[0].startswith("@")),
                        with_train=train_like).parse_args(argv)
    try:
        if args.func is not cmd_info:  # every other command computes with torch
            _import_torch_uninterrupted()
        return int(args.func(args) or 0)
    except (KeyboardInterrupt, _Terminated):
        raise  # main() reports them
    except BrokenPipeError:  # e.g. `licodec models | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _handled() as e:
        if args.debug:
            raise
        print(f"licodec: error: {_first_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # a bug: still one line unless --debug
        if args.debug:
            raise
        print(f"licodec: internal error: {type(e).__name__}: {e} (rerun with --debug for details)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    entry()
