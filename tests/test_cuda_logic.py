"""The CUDA code paths' logic, checked on the CPU with stand-ins (CI has no GPU; the GPU runs are in the notes)."""

import sys
import types

import pytest
import torch

from harness.collectors import device_state, energy, memory, timing
from harness.worker import rotation_sets


@pytest.mark.parametrize("cache, inputs, sets", [(50 << 20, 1 << 30, 1), (50 << 20, 30 << 20, 4),
                                                 (50 << 20, 1 << 20, 8), (50 << 20, 0, 8)])
def test_rotation_covers_twice_the_cache_with_at_most_eight_sets(cache, inputs, sets):
    assert rotation_sets(cache, inputs) == sets


class FakeEvent:
    """Stands in for torch.cuda.Event: a host clock read at record time."""

    def __init__(self, enable_timing=False):
        self.t = None

    def record(self):
        import time

        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3  # milliseconds, as CUDA events report


def test_time_cuda_uses_events_per_batch_and_rotates_inputs(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    seen = []
    plan = timing.TimingPlan(0.0, 4, 0.0, 100, deadline=float("inf"))
    samples = timing.time_cuda(seen.append, plan, n_inputs=3, inner=2)
    assert len(samples) == 4 and seen == [0, 1, 2, 0, 1, 2, 0, 1]
    assert all(s >= 0 for s in samples)
    assert timing.latency_metric(samples, "cuda", 2, 3, 2)["source"] == "cuda_event"


def test_cuda_peak_reports_allocator_peak_minus_baseline(monkeypatch):
    stats = {"allocated": 1000, "peak": 0}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: stats.update(peak=stats["allocated"]))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: stats["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: stats["peak"])

    def call():
        stats["peak"] = stats["allocated"] + 5000  # a 5000-byte temporary came and went
        return "out"

    output, metrics = memory.cuda_peak(call)
    assert output == "out"
    assert metrics["peak_memory_bytes"]["value"] == 6000 and metrics["peak_memory_overhead_bytes"]["value"] == 5000
    assert metrics["peak_memory_bytes"]["source"] == "torch_cuda_max_memory_allocated"


def fake_pynvml(energy_mj):
    """A pynvml stand-in whose total-energy counter advances by 100 J per read."""
    module = types.SimpleNamespace(NVML_CLOCK_SM=0, NVML_CLOCK_MEM=1, NVML_TEMPERATURE_GPU=0)
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetHandleByIndex = lambda i: "gpu0"

    def total_energy(handle):
        energy_mj[0] += 100_000
        return energy_mj[0]

    module.nvmlDeviceGetTotalEnergyConsumption = total_energy
    module.nvmlDeviceGetClockInfo = lambda h, kind: 1980 if kind == 0 else 2619
    module.nvmlDeviceGetTemperature = lambda h, kind: 40
    module.nvmlDeviceGetPowerUsage = lambda h: 350_000
    module.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    module.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0
    return module


def test_nvml_counter_and_gpu_state_read_the_driver(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([0]))
    counter = energy.nvml_counter(0)
    assert counter.source == "nvml_total_energy"
    first, second = counter.read_j(), counter.read_j()
    assert second - first == pytest.approx(100.0)  # mJ -> J
    state = device_state.gpu_state(0)
    assert state == {"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "temperature_c": 40, "power_w": 350.0,
                     "power_limit_w": 700.0, "throttle_reasons": 0}


def test_without_nvml_the_counter_is_a_reason_and_state_is_empty(monkeypatch):
    def no_library():
        raise RuntimeError("NVML Shared Library Not Found")

    broken = types.SimpleNamespace(nvmlInit=no_library)
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    reason = energy.nvml_counter(0)
    assert isinstance(reason, str) and "NVML Shared Library Not Found" in reason
    assert device_state.gpu_state(0) == {}
