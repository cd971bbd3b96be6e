"""Energy per call from a hardware counter, minus idle power measured in the same run.

NVIDIA GPUs: NVML's total-energy counter (mJ since driver load). CPUs: RAPL package energy under
/sys/class/powercap where readable. The counters update slowly, so calls repeat until the window is at
least `window_s` long; the window, the call count and the idle baseline go into the record.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.case import metric

RAPL_ROOT = Path("/sys/class/powercap")


@dataclass
class EnergyCounter:
    """A monotonically increasing energy counter read in joules."""

    source: str
    read_j: Callable[[], float]


def nvml_counter(index: int = 0) -> EnergyCounter | str:
    """NVML total energy of GPU `index`, or the reason it cannot be read."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as exc:  # no driver, no GPU, or a GPU without the counter (pre-Volta)
        return f"NVML total-energy counter not readable: {type(exc).__name__}: {exc}"
    return EnergyCounter("nvml_total_energy", lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3)


def rapl_counter(root: Path = RAPL_ROOT) -> EnergyCounter | str:
    """Sum of RAPL package domains (intel-rapl:N), or the reason none is readable."""
    files = sorted(root.glob("intel-rapl:[0-9]*/energy_uj")) if root.is_dir() else []
    readable = [f for f in files if os.access(f, os.R_OK)]
    if not readable:
        return f"RAPL not readable ({root} {'has no package domains' if root.is_dir() else 'absent'})"

    def read_j() -> float:  # wrap-around is ignored: windows are seconds, counters wrap after hours
        return sum(int(f.read_text()) for f in readable) / 1e6

    return EnergyCounter("rapl_package", read_j)


def counter_for(device: str) -> EnergyCounter | str:
    if device == "cuda":
        index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
        return nvml_counter(int(index) if index.isdigit() else 0)
    return rapl_counter()


def idle_power_w(counter: EnergyCounter, window_s: float = 1.0) -> dict:
    """Average power over `window_s` of doing nothing: the baseline subtracted from every case."""
    e0, t0 = counter.read_j(), time.perf_counter()
    time.sleep(window_s)
    e1, t1 = counter.read_j(), time.perf_counter()
    return {"watts": (e1 - e0) / (t1 - t0), "window_s": t1 - t0, "source": counter.source}


def energy_per_call(counter: EnergyCounter, call: Callable[[int], Any], n_inputs: int,
                    sync: Callable[[], None], window_s: float, idle: dict) -> tuple[dict | None, str | None]:
    """Repeat `call` for at least `window_s`; return (metric, None) or (None, reason it is not a number)."""
    sync()
    e0, t0, calls = counter.read_j(), time.perf_counter(), 0
    while calls == 0 or time.perf_counter() - t0 < window_s:
        call(calls % n_inputs)
        sync()
        calls += 1
    e1, t1 = counter.read_j(), time.perf_counter()
    window, gross = t1 - t0, e1 - e0
    net = gross - idle["watts"] * window
    if net <= 0:
        return None, (f"energy over the {window:.2f} s window ({gross:.3f} J) did not exceed the idle "
                      f"baseline ({idle['watts']:.1f} W): too small to measure")
    return metric(net / calls, "J", counter.source, window_s=window, calls=calls, gross_j=gross,
                  idle_power_w=idle["watts"], idle_window_s=idle["window_s"],
                  note="(counter delta − idle power × window) / calls"), None
