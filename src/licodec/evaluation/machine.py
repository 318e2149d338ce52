"""A description of the machine a measurement ran on, for results files and tables."""

from __future__ import annotations

import os
import platform

from ..precision import BF16_CPU_FLAGS, cpu_flags


def _cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name and its family/model numbers from /proc/cpuinfo ("AMD EPYC (family 25
    model 17)": virtual machines often name the CPU only generically); elsewhere platform's name."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                k, sep, v = line.partition(":")
                if not sep:
                    break  # the first processor's block ends at its blank line
                fields.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    ids = f" (family {fields['cpu family']} model {fields['model']})" if "cpu family" in fields and "model" in fields else ""
    return fields["model name"] + ids


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info(device: str = "cpu") -> dict:
    import torch

    from .. import __version__

    info = {
        "cpu": _cpu_name(),
        # the bfloat16 instructions oneDNN uses (what `--precision auto` looks for): speeds depend on them
        "bf16_instructions": sorted(cpu_flags() & BF16_CPU_FLAGS),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "licodec": __version__,
        "device": device,
        # other load on the machine makes timings slower; recorded so a reader can tell
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def machine_line(info: dict) -> str:
    parts = [f"{info['cpu']} ({info['cores']} cores"
             + (f", {info['memory_gib']:g} GiB)" if info.get("memory_gib") else ")")]
    if "bf16_instructions" in info:
        parts.append("bf16 instructions: " + (", ".join(info["bf16_instructions"]) or "none"))
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']}")
    threads = info["torch_threads"]
    parts.append(f"device {info['device']}, torch {info['torch']} ({threads} thread{'s' if threads != 1 else ''})")
    parts.append(f"Python {info['python']}, {info['platform']}")
    if info.get("load_average_1min") is not None:
        parts.append(f"load average {info['load_average_1min']:g} at start")
    return "; ".join(parts)
