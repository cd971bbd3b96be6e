"""Latency: warm up by time, then repeat until min_repeats and min_time_s are both met; keep every sample.

A call shorter than MIN_SAMPLE_S is timed in batches of `inner` back-to-back calls (pytest-benchmark's
calibration): one sample is then the mean of a batch, so timer overhead and resolution stay out of it.
On CUDA a call under GRAPH_BELOW_S is captured into a CUDA graph and replayed, so the host's launch path
(which for a decode kernel can take longer than the GPU work) stays out of the GPU time.
"""

from __future__ import annotations

import math
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


MIN_SAMPLE_S = 100e-6  # a sample shorter than this is a batch of calls
GRAPH_BELOW_S = 1e-3  # CUDA calls faster than this (host launch path included) are timed from a CUDA graph
GRAPH_MAX_CALLS = 32  # calls captured per CUDA graph: each keeps its own output in the graph's memory pool


def warm_up(call: Callable[[int], Any], plan: TimingPlan, n_inputs: int, sync: Callable[[], None],
            fastest: list[float] | None = None) -> tuple[int, int]:
    """Run until warmup_s has passed (at least twice per input set) so compilation and first-touch stay out.

    Returns (warm-up calls, calls per sample), the latter from the fastest warm-up call, which is also
    appended to `fastest` when given (the CUDA timer decides on graphs from it).
    """
    start, calls, fastest_s = time.perf_counter(), 0, math.inf
    while calls < 2 * n_inputs or time.perf_counter() - start < plan.warmup_s:
        t0 = time.perf_counter()
        call(calls % n_inputs)
        sync()
        fastest_s = min(fastest_s, time.perf_counter() - t0)
        calls += 1
        _check_deadline(plan, "warm-up")
    inner = 1 if fastest_s >= MIN_SAMPLE_S else min(10_000, math.ceil(MIN_SAMPLE_S / max(fastest_s, 1e-9)))
    if fastest is not None:
        fastest.append(fastest_s)
    return calls, inner


def time_cpu(call: Callable[[int], Any], plan: TimingPlan, n_inputs: int, inner: int = 1) -> list[float]:
    """perf_counter_ns around each batch of `inner` calls (CPU work is synchronous); samples are per call."""
    samples: list[float] = []
    total_s, calls = 0.0, 0
    while not _enough(len(samples), total_s, plan):
        t0 = time.perf_counter_ns()
        for _ in range(inner):
            call(calls % n_inputs)
            calls += 1
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        samples.append(elapsed / inner)
        total_s += elapsed
        _check_deadline(plan, "timing")
    return samples


def time_cuda(call: Callable[[int], Any], plan: TimingPlan, n_inputs: int, inner: int = 1) -> list[float]:
    """CUDA events around each batch of `inner` calls, rotating input sets so repeats don't time a warm L2."""
    calls = 0

    def batch() -> None:
        nonlocal calls
        for _ in range(inner):
            call(calls % n_inputs)
            calls += 1

    return _event_samples(batch, inner, plan)


def _event_samples(run: Callable[[], None], calls_per_run: int, plan: TimingPlan) -> list[float]:
    """CUDA events around each `run` until the plan is met; samples are seconds per call."""
    import torch

    samples: list[float] = []
    total_s = 0.0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    while not _enough(len(samples), total_s, plan):
        start.record()
        run()
        end.record()
        end.synchronize()
        elapsed = start.elapsed_time(end) / 1e3
        samples.append(elapsed / calls_per_run)
        total_s += elapsed
        _check_deadline(plan, "timing")
    return samples


def time_cuda_graph(call: Callable[[int], Any], plan: TimingPlan, n_inputs: int, inner: int) -> list[float]:
    """Microsecond kernels (DESIGN): capture `inner` calls (cycling the input sets, at most GRAPH_MAX_CALLS) into
    one CUDA graph and time its replays with events, so the host's launch path (Python, Triton's launcher)
    stays out of a GPU time it would otherwise dominate. Raises RuntimeError when the call cannot be captured
    (a host sync inside it, say); the caller then times eagerly and says why.
    """
    import torch

    per_graph = max(n_inputs, min(inner, GRAPH_MAX_CALLS))
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for i in range(per_graph):
                call(i % n_inputs)
    except Exception as exc:  # capture failures come as RuntimeError, AssertionError, or backend errors
        torch.cuda.synchronize()
        raise RuntimeError(f"CUDA graph capture failed: {type(exc).__name__}: {exc}") from exc
    graph.replay()
    torch.cuda.synchronize()
    return _event_samples(graph.replay, per_graph, plan)


def _enough(n_samples: int, total_s: float, plan: TimingPlan) -> bool:
    if n_samples >= plan.max_repeats:
        return True
    return n_samples >= plan.min_repeats and total_s >= plan.min_time_s


def latency_metric(samples: list[float], device: str, warmup_calls: int, n_inputs: int, inner: int,
                   source: str | None = None, **detail: Any) -> dict:
    """The latency metric with its raw samples (seconds per call) and spread."""
    stats = summarize(samples)
    source = source or ("cuda_event" if device == "cuda" else "perf_counter_ns")
    return metric(stats["median"], "s", source, samples=samples, iqr=stats["iqr"], n=len(samples),
                  min=stats["min"], mean=stats["mean"], warmup_calls=warmup_calls, input_sets=n_inputs,
                  calls_per_sample=inner, **detail)
