#!/usr/bin/env python3
"""Equal-steps check between forks of one training state: the validation each fork logged at its
last validation step, side by side, and the difference to the first fork.

Forks are `licodec train` runs resumed from copies of the same checkpoint (and log) with one flag
changed, the same steps, batches and noise (the state's RNG), each with a fresh ``--ema``. The
campaign's check of ``--rate-balance`` (campaign/README.md) made its forks with:

    S=<state's step>; T=$((S + 800))
    cp campaign/checkpoint.safetensors campaign/log.csv runs/fork-a/   # and runs/fork-b/
    taskset -c 0 licodec train @campaign/run.args --out runs/fork-a --resume --stop-at $T --val-every $T --threads 1
    taskset -c 1 licodec train @campaign/run.args --out runs/fork-b --resume --stop-at $T --val-every $T --threads 1 \\
        --rate-balance 0.5

    python benchmarks/forks.py --name rate_balance a=runs/fork-a b=runs/fork-b --note "b: --rate-balance 0.5"

Writes benchmarks/results/<name>.json and .md. The RD cost at quality q is bpp + λ(q)·255²·MSE with
the MSE of the PSNR over the validation photos' mean (lower is better).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

QUALITIES = (1, 4, 8)


def last_validation(log: Path) -> dict:
    """The last row of a run's log.csv that holds validation columns, as floats."""
    with open(log, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_psnr_q1")]
    if not rows:
        raise SystemExit(f"{log}: no validation row")
    return {k: float(v) for k, v in rows[-1].items() if v not in ("", None)}


def rd_cost(bpp: float, psnr_db: float, q: int) -> float:
    from licodec.rate import LAMBDAS

    return bpp + LAMBDAS[q] * 255**2 * 10 ** (-psnr_db / 10)


def compare(runs: dict[str, dict]) -> list[dict]:
    """Per fork and kind of weights (the weights, their average): bpp, PSNR and RD cost at each
    quality, and the RD-cost change against the first fork in percent."""
    rows = []
    first = next(iter(runs))
    for name, v in runs.items():
        for kind, prefix in (("weights", ""), ("average", "ema_")):
            if f"{prefix}val_psnr_q1" not in v:
                continue
            row = {"fork": name, "weights": kind, "step": int(v["step"])}
            for q in QUALITIES:
                bpp, p = v[f"{prefix}val_bpp_q{q}"], v[f"{prefix}val_psnr_q{q}"]
                base = runs[first]
                cost0 = rd_cost(base[f"{prefix}val_bpp_q{q}"], base[f"{prefix}val_psnr_q{q}"], q)
                row[f"q{q}"] = {"bpp": bpp, "psnr": p, "rd_cost": rd_cost(bpp, p, q),
                                "rd_cost_vs_first_pct": 100 * (rd_cost(bpp, p, q) / cost0 - 1)}
            rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("forks", nargs="+", help="NAME=RUN_DIR (the first is the reference)")
    p.add_argument("--name", required=True, help="results file stem under benchmarks/results")
    p.add_argument("--note", default="", help="what the forks differ in")
    a = p.parse_args(argv)
    runs = {}
    for spec in a.forks:
        name, _, d = spec.partition("=")
        runs[name] = last_validation(Path(d) / "log.csv")
    if len({int(v["step"]) for v in runs.values()}) != 1:
        raise SystemExit("the forks' last validations are at different steps: not an equal-steps comparison")
    from licodec.evaluation.machine import machine_info, machine_line

    rows = compare(runs)
    out = REPO / "benchmarks" / "results" / a.name
    result = {"note": a.note, "forks": {k: str(v) for k, v in zip(runs, (s.partition("=")[2] for s in a.forks))},
              "machine": machine_line(machine_info()), "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Equal-steps forks: {a.name} (`benchmarks/forks.py`)", "", a.note, "",
             f"Validation (16 photos, estimated rate) at step {rows[0]['step']}; RD cost bpp + λ(q)·255²·MSE and its "
             f"change against fork {next(iter(runs))} (negative: better). Machine: {result['machine']}.", "",
             "| fork | weights | " + " | ".join(f"q{q}: bpp / PSNR / RD cost Δ" for q in QUALITIES) + " |",
             "|---|---|" + "---|" * len(QUALITIES)]
    for r in rows:
        cells = [f"{r[f'q{q}']['bpp']:.4f} / {r[f'q{q}']['psnr']:.2f} / {r[f'q{q}']['rd_cost_vs_first_pct']:+.2f} %"
                 for q in QUALITIES]
        lines.append(f"| {r['fork']} | {r['weights']} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
