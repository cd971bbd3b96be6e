"""The runner: broken cases become records with the right status while the others finish; resume is exact."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.registry import REGISTRY
from harness.runner import open_store, run_suite
from harness.store import read_records
from harness.suite import load_suite

PLUGINS = Path(__file__).parent / "plugins"

BROKEN = """
name: broken
settings: {{warmup_s: 0.0, min_repeats: 3, min_time_s: 0.0, timeout_s: {timeout}, isolation: {isolation}}}
plugins: [membench_test_plugins]
cases:
  - workload: scaled_copy
    impls: [{impls}]
    grid: {{n: [4096]}}
"""


def _run(write_suite, tmp_path, isolation, impls, timeout=2.0, patterns=()):
    text = BROKEN.format(isolation=isolation, impls=", ".join(impls), timeout=timeout)
    suite = load_suite(str(write_suite(text)), REGISTRY)
    store = open_store(suite, tmp_path / "run", resume=False)
    run_suite(suite, store, patterns)
    return {r["impl"]: r for r in read_records(tmp_path / "run")}


def test_each_failure_ends_as_a_record_in_a_worker_process(write_suite, tmp_path):
    impls = ["exact", "raises", "sleeps", "wrong", "memory_error", "killed", "allocates"]
    records = _run(write_suite, tmp_path, "process", impls)
    status = {impl: r["status"] for impl, r in records.items()}
    assert status == {"exact": "ok", "raises": "failed", "sleeps": "timeout", "wrong": "failed",
                      "memory_error": "oom", "killed": "oom", "allocates": "ok"}
    assert "deliberate failure inside the implementation" in records["raises"]["error"]
    assert records["wrong"]["error"].startswith("correctness check failed: error 0.01")
    assert "latency_s" not in records["wrong"]["metrics"]  # a failed check reports no timing
    assert "SIGKILL" in records["killed"]["error"]
    assert "timeout_s=2.0" in records["sleeps"]["error"]
    for impl in ("exact", "allocates"):
        latency = records[impl]["metrics"]["latency_s"]
        assert latency["source"] == "perf_counter_ns" and len(latency["samples"]) >= 3
        assert latency["value"] > 0 and records[impl]["metrics"]["quality.rel_l2_error"]["value"] < 1e-6


def test_isolated_peak_memory_sees_a_known_allocation(write_suite, tmp_path):
    records = _run(write_suite, tmp_path, "process", ["exact", "allocates"])
    scratch = 64 * 2**20
    overhead = records["allocates"]["metrics"]["peak_memory_overhead_bytes"]
    assert overhead["source"] == "isolated_rss" and "clear_refs" in overhead["note"]
    assert 0.99 * scratch <= overhead["value"] < scratch + 8 * 2**20  # RSS can reuse a few freed heap pages
    assert records["exact"]["metrics"]["peak_memory_overhead_bytes"]["value"] < 4 * 2**20
    assert records["allocates"]["unmeasured"]["energy_j"]  # no counter on this machine: a reason, not 0


def test_inline_isolation_records_failures_too(write_suite, tmp_path):
    records = _run(write_suite, tmp_path, "inline", ["exact", "raises", "sleeps", "wrong"], timeout=1.0)
    assert {i: r["status"] for i, r in records.items()} == {
        "exact": "ok", "raises": "failed", "sleeps": "timeout", "wrong": "failed"}


def test_resume_runs_only_the_rest_and_filter_selects(write_suite, tmp_path):
    text = BROKEN.format(isolation="inline", impls="exact, wrong, raises", timeout=5)
    suite = load_suite(str(write_suite(text)), REGISTRY)
    store = open_store(suite, tmp_path / "run", resume=False)
    first = run_suite(suite, store, patterns=["exact|wrong"])
    assert sum(first.counts.values()) == 2
    again = run_suite(suite, open_store(suite, tmp_path / "run", resume=True))
    assert sum(again.counts.values()) == 1 and again.skipped_finished == 2
    cases = Counter(r["case"] for r in read_records(tmp_path / "run"))
    assert len(cases) == 3 and set(cases.values()) == {1}


def test_kill_minus_9_then_resume_finishes_every_case_exactly_once(tmp_path):
    suite = tmp_path / "slow.yaml"
    suite.write_text(BROKEN.format(isolation="process", impls="exact", timeout=30).replace(
        "n: [4096]", "n: [1024, 2048, 4096, 8192, 16384, 32768]").replace("min_time_s: 0.0", "min_time_s: 0.4"))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness.cli", "run", "--suite", str(suite), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    records = out / "records.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not records.exists() or records.read_text().count("\n") < 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker, mid-run
    proc.wait()
    done_before = records.read_text().count("\n")
    assert 2 <= done_before < 6
    subprocess.run(cmd + ["--resume"], env=env, check=True, capture_output=True)
    lines = [json.loads(x) for x in records.read_text().splitlines()]
    assert len(lines) == 6 and len({r["case"] for r in lines}) == 6
    assert all(r["status"] == "ok" for r in lines)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"ok": 6} and len(manifest["resumed_at"]) == 1


def test_baseline_error_is_reused_from_the_baseline_record(write_suite, tmp_path):
    records = _run(write_suite, tmp_path, "inline", ["wrong", "exact"])  # the runner reorders: baseline first
    order = [r["impl"] for r in read_records(tmp_path / "run")]
    assert order == ["exact", "wrong"]
    assert records["wrong"]["metrics"]["quality.rel_l2_error"]["rule"] == "error <= 2 x baseline error + eps"


@pytest.mark.parametrize("pattern, expected", [("wrong", 1), ("exact|wrong", 2), ("n=4096", 3)])
def test_filter_is_a_regular_expression_on_the_case_id(write_suite, tmp_path, pattern, expected):
    records = _run(write_suite, tmp_path, "inline", ["exact", "wrong", "raises"], patterns=[pattern])
    assert len(records) == expected


def test_a_workloads_counted_metrics_are_recorded_and_undeclared_names_fail_the_case(write_suite, tmp_path):
    text = BROKEN.format(isolation="inline", impls="exact", timeout=5).replace(
        "scaled_copy", "counted_copy").replace("grid: {n: [4096]}", "grid: {n: [4096], declared: [true, false]}")
    suite = load_suite(str(write_suite(text)), REGISTRY)
    store = open_store(suite, tmp_path / "run", resume=False)
    run_suite(suite, store, ())
    records = {r["params"]["declared"]: r for r in read_records(tmp_path / "run")}
    counted = records[True]["metrics"]["testing.copied_elements"]
    assert (counted["value"], counted["unit"], counted["source"]) == (4096.0, "elements", "counted")
    assert records[False]["status"] == "failed" and "testing.never_declared" in records[False]["error"]
