"""The environment fingerprint written into every run's manifest: what ran where, with which software."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

PACKAGES = ("membench", "torch", "triton", "numpy", "pandas", "pyyaml", "click", "rich", "jinja2", "plotly",
            "psutil", "nvidia-ml-py", "pyarrow", "transformers", "faiss-cpu", "ray")


def fingerprint() -> dict:
    import psutil

    return {
        "git": git_state(Path(__file__).resolve().parent.parent),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "physical_cores": psutil.cpu_count(False)},
        "memory_total_bytes": psutil.virtual_memory().total,
        "packages": package_versions(),
        "gpu": gpu_info(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "MKL_", "CUDA_VISIBLE", "MALLOC_"))},
    }


def git_state(folder: Path) -> dict:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def gpu_info() -> dict | None:
    """NVML's view of GPU 0 (name, driver, memory, clocks, power limit); None without NVIDIA GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(h)
        info = {
            "name": name.decode() if isinstance(name, bytes) else name,
            "count": pynvml.nvmlDeviceGetCount(),
            "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
            "memory_total_bytes": pynvml.nvmlDeviceGetMemoryInfo(h).total,
            "max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
            "max_mem_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3,
        }
    except Exception:
        return None
    try:
        import torch

        info["cuda_runtime"] = torch.version.cuda
    except ImportError:
        pass
    return info


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
