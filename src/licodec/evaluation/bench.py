"""``licodec bench``: what a learned model costs to run, at one image size.

For each model, on one photo resized to ``--size``:

- latency of ``Codec.encode`` (image → .lic bytes) and of ``licodec.codec.decode`` (bytes →
  image): the median of ``--repeat`` runs after ``--warmup`` untimed runs, wall clock;
- the entropy-coding share of each: the time spent inside `licodec.entropy.coder.TableSet`
  (building the probability tables and range coding with constriction), measured by
  `entropy_coding_time`; the rest is the networks and tensor work;
- parameters; FLOPs of one forward pass (g_a, h_a, h_s, g_s) at that size, as counted by
  `torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products, 2 FLOPs per
  multiply-add; element-wise work such as GDN's normalisation is not counted), also given as
  kMAC per pixel;
- peak memory. CPU: a fresh subprocess loads the model, then codes the image once (encode +
  decode); reported are its peak resident set size during coding (Python, torch and the weights
  included) and the increase of that peak over the resident size just before coding (the
  activations and coding buffers). On Linux the peak mark is reset after loading
  (``/proc/self/clear_refs``), so loading does not mask it; elsewhere ``getrusage`` maxrss is
  used, which can. CUDA: ``torch.cuda.max_memory_allocated`` during one encode + decode (tensors
  only, not the CUDA context), and its increase over the memory allocated before.

Models without shipped weights are benchmarked with random initial weights and marked so: their
network timings and FLOPs are real, but their entropy-coding time and bpp are not representative
of a trained model.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LicodecError


@dataclass
class BenchSpec:
    label: str
    path: Path  # weight file
    weights: str  # "shipped", "custom" or "random init"
    quality: float | None = None  # for variable-rate weights (None: their default)


@contextmanager
def entropy_coding_time():
    """Accumulate the seconds spent in `TableSet` (table construction, encode, decode) while active.

    Yields a dict whose ``"seconds"`` grows as the coder runs. The class is patched only inside
    the ``with`` block and restored afterwards, even on errors.
    """
    from ..entropy.coder import TableSet

    acc = {"seconds": 0.0}
    originals = {name: getattr(TableSet, name) for name in ("__init__", "encode", "decode")}

    def timed(fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                acc["seconds"] += time.perf_counter() - t0

        return wrapper

    for name, fn in originals.items():
        setattr(TableSet, name, timed(fn))
    try:
        yield acc
    finally:
        for name, fn in originals.items():
            setattr(TableSet, name, fn)


def parse_size(text: str) -> tuple[int, int]:
    """'768x512' -> (width, height)."""
    from ..format import check_size
    from ..errors import FormatError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
        check_size(h, w)
    except (ValueError, FormatError):
        raise LicodecError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 768x512") from None
    return w, h


def bench_input(image: str | None, size: tuple[int, int]) -> np.ndarray:
    """The photo (default: the bundled sample) resized to ``size`` = (width, height), uint8 RGB."""
    from importlib import resources

    from PIL import Image

    from ..imageio import read_image

    path = Path(image) if image else Path(str(resources.files("licodec") / "data" / "sample.png"))
    rgb = read_image(path).rgb
    if rgb.shape[1::-1] != size:
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    return np.ascontiguousarray(rgb)


def count_flops(model, x, quality=None) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, quality)
    return int(counter.get_total_flops())


def bench_one(spec: BenchSpec, rgb: np.ndarray, device: str, repeat: int, warmup: int, version: int | None = None) -> dict:
    """``version``: the .lic format version to write (default: the current one; 1 measures the
    float32 entropy-parameter path of older files)."""
    from ..codec import FORMAT_VERSION, Codec, decode, to_tensor

    version = version or FORMAT_VERSION
    codec = Codec.from_weights(str(spec.path), device, spec.quality)
    model = codec.model
    h, w = rgb.shape[:2]
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, to_tensor(rgb, model.device), codec.quality)

    def run():
        with entropy_coding_time() as enc_ec:
            t0 = time.perf_counter()
            data = codec.encode(rgb, version=version)
            t1 = time.perf_counter()
        with entropy_coding_time() as dec_ec:
            t2 = time.perf_counter()
            decode(data, device, weights=str(spec.path))
            t3 = time.perf_counter()
        return data, t1 - t0, enc_ec["seconds"], t3 - t2, dec_ec["seconds"]

    for _ in range(warmup):
        run()
    runs = [run() for _ in range(repeat)]
    med = [statistics.median(r[i] for r in runs) for i in range(1, 5)]
    return {
        "model": model.name, "label": spec.label, "weights": spec.weights, "file": None if spec.weights == "random init" else str(spec.path),
        "quality": codec.quality, "width": w, "height": h, "device": device,
        "params": params, "flops": flops, "kmac_per_pixel": flops / 2 / (h * w) / 1000,
        "encode_s": med[0], "encode_entropy_s": med[1], "decode_s": med[2], "decode_entropy_s": med[3],
        "bpp": 8 * len(runs[-1][0]) / (h * w), "repeat": repeat, "warmup": warmup, "format_version": version,
    }


def peak_memory(spec: BenchSpec, image: str | None, size: tuple[int, int], device: str, threads: int) -> dict:
    """Peak memory of one encode + decode (see the module docstring for what is measured)."""
    if device.startswith("cuda"):
        import torch

        from ..codec import Codec, decode

        codec = Codec.from_weights(str(spec.path), device, spec.quality)
        rgb = bench_input(image, size)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        decode(codec.encode(rgb), device, weights=str(spec.path))
        peak = torch.cuda.max_memory_allocated()
        return {"memory": "cuda max_memory_allocated", "peak_mib": peak / 2**20, "coding_mib": (peak - base) / 2**20}
    job = json.dumps({"path": str(spec.path), "quality": spec.quality, "image": image, "size": list(size),
                      "threads": threads})
    r = subprocess.run([sys.executable, "-m", "licodec.evaluation.bench", job], capture_output=True, text=True)
    if r.returncode != 0:
        raise LicodecError(f"memory measurement failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return {"memory": "cpu peak RSS of a subprocess", **json.loads(r.stdout.strip().splitlines()[-1])}


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _memory_child(job: dict) -> None:
    """Load, then reset the peak-RSS mark (Linux: /proc/self/clear_refs), code once, read the peak."""
    import resource

    import torch

    from ..codec import Codec, decode

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    codec = Codec.from_weights(job["path"], "cpu", job.get("quality"))
    rgb = bench_input(job["image"], tuple(job["size"]))
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # peak RSS := current RSS, so loading does not mask the coding peak
        reset = _proc_status_kib("VmHWM") is not None
    except OSError:
        reset = False
    before = _proc_status_kib("VmRSS") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decode(codec.encode(rgb), "cpu", weights=job["path"])
    peak = _proc_status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": peak / 1024, "coding_mib": (peak - before) / 1024}))


def bench_specs(models: list[str], quality: float | None, weights: list[str], tmp: Path) -> list[BenchSpec]:
    import torch

    from ..codec import DEFAULT_QUALITY
    from ..models import create_model, get_model_class, model_names
    from ..errors import notice
    from ..weights import (
        find_weights, metadata_quality, read_metadata, save_weights, shipped_variable_rate, shipped_weights,
    )

    specs = []
    for name in dict.fromkeys(models or ([] if weights else model_names())):
        get_model_class(name)
        shipped = shipped_weights().get(name, {})
        vr = name in shipped_variable_rate()
        if quality is not None or shipped or vr:
            q = quality if quality is not None else (
                DEFAULT_QUALITY if DEFAULT_QUALITY in shipped or vr else sorted(shipped)[(len(shipped) - 1) // 2])
            specs.append(BenchSpec(f"{name} q{q:g}", find_weights(name, q), "shipped", q))
            continue
        notice(f"no shipped weights for {name}: timing randomly initialised weights "
               "(network time and FLOPs are real; entropy-coding time and bpp are not representative)")
        torch.manual_seed(0)
        path = tmp / f"{name}-random.safetensors"
        save_weights(create_model(name).eval(), path, quality=0)  # fixed-rate default config
        specs.append(BenchSpec(name, path, "random init"))
    for w in weights:
        meta = read_metadata(w)
        fixed = metadata_quality(meta)  # variable-rate weights (None) run at the asked or default quality
        q = fixed if fixed is not None else (DEFAULT_QUALITY if quality is None else quality)
        specs.append(BenchSpec(f"{meta['model']} q{q:g} ({Path(w).name})", Path(w), "custom",
                               None if fixed is not None else q))
    return specs


def bench_table(rows: list[dict]) -> str:
    from .report import markdown

    head = ["model", "weights", "params (M)", "GFLOPs (forward)", "kMAC/px", "encode ms (entropy coding)",
            "decode ms (entropy coding)", "bpp", "peak memory MiB (coding)"]
    body = []
    for r in rows:
        mem = "–" if "peak_mib" not in r else f"{r['peak_mib']:.0f} (+{r['coding_mib']:.0f})"
        body.append([
            r["label"], r["weights"], f"{r['params'] / 1e6:.2f}", f"{r['flops'] / 1e9:.1f}", f"{r['kmac_per_pixel']:.0f}",
            f"{1000 * r['encode_s']:.0f} ({1000 * r['encode_entropy_s']:.0f})",
            f"{1000 * r['decode_s']:.0f} ({1000 * r['decode_entropy_s']:.0f})", f"{r['bpp']:.3f}", mem,
        ])
    return markdown((head, body))


def bench_command(a, models: list[str]) -> int:
    """`licodec bench` with its parsed arguments ``a`` and the model names (split by the CLI)."""
    from ..codec import resolve_device
    from .machine import machine_info, machine_line

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.repeat < 1 or a.warmup < 0:
        raise LicodecError("--repeat must be at least 1 and --warmup at least 0")
    resolve_device(a.device)
    size = parse_size(a.size)
    out = Path(a.output) if a.output else None
    if out is not None:
        for p in (out, out.with_suffix(".json")):
            if p.exists() and not a.force:
                raise LicodecError(f"{p} exists; pass --force to overwrite or -o to choose another name")
        if not out.parent.is_dir():
            raise LicodecError(f"{out.parent}: no such directory")
    rgb = bench_input(a.image, size)
    info = machine_info(a.device)  # before the run: the load average is the other work on the machine
    rows = []
    with tempfile.TemporaryDirectory(prefix="licodec-bench-") as tmp:
        specs = bench_specs(models, a.quality, a.weights, Path(tmp))
        if not specs:
            raise LicodecError("nothing to benchmark")
        for spec in specs:
            row = bench_one(spec, rgb, a.device, a.repeat, a.warmup, a.format_version)
            if a.memory:
                row.update(peak_memory(spec, a.image, size, a.device, a.threads))
            rows.append(row)
    w, h = size
    text = (f"# licodec bench\n\n{w}x{h} input ({Path(a.image).name if a.image else 'bundled sample, resized'}); "
            f"median of {a.repeat} runs after {a.warmup} warm-up; times in ms, entropy coding in brackets; "
            f".lic format version {rows[0]['format_version']}.\n\n"
            f"Machine: {machine_line(info)}.\n\n{bench_table(rows)}")
    print(text, end="")
    if out is not None:
        from ..weights import atomic_write
        from .report import jsonable

        def writer(data: str):
            def write(tmp):
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(data)

            return write

        atomic_write(out, writer(text))
        atomic_write(out.with_suffix(".json"), writer(json.dumps(jsonable({"machine": info, "rows": rows}), indent=1) + "\n"))
    return 0


if __name__ == "__main__":  # the peak-memory subprocess
    _memory_child(json.loads(sys.argv[1]))
