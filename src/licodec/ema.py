"""Exponential moving average of a model's weights (Polyak averaging), for validation and export.

Training keeps, beside the weights θ_t that Adam moves, the average

    θ̄_t = d_t · θ̄_{t-1} + (1 − d_t) · θ_t,     d_t = min(decay, (1 + n) / (10 + n))

where n counts the updates since the average started (the warm-up makes a young average follow the
weights closely instead of remembering its starting point). With ``decay`` = 0.999 it spans the last
~1 000 steps. Under a learning rate that is still high the weights jitter from step to step around
where training is heading, and their validation with them (the campaign's weights moved by 0.3–1 dB
of validation PSNR within a few steps at lr ≈ 9e-5, see `campaign/README.md`); the average does not.

The average is not part of the resumable training state (training never reads it): `licodec train
--ema` keeps it in ``OUT/ema.safetensors``, written beside each checkpoint with the checkpoint's step,
and a resume picks it up only when the steps agree; otherwise it starts again from the weights.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .weights import atomic_write, dense

EMA_FILE = "ema.safetensors"


class WeightEMA:
    """The running average of every floating-point tensor of ``model.state_dict()`` (float32, on
    the model's device)."""

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = updates
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def rate(self) -> float:
        """d_t of the next update (module docstring)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One step of the average towards the model's current weights (after the optimizer step)."""
        d = self.rate()
        self.updates += 1
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1.0 - d)

    @contextmanager
    def applied(self, model: torch.nn.Module):
        """The model holds the averaged weights inside the block, its own ones again after it."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(own, strict=False)

    def save(self, path: Path, step: int) -> None:
        """The average at training step ``step``, atomically."""
        tensors = {k: dense(v) for k, v in self.shadow.items()}
        meta = {"step": str(step), "updates": str(self.updates), "decay": repr(self.decay)}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def resume(cls, path: Path, model: torch.nn.Module, decay: float, step: int) -> tuple[WeightEMA, str]:
        """The average saved at ``path`` if it was saved at ``step`` with this ``decay`` and holds the
        model's tensors, else a new one from the model's weights; with a line saying which."""
        ema = cls(model, decay)
        if not path.exists():
            return ema, f"EMA of the weights (decay {decay:g}): starts at step {step}"
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            saved = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types; the file is derived data
            return ema, f"EMA of the weights (decay {decay:g}): {path.name} is unreadable ({e}); starts again at step {step}"
        if meta.get("step") != str(step) or meta.get("decay") != repr(decay) or saved.keys() != ema.shadow.keys():
            why = (f"saved at step {meta.get('step')}, decay {meta.get('decay')}" if saved.keys() == ema.shadow.keys()
                   else "other tensors")
            return ema, f"EMA of the weights (decay {decay:g}): {path.name} does not fit ({why}); starts again at step {step}"
        for k, v in saved.items():
            ema.shadow[k].copy_(v)
        ema.updates = int(meta["updates"])
        return ema, f"EMA of the weights (decay {decay:g}): resumed from {path.name} ({ema.updates} updates)"


def saved_step(path: Path) -> int | None:
    """The training step whose average an EMA file holds (None: no such file)."""
    if not Path(path).exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        return int((f.metadata() or {})["step"])


def load_average(path: Path, step: int) -> dict[str, torch.Tensor]:
    """The averaged tensors of an EMA file, checked to belong to training step ``step``."""
    saved = saved_step(path)
    if saved != step:
        raise ValueError(f"{path}: no such file" if saved is None else
                         f"{path} holds the average at step {saved}, not at the checkpoint's step {step}")
    return load_file(str(path))
