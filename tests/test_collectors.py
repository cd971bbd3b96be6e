"""Collectors: energy arithmetic with a fake counter, RAPL discovery, timing loop rules, statistics."""

import dataclasses
import time

import pytest

from harness.collectors import energy, timing
from harness.stats import bootstrap_median_ci, summarize


class FakeCounter:
    """A counter that accrues `watts` of power over wall time, like NVML's total-energy counter."""

    def __init__(self, watts):
        self.watts, self.t0 = watts, time.perf_counter()

    def read_j(self):
        return self.watts * (time.perf_counter() - self.t0)


def test_energy_per_call_subtracts_idle_power_over_the_window():
    busy = FakeCounter(watts=300.0)
    counter = energy.EnergyCounter("fake", busy.read_j)
    calls = []
    value, reason = energy.energy_per_call(counter, lambda i: (calls.append(i), time.sleep(0.01)), 1, lambda: None,
                                           window_s=0.3, idle={"watts": 100.0, "window_s": 1.0})
    assert reason is None and value["window_s"] >= 0.3 and value["calls"] == len(calls)
    expected = 200.0 * value["window_s"] / value["calls"]
    assert value["value"] == pytest.approx(expected, rel=0.05)
    assert value["source"] == "fake" and value["idle_power_w"] == 100.0


def test_energy_below_idle_is_a_reason_not_a_number():
    counter = energy.EnergyCounter("fake", FakeCounter(watts=50.0).read_j)
    value, reason = energy.energy_per_call(counter, lambda i: None, 1, lambda: None, window_s=0.05,
                                           idle={"watts": 100.0, "window_s": 1.0})
    assert value is None and "did not exceed the idle baseline" in reason


def test_rapl_counter_reads_package_domains(tmp_path):
    for index, uj in ((0, 5_000_000), (1, 2_000_000)):
        domain = tmp_path / f"intel-rapl:{index}"
        domain.mkdir()
        (domain / "energy_uj").write_text(str(uj))
    counter = energy.rapl_counter(tmp_path)
    assert counter.source == "rapl_package" and counter.read_j() == pytest.approx(7.0)
    assert "absent" in energy.rapl_counter(tmp_path / "missing")


def test_timing_repeats_until_both_min_repeats_and_min_time():
    plan = timing.TimingPlan(warmup_s=0.0, min_repeats=3, min_time_s=0.05, max_repeats=1000,
                             deadline=time.monotonic() + 10)
    samples = timing.time_cpu(lambda i: time.sleep(0.01), plan, 1)
    assert len(samples) >= 5 and sum(samples) >= 0.05 and all(s >= 0.009 for s in samples)
    assert len(timing.time_cpu(lambda i: None, dataclasses.replace(plan, min_time_s=0.0), 1)) == 3


def test_timing_raises_at_the_deadline():
    plan = timing.TimingPlan(0.0, 10**9, 10.0, 10**9, deadline=time.monotonic() + 0.05)
    with pytest.raises(timing.CaseTimeout, match="timing"):
        timing.time_cpu(lambda i: time.sleep(0.01), plan, 1)


def test_warm_up_touches_every_input_set():
    seen = []
    plan = timing.TimingPlan(0.0, 1, 0.0, 10, deadline=time.monotonic() + 10)
    calls, inner = timing.warm_up(seen.append, plan, 3, lambda: None)
    assert calls == 6 and seen == [0, 1, 2, 0, 1, 2] and inner > 1  # an append is far below MIN_SAMPLE_S


def test_short_calls_are_timed_in_batches_and_samples_are_per_call():
    calls = []
    plan = timing.TimingPlan(0.0, 5, 0.0, 1000, deadline=time.monotonic() + 10)
    samples = timing.time_cpu(calls.append, plan, 2, inner=50)
    assert len(samples) == 5 and len(calls) == 250 and calls[:4] == [0, 1, 0, 1]
    assert all(0 < s < 1e-4 for s in samples)


def test_summary_and_bootstrap_ci():
    samples = [1.0, 2.0, 3.0, 4.0, 100.0]
    stats = summarize(samples)
    assert stats["median"] == 3.0 and stats["iqr"] == 2.0 and stats["min"] == 1.0
    low, high = bootstrap_median_ci(samples)
    assert low <= 3.0 <= high and low >= 1.0 and high <= 100.0
