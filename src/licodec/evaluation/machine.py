"""A description of the machine a measurement ran on, for results files and tables."""

from __future__ import annotations

import os
import platform


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']}")
    threads = info["torch_threads"]
    parts.append(f"device {info['device']}, torch {info['torch']} ({threads} thread{'s' if threads != 1 else ''})")
    parts.append(f"Python {info['python']}, {info['platform']}")
    if info.get("load_average_1min") is not None:
        parts.append(f"load average {info['load_average_1min']:g} at start")
    return "; ".join(parts)
