"""Drive a suite: order cases, skip finished ones, hand each to an executor, append its record as it returns."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness import environment
from harness.case import Case, Record
from harness.collectors import energy
from harness.errors import UserError
from harness.isolation import execute
from harness.registry import REGISTRY
from harness.store import RESULTS_ROOT, RunStore, latest_run, new_run_id
from harness.suite import Suite
from harness.worker import CaseSpec


@dataclass
class RunResult:
    folder: Path
    counts: Counter = field(default_factory=Counter)
    skipped_finished: int = 0


def select(cases: Iterable[Case], patterns: Iterable[str]) -> list[Case]:
    """Keep cases whose id matches every --filter regular expression (re.search)."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise UserError(f"--filter {pattern!r} is not a valid regular expression: {exc}") from None
    return [c for c in cases if all(p.search(c.id) for p in compiled)]


def baseline_first(cases: list[Case]) -> list[Case]:
    """Within each group of cases sharing inputs, run the baseline impl first so its error can be reused."""
    first_of_group: dict[tuple, int] = {}
    for index, case in enumerate(cases):
        first_of_group.setdefault(_group(case.to_json()), index)

    def rank(indexed: tuple[int, Case]) -> tuple:
        index, case = indexed
        baseline = REGISTRY.baseline_of(case.workload)
        return (first_of_group[_group(case.to_json())], baseline is None or case.impl != baseline.name, index)

    return [c for _, c in sorted(enumerate(cases), key=rank)]


def _group(case: dict) -> tuple:
    """Cases (or their records) that differ only in implementation share inputs, reference and baseline."""
    return (case["workload"], tuple(sorted(case["params"].items())), case["device"], case["seed"])


def open_store(suite: Suite, out: Path | None, resume: bool, root: Path = RESULTS_ROOT) -> RunStore:
    """A new run folder, or with resume the given (or latest) run of this suite."""
    if resume:
        folder = out or latest_run(root, suite.name)
        if folder is None:
            raise UserError(f"--resume: no earlier run of suite {suite.name!r} under {root}/; pass --out RUN_FOLDER")
        store = RunStore.open(folder)
        manifest = store.manifest()
        if manifest.get("suite", {}).get("sha256") != suite.sha256:
            manifest.setdefault("warnings", []).append("suite file changed between the first start and a resume")
        manifest.setdefault("resumed_at", []).append(_now())
        store.write_manifest(manifest)
        return store
    run_id = new_run_id()
    folder = out or root / run_id
    manifest = {"run": run_id, "suite": suite.to_json(), "started_at": _now(), "finished_at": None,
                "environment": environment.fingerprint(), "counts": {}}
    return RunStore.create(folder, manifest)


class Executor(Protocol):
    """How a CaseSpec becomes a Record; the runner's loop (order, baselines, store, callbacks) is shared.

    The loop submits a case only when `has_room(case)`, then calls `next_record()`, which blocks until one
    submitted case has finished and returns its record. `describe()` goes into the manifest.
    """

    def describe(self) -> dict: ...

    def has_room(self, case: Case) -> bool: ...

    def submit(self, spec: CaseSpec) -> None: ...

    def next_record(self) -> Record: ...

    def close(self) -> None: ...


class LocalExecutor:
    """One case at a time in this process's own worker (or inline): the default, and what timings assume."""

    def __init__(self) -> None:
        self._queue: deque[CaseSpec] = deque()

    def describe(self) -> dict:
        return {"kind": "local"}

    def has_room(self, case: Case) -> bool:
        return not self._queue

    def submit(self, spec: CaseSpec) -> None:
        self._queue.append(spec)

    def next_record(self) -> Record:
        return execute(self._queue.popleft())

    def close(self) -> None:
        self._queue.clear()


def run_suite(suite: Suite, store: RunStore, patterns: Iterable[str] = (),
              on_start: Callable[[Case], None] | None = None,
              on_record: Callable[[Record], None] | None = None,
              calibrations: dict[str, dict] | None = None,
              executor: Executor | None = None) -> RunResult:
    """Run every selected case not yet in the store; each record is appended the moment it comes back.

    A group's non-baseline cases wait until its baseline's record is back, so they carry its error; with the
    local executor (one case at a time) that is exactly baseline-first order. The store is the single writer
    whatever the executor. `calibrations` (device -> profile) go into the manifest once; a resumed run keeps
    its first ones.
    """
    executor = executor or LocalExecutor()
    manifest = store.manifest()
    calibrations = manifest.setdefault("calibration", calibrations or {})
    _note_executor(manifest, executor.describe())
    finished = store.finished()
    cases = baseline_first(select(suite.cases, patterns))
    todo = [c for c in cases if c.id not in finished]
    result = RunResult(store.folder, skipped_finished=len(cases) - len(todo))
    baseline_errors = {_group(r): r["metrics"]["quality.rel_l2_error"]["value"]
                       for r in finished.values() if _is_ok_baseline(r)}
    idle = _idle_power(manifest, {c.device for c in todo}, suite.settings.energy_window_s)
    store.write_manifest(manifest)
    groups = {c: _group(c.to_json()) for c in todo}
    awaited = {groups[c] for c in todo if _is_baseline(c.workload, c.impl)}  # groups whose baseline has no record yet
    pending, running = list(todo), 0
    try:
        while pending or running:
            for case in list(pending):
                group = groups[case]
                if (group in awaited and not _is_baseline(case.workload, case.impl)) or not executor.has_room(case):
                    continue
                pending.remove(case)
                if on_start:
                    on_start(case)
                executor.submit(CaseSpec(manifest["run"], case, suite.settings, suite.plugins,
                                         baseline_error=baseline_errors.get(group), idle_power=idle.get(case.device),
                                         calibration=calibrations.get(case.device)))
                running += 1
            if not running:
                raise RuntimeError(f"executor {executor.describe()} has no room for any of {len(pending)} cases")
            record = executor.next_record()
            running -= 1
            store.append(record)
            result.counts[record.status] += 1
            if _is_baseline(record.workload, record.impl):
                awaited.discard(_group(record.to_json()))
            if _is_ok_baseline(record.to_json()):
                baseline_errors[_group(record.to_json())] = record.metrics["quality.rel_l2_error"]["value"]
            if on_record:
                on_record(record)
    finally:
        executor.close()
    manifest = store.manifest()
    manifest["finished_at"] = _now()
    manifest["counts"] = dict(Counter(r["status"] for r in store.records()))
    store.write_manifest(manifest)
    return result


def _note_executor(manifest: dict, executor: dict) -> None:
    """The manifest names the executor of the latest start; a resume under another kind leaves a warning."""
    previous = manifest.get("executor")
    if previous and previous.get("kind") != executor.get("kind"):
        manifest.setdefault("warnings", []).append(
            f"executor changed between starts: {previous.get('kind')} -> {executor.get('kind')}")
    manifest["executor"] = executor


def devices_to_calibrate(suite: Suite, patterns: Iterable[str] = ()) -> list[str]:
    """Devices the selected cases run on and this machine has (no CUDA calibration without a GPU)."""
    devices = sorted({c.device for c in select(suite.cases, patterns)})
    if "cuda" in devices:
        import torch

        if not torch.cuda.is_available():
            devices.remove("cuda")
    return devices


def _is_baseline(workload: str, impl: str) -> bool:
    baseline = REGISTRY.baseline_of(workload)
    return baseline is not None and impl == baseline.name


def _is_ok_baseline(record: dict) -> bool:
    return (_is_baseline(record["workload"], record["impl"]) and record["status"] == "ok"
            and "quality.rel_l2_error" in record["metrics"])


def _idle_power(manifest: dict, devices: set[str], window_s: float) -> dict[str, dict]:
    """Idle power per device kind, measured once per run (or reused from the manifest on resume)."""
    idle = manifest.setdefault("idle_power", {})
    for device in sorted(devices):
        if device in idle:
            continue
        counter = energy.counter_for(device)
        if isinstance(counter, str):
            manifest.setdefault("energy_unavailable", {})[device] = counter
            continue
        idle[device] = energy.idle_power_w(counter, max(window_s, 1.0))
    return idle


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
