#!/usr/bin/env python3
"""What limits a variable-rate model, per quality: where its distortion comes from, and how much each
quality's loss pulls on the shared transforms.

For a weight file (or a training state, exported first), at every quality q of the ladder:
- the PSNR of x̂ = g_s(y) with y left unquantized, with y rounded, and of the model's forward pass
  (rounded around the mean) on centre crops of the validation photos: when the first is not above
  the others, the transforms and not the quantization cap the quality;
- the gradient norm of the batch loss λ(q)·255²·MSE + bpp with respect to g_a, g_s and h_a/h_s on
  one batch of training crops, all of it at quality q: with q ~ U[1, 8] per image in training, the
  shared transforms follow the qualities whose gradients are largest.

    python benchmarks/vr_balance.py --weights W.safetensors      # or --state campaign/checkpoint.safetensors
Writes benchmarks/results/vr_balance.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def measure(model, val: list, batch, qualities) -> list[dict]:
    import torch

    from licodec.metrics import bpp_from_likelihoods, psnr, rd_loss
    from licodec.models.base import pad_to
    from licodec.rate import lambda_for

    rows = []
    parts = {"g_a": [model.g_a], "g_s": [model.g_s], "h_a, h_s": [model.h_a, model.h_s]}
    for q in qualities:
        row = {"quality": q, "psnr_unquantized": 0.0, "psnr_rounded": 0.0, "psnr_forward": 0.0, "bpp_forward": 0.0}
        model.eval()
        with torch.no_grad():
            for x in val:
                qt = torch.tensor([float(q)])
                hw = x.shape[-2:]
                y = model.analysis(pad_to(x, model.downsample), qt)
                row["psnr_unquantized"] += psnr(model.synthesis(y, qt)[..., : hw[0], : hw[1]].clamp(0, 1), x) / len(val)
                row["psnr_rounded"] += psnr(model.synthesis(torch.round(y), qt)[..., : hw[0], : hw[1]].clamp(0, 1), x) / len(val)
                out = model(x, q)
                row["psnr_forward"] += psnr(out["x_hat"].clamp(0, 1), x) / len(val)
                row["bpp_forward"] += bpp_from_likelihoods(out["likelihoods"], hw[0] * hw[1]).item() / len(val)
        model.train()
        torch.manual_seed(0)  # the same quantization noise at every quality
        qt = torch.full((batch.shape[0],), float(q))
        terms = rd_loss(model(batch, qt), batch, lambda_for(qt))
        model.zero_grad(set_to_none=True)
        terms["loss"].backward()
        row["loss"] = terms["loss"].item()
        for name, mods in parts.items():
            row[f"grad_{name}"] = math.sqrt(sum(float((p.grad.float() ** 2).sum()) for m in mods
                                                for p in m.parameters() if p.grad is not None))
        rows.append(row)
    model.eval()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="a variable-rate weight file")
    src.add_argument("--state", help="a training state (licodec train's checkpoint), exported first")
    p.add_argument("--ema", action="store_true", help="with --state: its run's average of the weights (licodec.ema)")
    p.add_argument("--val", default=str(REPO / "data" / "val"))
    p.add_argument("--data", default=str(REPO / "data" / "train"))
    p.add_argument("--crop", type=int, default=512, help="centre crop of each validation photo")
    p.add_argument("--batch", type=int, default=4, help="training crops (256²) for the gradients")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "vr_balance"))
    a = p.parse_args(argv)

    import torch

    from licodec.data import CropSampler, list_images, load_rgb
    from licodec.evaluation.machine import machine_info, machine_line
    from licodec.rate import MAX_QUALITY
    from licodec.train import export_checkpoint
    from licodec.weights import load_weights

    torch.set_num_threads(a.threads)
    source = a.weights
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(a.weights) if a.weights else export_checkpoint(Path(a.state), Path(tmp) / "w.safetensors", ema=a.ema)
        model, info = load_weights(path)
        if not model.variable_rate:
            raise SystemExit(f"{path}: not a variable-rate model")
    if a.state:
        source = f"{a.state} ({'average of the weights' if a.ema else 'weights'}, step {info['extra']['steps']})"
    val = []
    for f in list_images(a.val):
        im = load_rgb(f).float().div(255)[None]  # (1,3,H,W)
        h, w = im.shape[-2:]
        c = min(a.crop, h, w)
        val.append(im[..., (h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c])
    batch = CropSampler(a.data, 256, torch.Generator().manual_seed(0)).batch(a.batch)
    batch = batch.float().div(255) if batch.dtype == torch.uint8 else batch
    rows = measure(model, val, batch, range(1, int(MAX_QUALITY) + 1))
    result = {"source": source, "val_images": len(val), "crop": a.crop, "batch": a.batch,
              "machine": machine_line(machine_info()), "rows": rows}
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Per quality: distortion sources and gradient share (`benchmarks/vr_balance.py`)", "",
             f"Model: {source}. PSNR on centre {a.crop}² crops of {len(val)} validation photos (mean over photos); "
             f"gradient norms of the loss λ(q)·255²·MSE + bpp on one batch of {a.batch} training crops (256²), "
             f"all at quality q, same quantization noise. Machine: {result['machine']}.", "",
             "| q | PSNR y unquantized | PSNR y rounded | PSNR forward (bpp) | loss | ‖∇ g_a‖ | ‖∇ g_s‖ | ‖∇ h_a, h_s‖ |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['quality']} | {r['psnr_unquantized']:.2f} | {r['psnr_rounded']:.2f} | "
                     f"{r['psnr_forward']:.2f} ({r['bpp_forward']:.3f}) | {r['loss']:.3f} | {r['grad_g_a']:.3g} | "
                     f"{r['grad_g_s']:.3g} | {r['grad_h_a, h_s']:.3g} |")
    g = [r["grad_g_a"] + r["grad_g_s"] for r in rows]
    lines += ["", f"Gradient on the transforms at q{rows[-1]['quality']} / at q{rows[0]['quality']}: {g[-1] / g[0]:.0f}×."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
