"""Layers that stay in float32 inside bfloat16 autocast (``--precision bf16``).

GDN's normalization and the layer norms of NAF blocks divide by a square root of sums of squares:
in bfloat16 (8 bits of mantissa) they lose what the transforms need, so they leave autocast and
compute in float32; the convolutions around them still run in bfloat16.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor

_HALF = (torch.bfloat16, torch.float16)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def float32_region(x: Tensor):
    """A context without autocast when autocast is on for x's device (else a no-op context)."""
    return torch.autocast(x.device.type, enabled=False) if _autocast_enabled(x.device.type) else nullcontext()


def as_float32(x: Tensor) -> Tensor:
    """bfloat16/float16 -> float32; other dtypes (float32, the exact path's float64) unchanged."""
    return x.float() if x.dtype in _HALF else x
