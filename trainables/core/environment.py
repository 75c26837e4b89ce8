"""Where a run ran: host, device, threads and package versions, as flat columns for its result rows
(benchopt's habit: every measurement carries its environment, not only the study's manifest)."""

from __future__ import annotations

import importlib.metadata
import platform
import socket
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "mace-torch", "e3nn", "pytorch-optimizer", "schedulefree", "ase", "numpy")


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model from /proc/cpuinfo (the machine type elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.machine()


def run_environment(device: torch.device) -> dict[str, Any]:
    """host, device, device_name, torch_threads, python and `version_<package>` for each of PACKAGES."""
    return {
        "host": socket.gethostname(), "device": str(device), "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        **{f"version_{name.replace('-', '_')}": importlib.metadata.version(name) for name in PACKAGES},
    }
