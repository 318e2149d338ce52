#!/usr/bin/env python3
"""Progress of the default-model campaign (issue 13): one row per evaluated checkpoint in
``benchmarks/results/campaign.md`` (+ ``campaign.json``, learning-curve plot ``campaign.png``).

A row: the checkpoint's step and training time, BD-rates (PSNR, real file sizes) against JPEG,
WebP and HEVC and against the current default, PSNR and bpp at qualities 1, 4 and 8, whether it
beats the current default at every quality (each of its points above the default's curve:
`psnr_above`), and the decode time of a 768×512 photo on 2 threads. All from ``licodec eval`` on the
validation split with the checkpoint exported as a weight file (`licodec.train.export_checkpoint`):
the run's average of the weights (``--ema``, `licodec.ema`) where ``ema.safetensors`` beside the state
holds the state's step, else the weights themselves (``--weights`` picks; the row says which).

    python benchmarks/campaign.py --pause PID   # evaluate campaign/checkpoint.safetensors (PID: the
                                                # training process, stopped while decode is timed)
    python benchmarks/campaign.py --report      # only rewrite campaign.md and the plot
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pausing import paused  # noqa: E402  (benchmarks/pausing.py, beside this script)

RESULTS = REPO / "benchmarks" / "results"
ANCHORS = ("jpeg", "webp", "hevc")
QUALITIES = (1, 4, 8)
DEFAULT_CURVE = "mbt2018-mean"  # the shipped default's curve in `licodec eval` (-m mbt2018-mean)


def psnr_above(point: dict, curve: list[dict]) -> float:
    """How far ``point`` lies above the ``curve`` (dB): its PSNR minus the curve's at the same bpp
    (linear in log bpp) within the curve's rate range. Outside it, the curve's nearest end point
    stands for the curve: past its highest rate the curve's codec has no better quality to offer
    (its best PSNR), below its lowest rate a point beats it only if it is at least as good as that
    end point with fewer bits. Positive: the point is better."""
    pts = sorted(curve, key=lambda q: q["bpp"])
    if point["bpp"] >= pts[-1]["bpp"]:
        return point["psnr"] - max(q["psnr"] for q in pts)
    if point["bpp"] <= pts[0]["bpp"]:
        return point["psnr"] - pts[0]["psnr"]
    for a, b in zip(pts, pts[1:]):
        if a["bpp"] <= point["bpp"] <= b["bpp"]:
            t = (math.log(point["bpp"]) - math.log(a["bpp"])) / (math.log(b["bpp"]) - math.log(a["bpp"]))
            return point["psnr"] - (a["psnr"] + t * (b["psnr"] - a["psnr"]))
    raise AssertionError("unreachable: the point lies within the curve's rate range")


def decode_time(weights: Path, image: Path, threads: int) -> float:
    """Median of 3 decodes of one photo coded at quality 4 (real bitstream), on ``threads`` threads."""
    import torch

    from licodec.codec import Codec, decode
    from licodec.data import load_rgb

    torch.set_num_threads(threads)
    blob = Codec.from_weights(weights, quality=4).encode(load_rgb(image).permute(1, 2, 0).numpy())
    times = []
    for _ in range(3):
        t = time.perf_counter()
        decode(blob, weights=weights)
        times.append(time.perf_counter() - t)
    return sorted(times)[1]


def evaluate(a) -> dict:
    from safetensors import safe_open

    from licodec.evaluation.machine import machine_info, machine_line
    from licodec.evaluation.run import bd_rates
    from licodec.ema import EMA_FILE
    from licodec.train import export_checkpoint

    with safe_open(a.state, framework="pt") as f:
        meta = f.metadata()
    step, clock = int(meta["step"]), json.loads(meta.get("clock", "{}"))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    ema_file = Path(a.state).parent / EMA_FILE
    kind = a.weights if a.weights != "auto" else ("ema" if _average_of(ema_file, step) else "raw")
    weights = export_checkpoint(Path(a.state), work / f"campaign-step{step}-{kind}.safetensors", ema=kind == "ema")
    report = work / f"eval-step{step}"
    subprocess.run([sys.executable, "-m", "licodec.cli", "eval", a.val, "--weights", str(weights), "-m", DEFAULT_CURVE,
                    "--codecs", a.codecs, "-o", str(report), "--force", "--threads", str(a.threads), "--no-progress"],
                   check=True)
    res = json.loads((report / "results.json").read_text())
    curves = res["curves"]
    ours = next(k for k, c in curves.items() if c["kind"] == "learned" and c.get("weights") != "shipped")
    points = {k: c["points"] for k, c in curves.items()}
    row = {"step": step, "weights": kind, "cpu_hours": clock.get("cpu_s", 0) / 3600, "wall_hours": clock.get("wall_s", 0) / 3600,
           "images": res["images"] if isinstance(res["images"], int) else len(res["images"]),
           "bd_rate": {k: bd_rates(points, k, "psnr")[ours] for k in (*ANCHORS, DEFAULT_CURVE) if k in points}}
    by_q = {int(p["param"]): p for p in points[ours]}
    row["at"] = {q: {"bpp": by_q[q]["bpp"], "psnr": by_q[q]["psnr"]} for q in QUALITIES if q in by_q}
    above = {q: psnr_above(p, points[DEFAULT_CURVE]) for q, p in by_q.items()} if DEFAULT_CURVE in points else {}
    row["above_default_db"] = above
    row["beats_default"] = bool(above) and all(v > 0 for v in above.values())
    if a.image:
        with paused(a.pause):
            row["decode_768x512_s"] = decode_time(weights, Path(a.image), 2)
    row["machine"] = machine_line(machine_info())
    row["eval_report"] = str(report.relative_to(REPO)) if report.is_relative_to(REPO) else str(report)
    return row


def _average_of(ema_file: Path, step: int) -> bool:
    """Whether ``ema_file`` exists and holds the average at ``step``."""
    from licodec.ema import saved_step

    return saved_step(ema_file) == step


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.1f} %"


def write_report(rows: list[dict], log: Path, out: Path) -> None:
    """``out``.md and ``out``.png (the learning curve) from the rows and the training log."""
    lines = ["# The default-model campaign (`benchmarks/campaign.py`)", "",
             "mbt2018-mean N=128 M=192, variable rate (`campaign/run.args`). Each row: the checkpoint "
             "exported and evaluated with `licodec eval` on the validation split (real file sizes, PSNR over "
             "RGB); BD-rates of the campaign model against each codec (negative: fewer bits); \"beats default\": "
             "at every quality its point is above the current default's curve at the same rate (past the "
             "default's highest rate: above its best PSNR; below its lowest: above that point); decode: a "
             "768×512 photo at q4, 2 threads, training paused; weights: the run's average of the weights over the "
             "last ~1 000 steps (`--ema 0.999`) or the weights themselves (raw).", "",
             "| step | weights | CPU-hours | BD vs JPEG | BD vs WebP | BD vs HEVC | BD vs default | PSNR q1 / q4 / q8 (bpp) "
             "| beats default | decode (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["step"]):
        at = " / ".join(f"{r['at'][str(q)]['psnr']:.2f} ({r['at'][str(q)]['bpp']:.3f})" if str(q) in r["at"] else "n/a"
                        for q in QUALITIES)
        bd = r["bd_rate"]
        dec = f"{r['decode_768x512_s']:.3f}" if r.get("decode_768x512_s") else ""
        lines.append(f"| {r['step']} | {r.get('weights', 'raw')} | {r['cpu_hours']:.1f} | {_pct(bd.get('jpeg'))} | {_pct(bd.get('webp'))} | "
                     f"{_pct(bd.get('hevc'))} | {_pct(bd.get(DEFAULT_CURVE))} | {at} | "
                     f"{'yes' if r['beats_default'] else 'no'} | {dec} |")
    if rows:
        lines += ["", f"Machine of the latest row: {sorted(rows, key=lambda r: r['step'])[-1]['machine']}."]
    lines += ["", f"Learning curve (validation every 1 000 steps, from `campaign/log.csv`): `{out.with_suffix('.png').name}`."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if not log.exists():
        return
    with open(log) as f:
        val = [r for r in csv.DictReader(f) if r.get("val_psnr_q4")]
    if not val:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [int(r["step"]) for r in val]
    averaged = [r for r in val if r.get("ema_val_psnr_q4")]
    for i, q in enumerate(QUALITIES):
        ax1.plot(steps, [float(r[f"val_psnr_q{q}"]) for r in val], color=f"C{i}", label=f"q{q}")
        ax2.plot(steps, [float(r[f"val_bpp_q{q}"]) for r in val], color=f"C{i}", label=f"q{q}")
        if averaged:
            ema_steps = [int(r["step"]) for r in averaged]
            ax1.plot(ema_steps, [float(r[f"ema_val_psnr_q{q}"]) for r in averaged], "--", color=f"C{i}",
                     label=f"q{q}, average of the weights")
            ax2.plot(ema_steps, [float(r[f"ema_val_bpp_q{q}"]) for r in averaged], "--", color=f"C{i}",
                     label=f"q{q}, average of the weights")
    for ax, name in ((ax1, "validation PSNR (dB)"), (ax2, "validation bpp (estimated)")):
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", default=str(REPO / "campaign" / "checkpoint.safetensors"))
    p.add_argument("--log", default=str(REPO / "campaign" / "log.csv"))
    p.add_argument("--val", default=str(REPO / "data" / "val"))
    p.add_argument("--image", default=str(next(iter(sorted((REPO / "data" / "val768").glob("*.png"))), "")),
                   help="the 768×512 photo whose decode is timed ('' to skip)")
    p.add_argument("--codecs", default="jpeg,webp,avif,hevc")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default=str(REPO / "runs" / "campaign-eval"))
    p.add_argument("--weights", choices=("auto", "ema", "raw"), default="auto",
                   help="evaluate the run's average of the weights (ema), the weights (raw), or the average where "
                        "its file holds the state's step (auto)")
    p.add_argument("--pause", type=int, default=None, help="PID of the training process, stopped while decode is timed")
    p.add_argument("--out", default=str(RESULTS / "campaign.json"))
    p.add_argument("--report", action="store_true", help="only rewrite campaign.md and campaign.png")
    a = p.parse_args(argv)
    out = Path(a.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    if not a.report:
        row = json.loads(json.dumps(evaluate(a)))  # str keys, as read back
        rows = [r for r in rows if r["step"] != row["step"]] + [row]
        out.write_text(json.dumps(rows, indent=1) + "\n")
    write_report(rows, Path(a.log), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
