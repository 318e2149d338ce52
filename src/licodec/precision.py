"""Training precision: float32, or bfloat16 autocast for the transforms (channels_last either way).

``bf16`` runs g_a and g_s under bfloat16 autocast on channels_last tensors; GDN, layer norms,
the entropy models and the loss stay in float32 (`licodec.layers.float32_region`). On CPUs it
pays only where oneDNN has fast bfloat16 kernels, which the flags alone do not tell. Measured
training mbt2018-mean (N=128, M=192), batch 8 of 256², compiled (benchmarks/results/train_speed*.md):

- Intel Xeon with AMX-BF16 (Sapphire Rapids): bf16 0.77 s/step, float32 1.53 -> bf16;
- AMD EPYC Zen 4 with AVX512-BF16: bf16 1.45, float32 2.39 -> bf16;
- Intel Xeon with AVX512-BF16 but no AMX (Emerald Rapids under KVM, AMX not exposed):
  bf16 2.09, float32 1.56-1.61 -> float32;
- AMD Zen 3 without either: bf16 emulated, 8x slower -> float32.

``auto`` picks bf16 on CPUs with AMX-BF16, on AMD CPUs with AVX512-BF16, and on GPUs with
bfloat16; float32 elsewhere. Coding always runs in float32.
"""

from __future__ import annotations

from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags (Linux names) of bfloat16 instructions that oneDNN uses
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# (vendor, flag) pairs on which bf16 trained faster than float32 (see the module docstring);
# vendor None: any vendor
BF16_FASTER = ((None, "amx_bf16"), ("AuthenticAMD", "avx512_bf16"))


def _cpuinfo_field(name: str) -> str | None:
    """The first ``name`` line's value in Linux /proc/cpuinfo (None elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (Linux /proc/cpuinfo; empty elsewhere)."""
    return set((_cpuinfo_field("flags") or "").split())


def cpu_vendor() -> str | None:
    """The CPU's vendor id (``GenuineIntel``, ``AuthenticAMD``; None where unknown)."""
    return _cpuinfo_field("vendor_id")


def resolve_precision(requested: str, device) -> str:
    """``auto`` -> the precision to train in on ``device``; ``fp32``/``bf16`` as they are."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    flags, vendor = cpu_flags(), cpu_vendor()
    faster = any(flag in flags and v in (None, vendor) for v, flag in BF16_FASTER)
    return "bf16" if faster else "fp32"
