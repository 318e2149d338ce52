"""`licodec train`: rate-distortion training with checkpoint + exact resume.

Loss: λ·255²·MSE + bpp (Lee 2019 eq. 3 in the CompressAI λ convention). Adam, gradient
clipping, a step learning-rate decay at ``--lr-drop`` of the run. Checkpoints are safetensors
files (model, Adam moments, RNG states as tensors; step and arguments in the metadata),
written atomically every ``--checkpoint-minutes`` and at the end; ``--resume`` continues from
the last one exactly (same batches, same noise). The final weights are exported with
`licodec.weights.save_weights`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file, safe_open
from tqdm import tqdm

from .data import CropSampler, list_images, load_rgb
from .metrics import bpp_from_likelihoods, psnr, rd_loss
from .registry import create_model
from .weights import LAMBDAS, atomic_write, load_weights, save_weights

CKPT = "checkpoint.safetensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", required=True, help="registry name, e.g. mbt2018-mean")
    p.add_argument("--config", default="{}", help='model config as JSON, e.g. \'{"N": 64, "M": 96}\'')
    p.add_argument("--quality", "-q", type=int, default=3, choices=sorted(LAMBDAS), help="picks λ from the ladder")
    p.add_argument("--lambda", dest="lmbda", type=float, default=None, help="override λ (λ·255²·MSE + bpp)")
    p.add_argument("--data", default="data/train", help="folder of training images")
    p.add_argument("--val", default="data/val", help="folder of validation images ('' to skip)")
    p.add_argument("--out", required=True, help="run directory (checkpoint, log.csv, final weights)")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch", type=int, default=256, help="crop size (multiple of 64)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-drop", type=float, default=0.9, help="fraction of --steps after which lr is divided by 10")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (0 disables)")
    p.add_argument("--init", default=None, help="start from these weights (fine-tuning to another λ)")
    p.add_argument("--warm-start", default=None,
                   help="copy every tensor whose name and shape match from these weights (e.g. a context model's "
                        "transforms from mbt2018-mean); the rest keeps its random initialization")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the transforms g_a/g_s in training (entropy models stay float32); "
                        "about 1.5x faster on CPUs with AVX512-BF16")
    p.add_argument("--random-mask", action="store_true",
                   help="He 2021 §4.1 random-mask model: a new random context mask every step (lee2019-ctx)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--stop-at", type=int, default=None,
                   help="checkpoint and stop at this step without exporting (time-sliced training; resume later)")
    p.add_argument("--export", default=None, help="final weights path (default OUT/<model>-q<quality>.safetensors)")


def _optim_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"optim.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def _optim_from_tensors(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path: Path, model, opt, step: int, gen: torch.Generator, args: dict, best: float) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    ot, ometa = _optim_to_tensors(opt)
    tensors.update({k: v.contiguous() for k, v in ot.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.sampler"] = gen.get_state()
    meta = {"step": str(step), "args": json.dumps(args), "optim": json.dumps(ometa), "best": repr(best)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_checkpoint(path: Path, model, opt, gen: torch.Generator) -> tuple[int, float]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    _optim_from_tensors(opt, tensors, json.loads(meta["optim"]))
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.sampler"])
    return int(meta["step"]), float(meta["best"])


@torch.no_grad()
def warm_start(model, donor) -> int:
    """Copy the donor's tensors into ``model`` where name and shape match; returns how many."""
    own = model.state_dict()
    n = 0
    for k, v in donor.state_dict().items():
        if k in own and own[k].shape == v.shape:
            own[k].copy_(v)
            n += 1
    return n


@torch.no_grad()
def validate(model, images: list[torch.Tensor]) -> dict[str, float]:
    """Mean estimated bpp and PSNR over whole validation images (rounded latents)."""
    model.eval()
    bpps, psnrs = [], []
    for im in images:
        x = im.unsqueeze(0).float().div(255).to(model.device)
        out = model(x)
        bpps.append(bpp_from_likelihoods(out["likelihoods"], x.shape[2] * x.shape[3]).item())
        psnrs.append(psnr(out["x_hat"].clamp(0, 1), x))
    model.train()
    return {"val_bpp": sum(bpps) / len(bpps), "val_psnr": sum(psnrs) / len(psnrs)}


def run(args: argparse.Namespace) -> Path:
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lmbda = args.lmbda if args.lmbda is not None else LAMBDAS[args.quality]
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    config = json.loads(args.config)
    if args.random_mask:
        config["random_mask"] = True
    if args.init:
        model, _ = load_weights(args.init, expect_model=args.model)
    else:
        model = create_model(args.model, config)
    if args.warm_start:
        donor, _ = load_weights(args.warm_start)
        copied = warm_start(model, donor)
        print(f"warm start: copied {copied} of {len(model.state_dict())} tensors from {args.warm_start}")
    model.train()
    model.bf16_transforms = args.bf16
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sampler = CropSampler(args.data, args.patch, gen)
    val_images = [load_rgb(p) for p in list_images(args.val)] if args.val else []
    step, best = 0, math.inf
    ckpt = out / CKPT
    if args.resume and ckpt.exists():
        step, best = load_checkpoint(ckpt, model, opt, gen)
        print(f"resumed from {ckpt} at step {step}")
    log_path = out / "log.csv"
    new_log = not log_path.exists() or step == 0
    log = open(log_path, "w" if new_log else "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "time", "lr", "loss", "bpp", "psnr", "val_bpp", "val_psnr"])
    drop_at = int(args.lr_drop * args.steps)
    last_ckpt = time.monotonic()
    vars_ = {k: v for k, v in vars(args).items() if k != "func"}
    bar = tqdm(total=args.steps, initial=step, desc=f"{model.name} λ={lmbda:g}", dynamic_ncols=True)
    stop = min(args.steps, args.stop_at or args.steps)
    while step < stop:
        lr = args.lr * (0.1 if step >= drop_at else 1.0)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler.batch(args.batch_size)
        o = model(x)
        terms = rd_loss(o, x, lmbda)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        p = 10 * math.log10(1 / max(terms["mse"].item(), 1e-10))
        bar.update(1)
        bar.set_postfix(loss=f"{terms['loss'].item():.3f}", bpp=f"{terms['bpp'].item():.3f}", psnr=f"{p:.2f}")
        row = [step, f"{time.time():.0f}", lr, f"{terms['loss'].item():.5f}", f"{terms['bpp'].item():.5f}", f"{p:.3f}", "", ""]
        if val_images and (step % args.val_every == 0 or step == args.steps):
            v = validate(model, val_images)
            row[-2:] = [f"{v['val_bpp']:.5f}", f"{v['val_psnr']:.3f}"]
            best = min(best, v["val_bpp"] + lmbda * 255**2 * 10 ** (-v["val_psnr"] / 10))
            tqdm.write(f"step {step}: val bpp {v['val_bpp']:.4f} PSNR {v['val_psnr']:.2f} dB")
        if step % 50 == 0 or row[-1]:
            writer.writerow(row)
            log.flush()
        if time.monotonic() - last_ckpt > args.checkpoint_minutes * 60 or step == stop:
            save_checkpoint(ckpt, model, opt, step, gen, vars_, best)
            last_ckpt = time.monotonic()
    bar.close()
    log.close()
    if step < args.steps:
        print(f"stopped at step {step}; continue with --resume")
        return ckpt
    model.eval()
    export = Path(args.export) if args.export else out / f"{model.name}-q{args.quality}.safetensors"
    v = validate(model, val_images) if val_images else {}
    save_weights(model, export, quality=args.quality, lmbda=lmbda,
                 extra={"steps": step, "patch": args.patch, "batch_size": args.batch_size, **v})
    print(f"wrote {export}")
    return export
