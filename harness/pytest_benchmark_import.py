"""pytest-benchmark JSON (`pytest --benchmark-json=FILE`) -> a membench run folder.

Each benchmark becomes one record. `stats.data` (seconds per iteration, one number per round; always in
--benchmark-json output, in saved runs only with --benchmark-save-data) becomes the latency's raw samples, so
`membench compare` can test it; without it the record holds the median alone and compares by threshold only.
A benchmark timed through the membench_case fixture carries its workload, params, device, seed, workload
version, analytic cost and check result in extra_info["membench"] and lands under that workload; any other
benchmark lands in family "pytest_benchmark", workload = its group or test module, impl = its test name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

from harness import metrics as metric_specs
from harness.case import Case, Record, metric
from harness.errors import UserError
from harness.store import RESULTS_ROOT, RunStore, new_run_id

FAMILY = "pytest_benchmark"
SOURCE = "pytest-benchmark"


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) and value is not None else str(value)


def _when(data: dict) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(data.get("datetime")))
    except ValueError:
        return dt.datetime.now(dt.timezone.utc)


def _environment(data: dict) -> dict:
    machine, commit = data.get("machine_info") or {}, data.get("commit_info") or {}
    cpu = machine.get("cpu") or {}
    return {"git": {"commit": commit.get("id"), "dirty": commit.get("dirty"), "branch": commit.get("branch")},
            "python": machine.get("python_version"),
            "platform": "-".join(str(machine[k]) for k in ("system", "release", "machine") if machine.get(k)),
            "hostname": machine.get("node"),
            "cpu": {"model": cpu.get("brand_raw") or machine.get("processor"), "cores": cpu.get("count")},
            "packages": {"pytest-benchmark": data.get("version")}}


def _identity(bench: dict) -> tuple[str, str, str, dict, str, int, str]:
    """(family, workload, impl, params, device, seed, workload_version) of one benchmark."""
    impl = str(bench.get("name") or "benchmark").split("[", 1)[0]
    info = (bench.get("extra_info") or {}).get("membench")
    if isinstance(info, dict) and info.get("workload"):
        return (info.get("family") or FAMILY, info["workload"], impl, dict(info.get("params") or {}),
                info.get("device") or "cpu", int(info.get("seed") or 0), info.get("workload_version") or "")
    module = str(bench.get("fullname") or impl).split("::", 1)[0]
    workload = str(bench.get("group") or Path(module).stem or "benchmarks")
    params = {str(k): _scalar(v) for k, v in (bench.get("params") or {}).items()}
    return FAMILY, workload, impl, params, "cpu", 0, ""


def benchmark_record(run: str, bench: dict, version: str | None) -> Record:
    family, workload, impl, params, device, seed, workload_version = _identity(bench)
    case = Case(family, workload, impl, tuple(params.items()), device, seed)
    stats = bench.get("stats") or {}
    info = (bench.get("extra_info") or {}).get("membench") or {}
    check = info.get("check") or {}
    samples = [float(s) for s in stats.get("data") or []]
    if not samples and stats.get("median") is None:
        return Record.for_case(run, case, "failed", error="pytest-benchmark recorded no timing",
                               workload_version=workload_version)
    if check and not check.get("passed", True):
        error = f"correctness check failed: error {check.get('error')} > tolerance {check.get('tolerance')}"
        return Record.for_case(run, case, "failed", error=error, workload_version=workload_version)
    options = bench.get("options") or {}
    note = (f"pytest-benchmark {version or '?'}: {stats.get('rounds')} rounds x {stats.get('iterations', 1)} "
            f"iterations, timer {options.get('timer', '?')}")
    median = statistics.median(samples) if samples else float(stats["median"])
    detail = {"samples": samples} if samples else {}
    if not samples:
        note += "; no raw samples in the JSON (stats.data): compared by threshold only"
    metrics = {"latency_s": metric(median, "s", SOURCE, iqr=stats.get("iqr"), n=stats.get("rounds"),
                                   calls_per_sample=stats.get("iterations", 1), note=note, **detail)}
    unmeasured: dict[str, str] = {}
    if check.get("error") is not None:
        metrics["quality.rel_l2_error"] = metric(check["error"], "1", "check", tolerance=check.get("tolerance"),
                                                 rule=check.get("rule"))
    for name, value in (info.get("metrics") or {}).items():
        try:
            spec = metric_specs.get(name)
        except KeyError:
            unmeasured[name] = "not declared in this membench (its workload module is not importable here)"
            continue
        if name != "quality.rel_l2_error" and value is not None:
            metrics[name] = metric(value, spec.unit, "check")
    model = dict(info.get("cost") or {})
    if model.get("flops") is not None and model.get("bytes"):
        model["achieved_flops_per_s"] = model["flops"] / median
        model["achieved_bytes_per_s"] = sum(model["bytes"].values()) / median
    return Record.for_case(run, case, "ok", metrics=metrics, unmeasured=unmeasured, model=model,
                           workload_version=workload_version)


def read_benchmark_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise UserError(f"{path} is not pytest-benchmark output: expected an object with a 'benchmarks' list "
                        "(write it with pytest --benchmark-json=FILE)")
    return data


def import_benchmarks(path: str | Path, out: Path | None = None, root: Path = RESULTS_ROOT) -> Path:
    """Write a run folder (default results/<run-id>) from a pytest-benchmark JSON file; returns the folder."""
    from harness.registry import REGISTRY

    REGISTRY.load()  # the membench workloads' metrics are declared on import
    path = Path(path)
    data = read_benchmark_json(path)
    when = _when(data)
    run = new_run_id(when.astimezone(dt.timezone.utc) if when.tzinfo else when)
    records, seen = [], set()
    for bench in data["benchmarks"]:
        record = benchmark_record(run, bench, data.get("version"))
        while record.case in seen:  # the same test name and params twice (two modules, one group)
            record.impl += "_"
            record.case = Case(record.family, record.workload, record.impl, tuple(record.params.items()),
                               record.device, record.seed).id
        seen.add(record.case)
        records.append(record)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    manifest = {"run": run, "started_at": when.isoformat(), "finished_at": when.isoformat(), "counts": counts,
                "suite": {"name": SOURCE, "description": f"imported from {path.name}", "path": str(path),
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:12], "settings": {},
                          "plugins": [], "cases": len(records)},
                "environment": _environment(data), "calibration": {},
                "imported_from": {"format": SOURCE, "version": data.get("version"), "file": str(path.resolve())}}
    store = RunStore.create(out or root / run, manifest)
    for record in records:
        store.append(record)
    return store.folder
