#!/usr/bin/env python3
"""The seed papers' ablations at equal compute on this machine (issue 12), re-runnable and resumable.

Every run trains one fixed-rate model at quality 4 (λ = 0.013) on the same data with the same
batch (8 of 256² crops), constant learning rate 1e-4, the fast precision mode (``--precision auto``, ``--compile``)
and the same compute: ``--budget`` minutes (default 30) of a quiet 2-thread machine, turned into
a number of steps per run by timing that run's training step first (`calibrate`: the fastest of 4
timed steps after 2 warm-up steps, other work on the machine paused through /tmp/licodec-quiet;
cached in ``benchmarks/results/study/<run>.calib.json``). A step budget, unlike a wall-clock or
CPU-time one, does not shrink when the machine is shared (on 2 cores, contention inflates both the
wall and the CPU time of a step), so runs made in different sessions compare fairly. One run at a
time:

    a   mbt2018-mean             no context (hyperprior alone)                 N=128 M=192
    b   he2021-checkerboard      checkerboard context, two-pass decoding       N=128 M=192
    c   lee2019-ctx              serial context                                N=128 M=192
    d   han2024-cca              CCA loss, uneven groups, CPU-sized backbone   `CPU_CONFIG`
    e   han2024-cca              (d) without the CCA loss
    f   han2024-cca              (d) with even groups
    a2  mbt2018-mean, seed 1     run-to-run noise
    m   lee2019-ctx --random-mask   He 2021 §4.1 mask analysis (eq. 7)

Each run lives in ``--work/<run>`` (a `licodec train` run directory: an interrupted run resumes
from its checkpoint, the budget counting over sessions); a finished run's results go to
``benchmarks/results/study/<run>.json`` (committed), so that a later session, even on another
machine, redoes nothing that finished. ``--report`` (also run after every finished run) writes
``benchmarks/results/study.md`` and the learning-curve plot from whatever results exist.

    python benchmarks/study.py                 # run what is missing, in the order above, then report
    python benchmarks/study.py --only a,d      # just these
    python benchmarks/study.py --report        # the report alone
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

import torch  # noqa: E402

from licodec.models.cca import CPU_CONFIG  # noqa: E402
from licodec.rate import LAMBDAS  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "study"
QUALITY = 4
CAMPAIGN = {"N": 128, "M": 192}
RUNS = {
    "a": ("mbt2018-mean", CAMPAIGN, [], "no context (hyperprior only)"),
    "b": ("he2021-checkerboard", CAMPAIGN, [], "checkerboard context (He 2021)"),
    "c": ("lee2019-ctx", CAMPAIGN, [], "serial context (Lee 2019)"),
    "d": ("han2024-cca", CPU_CONFIG, [], "channel-wise, uneven groups, CCA loss (Han 2024)"),
    "e": ("han2024-cca", {**CPU_CONFIG, "use_cca": False}, [], "(d) without the CCA loss"),
    "f": ("han2024-cca", {**CPU_CONFIG, "even_groups": True}, [], "(d) with even groups"),
    "a2": ("mbt2018-mean", CAMPAIGN, ["--seed", "1"], "(a) with another seed: run-to-run noise"),
    "m": ("lee2019-ctx", CAMPAIGN, ["--random-mask"], "random-mask model (He 2021 §4.1)"),
}


# a seed repeat trains the steps of the run it repeats: the same compute by construction
SAME_STEPS_AS = {"a2": "a"}

QUIET = Path("/tmp/licodec-quiet")  # other work on this machine waits while it exists


# A run first timed on a machine of another kind than the one its reference run was calibrated on
# (the budgets of a, b, c, d, e were set on an Intel Xeon with AMX-BF16) gets the reference run's steps
# scaled by the two step times measured together here: compute matched in the reference machine's
# seconds. (f) costs what (d) costs up to its group sizes; (m) is (c) with a random mask.
RELATIVE_TO = {"f": "d", "m": "c"}


def _time_step(key: str, a) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_speed import time_steps

    from licodec.precision import resolve_precision

    name, config, extra, _ = RUNS[key]
    mode = resolve_precision(a.precision, "cpu")
    cfg = {**config, "random_mask": True} if "--random-mask" in extra else config
    return {"mode": mode, **time_steps(name, cfg, mode, 8, 256, 4, 2, True, variable_rate=False)}


def calibrate(key: str, a) -> dict:
    """The run's step budget: ``a.budget`` minutes of its training step (precision ``auto``,
    torch.compile, batch 8 of 256²; the fastest of 4 timed steps after 2 warm-up steps, the machine
    kept quiet), or, for a run in `RELATIVE_TO` whose reference is calibrated, the reference's steps
    times (reference step time / this run's step time), both timed here."""
    key = SAME_STEPS_AS.get(key, key)
    path = RESULTS / f"{key}.calib.json"
    if path.exists():
        return json.loads(path.read_text())
    from licodec.evaluation.machine import machine_info, machine_line

    ref = RELATIVE_TO.get(key)
    ref_calib = calibrate(ref, a) if ref and (RESULTS / f"{ref}.calib.json").exists() else None
    QUIET.touch()
    try:
        r = _time_step(key, a)
        r_ref = _time_step(ref, a) if ref_calib else None
    finally:
        QUIET.unlink(missing_ok=True)
    calib = {"s_per_step": r["min_s"], "median_s": r["s_per_step"], "mode": r["mode"], "compile": True,
             "budget_minutes": a.budget, "machine": machine_line(machine_info())}
    if r_ref is None:
        calib["steps"] = int(round(a.budget * 60 / r["min_s"]))
    else:
        ratio = r_ref["min_s"] / r["min_s"]
        calib.update(steps=int(round(ref_calib["steps"] * ratio)), relative_to=ref,
                     ref_s_per_step_here=r_ref["min_s"], ref_steps=ref_calib["steps"],
                     s_per_step=ref_calib["s_per_step"] / ratio)  # in the reference machine's seconds
        calib["s_per_step_here"] = r["min_s"]
    path.write_text(json.dumps(calib, indent=1) + "\n")
    return calib


def train_run(key: str, a) -> Path:
    from licodec import train

    name, config, extra, _ = RUNS[key]
    out = Path(a.work) / key
    steps = calibrate(key, a)["steps"]
    argv = ["-m", name, "--config", json.dumps(config), "-q", str(QUALITY), "--data", a.data, "--val", a.val,
            "--out", str(out), "--steps", str(steps), "--batch-size", "8", "--patch", "256", "--lr", "1e-4",
            "--lr-drop", "1.0", "--val-every", "250", "--checkpoint-minutes", "10", "--precision", a.precision,
            "--threads", str(a.threads), "--compile", *extra]
    if (out / train.CKPT).exists():
        argv.append("--resume")
    elif out.exists():
        argv.append("--force")  # a run directory without a checkpoint holds nothing to keep
    p = argparse.ArgumentParser()
    train.add_arguments(p)
    return train.run(p.parse_args(argv))


@torch.no_grad()
def evaluate(key: str, weights: Path, a) -> dict:
    """Validation (whole photos, estimated rate of the rounded latents), decode time of a
    768×512 photo (median of 3, real bitstream), the learning curve from the log."""
    from licodec.codec import Codec
    from licodec.data import list_images, load_rgb
    from licodec.train import validate
    from licodec.weights import load_weights

    model, info = load_weights(weights)
    images = [load_rgb(p) for p in list_images(a.val)]
    v = validate(model, images)
    lam = LAMBDAS[QUALITY]
    out = {"run": key, "model": RUNS[key][0], "config": RUNS[key][1], "flags": RUNS[key][2],
           "what": RUNS[key][3], "steps": info["extra"]["steps"], "train_cpu_s": info["extra"].get("train_cpu_s"),
           "train_wall_s": info["extra"].get("train_wall_s"), "precision": info["extra"].get("precision"),
           "val_bpp": v["val_bpp"], "val_psnr": v["val_psnr"],
           "val_rd_cost": v["val_bpp"] + lam * 255**2 * 10 ** (-v["val_psnr"] / 10)}
    out["s_per_step"] = calibrate(key, a)["s_per_step"]  # quiet-machine step time (the budget's unit)
    bench = list_images(Path(a.val).parent / "val768")[0] if (Path(a.val).parent / "val768").is_dir() else None
    if bench is not None and key != "m":
        from licodec.codec import decode

        codec = Codec(model.eval(), info)
        rgb = load_rgb(bench).permute(1, 2, 0).numpy()
        blob = codec.encode(rgb)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            decode(blob, weights=weights)
            times.append(time.perf_counter() - t)
        out["decode_768x512_s"] = sorted(times)[1]
        out["decode_threads"] = torch.get_num_threads()
    with open(Path(a.work) / key / "log.csv") as f:
        out["curve"] = [(int(r["step"]), float(r["val_bpp"]), float(r["val_psnr"]))
                        for r in csv.DictReader(f) if r.get("val_bpp")]
    if key == "m":
        from licodec.analysis.masks import mask_bpp, rate_saving, standard_masks

        masks = {k: m for k, m in standard_masks().items() if not k.startswith("single")}
        x = [im[None].float() / 255 for im in images]
        y_bpp, total_bpp = mask_bpp(model, x, masks)
        out["masks"] = {k: {"y_bpp": y_bpp[k], "total_bpp": total_bpp[k], "saving_y": s,
                            "saving_total": rate_saving(total_bpp)[k]} for k, s in rate_saving(y_bpp).items()}
    return out


def report(a) -> None:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json")) if p.stem in RUNS}
    lines = ["# The seed papers' ablations at equal compute (`benchmarks/study.py`)", ""]
    machines = sorted({r["machine"].split(";")[0] for r in rows.values() if r.get("machine")})
    machine = "; ".join(machines) if machines else "(no run finished yet)"
    lines += [f"Quality {QUALITY} (λ = {LAMBDAS[QUALITY]}), batch 8 of 256² crops, lr 1e-4 constant, "
              f"{a.budget:g} quiet-machine minutes of training steps per run (steps = budget / the run's measured step time), validation on `data/val` (whole photos, estimated "
              f"rate of the rounded latents; λD+R = bpp + λ·255²·MSE). Machines: {machine}. The step times "
              "are the reference machine's (a run first timed on another machine: see `RELATIVE_TO`); decode "
              "times are those of the machine a run was trained on (column \"trained on\").", ""]
    lines += ["| run | model | what | steps | s/step | val bpp | val PSNR | λD+R | vs (a) | decode 768×512 (s) | trained on |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    ref = rows.get("a", {}).get("val_rd_cost")
    for key in RUNS:
        r = rows.get(key)
        if r is None:
            lines.append(f"| {key} | {RUNS[key][0]} | {RUNS[key][3]} | not run yet | | | | | | | |")
            continue
        rel = f"{100 * (r['val_rd_cost'] / ref - 1):+.2f} %" if ref else ""
        dec = f"{r['decode_768x512_s']:.3f}" if r.get("decode_768x512_s") else ""
        sps = f"{r['s_per_step']:.2f}" if r.get("s_per_step") else ""
        lines.append(f"| {key} | {r['model']} | {r['what']} | {r['steps']} | {sps} | {r['val_bpp']:.4f} | "
                     f"{r['val_psnr']:.3f} | {r['val_rd_cost']:.4f} | {rel} | {dec} | "
                     f"{r.get('machine', '').split(' (')[0]}, {r.get('precision') or ''} |")
    if "a" in rows and "a2" in rows:
        noise = 100 * abs(rows["a2"]["val_rd_cost"] / rows["a"]["val_rd_cost"] - 1)
        lines += ["", f"Run-to-run noise (a vs a2, seeds 0 and 1): {noise:.2f} % of λD+R."]
    if "m" in rows:
        lines += ["", "He 2021 §4.1 mask analysis on the random-mask model (eq. 7; y-only rate = the paper's "
                  "non-reference bpp, and with z):", "", "| mask | y bpp | saving (y) | total bpp | saving (total) |",
                  "|---|---|---|---|---|"]
        for k, m in rows["m"]["masks"].items():
            lines.append(f"| {k} | {m['y_bpp']:.4f} | {100 * m['saving_y']:.2f} % | {m['total_bpp']:.4f} | "
                         f"{100 * m['saving_total']:.2f} % |")
    text = Path(a.notes).read_text() if a.notes and Path(a.notes).exists() else ""
    if text:
        lines += ["", text.rstrip()]
    (REPO / "benchmarks" / "results" / "study.md").write_text("\n".join(lines) + "\n")
    (REPO / "benchmarks" / "results" / "study.json").write_text(json.dumps(rows, indent=1) + "\n")
    if not any(r.get("curve") for r in rows.values()):
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, r in rows.items():
        if r["curve"]:
            lam = LAMBDAS[QUALITY]
            ax.plot([c[0] for c in r["curve"]], [c[1] + lam * 255**2 * 10 ** (-c[2] / 10) for c in r["curve"]],
                    label=f"{key}: {r['what']}")
    ax.set_xlabel("step")
    ax.set_ylabel("validation λD + R")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(REPO / "benchmarks" / "results" / "study.png", dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated run keys (default: every run, in order)")
    p.add_argument("--data", default=str(REPO / "data" / "train"))
    p.add_argument("--val", default=str(REPO / "data" / "val"))
    p.add_argument("--work", default=str(REPO / "runs" / "study"))
    p.add_argument("--budget", type=float, default=30.0, help="minutes of a quiet 2-thread machine per run (see calibrate)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="auto")
    p.add_argument("--notes", default=str(RESULTS / "notes.md"), help="text appended to the report (the decision)")
    p.add_argument("--report", action="store_true", help="only write the report")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not a.report:
        from licodec.evaluation.machine import machine_info, machine_line

        for key in [k for k in (a.only.split(",") if a.only else RUNS) if k]:
            if (RESULTS / f"{key}.json").exists():
                continue
            weights = train_run(key, a)
            r = evaluate(key, weights, a)
            r["machine"] = machine_line(machine_info())
            (RESULTS / f"{key}.json").write_text(json.dumps(r, indent=1) + "\n")
            report(a)
    report(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
