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


class FakeGraph:
    """Stands in for torch.cuda.CUDAGraph: capture records the calls made inside it, replay repeats them."""

    captured: list = []

    def __init__(self):
        self.calls = []

    def replay(self):
        for fn in self.calls:
            fn()


def _fake_graph_api(monkeypatch, fail: bool = False):
    import contextlib

    @contextlib.contextmanager
    def capture(graph):
        if fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        FakeGraph.captured = graph.calls
        yield

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)


def test_microsecond_calls_are_captured_once_then_replayed_per_sample(monkeypatch):
    _fake_graph_api(monkeypatch)
    seen = []
    plan = timing.TimingPlan(0.0, 3, 0.0, 100, deadline=float("inf"))
    samples = timing.time_cuda_graph(seen.append, plan, n_inputs=3, inner=5)
    assert seen == [0, 1, 2, 0, 1]  # one capture of `inner` calls cycling the input sets; replays are GPU-side
    assert len(samples) == 3 and all(s >= 0 for s in samples)
    assert timing.time_cuda_graph(lambda i: None, plan, n_inputs=1, inner=10_000) is not None
    assert timing.GRAPH_MAX_CALLS == 32


def test_a_call_that_cannot_be_captured_is_timed_eagerly_with_the_reason(monkeypatch):
    from harness import worker

    _fake_graph_api(monkeypatch, fail=True)
    plan = timing.TimingPlan(0.0, 3, 0.0, 100, deadline=float("inf"))
    with pytest.raises(RuntimeError, match="CUDA graph capture failed"):
        timing.time_cuda_graph(lambda i: None, plan, n_inputs=1, inner=4)
    samples, source, detail = worker._time(lambda i: None, plan, 1, 4, "cuda", 20e-6)
    assert source == "cuda_event" and "timed eagerly" in detail["note"] and len(samples) == 3
    _fake_graph_api(monkeypatch)
    assert worker._time(lambda i: None, plan, 1, 4, "cuda", 20e-6)[1] == "cuda_graph"
    assert worker._time(lambda i: None, plan, 1, 1, "cuda", 400e-6)[1] == "cuda_graph"  # launch-bound decode
    assert worker._time(lambda i: None, plan, 1, 1, "cuda", 2e-3)[1] == "cuda_event"  # long calls: plain events
