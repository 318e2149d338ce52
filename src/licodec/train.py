"""`licodec train`: rate-distortion training with checkpoint + exact resume.

Loss: λ·255²·MSE + bpp (Lee 2019 eq. 3 in the CompressAI λ convention). Adam, gradient
clipping, a learning-rate schedule (``--lr-schedule``: a step decay at ``--lr-drop`` of the run,
or cosine). ``--variable-rate`` trains one set of weights for every quality: each image of a
batch draws q ~ U[1, 8] and is trained with λ(q) (`licodec.rate`), through the model's gain
units (`licodec.models.gain`). Checkpoints are safetensors
files (model, Adam moments, RNG states as tensors; step and arguments in the metadata),
written atomically every ``--checkpoint-minutes`` and at the end; ``--resume`` continues from
the last one exactly (same batches, same noise). The final weights are exported with
`licodec.weights.save_weights`. ``--ema`` also keeps an exponential moving average of the weights
(`licodec.ema`): validated beside them, and what the run exports.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file, safe_open
from tqdm import tqdm

from .data import CropSampler, Prefetcher, list_images, load_rgb
from .ema import EMA_FILE, WeightEMA, load_average
from .errors import LicodecError
from .metrics import bpp_from_likelihoods, psnr, rd_loss
from .precision import resolve_precision
from .models import create_model
from .rate import LAMBDAS, MAX_QUALITY, balance_weights, lambda_for
from .weights import atomic_write, dense, load_weights, save_weights

CKPT = "checkpoint.safetensors"
LOCK_FILE = ".train.lock"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", required=True, help="registry name, e.g. mbt2018-mean")
    p.add_argument("--config", default="{}",
                   help='model config: JSON, e.g. \'{"N": 64, "M": 96}\', or a .json file holding it. '
                        "All flags can also come from a file: licodec train @run.args (one flag or value per line)")
    p.add_argument("--quality", "-q", type=int, default=3, choices=sorted(LAMBDAS), help="picks λ from the ladder")
    p.add_argument("--lambda", dest="lmbda", type=float, default=None, help="override λ (λ·255²·MSE + bpp)")
    p.add_argument("--variable-rate", action="store_true",
                   help="one set of weights for qualities 1..8 (gain units; λ drawn per image from the ladder)")
    p.add_argument("--rate-balance", type=float, default=0.0, metavar="POWER",
                   help="with --variable-rate: weigh each image's loss by (λ(q)/λ(8))^-POWER so that low qualities "
                        "pull on the shared transforms as much as high ones (1: about even; 0: off; see "
                        "licodec.rate.balance_weights)")
    p.add_argument("--data", default="data/train", help="folder of training images")
    p.add_argument("--val", default="data/val", help="folder of validation images ('' to skip)")
    p.add_argument("--out", required=True, help="run directory (checkpoint, log.csv, final weights)")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch", type=int, default=256, help="crop size (multiple of 64)")
    p.add_argument("--scale-aug", type=float, default=1.0,
                   help="also downscale each crop by a random factor in [1, S] (log-uniform; 1: off). With the "
                        "recipe's 2x-downsampled photos, 2 gives crops at 2-4x of the originals")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-schedule", choices=["step", "cosine"], default="step",
                   help="step: lr/10 after --lr-drop of the steps; cosine: from lr down to lr/100 at --steps")
    p.add_argument("--lr-drop", type=float, default=0.9, help="fraction of --steps after which lr is divided by 10")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (0 disables)")
    p.add_argument("--init", default=None, help="start from these weights (fine-tuning to another λ)")
    p.add_argument("--warm-start", default=None,
                   help="copy every tensor whose name and shape match from these weights (e.g. a context model's "
                        "transforms from mbt2018-mean); the rest keeps its random initialization")
    p.add_argument("--widen", default=None,
                   help="start from these weights of the same model in a narrower config (e.g. M 96 -> 192): "
                        "old channels copied, new ones initialized (see licodec.train.widen)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="bf16: bfloat16 autocast with channels_last for the transforms g_a/g_s (GDN, layer norms, "
                        "entropy models and the loss stay float32); auto: bf16 where it is measured faster "
                        "(CPUs with AMX-BF16, AMD CPUs with AVX512-BF16, GPUs with bfloat16), else fp32 (see licodec.precision)")
    p.add_argument("--compile", action="store_true",
                   help="run g_a/g_s through torch.compile in training (needs a C++ compiler; bf16 steps 1.7x faster "
                        "on AMX or Zen 4 CPUs after ~10 s of compilation; evaluation and coding stay eager)")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="same as --precision bf16")
    p.add_argument("--random-mask", action="store_true",
                   help="He 2021 §4.1 random-mask model: a new random context mask every step (lee2019-ctx)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--force", action="store_true",
                   help="start a new run in an OUT that holds one (its checkpoint and log are replaced), or "
                        "--resume from scratch when OUT has no checkpoint")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--state-moments", choices=("fp32", "bf16"), default="fp32",
                   help="dtype of Adam's moments in checkpoint.safetensors: bf16 halves their size (a run state "
                        "committed to git); a resume reads them back as float32")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="also average the weights over the steps with this decay (e.g. 0.999: the last ~1 000 "
                        "steps; kept in OUT/ema.safetensors, see licodec.ema); validation logs the average beside "
                        "the weights (ema_val_* columns) and the run exports the average. 0: off")
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=50, help="steps between rows of log.csv (validation steps always get a row)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard (needs the [train] extra)")
    p.add_argument("--budget-cpu-minutes", type=float, default=None,
                   help="end the run (validate and export, as at --steps) once its training loop has used this much "
                        "CPU time, summed over resumed sessions (equal-compute comparisons; 2 threads: ~2 per minute)")
    p.add_argument("--stop-at", type=int, default=None,
                   help="checkpoint and stop at this step without exporting (time-sliced training; resume later)")
    p.add_argument("--export", default=None,
                   help="final weights path (default OUT/<model>-q<quality>.safetensors, OUT/<model>-vr.safetensors)")
    p.add_argument("--half", action="store_true", help="export the weights as float16 (half the size)")


def _optim_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"optim.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def _optim_from_tensors(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    """Adam's state from ``optim.<param>.<key>`` tensors. A state packed without the first moments
    (``exp_avg``: `scripts/gpu_leg.py` leaves them out so that a run travels in less space) resumes
    with them at zero: Adam's running mean of the gradients then rebuilds within ~1/(1-β₁) = 10 steps,
    while the second moments, which set each parameter's step size, are kept."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for st in state.values():
        if "exp_avg_sq" in st and "exp_avg" not in st:
            st["exp_avg"] = torch.zeros_like(st["exp_avg_sq"])
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_state(sampler_state: torch.Tensor, device=None) -> tuple[torch.Tensor, ...]:
    """This process's RNG states: torch's global one, the sampler's (as it was after the last
    batch trained on: `licodec.data.Prefetcher` draws ahead) and, on CUDA, the device's
    (quantization noise is drawn on the device of the latents)."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.get_rng_state(), sampler_state, torch.cuda.get_rng_state(device)
    return torch.get_rng_state(), sampler_state


def save_checkpoint(path: Path, model, opt, step: int, rng: list, args: dict,
                    write: bool = True, clock: dict | None = None, moments: str = "fp32") -> None:
    """Model, Adam moments and the RNG states of every rank (``rng``: one `_rng_state` per rank),
    in one safetensors file written atomically (a kill mid-write leaves the previous one).
    ``moments="bf16"``: Adam's exp_avg / exp_avg_sq stored as bfloat16 (`Optimizer.load_state_dict`
    casts them back to the parameters' float32 on resume); weights and RNG states stay exact."""
    if not write:
        return
    tensors = {f"model.{k}": dense(v) for k, v in model.state_dict().items()}
    ot, ometa = _optim_to_tensors(opt)
    if moments == "bf16":
        ot = {k: v.to(torch.bfloat16) if k.endswith((".exp_avg", ".exp_avg_sq")) else v for k, v in ot.items()}
    tensors.update({k: dense(v) for k, v in ot.items()})
    for r, (torch_state, sampler_state, *cuda_state) in enumerate(rng):
        tensors[f"rng.{r}.torch"] = torch_state
        tensors[f"rng.{r}.sampler"] = sampler_state
        if cuda_state:
            tensors[f"rng.{r}.cuda"] = cuda_state[0]
    meta = {"step": str(step), "args": json.dumps(args), "optim": json.dumps(ometa),
            "model": model.name, "model_config": json.dumps(model.config_dict()),
            "ranks": str(len(rng)), "clock": json.dumps(clock or {})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_checkpoint(path: Path, model, opt, gen: torch.Generator, rank: int = 0, device="cpu",
                    world: int = 1) -> int:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    _load_model_tensors(model, tensors)
    # Optimizer.load_state_dict puts the moments on their parameters' device and keeps Adam's step
    # counts where a fresh Adam has them (on the CPU unless capturable/fused)
    _optim_from_tensors(opt, {k: v for k, v in tensors.items() if k.startswith("optim.")}, json.loads(meta["optim"]))
    if int(meta.get("ranks", 1)) != world or f"rng.{rank}.torch" not in tensors:
        raise LicodecError(f"{path} was written by a run with {meta.get('ranks', 1)} process(es); "
                           f"resume it with the same number")
    torch.set_rng_state(tensors[f"rng.{rank}.torch"])
    gen.set_state(tensors[f"rng.{rank}.sampler"])
    if f"rng.{rank}.cuda" in tensors and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(tensors[f"rng.{rank}.cuda"], torch.device(device))
    return int(meta["step"])


def checkpoint_clock(path: Path) -> dict:
    """{"wall_s", "cpu_s", "gpu_s"}: training time a checkpoint's run has spent so far, over all its
    sessions (wall clock, the processes' CPU time in the training loop, and the wall clock of the
    sessions on a GPU; keys missing in checkpoints written before they were recorded)."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata().get("clock", "{}"))


def export_checkpoint(ckpt: Path, path: Path, half: bool = False, ema: bool = False) -> Path:
    """Weights of a run's checkpoint (e.g. a run stopped early) as a weight file; ``ema``: the
    run's average of the weights at the checkpoint's step instead (``--ema``, `licodec.ema`)."""
    with safe_open(str(ckpt), framework="pt") as f:
        meta = f.metadata()
    args = json.loads(meta["args"])
    if "model_config" in meta:
        model = create_model(meta["model"], json.loads(meta["model_config"]))
    else:  # checkpoints written before the config was recorded
        config = model_config(args["config"])
        if args.get("variable_rate"):
            config["rate_levels"] = int(MAX_QUALITY)
        model = create_model(args["model"], config)
    _load_model_tensors(model, load_file(str(ckpt)))
    extra = {"steps": int(meta["step"]), "patch": args["patch"], "batch_size": args["batch_size"], "from_checkpoint": True}
    if ema:
        try:
            average = load_average(ckpt.parent / EMA_FILE, int(meta["step"]))
        except (OSError, ValueError) as e:
            raise LicodecError(f"no average of the weights to export: {e}") from None
        model.load_state_dict(average, strict=False)
        extra["ema_decay"] = args.get("ema")
    lmbda = args.get("lmbda") or LAMBDAS[args["quality"]]
    _export(model.eval(), path, args["quality"], lmbda, half, extra)
    return path


def _load_model_tensors(model, tensors: dict) -> None:
    """A checkpoint's ``model.*`` tensors into ``model`` (strict)."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)


def _export(model, path: Path, quality: int, lmbda: float, half: bool, extra: dict) -> None:
    """Trained weights as a weight file: at ``quality``/``lmbda`` for fixed-rate models; variable-rate
    ones record neither (they serve every quality)."""
    vr = model.variable_rate
    save_weights(model, path, quality=None if vr else quality, lmbda=None if vr else lmbda, extra=extra, half=half)


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
def widen(model, donor) -> int:
    """``--widen``: start a wider model (more latent or hidden channels, the same layers) from a
    narrower one's weights; returns how many tensors were copied.

    Each donor tensor goes into the leading slice of the model's (per part for outputs that stack
    several quantities, e.g. h_s's [σ; μ]: the model's ``stacked_outputs``), so the old channels
    compute what they did. The rest of a widened convolution starts at a tenth of its random
    initialization: new latents start small (cheap to code) and barely disturb the old function,
    while gradients still reach them. The gains of new latent channels start at the mean gain of
    the old ones."""
    own = model.state_dict()
    stacked = getattr(model, "stacked_outputs", {})
    convs = {f"{name}.{p}" for name, m in model.named_modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for p in ("weight", "bias")}
    n = 0
    for k, v in donor.state_dict().items():
        if k not in own or own[k].dim() != v.dim() or any(a < b for a, b in zip(own[k].shape, v.shape)):
            continue
        if own[k].shape != v.shape:
            if k in convs:
                own[k].mul_(0.1)
            elif k.startswith("gain."):  # (levels, M)
                own[k][:] = v.mean(dim=1, keepdim=True)
        parts = stacked.get(k.rsplit(".", 1)[0], 1)
        for dst, src in zip(own[k].chunk(parts), v.chunk(parts)):
            dst[tuple(slice(0, d) for d in src.shape)].copy_(src)
        n += 1
    return n


def model_config(text: str) -> dict:
    """``--config``: inline JSON or the path of a JSON file, as a dict."""
    src = text
    if not text.lstrip().startswith("{"):
        try:
            src = Path(text).read_text()
        except OSError as e:
            raise LicodecError(f"--config {text}: neither JSON nor a readable file ({e.strerror})") from None
    try:
        config = json.loads(src)
    except json.JSONDecodeError as e:
        raise LicodecError(f"--config: invalid JSON ({e})") from None
    if not isinstance(config, dict):
        raise LicodecError("--config: expected a JSON object of config fields")
    return config


def learning_rate(args: argparse.Namespace, step: int) -> float:
    """The schedule as a function of the step alone, so a resumed run continues it exactly."""
    if args.lr_schedule == "cosine":
        t = min(step / max(args.steps, 1), 1.0)
        return args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))
    return args.lr * (0.1 if step >= int(args.lr_drop * args.steps) else 1.0)


VAL_QUALITIES = (1.0, 4.0, 8.0)  # where variable-rate models are validated


def _val_points(variable_rate: bool) -> list[tuple[float | None, str]]:
    """(quality passed to the model, suffix of the log columns) per validation point."""
    if not variable_rate:
        return [(None, "")]
    return [(q, f"_q{q:g}") for q in VAL_QUALITIES]


@torch.no_grad()
def validate(model, images: list[torch.Tensor], quality: float | None = None) -> dict[str, float]:
    """Mean estimated bpp and PSNR over whole validation images (rounded latents)."""
    model.eval()
    bpps, psnrs = [], []
    for im in images:
        x = im.unsqueeze(0).float().div(255).to(model.device)
        out = model(x, quality)
        bpps.append(bpp_from_likelihoods(out["likelihoods"], x.shape[2] * x.shape[3]).item())
        psnrs.append(psnr(out["x_hat"].clamp(0, 1), x))
    model.train()
    return {"val_bpp": sum(bpps) / len(bpps), "val_psnr": sum(psnrs) / len(psnrs)}


def validate_all(model, images) -> dict[str, float]:
    """{column: value} for the log: validation bpp and PSNR at each point of `_val_points`."""
    cols = {}
    for q, suffix in _val_points(model.variable_rate):
        cols.update({k + suffix: x for k, x in validate(model, images, q).items()})
    return cols


def val_columns(variable_rate: bool, ema: bool = False) -> list[str]:
    """The log's validation columns; ``ema``: also those of the averaged weights (``ema_val_*``)."""
    cols = [k + suffix for _, suffix in _val_points(variable_rate) for k in ("val_bpp", "val_psnr")]
    return cols + [f"ema_{c}" for c in cols] if ema else cols


class _Dist:
    """torchrun/DDP context: rank, world size and the collective steps training needs (a no-op
    for a single process). Launch with ``torchrun --nproc_per_node=K -m licodec.cli train ...``;
    each process trains on its own random crops (``--batch-size`` per process), rank 0 logs,
    validates and writes checkpoints with every rank's RNG states."""

    def __init__(self, device: str) -> None:
        import os

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = torch.device(device)
        if self.world > 1:
            import torch.distributed as dist

            cuda = self.device.type == "cuda"
            if cuda:
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank (so that all ranks checkpoint at the same step)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([int(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(t, 0)
        return bool(t.item())

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def run(args: argparse.Namespace) -> Path:
    if args.threads:
        torch.set_num_threads(args.threads)
    dd = _Dist(args.device)
    try:
        return _run(args, dd)
    finally:
        dd.close()


def check_run_directory(args: argparse.Namespace) -> bool:
    """Refuse what would lose a user's run or start one on nothing, before anything is created.
    Returns whether to resume from OUT's checkpoint."""
    out, ckpt = Path(args.out), Path(args.out) / CKPT
    model_config(args.config)  # a bad --config is reported before the data
    if args.rate_balance and (args.rate_balance < 0 or not args.variable_rate):
        raise LicodecError(f"--rate-balance {args.rate_balance:g}: needs --variable-rate and a power >= 0")
    if args.ema and not 0.0 < args.ema < 1.0:
        raise LicodecError(f"--ema {args.ema:g}: the decay must be in (0, 1), e.g. 0.999 (0: no average)")
    _check_images(args.data, "--data")
    if args.val:
        _check_images(args.val, "--val")
    if out.exists() and not out.is_dir():
        raise LicodecError(f"--out {out}: exists and is not a directory")
    held = [p.name for p in (ckpt, out / "log.csv") if p.exists()]
    if args.resume:
        if ckpt.exists():
            return True
        if not args.force:
            raise LicodecError(f"--resume: {out} has no {CKPT} to continue from (add --force to start from scratch)")
        print(f"NOTE: {out} has no {CKPT}: --force, starting from scratch", file=sys.stderr)
        return False
    if held and not args.force:
        raise LicodecError(f"{out} holds a training run ({', '.join(held)}): continue it with --resume, "
                           "or replace it with --force")
    return False


def lock_run_directory(out: Path):
    """Hold OUT for this process, so that a second `licodec train` into a directory a live run
    uses fails at once instead of interleaving checkpoints and logs with it: an exclusive flock
    on OUT/.train.lock (which holds the pid), released when the process ends, killed or not.
    Returns the open lock file (keep it open while training); None where there is no flock."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    f = open(out / LOCK_FILE, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        raise LicodecError(f"--out {out} is in use by another training process{f' (pid {pid})' if pid else ''}: "
                           "stop it first (kill -TERM sends it to its checkpoint) or train into another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _check_images(folder: str, flag: str) -> None:
    try:
        list_images(folder)
    except FileNotFoundError as e:
        hint = " (make the training photos with: python scripts/prepare_data.py)" if folder.startswith("data") else ""
        raise LicodecError(f"{flag} {e}{hint}") from None


def _run(args: argparse.Namespace, dd: _Dist) -> Path:
    out = Path(args.out)
    resume = check_run_directory(args) if dd.main else args.resume and (out / CKPT).exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_run_directory(out) if dd.main else None  # noqa: F841 -- held until training returns
    lmbda = args.lmbda if args.lmbda is not None else LAMBDAS[args.quality]
    torch.manual_seed(args.seed)
    config = model_config(args.config)
    if args.random_mask:
        config["random_mask"] = True
    if args.variable_rate:
        config["rate_levels"] = int(MAX_QUALITY)
    if args.init:
        model, init_info = load_weights(args.init, expect_model=args.model)
        if args.variable_rate and not model.variable_rate:
            # fixed-rate weights as the start of a variable-rate model, gains centred on their quality
            donor, model = model, create_model(args.model, {**dataclasses.asdict(model.config), **config})
            warm_start(model, donor)
            model.gain.center(init_info["quality"])
    else:
        model = create_model(args.model, config)
    if args.warm_start:
        donor, _ = load_weights(args.warm_start)
        copied = warm_start(model, donor)
        print(f"warm start: copied {copied} of {len(model.state_dict())} tensors from {args.warm_start}")
    if args.widen:
        donor, _ = load_weights(args.widen, expect_model=args.model)
        copied = widen(model, donor)
        print(f"widened: {copied} of {len(model.state_dict())} tensors from {args.widen}")
    precision = resolve_precision(args.precision, dd.device)
    set_precision(model.to(dd.device).train(), precision)
    if args.compile:
        model.compile_transforms()
    net = dd.wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    # each rank its own crops and noise; rank r of a run with seed s draws as seed s + r
    torch.manual_seed(args.seed + dd.rank)
    gen = torch.Generator().manual_seed(args.seed + dd.rank)
    try:
        sampler = CropSampler(args.data, args.patch, gen, args.scale_aug)
    except ValueError as e:
        raise LicodecError(f"--data {e}") from None
    if sampler.skipped and dd.main:
        print(f"NOTE: {sampler.skipped} image(s) in {args.data} are smaller than --patch {args.patch} and are not used",
              file=sys.stderr)
    val_images = [load_rgb(p) for p in list_images(args.val)] if args.val and dd.main else []
    step = 0
    clock0 = {}
    ckpt = out / CKPT
    if resume:
        step = load_checkpoint(ckpt, model, opt, gen, dd.rank, dd.device, dd.world)
        clock0 = checkpoint_clock(ckpt)
        if dd.main:
            print(f"resumed from {ckpt} at step {step}")
    ema = None
    if args.ema and dd.main:  # every rank holds the same weights: rank 0 averages them (decay checked above)
        ema, line = WeightEMA.resume(out / EMA_FILE, model, args.ema, step)
        print(line)
    groups = len(getattr(model, "group_sizes", []))
    logger = (_Logger(out, step, val_columns(model.variable_rate, ema is not None), groups, args.tensorboard,
                      args.log_every) if dd.main else None)
    last_ckpt = time.monotonic()
    vars_ = {k: v for k, v in vars(args).items() if k != "func"}
    desc = f"{model.name} " + ("q 1..8" if model.variable_rate else f"λ={lmbda:g}")
    if dd.main:
        print(f"precision {precision} ({args.precision}), {torch.get_num_threads()} threads")
    bar = tqdm(total=args.steps, initial=step, desc=desc, dynamic_ncols=True, disable=not dd.main)
    stop = min(args.steps, args.stop_at or args.steps)
    batches = Prefetcher(sampler, args.batch_size, MAX_QUALITY if model.variable_rate else None)
    sampler_state = gen.get_state()
    stop_signal = _StopSignal(dd.world == 1)
    t_wall, t_cpu = time.monotonic(), time.process_time()

    on_gpu = torch.device(dd.device).type == "cuda"

    def clock() -> dict:
        """Training time over all sessions: wall clock, this process's CPU time, and the wall clock
        spent on a GPU (a run that moves between machines, e.g. the campaign's GPU legs)."""
        wall = time.monotonic() - t_wall
        return {"wall_s": clock0.get("wall_s", 0.0) + wall,
                "cpu_s": clock0.get("cpu_s", 0.0) + time.process_time() - t_cpu,
                "gpu_s": clock0.get("gpu_s", 0.0) + (wall if on_gpu else 0.0)}

    budget_done = False
    try:
        while step < stop and not budget_done:
            lr = learning_rate(args, step)
            for g in opt.param_groups:
                g["lr"] = lr
            x, q, sampler_state = batches.next()
            terms = train_step(net, model, opt, x, q, lmbda, args.clip, args.rate_balance)
            step += 1
            if ema is not None:
                ema.update(model)
            bar.update(1)
            _check_auxiliary(terms, step)
            if logger is not None:
                _log_step(logger, bar, model, val_images, args, step, lr, terms, ema)
            if args.budget_cpu_minutes is not None:
                budget_done = dd.agree(clock()["cpu_s"] >= 60 * args.budget_cpu_minutes)
            if dd.agree(time.monotonic() - last_ckpt > args.checkpoint_minutes * 60 or step == stop
                        or stop_signal.received is not None or budget_done):
                save_checkpoint(ckpt, model, opt, step, dd.gather(_rng_state(sampler_state, dd.device)), vars_,
                                write=dd.main, clock=clock(), moments=args.state_moments)
                if ema is not None:
                    ema.save(out / EMA_FILE, step)
                last_ckpt = time.monotonic()
            if stop_signal.received is not None:
                raise TrainingInterrupted(f"{stop_signal.received} at step {step}: checkpoint written to {ckpt}; "
                                          "continue with --resume")
    finally:
        stop_signal.restore()
        batches.close()
        if logger is not None:
            logger.close()
    bar.close()
    if step < args.steps and not budget_done:
        if dd.main:
            print(f"stopped at step {step}; continue with --resume")
        return ckpt
    export = Path(args.export) if args.export else out / (
        f"{model.name}-vr.safetensors" if model.variable_rate else f"{model.name}-q{args.quality}.safetensors"
    )
    if dd.main:
        model.eval()
        extra = {"steps": step, "patch": args.patch, "batch_size": args.batch_size, "processes": dd.world,
                 "precision": precision, "train_wall_s": round(clock()["wall_s"], 1),
                 "train_cpu_s": round(clock()["cpu_s"], 1)}
        with ema.applied(model) if ema is not None else contextlib.nullcontext():
            v = validate_all(model, val_images) if val_images else {}
            _export(model, export, args.quality, lmbda, args.half,
                    {**extra, **v, **({"ema_decay": args.ema} if ema is not None else {})})
        print(f"wrote {export}" + (" (the average of the weights)" if ema is not None else ""))
    return export


def set_precision(model, precision: str):
    """``bf16``: bfloat16 autocast of g_a/g_s (`licodec.precision`); ``fp32``: float32. Either way
    every parameter and the input batch are channels_last, which oneDNN's CPU convolutions run
    faster (1.4x for mbt2018-mean in float32, benchmarks/results/train_speed.md). Returns the model."""
    model.bf16_transforms = precision == "bf16"
    return model.to(memory_format=torch.channels_last)


def train_step(net, model, opt, x: torch.Tensor, q: torch.Tensor | None, lmbda: float, clip: float,
               balance: float = 0.0) -> dict:
    """One optimizer step on the batch x (B,3,p,p) in [0, 1]: variable-rate models at the
    qualities q (B,) and their λ(q) (each image's loss weighted by `balance_weights` when
    ``balance`` > 0), fixed-rate ones at ``lmbda``. ``net`` is the model or its DDP wrapper.
    Returns `licodec.metrics.rd_loss`'s terms."""
    dev = model.device
    x = x.to(dev, memory_format=torch.channels_last)
    weight = None
    if model.variable_rate:
        o, lam = net(x, q.to(dev)), lambda_for(q).to(dev)
        weight = balance_weights(q, balance).to(dev) if balance else None
    else:
        o, lam = net(x), lmbda
    terms = rd_loss(o, x, lam, weight)
    opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return terms


class TrainingInterrupted(LicodecError):
    """SIGINT/SIGTERM during training: the checkpoint of the current step was written."""


class _StopSignal:
    """SIGINT and SIGTERM end training after the current step (with a checkpoint) instead of at once.
    Single-process runs in the main thread only (torchrun handles its workers' signals itself)."""

    def __init__(self, install: bool) -> None:
        self.received: str | None = None
        self._saved = {}
        if install and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


AUX_FLOOR_LIMIT = 0.01  # share of auxiliary likelihoods at the floor that stops a run ...
AUX_FLOOR_AFTER = 500  # ... after this many steps


def _check_auxiliary(terms: dict, step: int) -> None:
    """Stop a CCA run whose auxiliary model has collapsed to the likelihood floor (its rate, and
    hence the CCA term, would be a constant)."""
    if "aux_floor" in terms and step > AUX_FLOOR_AFTER:
        share = terms["aux_floor"].item()
        if share > AUX_FLOOR_LIMIT:
            raise LicodecError(f"step {step}: {100 * share:.1f} % of the auxiliary model's likelihoods are at the "
                               f"floor (limit {100 * AUX_FLOOR_LIMIT:g} % after step {AUX_FLOOR_AFTER}): the CCA "
                               "auxiliary model has collapsed; the last checkpoint is kept")


def _log_step(logger, bar, model, val_images, args, step, lr, terms, ema=None) -> None:
    p = 10 * math.log10(1 / max(terms["mse"].item(), 1e-10))
    bar.set_postfix(loss=f"{terms['loss'].item():.3f}", bpp=f"{terms['bpp'].item():.3f}", psnr=f"{p:.2f}")
    v = {}
    if val_images and (step % args.val_every == 0 or step == args.steps):
        v = validate_all(model, val_images)
        if ema is not None:
            with ema.applied(model):
                v.update({f"ema_{k}": x for k, x in validate_all(model, val_images).items()})
        tqdm.write(f"step {step}: " + ", ".join(f"{k} {x:.4f}" for k, x in v.items()))
    logger.log(step, lr, terms, p, v)


TRAIN_COLUMNS = ["loss", "bpp", "psnr", "r_y", "r_z", "r_aux", "cca", "aux_floor"]


class _Logger:
    """log.csv (appended on resume) and, with ``--tensorboard``, TensorBoard scalars.

    Columns: step, time, lr, the training terms of the batch (`TRAIN_COLUMNS`: loss, bpp, PSNR,
    the rates of y, z and (CCA) of the auxiliary model, the CCA term, the share of auxiliary
    likelihoods at the floor), the rate of each channel group (r_g1 ..), then the validation
    columns. Empty where a model has no such term. A log written with other columns (an older
    licodec) is kept: its rows are carried over under the new header, missing values empty."""

    def __init__(self, out: Path, step: int, val_cols: list[str], groups: int, tensorboard: bool,
                 every: int = 50) -> None:
        path = out / "log.csv"
        self.columns = ["step", "time", "lr", *TRAIN_COLUMNS, *(f"r_g{i + 1}" for i in range(groups)), *val_cols]
        self.every = max(1, every)
        new = not path.exists() or step == 0
        if not new:  # a killed run may have logged past its last checkpoint: drop those rows
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            head = rows[0] if rows else self.columns
            keep = [r for r in rows[1:] if len(r) == len(head) and r[0].isdigit() and int(r[0]) <= step]
            if len(keep) < len(rows) - 1 or head != self.columns:
                keep = [[dict(zip(head, r)).get(c, "") for c in self.columns] for r in keep]

                def write(tmp):
                    with open(tmp, "w", newline="") as f:
                        csv.writer(f).writerows([self.columns, *keep])

                atomic_write(path, write)
        self.val_cols = val_cols
        self.file = open(path, "w" if new else "a", newline="")
        self.csv = csv.writer(self.file)
        if new:
            self.csv.writerow(self.columns)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise LicodecError("--tensorboard needs the tensorboard package: pip install 'licodec[train]'") from None
            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=step + 1)

    @staticmethod
    def _values(terms: dict, psnr_db: float) -> dict[str, float]:
        v = {k: terms[k].item() for k in TRAIN_COLUMNS if k in terms and k != "psnr"}
        v["psnr"] = psnr_db
        for i, r in enumerate(terms.get("r_groups", [])):
            v[f"r_g{i + 1}"] = r.item()
        return v

    def log(self, step: int, lr: float, terms: dict, psnr_db: float, val: dict[str, float]) -> None:
        if step % self.every == 0 or val:
            v = {**self._values(terms, psnr_db), **val}
            row = [step, f"{time.time():.0f}", lr, *(f"{v[c]:.5f}" if c in v else "" for c in self.columns[3:])]
            self.csv.writerow(row)
            self.file.flush()
        if self.tb is not None and (step % 10 == 0 or val):
            for k, x in self._values(terms, psnr_db).items():
                self.tb.add_scalar(f"train/{k}", x, step)
            self.tb.add_scalar("train/lr", lr, step)
            for k, x in val.items():
                self.tb.add_scalar(f"val/{k}", x, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
