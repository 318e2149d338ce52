#!/usr/bin/env python
"""Encoder effort (`licodec compress --effort N`): BD-rate against effort 0 with the same decoder,
and encode time of a 768x512 photo per level.

Writes benchmarks/results/effort.json, effort.md and effort.png. The RD part codes centre crops of
the validation photos at several qualities and every effort (real files: bytes of `Codec.encode`,
PSNR of the decoded image), resumable: finished rows are kept in the JSON. The timing part
encodes one 768x512 photo at each effort on --threads threads; --pause PID stops another process
(e.g. a background training run) meanwhile and resumes it after (SIGSTOP / SIGCONT).

    python benchmarks/effort.py                      # RD rows (resumes), then timing, then the report
    python benchmarks/effort.py --pause 12345        # ... keeping process 12345 stopped while timing
    python benchmarks/effort.py --report             # only the report from the JSON
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from pausing import paused  # benchmarks/pausing.py, beside this script

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")


def load(path) -> np.ndarray:
    from licodec.imageio import read_image

    return read_image(path).rgb  # (H, W, 3) uint8, as `licodec compress` reads it


def centre_crop(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = rgb.shape[:2]
    h, w = min(h, H), min(w, W)
    t, l = (H - h) // 2, (W - w) // 2
    return np.ascontiguousarray(rgb[t : t + h, l : l + w])


def rd_rows(a, state: dict, save) -> None:
    import torch

    from licodec.codec import Codec, decode
    from licodec.data import list_images

    torch.set_num_threads(a.rd_threads)
    images = list_images(a.val)[: a.images]
    h, w = (int(v) for v in a.crop.split("x"))
    done = {(r["image"], r["quality"], r["effort"]) for r in state["rows"]}
    for path in images:
        rgb = centre_crop(load(path), h, w)
        for q in a.qualities:
            for effort in a.efforts:
                if (path.name, q, effort) in done:
                    continue
                codec = Codec.pretrained(a.model, q, effort=effort) if a.weights is None else \
                    Codec.from_weights(a.weights, quality=q, effort=effort)
                t0 = time.perf_counter()
                data = codec.encode(rgb)
                dt = time.perf_counter() - t0
                out, _ = decode(data, weights=a.weights)
                row = {"image": path.name, "quality": q, "effort": effort, "bytes": len(data),
                       "bpp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), "psnr": psnr(out, rgb),
                       "encode_s": dt, "shape": list(rgb.shape[:2])}
                state["rows"].append(row)
                save()
                print(f"{path.name} q{q} effort {effort}: {row['bpp']:.4f} bpp {row['psnr']:.2f} dB {dt:.1f} s",
                      flush=True)


def timing(a, state: dict) -> None:
    import torch

    from licodec.codec import Codec
    from licodec.evaluation.machine import machine_info

    torch.set_num_threads(a.threads)
    rgb = load(a.timing_image)
    out = {}
    with paused(a.pause):
        state["machine"] = machine_info()
        Codec.pretrained(a.model, 4).encode(rgb)  # warm-up
        for effort in a.efforts:
            codec = Codec.pretrained(a.model, 4, effort=effort) if a.weights is None else \
                Codec.from_weights(a.weights, quality=4, effort=effort)
            t0 = time.perf_counter()
            codec.encode(rgb)
            out[str(effort)] = time.perf_counter() - t0
            print(f"timing effort {effort}: {out[str(effort)]:.1f} s", flush=True)
    state["timing"] = {"image": Path(a.timing_image).name, "shape": list(rgb.shape[:2]), "threads": a.threads,
                       "quality": 4, "encode_s": out, "other_process_paused": bool(a.pause)}


def curves(rows: list[dict], effort: int) -> tuple[list[float], list[float]]:
    """The effort's RD curve: per quality, mean bpp and mean PSNR over the images (as the papers average)."""
    qs = sorted({r["quality"] for r in rows if r["effort"] == effort})
    bpp = [float(np.mean([r["bpp"] for r in rows if r["effort"] == effort and r["quality"] == q])) for q in qs]
    ps = [float(np.mean([r["psnr"] for r in rows if r["effort"] == effort and r["quality"] == q])) for q in qs]
    return bpp, ps


def report(a, state: dict) -> None:
    from licodec.evaluation.bdrate import bd_rate
    from licodec.evaluation.machine import machine_line
    from licodec.models.refine import EFFORT_STEPS

    rows = state["rows"]
    images = sorted({r["image"] for r in rows})
    complete = [i for i in images if all(any(r["image"] == i and r["quality"] == q and r["effort"] == e for r in rows)
                                         for q in a.qualities for e in a.efforts)]
    rows = [r for r in rows if r["image"] in complete]
    base = curves(rows, 0)
    table = []
    for e in a.efforts:
        bpp, ps = curves(rows, e)
        t = state.get("timing", {}).get("encode_s", {})
        t0 = t.get("0")
        table.append({"effort": e, "steps": EFFORT_STEPS[e], "bd_rate": bd_rate(*base, bpp, ps) if e else 0.0,
                      "mean_bpp": float(np.mean(bpp)) if bpp else None, "mean_psnr": float(np.mean(ps)) if ps else None,
                      "encode_s": t.get(str(e)), "ratio": (t[str(e)] / t0) if t0 and str(e) in t else None})
    state["summary"] = table
    lines = ["# Encoder effort (`licodec compress --effort N`)", "",
             f"Model: {a.weights or a.model} (the shipped default unless a weight file is named). RD: "
             f"{len(complete)} validation photos ({', '.join(complete)}), centre crops of {a.crop}, qualities "
             f"{', '.join(f'{q:g}' for q in a.qualities)}, real file sizes, PSNR of the decoded image; BD-rate "
             "against effort 0 (the same decoder: the files decode with any licodec). Refinement: SGA "
             "(Yang et al. 2020) on y and z, `licodec.models.refine`.", ""]
    if "timing" in state:
        tm = state["timing"]
        lines += [f"Timing: encode of `{tm['image']}` ({tm['shape'][1]}x{tm['shape'][0]}) at q4 on {tm['threads']} "
                  f"threads, {'with the background training run paused' if tm['other_process_paused'] else 'machine shared'}; "
                  f"machine: {machine_line(state['machine'])}.", ""]
    lines += ["| effort | Adam steps | BD-rate vs effort 0 | encode 768x512 (s) | time vs effort 0 |", "|---|---|---|---|---|"]
    for r in table:
        bd = "" if r["bd_rate"] is None or math.isnan(r["bd_rate"]) else f"{r['bd_rate']:+.2f} %"
        ts = "" if r["encode_s"] is None else f"{r['encode_s']:.1f}"
        ra = "" if r["ratio"] is None else f"{r['ratio']:.0f}x"
        lines.append(f"| {r['effort']} | {r['steps']} | {bd} | {ts} | {ra} |")
    lines += ["", "Goals (issue 14): effort max ≥ 8 % BD-rate saving at ≤ 60 s per 768x512 photo on 2 threads; "
              "an intermediate level ≥ 4 % at ≤ 10 s.", ""]
    (RESULTS / "effort.md").write_text("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for e in a.efforts:
            bpp, ps = curves(rows, e)
            ax.plot(bpp, ps, marker="o", label=f"effort {e}")
        ax.set_xlabel("bpp (real files)")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "effort.png", dpi=110)
        plt.close(fig)
    except ImportError:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mbt2018-mean")
    p.add_argument("--weights", default=None, help="a weight file instead of the shipped default")
    p.add_argument("--val", default=str(REPO / "data" / "val"))
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--crop", default="384x512", help="HxW centre crop of each photo")
    p.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 5, 7])
    p.add_argument("--efforts", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--rd-threads", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="threads for the timing")
    p.add_argument("--timing-image", default=str(REPO / "data" / "val768" / "mate-Dune.png"))
    p.add_argument("--pause", type=int, default=None, metavar="PID", help="process to stop while timing")
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--report", action="store_true")
    p.add_argument("--json", default=str(RESULTS / "effort.json"))
    a = p.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    path = Path(a.json)
    state = json.loads(path.read_text()) if path.exists() else {"rows": []}

    def save():
        path.write_text(json.dumps(state, indent=1) + "\n")

    if not a.report:
        rd_rows(a, state, save)
        if not a.skip_timing:
            timing(a, state)
    report(a, state)
    save()
    print((RESULTS / "effort.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
