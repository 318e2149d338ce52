#!/usr/bin/env python3
"""Does a run resumed from a checkpoint with bfloat16 Adam moments (`licodec train --state-moments
bf16`, what the campaign commits) train as well as one resumed from float32 moments? An
equal-steps check (issue 13): the same variable-rate run, same seed and data order,

    straight   ``--steps S`` without interruption
    fp32       ``--stop-at S/2``, then ``--resume`` (float32 moments in the checkpoint)
    bf16       ``--stop-at S/2 --state-moments bf16``, then ``--resume``
    seed1      (straight with ``--seed 1``: the run-to-run noise to compare against)

and compares the training loss over the second half and the final validation λD+R at q1/q4/q8.
A small model (mbt2018-mean N=48 M=64, 128² crops) keeps it to minutes; the moments are the
part that changes, and their bf16 rounding error is relative, so it does not depend on the size.

    python benchmarks/resume_moments.py        # -> benchmarks/results/resume_moments.{json,md}
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from licodec import train  # noqa: E402
from licodec.evaluation.machine import machine_info, machine_line  # noqa: E402
from licodec.rate import LAMBDAS  # noqa: E402

QUALITIES = (1, 4, 8)


def _run(out: Path, a, *extra: str) -> None:
    argv = ["-m", "mbt2018-mean", "--config", json.dumps({"N": 48, "M": 64}), "--variable-rate",
            "--data", a.data, "--val", a.val, "--out", str(out), "--steps", str(a.steps), "--batch-size", "8",
            "--patch", "128", "--lr", "1e-4", "--lr-schedule", "cosine", "--val-every", str(a.steps),
            "--log-every", "10", "--threads", str(a.threads), "--checkpoint-minutes", "1000", *extra]
    p = argparse.ArgumentParser()
    train.add_arguments(p)
    train.run(p.parse_args(argv))


def _summary(out: Path, half: int) -> dict:
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    second = [float(r["loss"]) for r in rows if int(r["step"]) > half and r.get("loss")]
    last = [r for r in rows if r.get("val_bpp_q4")][-1]
    rd = {q: float(last[f"val_bpp_q{q}"]) + LAMBDAS[q] * 255**2 * 10 ** (-float(last[f"val_psnr_q{q}"]) / 10)
          for q in QUALITIES}
    return {"second_half_loss": sum(second) / len(second), "val_rd_cost": rd,
            "loss_curve": [(int(r["step"]), float(r["loss"])) for r in rows if r.get("loss")]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--data", default=str(REPO / "data" / "train"))
    p.add_argument("--val", default=str(REPO / "data" / "val"))
    p.add_argument("--work", default=str(REPO / "runs" / "resume_moments"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "resume_moments"))
    a = p.parse_args(argv)
    work, half = Path(a.work), a.steps // 2
    runs = {}
    for key, first, second in [("straight", ["--force"], None),
                               ("fp32", ["--force", "--stop-at", str(half)], ["--resume"]),
                               ("bf16", ["--force", "--stop-at", str(half), "--state-moments", "bf16"],
                                ["--resume", "--state-moments", "bf16"]),
                               ("seed1", ["--force", "--seed", "1"], None)]:
        _run(work / key, a, *first)
        if second:
            _run(work / key, a, *second)
        runs[key] = _summary(work / key, half)
    ref = runs["straight"]
    for r in runs.values():
        r["loss_vs_straight"] = r["second_half_loss"] / ref["second_half_loss"] - 1
        r["rd_vs_straight"] = {q: r["val_rd_cost"][q] / ref["val_rd_cost"][q] - 1 for q in QUALITIES}
    result = {"machine": machine_line(machine_info()), "steps": a.steps, "runs": runs}
    Path(a.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Resuming from bfloat16 Adam moments (`benchmarks/resume_moments.py`)", "",
             f"mbt2018-mean N=48 M=64, variable rate, batch 8 of 128², lr 1e-4 cosine over {a.steps} steps; "
             f"the resumed runs stop at step {half} and resume. Machine: {result['machine']}.", "",
             "| run | mean loss, steps > half | vs straight | val λD+R q1 / q4 / q8 vs straight |",
             "|---|---|---|---|"]
    for key, r in runs.items():
        rd = " / ".join(f"{100 * r['rd_vs_straight'][q]:+.2f} %" for q in QUALITIES)
        lines.append(f"| {key} | {r['second_half_loss']:.4f} | {100 * r['loss_vs_straight']:+.2f} % | {rd} |")
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
