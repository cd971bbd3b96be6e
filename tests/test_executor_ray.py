"""The Ray executor: same records as the local one, a killed driver resumes exactly, Ray stays optional."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from harness import cli, metrics
from harness.case import Case
from harness.errors import UserError
from harness.executor_ray import CaseResources, Node, NodeSlots, case_resources
from harness.isolation import execute
from harness.registry import REGISTRY, Workload
from harness.runner import LocalExecutor, open_store, run_suite
from harness.store import read_records
from harness.suite import Settings, load_suite

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install 'membench[scale]')")

# softmax_passes: a baseline and two impls sharing inputs (baseline-first), plus a CUDA case no node here can
# take (skipped either way); kv_allocation: a simulator whose counted metrics are deterministic. Inline keeps it
# fast (no worker process per case); the resume test below runs isolated cases.
SUITE = """
name: ray_equivalence
settings: {warmup_s: 0.0, min_repeats: 3, min_time_s: 0.0, timeout_s: 60, isolation: inline}
cases:
  - workload: softmax_passes
    impls: [online, three_pass, torch]
    grid: {n: [5000], dtype: [float32]}
    devices: [cpu, cuda]
  - workload: kv_allocation
    impls: [paged, static]
    grid: {requests: [20], memory_gib: [1.0]}
    devices: [cpu]
"""

SLOW = """
name: ray_resume
settings: {warmup_s: 0.0, min_repeats: 3, min_time_s: 0.1, timeout_s: 60, isolation: process}
cases:
  - workload: softmax_passes
    impls: [three_pass, online, two_pass]
    grid: {n: [1024, 2048], dtype: [float32]}
    devices: [cpu]
"""


def _deterministic(record: dict) -> dict:
    kept = {name: m["value"] for name, m in record["metrics"].items() if metrics.get(name).deterministic}
    quality = record["metrics"].get("quality.rel_l2_error", {})
    return {**kept, "rule": quality.get("rule"), "tolerance": quality.get("tolerance"),
            "flops": record["model"].get("flops"), "bytes": record["model"].get("bytes")}


@needs_ray
def test_local_ray_gives_the_local_executors_records(write_suite, tmp_path, monkeypatch):
    import ray

    from harness.executor_ray import RayExecutor

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a fresh local instance, not somebody's cluster
    suite = load_suite(str(write_suite(SUITE)), REGISTRY)
    local_store = open_store(suite, tmp_path / "local", resume=False)
    run_suite(suite, local_store, executor=LocalExecutor())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor(suite.settings)
        assert executor.describe() == {"kind": "ray", "address": "local", "nodes": 1,
                                       "max_concurrent_cpu_cases_per_node": 1}
        started = []
        run_suite(suite, open_store(suite, tmp_path / "ray", resume=False), executor=executor,
                  on_start=lambda case: started.append(case.id))
        assert ray.is_initialized()  # a Ray the caller started is left running
    finally:
        ray.shutdown()
    local, remote = read_records(tmp_path / "local"), read_records(tmp_path / "ray")
    assert sorted(r["case"] for r in remote) == sorted(r["case"] for r in local) == sorted(started)
    on_cpu = [[r["case"] for r in run if r["device"] == "cpu"] for run in (local, remote)]
    assert on_cpu[0] == on_cpu[1] and len(local) == 6  # one CPU slot: the local order; the CUDA case beside it
    by_case = {r["case"]: r for r in local}
    for record in remote:
        mine = by_case[record["case"]]
        assert record["status"] == mine["status"], record["case"]
        assert _deterministic(record) == _deterministic(mine), record["case"]
    statuses = Counter(r["status"] for r in remote)
    assert statuses == {"ok": 5, "skipped": 1}  # the CUDA case: no node has a GPU
    assert all("GPU" in r["error"] for r in remote if r["status"] == "skipped")
    online = next(r for r in remote if r["impl"] == "online")
    assert online["metrics"]["quality.rel_l2_error"]["rule"].startswith("error <= 2 x baseline error")
    assert sum(r["metrics"]["kv_alloc.completed"]["value"] for r in remote if r["workload"] == "kv_allocation") > 0
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["executor"]["kind"] == "ray" and manifest["counts"] == {"ok": 5, "skipped": 1}
    assert json.loads((tmp_path / "local" / "manifest.json").read_text())["executor"] == {"kind": "local"}


@needs_ray
def test_killed_ray_driver_then_resume_loses_and_duplicates_nothing(tmp_path):
    suite = tmp_path / "slow.yaml"
    suite.write_text(SLOW)
    out, records = tmp_path / "run", tmp_path / "run" / "records.jsonl"
    cmd = [sys.executable, "-m", "harness.cli", "run", "--suite", str(suite), "--out", str(out),
           "--executor", "ray", "--no-calibrate"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray instance
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not records.exists() or records.read_text().count("\n") < 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray instance and the running case
    proc.wait()
    done_before = records.read_text().count("\n")
    assert 2 <= done_before < 6
    subprocess.run(cmd + ["--resume"], env=env, check=True, capture_output=True, timeout=120)
    lines = [json.loads(x) for x in records.read_text().splitlines()]
    assert len(lines) == 6 and len({r["case"] for r in lines}) == 6
    assert all(r["status"] == "ok" for r in lines)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"ok": 6} and len(manifest["resumed_at"]) == 1
    assert manifest["executor"]["kind"] == "ray" and manifest["finished_at"]


def test_executor_ray_without_ray_is_one_clean_line(write_suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["membench", "run", "--suite", str(write_suite(SLOW)), "--out", str(out),
                                      "--executor", "ray", "--no-calibrate"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: --executor ray needs Ray, which is not installed: pip install 'membench[scale]'\n"
    assert not out.exists()  # refused before a run folder was made


def test_an_unknown_executor_or_a_ray_option_without_ray_executor_is_refused(write_suite):
    suite = str(write_suite(SLOW))
    unknown = CliRunner().invoke(cli.cli, ["run", "--suite", suite, "--executor", "dask"])
    assert unknown.exit_code == 2 and "Invalid value for '--executor'" in unknown.output
    assert "'local', 'ray'" in unknown.output or "local, ray" in unknown.output
    stray = CliRunner().invoke(cli.cli, ["run", "--suite", suite, "--address", "10.0.0.1:6379"])
    assert isinstance(stray.exception, UserError) and "--executor ray only" in str(stray.exception)
    zero = CliRunner().invoke(cli.cli, ["run", "--suite", suite, "--executor", "ray", "--max-concurrent", "0"])
    assert zero.exit_code == 2 and "--max-concurrent" in zero.output


class _Sharded(Workload):
    name, family, distributed = "ray_test_sharded", "testing", True


def test_resources_follow_device_ranks_and_threads(monkeypatch):
    monkeypatch.setitem(REGISTRY.workloads, _Sharded.name, _Sharded())
    sharded = Case("testing", _Sharded.name, "x", (("ranks", 4),), "cuda")
    assert case_resources(sharded, Settings()) == CaseResources(num_cpus=1, num_gpus=4, memory=0)
    on_cpu = Case("testing", _Sharded.name, "x", (("ranks", 2),), "cpu")
    assert case_resources(on_cpu, Settings(threads=3)) == CaseResources(num_cpus=6, num_gpus=0, memory=0)
    REGISTRY.load()
    softmax = Case("long_context", "softmax_passes", "online", (("n", 4096), ("chunk", 131072),
                                                                ("dtype", "float32")), "cpu")
    need = case_resources(softmax, Settings())
    assert (need.num_cpus, need.num_gpus) == (1, 0) and need.memory > 4096 * 4  # the analytic footprint


def test_node_slots_keep_cpu_cases_apart_and_never_share_a_gpu():
    nodes = [Node("a", cpus=2, gpus=0, memory=2**30), Node("b", cpus=16, gpus=2, memory=2**34)]
    slots = NodeSlots(nodes, max_concurrent=1)
    cpu_case, gpu_case = CaseResources(1, 0, 2**20), CaseResources(1, 1, 0)
    first = slots.place(cpu_case)
    slots.hold(first)
    second = slots.place(cpu_case)
    slots.hold(second)
    assert (first.node.node_id, second.node.node_id) == ("a", "b")
    assert slots.place(cpu_case) is None  # one CPU case per node by default
    gpus = [slots.place(gpu_case) for _ in range(2)]
    for placed in gpus:
        assert placed is not None and placed.node.node_id == "b"
        slots.hold(placed)
    assert slots.place(gpu_case) is None  # both GPUs held
    slots.release(gpus[0])
    assert slots.place(gpu_case).node.node_id == "b"
    assert "largest node has 2" in slots.never_fits(CaseResources(1, 4, 0))
    slots.release(first)
    big = slots.place(CaseResources(32, 0, 2**40))
    assert big.node.node_id == "a" and (big.num_cpus, big.memory) == (2, 2**30)  # clamped to the node


class _WideExecutor(LocalExecutor):
    """Up to three cases in flight, finished newest first: the shared loop must still wait for baselines."""

    def __init__(self) -> None:
        super().__init__()
        self.submitted: list[tuple[str, float | None]] = []

    def has_room(self, case: Case) -> bool:
        return len(self._queue) < 3

    def submit(self, spec) -> None:
        self.submitted.append((spec.case.impl, spec.baseline_error))
        super().submit(spec)

    def next_record(self):
        return execute(self._queue.pop())


def test_concurrent_executor_still_hands_each_impl_its_baselines_error(write_suite, tmp_path):
    text = SLOW.replace("isolation: process", "isolation: inline").replace("min_time_s: 0.1", "min_time_s: 0.0")
    suite = load_suite(str(write_suite(text)), REGISTRY)
    executor = _WideExecutor()
    run_suite(suite, open_store(suite, tmp_path / "run", resume=False), executor=executor)
    records = read_records(tmp_path / "run")
    assert len(records) == 6 and {r["status"] for r in records} == {"ok"}
    assert [impl for impl, _ in executor.submitted[:2]] == ["three_pass", "three_pass"]  # both groups' baselines
    errors = {(r["params"]["n"], r["impl"]): r["metrics"]["quality.rel_l2_error"]["value"] for r in records}
    for record in records:
        rule = record["metrics"]["quality.rel_l2_error"]["rule"]
        assert ("baseline sanity" in rule) == (record["impl"] == "three_pass")
    handed = [error for impl, error in executor.submitted if impl != "three_pass"]
    assert sorted(handed) == sorted(errors[(n, "three_pass")] for n in (1024, 2048) for _ in range(2))
