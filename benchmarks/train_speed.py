#!/usr/bin/env python3
"""Training throughput of every registered model at its CPU campaign size, per precision mode.

One `licodec.train.train_step` (forward, backward, gradient clipping, Adam) on a batch of random
crops, timed after warm-up steps; s/step and Mpx/s (crop pixels per second). Modes:

- ``fp32-nchw``: float32 in the standard (NCHW) layout (not a training mode: what the layout does);
- ``fp32``: float32, channels_last parameters and inputs — `licodec train --precision fp32`;
- ``bf16``: bfloat16 autocast of g_a/g_s, channels_last, GDN/layer norms/entropy models in
  float32 — `licodec train --precision bf16`.

``--compile MODELS`` also times those models with g_a and g_s under ``torch.compile``.

    python benchmarks/train_speed.py                # -> benchmarks/results/train_speed.{json,md}
    python benchmarks/train_speed.py --models mbt2018-mean --steps 3

Run it on a quiet machine (pause background training: kill -STOP PID ... kill -CONT PID).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from licodec.evaluation.machine import machine_info  # noqa: E402
from licodec.models.cca import CPU_CONFIG, SMALL_CONFIG  # noqa: E402
from licodec.precision import cpu_flags, resolve_precision  # noqa: E402
from licodec.models import create_model  # noqa: E402
from licodec.metrics import rd_loss  # noqa: E402
from licodec.rate import lambda_for  # noqa: E402
from licodec.train import set_precision, train_step  # noqa: E402

CAMPAIGN = {"N": 128, "M": 192}
# the CPU campaign size of each model (issue 12: about N = 128, M = 192; CCA also in SMALL_CONFIG)
CONFIGS = [
    ("bmshj2018-hyperprior", CAMPAIGN),
    ("mbt2018-mean", CAMPAIGN),
    ("lee2019-ctx", CAMPAIGN),
    ("lee2019-ctx-hybrid", {**CAMPAIGN, "M2": 64}),
    ("he2021-checkerboard", CAMPAIGN),
    ("han2024-cca", SMALL_CONFIG),
    ("han2024-cca", CPU_CONFIG),
]
MODES = ("fp32-nchw", "fp32", "bf16")


def time_steps(name: str, config: dict, mode: str, batch: int, patch: int, steps: int, warmup: int,
               compile_: bool, variable_rate: bool = True) -> dict:
    torch.manual_seed(0)
    model = create_model(name, {**config, "rate_levels": 8} if variable_rate else config).train()
    set_precision(model, "bf16" if mode == "bf16" else "fp32")
    if mode == "fp32-nchw":
        model.to(memory_format=torch.contiguous_format)
    if compile_:
        model.compile_transforms()  # as `licodec train --compile`
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, patch, patch, generator=g)
    q = 1 + 7 * torch.rand(batch, generator=g) if variable_rate else None
    step = train_step
    if mode == "fp32-nchw":  # train_step's input in the standard layout
        def step(net, model, opt, x, q, lmbda, clip):
            o = net(x, q)
            terms = rd_loss(o, x, lambda_for(q) if q is not None else 0.013)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            return terms
    t0 = time.perf_counter()
    for _ in range(warmup):
        step(model, model, opt, x, q, 0.013, 1.0)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        terms = step(model, model, opt, x, q, 0.013, 1.0)
        times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_"))
    return {"model": name, "config": config, "mode": mode, "compile": compile_, "s_per_step": med,
            "min_s": times[0], "max_s": times[-1], "mpx_per_s": batch * patch * patch / med / 1e6,
            "warmup_s": warm, "params_m": params / 1e6, "loss_finite": bool(torch.isfinite(terms["loss"]))}


def label(r: dict) -> str:
    c = r["config"]
    if r["model"] == "han2024-cca":
        return f"han2024-cca N={c['N']} M={c['M']} widths={'/'.join(map(str, c['widths']))}"
    return f"{r['model']} N={c['N']} M={c['M']}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated registry names (default: all)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", default="", help="comma-separated models also timed with g_a/g_s under torch.compile")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_speed"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = set(filter(None, a.models.split(",")))
    rows = []
    for name, config in CONFIGS:
        if names and name not in names:
            continue
        for mode in a.modes.split(","):
            for comp in (False, True) if name in a.compile.split(",") else (False,):
                try:
                    r = time_steps(name, config, mode, a.batch, a.patch, a.steps, a.warmup, comp)
                except Exception as e:  # a failed torch.compile is a result too
                    r = {"model": name, "config": config, "mode": mode, "compile": comp, "error": f"{type(e).__name__}: {e}"[:300]}
                rows.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "config"}), flush=True)
    flags = cpu_flags()
    machine = {"cpu": machine_info()["cpu"], "threads": a.threads, "amx_bf16": "amx_bf16" in flags,
               "avx512_bf16": "avx512_bf16" in flags, "torch": torch.__version__, "python": platform.python_version(),
               "auto_precision": resolve_precision("auto", "cpu"), "batch": a.batch, "patch": a.patch,
               "steps_timed": a.steps, "date": time.strftime("%Y-%m-%d")}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Training speed (`benchmarks/train_speed.py`)", "",
        f"{machine['cpu']}, {a.threads} threads (AMX-BF16: {machine['amx_bf16']}, AVX512-BF16: "
        f"{machine['avx512_bf16']}); torch {machine['torch']}; batch {a.batch} of {a.patch}² crops, variable-rate "
        f"models (gain units); one step = forward + backward + clipping + Adam; median of {a.steps} steps after "
        f"{a.warmup} warm-up steps. `--precision auto` picks **{machine['auto_precision']}** here.", "",
        "| model | params (M) | mode | compile | s/step | Mpx/s | vs fp32-nchw |", "|---|---|---|---|---|---|---|",
    ]
    base = {(label(r), r["compile"]): r["s_per_step"] for r in rows if r.get("mode") == "fp32-nchw" and "error" not in r}
    for r in rows:
        if "error" in r:
            lines.append(f"| {label(r)} | | {r['mode']} | {'yes' if r['compile'] else 'no'} | failed: {r['error'][:80]} | | |")
            continue
        ref = base.get((label(r), False))
        speed = f"{ref / r['s_per_step']:.2f}×" if ref else ""
        lines.append(f"| {label(r)} | {r['params_m']:.2f} | {r['mode']} | {'yes' if r['compile'] else 'no'} | "
                     f"{r['s_per_step']:.3f} | {r['mpx_per_s']:.2f} | {speed} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
