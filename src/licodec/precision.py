"""Training precision: float32, or bfloat16 autocast for the transforms (channels_last either way).

``bf16`` runs g_a and g_s under bfloat16 autocast on channels_last tensors; GDN, layer norms,
the entropy models and the loss stay in float32 (`licodec.layers.float32_region`). On CPUs it
pays only where oneDNN has bfloat16 instructions: measured on an Intel Xeon with AMX-BF16
(benchmarks/results/train_speed.md), bf16 trains mbt2018-mean (N=128, M=192) 2.2x faster than
float32 in the standard layout and 1.6x faster than float32 channels_last; on an AMD EPYC Zen 4
with AVX512-BF16 (train_speed_zen4.md) 2.0x faster than float32 channels_last with
``--compile`` (1.45 vs 2.87 s/step); on a Zen 3 without either it is emulated and 8x slower
(train_speed_amd.md). ``auto`` picks bf16 on CPUs with AMX-BF16 or AVX512-BF16 and on GPUs with
bfloat16, float32 elsewhere. Coding always runs in float32.
"""

from __future__ import annotations

from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags (Linux names) of bfloat16 instructions that oneDNN uses: measured faster than float32
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def resolve_precision(requested: str, device) -> str:
    """``auto`` -> the precision to train in on ``device``; ``fp32``/``bf16`` as they are."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_flags() & BF16_CPU_FLAGS else "fp32"
