"""Clocks, temperature, power and throttle reasons before and after a case: read, never changed."""

from __future__ import annotations

import os


def gpu_state(index: int = 0) -> dict:
    """NVML snapshot of one GPU; empty when NVML is not available."""
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        state = {
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "temperature_c": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
            "power_w": pynvml.nvmlDeviceGetPowerUsage(h) / 1e3,
            "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3,
        }
    except Exception:
        return {}
    try:
        state["throttle_reasons"] = int(pynvml.nvmlDeviceGetCurrentClocksEventReasons(h))
    except Exception:
        try:
            state["throttle_reasons"] = int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h))
        except Exception:
            pass
    return state


def cpu_state() -> dict:
    """CPU frequency and load: enough to spot a throttled or busy machine after the fact."""
    import psutil

    freq = psutil.cpu_freq()
    return {"cpu_freq_mhz": freq.current if freq else None, "load_avg_1m": os.getloadavg()[0],
            "threads": _torch_threads()}


def _torch_threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return None


def snapshot(device: str) -> dict:
    return gpu_state() if device == "cuda" else cpu_state()
