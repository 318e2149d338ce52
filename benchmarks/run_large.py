#!/usr/bin/env python
"""Large images in bounded memory: peak RSS and time of compress + decompress of a 6000x4000
photo-like image with the shipped default model, tiled (``--tile``) vs untiled, and what tiling
costs in quality on a 1536x1024 image.

Writes benchmarks/results/large.md and .json.

    python benchmarks/run_large.py                      # everything (tens of minutes on 1 CPU thread)
    python benchmarks/run_large.py --size 3000x2000 --tiles 1024 --no-cca-paper   # quicker

Image: data/val/mate-LadyBird.png (1280x800), upscaled 2x (Lanczos) to 2560x1600 and mirror-tiled
(numpy "symmetric" padding) to the size asked for — real photo texture at every scale of the
image; the bundled sample (600x400) instead when data/ is missing. The report says which.

Every coding measurement runs in a fresh child process (as `licodec bench` measures memory): it
loads the codec and makes the image, resets the peak-RSS mark (/proc/self/clear_refs), encodes,
reads the peak, resets it again, decodes, reads the peak. Reported: each phase's peak RSS
(Python, torch, the weights and the input image included) and its increase over the RSS just
before coding, and wall-clock times. The untiled run of the large image is skipped when a linear
fit of the untiled peak over two smaller sizes predicts more than ``--max-untiled-gib``.

Quality cost of tiling (1536x1024):
- coding: for the shipped model and for han2024-cca weights (a training checkpoint, when
  ``--cca-checkpoint`` exists — no han2024-cca weights are shipped), PSNR against the original and
  bpp of untiled coding and of tiled encoder + decoder at several tile sizes, and the PSNR of the
  tiled decode against the untiled one;
- transforms: the relative RMS deviation of y = g_a(x) and of x̂ = g_s(y) tiled vs untiled, also for
  the paper-size han2024-cca config with random weights whose NAF residual scales β, γ (zero at
  initialisation, which makes a NAF block the identity and tiling trivially exact) are drawn
  from N(0, ``--naf-scale``²): a stand-in for trained weights, not trained weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "data" / "val" / "mate-LadyBird.png"


def source_image() -> tuple[np.ndarray, str]:
    from PIL import Image

    if SOURCE.exists():
        im = Image.open(SOURCE).convert("RGB")
        name = f"{SOURCE.relative_to(REPO)} ({im.width}x{im.height}) upscaled 2x (Lanczos)"
        im = im.resize((2 * im.width, 2 * im.height), Image.Resampling.LANCZOS)
    else:
        from importlib import resources

        im = Image.open(str(resources.files("licodec") / "data" / "sample.png")).convert("RGB")
        name = f"the bundled sample.png ({im.width}x{im.height}; data/ is missing)"
    return np.asarray(im), name


def make_image(w: int, h: int) -> np.ndarray:
    """The source photo mirror-tiled (or cropped) to h x w, uint8 RGB."""
    src, _ = source_image()
    ph, pw = max(0, h - src.shape[0]), max(0, w - src.shape[1])
    while ph or pw:  # "symmetric" padding reaches at most one source size per call
        step_h, step_w = min(ph, src.shape[0]), min(pw, src.shape[1])
        src = np.pad(src, ((0, step_h), (0, step_w), (0, 0)), mode="symmetric")
        ph, pw = ph - step_h, pw - step_w
    return np.ascontiguousarray(src[:h, :w])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# -- the child: one encode + decode ---------------------------------------------------------------

def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


def child(job: dict) -> dict:
    import torch

    from licodec.codec import Codec, decode

    torch.set_num_threads(job["threads"])
    enc_tile, dec_tile = job["encode_tile"], job["decode_tile"]
    if job["weights"] == "shipped":
        codec = Codec.pretrained(tile=enc_tile)
        weights = None
    else:
        codec = Codec.from_weights(job["weights"], quality=job.get("quality"), tile=enc_tile)
        weights = job["weights"]
    w, h = job["size"]
    rgb = make_image(w, h)
    out = {"model": codec.model.name, "quality": codec.quality, "encode_tile": enc_tile, "decode_tile": dec_tile}
    _reset_peak()
    base = _kib("VmRSS")
    t0 = time.perf_counter()
    data = codec.encode(rgb)
    out["encode_s"] = time.perf_counter() - t0
    out["encode_peak_mib"], out["encode_coding_mib"] = _kib("VmHWM") / 1024, (_kib("VmHWM") - base) / 1024
    _reset_peak()
    base = _kib("VmRSS")
    t0 = time.perf_counter()
    rgb_hat, _ = decode(data, weights=weights, tile=dec_tile)
    out["decode_s"] = time.perf_counter() - t0
    out["decode_peak_mib"], out["decode_coding_mib"] = _kib("VmHWM") / 1024, (_kib("VmHWM") - base) / 1024
    out["bytes"], out["bpp"], out["psnr"] = len(data), 8 * len(data) / (w * h), psnr(rgb_hat, rgb)
    if job.get("save"):
        np.save(job["save"] + ".npy", rgb_hat)
        Path(job["save"] + ".lic").write_bytes(data)
    return out


def breakdown_child(job: dict) -> dict:
    """Peak RSS increase of each stage of coding with the shipped model: the tiled transforms vs
    the whole-latent hyper transforms and entropy coding."""
    import torch

    from licodec.codec import Codec, to_uint8_tensor
    from licodec.codec.runner import coding
    from licodec.entropy import RangeEncoder
    from licodec.models.base import pad_to

    torch.set_num_threads(job["threads"])
    m = Codec.pretrained().model
    w, h = job["size"]
    x = to_uint8_tensor(make_image(w, h), "cpu")
    res = {"tile": job["tile"], "width": w, "height": h}

    def stage(name, fn, *args):
        _reset_peak()
        base = _kib("VmRSS")
        out = fn(*args)
        res[name] = (_kib("VmHWM") - base) / 1024
        return out

    with torch.no_grad(), coding(m, job["tile"]):
        y = stage("g_a (padded uint8 input + transform)", lambda: m.analysis(pad_to(x, m.downsample), None))

        def code(y):
            enc_z, enc_y = RangeEncoder(), RangeEncoder()
            z_hat = m.entropy_bottleneck.compress(enc_z, m.h_a(y), m.entropy_bottleneck.tables())
            with m.parameter_arithmetic(exact=True):  # as compress() and decode_latents() code
                m.y_compress(enc_y, y, m.h_s(z_hat))
            return [enc_z.finish(), enc_y.finish()]

        streams = stage("h_a, h_s + entropy coding", code, y)
        del y
        lat = stage("entropy decoding + h_s", lambda: m.decode_latents(streams, (h, w)))
        out = torch.empty(1, h, w, 3, dtype=torch.uint8)
        stage("g_s (transform + uint8 output)", lambda: m.synthesis(lat["y_hat"], None, out=out.permute(0, 3, 1, 2)))
    return res


def run_child(**job) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"child {job} failed:\n{r.stderr[-3000:]}")
    row = {**json.loads(r.stdout.strip().splitlines()[-1]), "width": job["size"][0], "height": job["size"][1]}
    print(f"  {row['width']}x{row['height']} tile {row['encode_tile']}/{row['decode_tile']}: "
          f"encode {row['encode_s']:.1f} s {row['encode_peak_mib']:.0f} MiB, "
          f"decode {row['decode_s']:.1f} s {row['decode_peak_mib']:.0f} MiB, "
          f"{row['bpp']:.4f} bpp, {row['psnr']:.2f} dB", flush=True)
    return row


# -- transform-level deviation ------------------------------------------------------------------

def transform_deviation(model, rgb: np.ndarray, tiles: list[int]) -> list[dict]:
    """Relative RMS deviation of y = g_a(x) and x̂ = g_s(y) (the untiled y), tiled vs untiled."""
    import torch

    from licodec.codec import to_tensor
    from licodec.codec.runner import coding
    from licodec.models.base import pad_to

    x = pad_to(to_tensor(rgb, "cpu"), model.downsample)
    rows = []

    def rel(a, b):
        return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())

    with torch.no_grad():
        y = model.analysis(x, None)
        x_hat = model.synthesis(y, None)
        for t in tiles:
            with coding(model, t):
                rows.append({"tile": t, "y_rel_rms": rel(model.analysis(x, None), y),
                             "x_hat_rel_rms": rel(model.synthesis(y, None), x_hat)})
            print(f"  {model.name} tile {t}: {rows[-1]}", flush=True)
    return rows


def cca_from_checkpoint(path: Path, out: Path) -> tuple[Path, dict]:
    """A han2024-cca weight file from a `licodec train` checkpoint (`licodec.train.export_checkpoint`),
    or the weight file itself (e.g. the snapshot in checkpoints/); step: its training steps."""
    from safetensors import safe_open

    from licodec.train import export_checkpoint
    from licodec.weights import load_weights

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    if "args" in meta:  # a training checkpoint
        export_checkpoint(path, out)
        step = int(meta["step"])
    else:
        out = path
        step = int(json.loads(meta.get("extra") or "{}").get("steps", 0))
    model, _ = load_weights(out)
    config = model.config_dict()
    scales = [float(p.detach().abs().mean()) for n, p in model.named_parameters()
              if n.startswith(("g_a.", "g_s.")) and n.endswith((".beta", ".gamma"))]
    shown = path.resolve().relative_to(REPO) if path.resolve().is_relative_to(REPO) else path
    return out, {"checkpoint": str(shown), "step": step, "config": config,
                 "variable_rate": model.variable_rate, "naf_scale_mean_abs": float(np.mean(scales))}


# -- report -------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="6000x4000", help="the large image, WIDTHxHEIGHT")
    p.add_argument("--tiles", default="512,1024,2048", help="tile sizes to measure on the large image")
    p.add_argument("--mid", default="1536x1024", help="the image of the quality comparison")
    p.add_argument("--mid-tiles", default="256,512,1024")
    p.add_argument("--max-untiled-gib", type=float, default=16.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cca-checkpoint", default=str(REPO / "checkpoints" / "han2024-cca-vr.safetensors"),
                   help="han2024-cca weights or training checkpoint for the quality-cost rows")
    p.add_argument("--naf-scale", type=float, default=0.1, help="σ of the random NAF β, γ of the paper-size model")
    p.add_argument("--no-cca-paper", action="store_true", help="skip the (slow) paper-size han2024-cca transforms")
    p.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" / "large.md"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        job = json.loads(a.child)
        print(json.dumps(breakdown_child(job) if job.get("breakdown") else child(job)))
        return 0

    import torch

    from licodec.evaluation.machine import machine_info
    from licodec.defaults import DEFAULT_TILE
    from licodec.models import create_model

    torch.set_num_threads(a.threads)
    W, H = (int(v) for v in a.size.split("x"))
    mw, mh = (int(v) for v in a.mid.split("x"))
    tiles = [int(t) for t in a.tiles.split(",")]
    mid_tiles = [int(t) for t in a.mid_tiles.split(",")]
    info = machine_info("cpu")
    _, image_name = source_image()
    res: dict = {"machine": info, "image": image_name, "threads": a.threads, "default_tile": DEFAULT_TILE}
    common = {"threads": a.threads, "weights": "shipped"}
    t_start = time.time()

    # 1. the large image: untiled estimate, untiled if affordable, tiled at each tile size
    print(f"untiled peak at smaller sizes, to extrapolate to {W}x{H}", flush=True)
    small = [run_child(**common, size=[mw, mh], encode_tile=0, decode_tile=0),
             run_child(**common, size=[W // 2, H // 2], encode_tile=0, decode_tile=0)]
    px = [r["width"] * r["height"] for r in small]
    estimate = {}
    for phase in ("encode", "decode"):
        pk = [r[f"{phase}_peak_mib"] for r in small]
        slope = (pk[1] - pk[0]) / (px[1] - px[0])
        estimate[phase] = pk[1] + slope * (W * H - px[1])
    res["untiled_estimate_mib"] = estimate
    res["untiled_small"] = small
    large = []
    if max(estimate.values()) <= 1024 * a.max_untiled_gib:
        print(f"untiled {W}x{H} (estimated peak {max(estimate.values()):.0f} MiB)", flush=True)
        large.append(run_child(**common, size=[W, H], encode_tile=0, decode_tile=0))
    else:
        print(f"untiled {W}x{H} skipped: estimated peak {max(estimate.values()):.0f} MiB", flush=True)
    for t in tiles:
        large.append(run_child(**common, size=[W, H], encode_tile=t, decode_tile=t))
    res["large"] = large
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(
        {"breakdown": True, "threads": a.threads, "size": [W, H], "tile": DEFAULT_TILE})], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"breakdown failed:\n{r.stderr[-3000:]}")
    res["breakdown"] = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"  breakdown: {res['breakdown']}", flush=True)

    # 2. quality cost of tiling at the mid size
    quality_rows = []
    with tempfile.TemporaryDirectory(prefix="licodec-large-") as tmp:
        specs = [("mbt2018-mean (shipped, default)", "shipped", None, {})]
        ckpt = Path(a.cca_checkpoint)
        cca_info = None
        if ckpt.exists():
            path, cca_info = cca_from_checkpoint(ckpt, Path(tmp) / "cca.safetensors")
            specs.append((f"han2024-cca (snapshot, {cca_info['step']} steps)", str(path),
                          3.0 if cca_info["variable_rate"] else None, cca_info))
        res["cca_checkpoint"] = cca_info
        for label, weights, q, _ in specs:
            print(f"quality cost, {label}", flush=True)
            job = {**common, "weights": weights, "quality": q, "size": [mw, mh]}
            ref = run_child(**job, encode_tile=0, decode_tile=0, save=f"{tmp}/ref")
            ref_rgb, ref_lic = np.load(f"{tmp}/ref.npy"), Path(f"{tmp}/ref.lic").read_bytes()
            rows = [{**ref, "label": label, "vs_untiled_psnr": float("inf"), "same_file": True}]
            for enc_t, dec_t in [(0, DEFAULT_TILE)] + [(t, t) for t in mid_tiles]:
                r = run_child(**job, encode_tile=enc_t, decode_tile=dec_t, save=f"{tmp}/t")
                rgb_t = np.load(f"{tmp}/t.npy")
                rows.append({**r, "label": label, "vs_untiled_psnr": psnr(rgb_t, ref_rgb),
                             "max_abs_diff": int(np.abs(rgb_t.astype(int) - ref_rgb).max()),
                             "same_file": Path(f"{tmp}/t.lic").read_bytes() == ref_lic})
            quality_rows += rows

        # 3. transform-level deviation
        rgb = make_image(mw, mh)
        dev = []
        from licodec.codec import Codec

        for label, weights, q, _ in specs:
            codec = Codec.pretrained() if weights == "shipped" else Codec.from_weights(weights, quality=q)
            print(f"transform deviation, {label}", flush=True)
            dev.append({"label": label, "rows": transform_deviation(codec.model, rgb, mid_tiles)})
        if not a.no_cca_paper:
            torch.manual_seed(0)
            m = create_model("han2024-cca").eval()
            with torch.no_grad():
                for n, prm in m.named_parameters():
                    if n.startswith(("g_a.", "g_s.")) and n.endswith((".beta", ".gamma")):
                        prm.normal_(0, a.naf_scale)
            label = f"han2024-cca paper config, random init, NAF β, γ ~ N(0, {a.naf_scale:g}²)"
            print(f"transform deviation, {label}", flush=True)
            dev.append({"label": label, "rows": transform_deviation(m, rgb, [t for t in mid_tiles if t >= 512])})
    res["quality"] = quality_rows
    res["transforms"] = dev
    res["minutes"] = (time.time() - t_start) / 60

    text = report(res, W, H, mw, mh)
    print(text)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    return 0


def report(res: dict, W: int, H: int, mw: int, mh: int) -> str:
    from licodec.evaluation.machine import machine_line

    def tile(r):
        e, d = r["encode_tile"], r["decode_tile"]
        name = lambda t: "untiled" if t == 0 else str(t)  # noqa: E731
        return name(e) if e == d else f"encoder {name(e)}, decoder {name(d)}"

    est = res["untiled_estimate_mib"]
    lines = [
        f"# Large images: tiled transforms ({W}x{H})", "",
        f"Machine: {machine_line(res['machine'])}; {res['threads']} torch thread(s), niced, "
        f"with other jobs on the machine (times are indicative). Image: {res['image']}, mirror-tiled "
        f"to size. Default tile: {res['default_tile']} pixels. Total run time {res['minutes']:.0f} min.", "",
        f"## Peak memory and time, {W}x{H} ({W * H / 1e6:.0f} Mpx), shipped default model", "",
        "Peak RSS of a fresh process per row (Python, torch, weights and the input image included); "
        "in brackets the increase over the RSS just before the phase.", "",
        "| tile | encode s | encode peak MiB | decode s | decode peak MiB | bpp | PSNR dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["large"]:
        lines.append(f"| {tile(r)} | {r['encode_s']:.1f} | {r['encode_peak_mib']:.0f} (+{r['encode_coding_mib']:.0f}) | "
                     f"{r['decode_s']:.1f} | {r['decode_peak_mib']:.0f} (+{r['decode_coding_mib']:.0f}) | "
                     f"{r['bpp']:.4f} | {r['psnr']:.2f} |")
    small = ", ".join(f"{r['width']}x{r['height']}: encode {r['encode_peak_mib']:.0f} / decode "
                      f"{r['decode_peak_mib']:.0f} MiB" for r in res["untiled_small"])
    b = res["breakdown"]
    stages = [(k, v) for k, v in b.items() if k not in ("tile", "width", "height")]
    lines += ["", f"Untiled peaks at smaller sizes ({small}) extrapolate linearly to {est['encode']:.0f} MiB "
                  f"(encode) and {est['decode']:.0f} MiB (decode) at {W}x{H}.", "",
              f"Where the tiled peak goes (tile {b['tile']}, {W}x{H}; peak RSS increase of each stage run alone; "
              f"the entropy models work on the whole latents):", "",
              "| stage | MiB |", "|---|---|"] + [f"| {k} | {v:.0f} |" for k, v in stages] + [""]
    lines += [
              f"## Quality cost of tiling, {mw}x{mh}", "",
              "Tile sizes apply to the encoder's g_a and the decoder's g_s; \"same file\": the .lic bytes equal "
              "the untiled encoder's.", "",
              "| weights | tile | bpp | PSNR dB | PSNR vs untiled decode | max abs diff | same file |",
              "|---|---|---|---|---|---|---|"]
    for r in res["quality"]:
        vs = "–" if r["encode_tile"] == r["decode_tile"] == 0 else (
            "identical" if r["vs_untiled_psnr"] == float("inf") else f"{r['vs_untiled_psnr']:.2f}")
        lines.append(f"| {r['label']} | {tile(r)} | {r['bpp']:.4f} | {r['psnr']:.2f} | {vs} | "
                     f"{r.get('max_abs_diff', 0)} | {'yes' if r['same_file'] else 'no'} |")
    if res.get("cca_checkpoint"):
        c = res["cca_checkpoint"]
        lines += ["", f"han2024-cca checkpoint: {c['checkpoint']} at step {c['step']} (config {json.dumps(c['config'])}; "
                      f"variable-rate, coded at q3), a partially trained model — no han2024-cca weights are shipped. "
                      f"Mean |β|, |γ| of its g_a/g_s NAF blocks: {c['naf_scale_mean_abs']:.4f}."]
    lines += ["", "Transforms alone: relative RMS deviation ‖f_tiled − f‖ / ‖f‖ of y = g_a(x) and of x̂ = g_s(y).", "",
              "| model | tile | y | x̂ |", "|---|---|---|---|"]
    for d in res["transforms"]:
        for r in d["rows"]:
            lines.append(f"| {d['label']} | {r['tile']} | {r['y_rel_rms']:.2e} | {r['x_hat_rel_rms']:.2e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
