"""Latency: warm up by time, then repeat until min_repeats and min_time_s are both met; keep every sample."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.case import metric
from harness.stats import summarize


class CaseTimeout(Exception):
    """The case ran past its deadline."""


@dataclass(frozen=True)
class TimingPlan:
    warmup_s: float
    min_repeats: int
    min_time_s: float
    max_repeats: int
    deadline: float  # time.monotonic() value after which the case is a timeout


def _check_deadline(plan: TimingPlan, what: str) -> None:
    if time.monotonic() > plan.deadline:
        raise CaseTimeout(f"timed out during {what}")


def warm_up(call: Callable[[int], Any], plan: TimingPlan, n_inputs: int, sync: Callable[[], None]) -> int:
    """Run until warmup_s has passed (at least once per input set) so compilation and first-touch stay out."""
    start, calls = time.perf_counter(), 0
    while calls < n_inputs or time.perf_counter() - start < plan.warmup_s:
        call(calls % n_inputs)
        sync()
        calls += 1
        _check_deadline(plan, "warm-up")
    return calls


def time_cpu(call: Callable[[int], Any], plan: TimingPlan, n_inputs: int) -> list[float]:
    """Wall time of each call with perf_counter_ns (CPU work is synchronous)."""
    samples: list[float] = []
    while not _enough(samples, plan):
        t0 = time.perf_counter_ns()
        call(len(samples) % n_inputs)
        samples.append((time.perf_counter_ns() - t0) / 1e9)
        _check_deadline(plan, "timing")
    return samples


def time_cuda(call: Callable[[int], Any], plan: TimingPlan, n_inputs: int) -> list[float]:
    """CUDA events around each call, rotating input sets so repeats don't time a warm L2 cache."""
    import torch

    samples: list[float] = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    while not _enough(samples, plan):
        start.record()
        call(len(samples) % n_inputs)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e-3)
        _check_deadline(plan, "timing")
    return samples


def _enough(samples: list[float], plan: TimingPlan) -> bool:
    if len(samples) >= plan.max_repeats:
        return True
    return len(samples) >= plan.min_repeats and sum(samples) >= plan.min_time_s


def latency_metric(samples: list[float], device: str, warmup_calls: int, n_inputs: int) -> dict:
    """The latency metric with its raw samples and spread."""
    stats = summarize(samples)
    source = "cuda_event" if device == "cuda" else "perf_counter_ns"
    return metric(stats["median"], "s", source, samples=samples, iqr=stats["iqr"], n=len(samples),
                  min=stats["min"], mean=stats["mean"], warmup_calls=warmup_calls, input_sets=n_inputs)
