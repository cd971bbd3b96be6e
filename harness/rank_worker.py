"""One rank of a distributed case: join the process group, then measure in lockstep with the other ranks.

Every rank must issue the same collectives in the same order, so nothing here may depend on a rank's own
clock: the number of timed calls is agreed (the slowest rank's estimate decides), each sample starts at a
barrier, and a check that fails on any rank fails all of them before anyone starts timing.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from typing import Any

from harness import worker
from harness.case import Record
from harness.collectors import device_state, timing
from harness.registry import Implementation, Workload
from harness.validity import validity
from harness.worker import CaseSpec

WARMUP_CALLS = 2  # first-touch and compilation; the collectives' own setup happens in the first call


def run_rank(spec: CaseSpec, env: dict[str, str]) -> dict:
    """Entry point of a rank process: torchrun's environment in, this rank's record (as JSON) out."""
    os.environ.update(env)
    record = worker.run_case(spec, measure=measure_in_group)
    record.ranks = [{"rank": int(env["RANK"]), "host": os.uname().nodename}]
    return record.to_json()


def measure_in_group(spec: CaseSpec, workload: Workload, impl: Implementation, deadline: float) -> Record:
    """Join the group (gloo on CPU, NCCL on CUDA, one GPU per local rank), measure, always leave it."""
    import torch
    import torch.distributed as dist

    timeout = dt.timedelta(seconds=max(30.0, deadline - time.monotonic()))
    if spec.case.device == "cuda":  # naming the device lets NCCL bind it at once instead of guessing from the rank
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    try:
        return _measure(spec, workload, impl, deadline)
    finally:
        dist.destroy_process_group()


def _measure(spec: CaseSpec, workload: Workload, impl: Implementation, deadline: float) -> Record:
    import torch.distributed as dist

    case, settings, params = spec.case, spec.settings, spec.case.param_dict()
    sync = worker.synchronizer(case.device)
    inputs = workload.inputs(params, case.device, case.seed)
    call = lambda: impl.fn(inputs, params)  # noqa: E731 — the timed region is this closure
    before = device_state.snapshot(case.device)
    for _ in range(WARMUP_CALLS):
        _lockstep_call(call, sync)
    output, metrics = worker.peak_memory(call, case.device, settings.isolation)
    check, reference = worker.check_output(workload, output, inputs, params, spec, impl)
    version = workload.version()
    failed_anywhere = _agree_max(0.0 if check.passed else 1.0) > 0
    if failed_anywhere:
        error = (f"correctness check failed: error {check.error:.3g} > tolerance {check.tolerance:.3g} ({check.rule})"
                 if not check.passed else "another rank failed its correctness check")
        return Record.for_case(spec.run, case, "failed", error=error, workload_version=version,
                               metrics={"quality.rel_l2_error": worker.quality_metric(check)})
    found = worker.output_metrics(workload, output, reference, params)
    del output, reference
    estimate = _agree_max(_lockstep_call(call, sync))
    repeats = agreed_repeats(estimate, settings.min_repeats, settings.max_repeats, settings.min_time_s,
                             deadline - time.monotonic())
    samples = [_lockstep_call(call, sync) for _ in range(repeats)]
    metrics["latency_s"] = timing.latency_metric(samples, case.device, WARMUP_CALLS + 2, 1, 1, "perf_counter_ns",
                                                 note="from a barrier to this rank's completion, per lockstep call")
    metrics["quality.rel_l2_error"] = worker.quality_metric(check)
    metrics.update(found)
    all_samples = [None] * dist.get_world_size()
    dist.all_gather_object(all_samples, samples)
    unmeasured = {"energy_j": "not measured for multi-rank cases (each rank's counter would need the others' "
                              "calls in lockstep); the hardware model's estimate is in model.predicted_energy_j"}
    record = Record.for_case(spec.run, case, "ok", metrics=metrics, unmeasured=unmeasured, workload_version=version,
                             device_state={"before": before, "after": device_state.snapshot(case.device)})
    record.validity = validity(record, samples)  # the model and its floor check come with the fold (distributed.py)
    record.metrics["latency_s"]["all_ranks_samples"] = all_samples
    return record


def agreed_repeats(call_s: float, min_repeats: int, max_repeats: int, min_time_s: float, left_s: float) -> int:
    """Timed calls every rank makes: enough for min_time_s, within [min_repeats, max_repeats], and no more than
    half the time left (the deadline is a timeout, not a target); at least 3 so a median means something."""
    wanted = math.ceil(min_time_s / max(call_s, 1e-9))
    affordable = math.floor(0.5 * max(left_s, 0.0) / max(call_s, 1e-9))
    return max(3, min(max(wanted, min_repeats), max_repeats, max(affordable, 3)))


def _lockstep_call(call: Any, sync: Any) -> float:
    """Start together (barrier), return this rank's seconds until its own call finished."""
    import torch.distributed as dist

    dist.barrier()
    sync()
    t0 = time.perf_counter()
    call()
    sync()
    return time.perf_counter() - t0


def _agree_max(value: float) -> float:
    """The largest of every rank's value (a MAX all-reduce on a one-element tensor)."""
    import torch
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())

