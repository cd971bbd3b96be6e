"""Run one case and return its Record: the ten-line recipe, in-process or inside an isolated worker."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import metrics as metric_specs
from harness.case import Case, Record, metric, one_line
from harness.collectors import device_state, energy, memory, timing
from harness.prediction import DeviceModels, floor_violation, predict
from harness.registry import REGISTRY, Check, Implementation, Workload
from harness.suite import Settings
from harness.threads import limited_threads
from harness.validity import validity


@dataclass(frozen=True)
class CaseSpec:
    """Everything a worker needs to run one case; pickled to the worker process."""

    run: str
    case: Case
    settings: Settings
    plugins: tuple[str, ...] = ()
    baseline_error: float | None = None  # from the baseline impl's record, when it already ran
    idle_power: dict | None = None  # measured once per run by the runner
    calibration: dict | None = None  # this machine's measured ceilings for the case's device



def run_case(spec: CaseSpec, measure: Callable[..., Record] | None = None) -> Record:
    """Resolve, check correctness, then measure; any failure becomes a record with a one-line reason.

    `measure` replaces the single-process measurement (a rank of a distributed case measures in lockstep).
    """
    started, t0 = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), time.monotonic()
    case = spec.case
    try:
        REGISTRY.load(spec.plugins)
        workload, impl = REGISTRY.workload(case.workload), REGISTRY.impl(case.workload, case.impl)
        skip = _skip_reason(workload, impl, case)
        if skip:
            record = Record.for_case(spec.run, case, "skipped", error=skip)
        else:
            with limited_threads(spec.settings.threads):
                record = (measure or _measure)(spec, workload, impl, deadline=t0 + spec.settings.timeout_s)
    except timing.CaseTimeout as exc:
        record = Record.for_case(spec.run, case, "timeout", error=f"{exc} (timeout_s={spec.settings.timeout_s})")
    except MemoryError as exc:
        record = Record.for_case(spec.run, case, "oom", error=one_line(f"MemoryError: {exc}"))
    except Exception as exc:
        status = "oom" if _is_oom(exc) else "failed"
        record = Record.for_case(spec.run, case, status, error=one_line(f"{type(exc).__name__}: {exc}"))
    record.started_at, record.wall_s = started, round(time.monotonic() - t0, 4)
    if not record.workload_version and case.workload in REGISTRY.workloads:
        record.workload_version = REGISTRY.workloads[case.workload].version()
    return record


def _skip_reason(workload: Workload, impl: Implementation, case: Case) -> str | None:
    if case.device not in impl.devices:
        return f"{impl.name} runs on {', '.join(impl.devices)}, not {case.device}"
    if case.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "CUDA is not available on this machine"
    return workload.unsupported(impl.name, case.param_dict(), case.device)


def _measure(spec: CaseSpec, workload: Workload, impl: Implementation, deadline: float) -> Record:
    case, settings, params = spec.case, spec.settings, spec.case.param_dict()
    sync = synchronizer(case.device)
    inputs = _input_sets(workload, params, case, spec)
    call = lambda i: impl.fn(inputs[i], params)  # noqa: E731 — the timed region is this closure
    plan = timing.TimingPlan(settings.warmup_s, settings.min_repeats, settings.min_time_s,
                             settings.max_repeats, deadline)
    before = device_state.snapshot(case.device)
    fastest: list[float] = []
    warmup_calls, inner = timing.warm_up(call, plan, len(inputs), sync, fastest)
    output, metrics = peak_memory(lambda: call(0), case.device, settings.isolation)
    check, reference = check_output(workload, output, inputs[0], params, spec, impl)
    version = workload.version()
    if not check.passed:
        error = f"correctness check failed: error {check.error:.3g} > tolerance {check.tolerance:.3g} ({check.rule})"
        return Record.for_case(spec.run, case, "failed", error=error, workload_version=version,
                               metrics={"quality.rel_l2_error": quality_metric(check)})
    found = output_metrics(workload, output, reference, params)
    del output, reference
    samples, source, detail = _time(call, plan, len(inputs), inner, case.device, fastest[0])
    metrics["latency_s"] = timing.latency_metric(samples, case.device, warmup_calls, len(inputs), inner, source,
                                                 **detail)
    metrics["quality.rel_l2_error"] = quality_metric(check)
    metrics.update(found)
    unmeasured = _energy(spec, call, len(inputs), sync, metrics)
    latency = metrics["latency_s"]["value"]
    run_idle_w = spec.idle_power["watts"] if spec.idle_power else None
    models = DeviceModels.for_profile(spec.calibration, run_idle_w)
    model = model_fields(workload.cost(params, impl.name), latency, models, graphed=source == "cuda_graph")
    if "energy_j" in unmeasured and "predicted_energy_j" in model:
        note = f"hardware model for {model.get('device')}; not measured: {unmeasured['energy_j']}"
        metrics["energy_j"] = metric(model["predicted_energy_j"], "J", "modeled", note=note)
    record = Record.for_case(spec.run, case, "ok", metrics=metrics, unmeasured=unmeasured, model=model,
                             workload_version=version,
                             device_state={"before": before, "after": device_state.snapshot(case.device)})
    record.validity = validity(record, samples)
    below_floor = floor_violation(model, latency)
    if below_floor:
        record.validity = {**record.validity, "ok": False, "reasons": [*record.validity["reasons"], below_floor]}
    return record


def _time(call: Any, plan: timing.TimingPlan, n_inputs: int, inner: int, device: str,
          fastest_s: float) -> tuple[list, str, dict]:
    """CPU: perf_counter_ns. CUDA: events; calls under GRAPH_BELOW_S are replayed from a CUDA graph, and where
    capture fails they are timed eagerly with the reason beside the metric."""
    if device != "cuda":
        return timing.time_cpu(call, plan, n_inputs, inner), "perf_counter_ns", {}
    if fastest_s < timing.GRAPH_BELOW_S:
        try:
            return timing.time_cuda_graph(call, plan, n_inputs, inner), "cuda_graph", {}
        except RuntimeError as exc:
            note = one_line(f"timed eagerly (launch overhead included): {exc}")
            return timing.time_cuda(call, plan, n_inputs, inner), "cuda_event", {"note": note}
    return timing.time_cuda(call, plan, n_inputs, inner), "cuda_event", {}


def _input_sets(workload: Workload, params: dict, case: Case, spec: CaseSpec) -> list[Any]:
    """One input set on CPU; on CUDA enough sets (seed, seed+1, ...) to exceed twice the L2 cache."""
    first = workload.inputs(params, case.device, case.seed)
    if case.device != "cuda":
        return [first]
    import torch

    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2**20)
    n = rotation_sets(l2, workload.input_bytes(first))
    return [first] + [workload.inputs(params, case.device, case.seed + i) for i in range(1, n)]


def rotation_sets(cache_bytes: int, input_bytes: int, most: int = 8) -> int:
    """Input sets to cycle through so that together they exceed twice the cache (at most `most`)."""
    return min(most, max(1, math.ceil(2 * cache_bytes / max(input_bytes, 1))))


def peak_memory(call: Any, device: str, isolation: str) -> tuple[Any, dict]:
    if device == "cuda":
        return memory.cuda_peak(call)
    return memory.cpu_peak(call, isolation)


def check_output(workload: Workload, output: Any, inputs: Any, params: dict, spec: CaseSpec,
           impl: Implementation) -> tuple[Check, Any]:
    """Hold the output to DESIGN's 2x rule against the baseline implementation's error on the same inputs."""
    reference = workload.reference(inputs, params)
    stand_in = workload.check_baseline(params)
    baseline = REGISTRY.impl(workload.name, stand_in) if stand_in else REGISTRY.baseline_of(workload.name)
    baseline_error = None
    if baseline is not None and impl.name != baseline.name:
        baseline_error = None if stand_in else spec.baseline_error  # a record's error is the registered baseline's
        if baseline_error is None:
            baseline_error = workload.check(baseline.fn(inputs, params), reference, None).error
    return workload.check(output, reference, baseline_error), reference


def output_metrics(workload: Workload, output: Any, reference: Any, params: dict) -> dict[str, dict]:
    """The workload's own quality and counted metrics of the checked output, each a declared metric."""
    found = {name: (value, "check") for name, value in workload.quality(output, reference).items()}
    found |= {name: (value, "counted") for name, value in workload.counters(output, params).items()}
    out = {}
    for name, (value, source) in found.items():
        if name == "quality.rel_l2_error":
            continue  # recorded from the check itself, with its tolerance and rule
        spec = metric_specs.get(name)  # an undeclared name fails the case, saying which names are declared
        out[name] = metric(value, spec.unit, source)
    return out


def quality_metric(check: Check) -> dict:
    value = check.error if math.isfinite(check.error) else 1e300
    return {"value": value, "unit": "1", "source": "check", "tolerance": check.tolerance, "rule": check.rule}


def _energy(spec: CaseSpec, call: Any, n_inputs: int, sync: Any, metrics: dict) -> dict[str, str]:
    counter = energy.counter_for(spec.case.device)
    if isinstance(counter, str) or spec.idle_power is None:
        return {"energy_j": counter if isinstance(counter, str) else "no idle-power baseline for this run"}
    value, reason = energy.energy_per_call(counter, call, n_inputs, sync, spec.settings.energy_window_s,
                                           spec.idle_power)
    if value is None:
        return {"energy_j": reason}
    metrics["energy_j"] = value
    return {}


def model_fields(cost: Any, latency_s: float, models: DeviceModels, graphed: bool = False) -> dict:
    """Analytic cost beside the measurement, the rates it implies, and the hardware model's prediction."""
    model = cost.to_json()
    model["achieved_flops_per_s"] = cost.flops / latency_s
    model["achieved_bytes_per_s"] = cost.total_bytes / latency_s
    model.update(predict(cost, latency_s, models, graphed))
    return model


def synchronizer(device: str) -> Any:
    if device == "cuda":
        import torch

        return torch.cuda.synchronize
    return lambda: None


def _is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()
