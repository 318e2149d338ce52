#!/usr/bin/env python3
"""Equal-steps check that bfloat16 training costs no rate-distortion: the same run (model, seed,
data, batches, λ) trained with ``--precision fp32`` and ``--precision bf16``, then both validated
in float32 on the validation photos.

    python benchmarks/run_precision_check.py --data data/train --val data/val --steps 1000
    -> benchmarks/results/precision.{json,md} (+ the two runs' logs under --work)

Defaults: mbt2018-mean N=128 M=192 at quality 4, batch 8 of 128² crops (a quarter of the campaign's
pixels per step, so that both runs fit in a CPU session), lr 1e-4.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from licodec import train  # noqa: E402
from licodec.evaluation.machine import machine_info, machine_line  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mbt2018-mean")
    p.add_argument("--config", default='{"N": 128, "M": 192}')
    p.add_argument("--quality", default="4")
    p.add_argument("--data", default=str(REPO / "data" / "train"))
    p.add_argument("--val", default=str(REPO / "data" / "val"))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", default="0", help="comma-separated seeds: each runs both precisions (run-to-run noise)")
    p.add_argument("--work", default="runs/precision-check")
    p.add_argument("--note", default="", help="a line added to the report (e.g. what else ran on the machine)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "precision"))
    a = p.parse_args(argv)
    results = {}
    for seed in [int(x) for x in a.seeds.split(",")]:
        for precision in ("bf16", "fp32"):
            key = precision if seed == 0 else f"{precision} seed {seed}"
            out = Path(a.work) / key.replace(" ", "-")
            parser = argparse.ArgumentParser()
            train.add_arguments(parser)
            args = parser.parse_args([
                "-m", a.model, "--config", a.config, "-q", a.quality, "--data", a.data, "--val", a.val,
                "--out", str(out), "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--patch", str(a.patch),
                "--val-every", str(a.steps), "--checkpoint-minutes", "30", "--precision", precision,
                "--threads", str(a.threads), "--seed", str(seed), "--force",
            ])
            done = out / "result.json"  # a finished run of an earlier call is reused
            if done.exists():
                wall = json.loads(done.read_text())["wall_s"]
            else:
                t = time.perf_counter()
                train.run(args)
                wall = time.perf_counter() - t
                done.write_text(json.dumps({"wall_s": wall}))
            with open(out / "log.csv") as f:
                rows = list(csv.DictReader(f))
            last = [r for r in rows if r.get("val_bpp")][-1]
            tail = [float(r["loss"]) for r in rows if int(r["step"]) > a.steps - 200]
            results[key] = {"seed": seed, "precision": precision, "wall_s": wall, "s_per_step": wall / a.steps,
                            "val_bpp": float(last["val_bpp"]), "val_psnr": float(last["val_psnr"]),
                            "train_loss_last_200": sum(tail) / max(1, len(tail))}
            print(key, results[key], flush=True)
    from licodec.rate import LAMBDAS

    lam = LAMBDAS[int(a.quality)]
    for r in results.values():
        r["val_rd_cost"] = r["val_bpp"] + lam * 255**2 * 10 ** (-r["val_psnr"] / 10)
    info = machine_info()
    Path(a.out).with_suffix(".json").write_text(json.dumps({"machine": info, "args": vars(a), "results": results}, indent=1) + "\n")
    lines = [
        "# bf16 vs fp32 training at equal steps (`benchmarks/run_precision_check.py`)", "",
        f"{a.model} {a.config}, quality {a.quality} (λ = {lam}), {a.steps} steps, batch {a.batch_size} of "
        f"{a.patch}² crops, same seed and batches within a seed; validated in float32 on the validation photos (whole "
        f"photos, estimated rate of the rounded latents). Machine: {machine_line(info)}.", "",
        "| run | s/step | val bpp | val PSNR (dB) | RD cost bpp + λ·255²·MSE | train loss (last 200 steps) |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in results.items():
        lines.append(f"| {k} | {r['s_per_step']:.3f} | {r['val_bpp']:.4f} | {r['val_psnr']:.3f} | {r['val_rd_cost']:.4f} | "
                     f"{r['train_loss_last_200']:.4f} |")
    lines.append("")
    seeds = sorted({r["seed"] for r in results.values()})
    for seed in seeds:
        b, f = (next(r for r in results.values() if r["seed"] == seed and r["precision"] == p) for p in ("bf16", "fp32"))
        lines.append(f"- seed {seed}: bf16 − fp32 {b['val_psnr'] - f['val_psnr']:+.3f} dB at "
                     f"{100 * (b['val_bpp'] / f['val_bpp'] - 1):+.2f} % bits; RD cost "
                     f"{100 * (b['val_rd_cost'] / f['val_rd_cost'] - 1):+.2f} %; speed {f['s_per_step'] / b['s_per_step']:.2f}×")
    mean = {p: sum(r["val_rd_cost"] for r in results.values() if r["precision"] == p) / len(seeds) for p in ("bf16", "fp32")}
    lines.append(f"- mean over {len(seeds)} seed(s): RD cost bf16 {mean['bf16']:.4f}, fp32 {mean['fp32']:.4f} "
                 f"({100 * (mean['bf16'] / mean['fp32'] - 1):+.2f} %)")
    if a.note:
        lines.append(f"- {a.note}")
    for p in ("bf16", "fp32"):
        costs = [r["val_rd_cost"] for r in results.values() if r["precision"] == p]
        if len(costs) > 1:
            lines.append(f"- {p} across seeds: RD cost {min(costs):.4f} … {max(costs):.4f} "
                         f"({100 * (max(costs) / min(costs) - 1):.2f} % spread: run-to-run noise)")
    Path(a.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
