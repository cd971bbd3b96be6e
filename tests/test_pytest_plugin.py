"""The pytest plugin and the pytest-benchmark importer: a real pytest-benchmark run, imported, compared, rendered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import build_report, cli
from harness.compare import compare, load_side
from harness.errors import UserError
from harness.gate_config import GateConfig
from harness.pytest_benchmark_import import import_benchmarks
from harness.pytest_plugin import case_params, membench_params
from harness.store import read_records

pytest.importorskip("pytest_benchmark", reason="the round trip runs pytest-benchmark itself (the dev extra)")
ROOT = Path(__file__).resolve().parent.parent

USER_TESTS = '''
import pytest
import torch

from harness.pytest_plugin import membench_params


def my_softmax(inputs, params):
    return torch.softmax(inputs["x"], dim=0)


@pytest.mark.parametrize("membench_case", membench_params("softmax_passes", n=[4096, 5000], chunk=1024),
                         indirect=True)
def test_my_softmax(membench_case):
    out = membench_case.benchmark(my_softmax)
    assert out.shape == (membench_case.params["n"],)
    assert membench_case.last_check.passed


@pytest.mark.membench("softmax_passes", n=3000, chunk=1024)
def test_marker_and_a_wrong_answer(membench_case):
    membench_case.check(my_softmax(membench_case.inputs, membench_case.params))
    with pytest.raises(AssertionError, match="tolerance"):
        membench_case.check(torch.softmax(1.05 * membench_case.inputs["x"], dim=0))


def test_without_a_workload(membench_case):
    pass


def test_plain_pytest_benchmark(benchmark):
    benchmark(sum, range(200))
'''


@pytest.fixture(scope="module")
def benchmark_json(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """pytest-benchmark run for real, in a subprocess, on a user's test file that uses membench_case."""
    folder = tmp_path_factory.mktemp("user_project")
    (folder / "test_user_bench.py").write_text(USER_TESTS)
    out = folder / "bench.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # -p no:membench keeps this working once membench's pytest11 entry point is installed (no double registration)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:membench", "-p",
               "harness.pytest_plugin", f"--benchmark-json={out}", "--benchmark-min-rounds=7",
               "--benchmark-max-time=0.02", "--benchmark-warmup=off", "test_user_bench.py"]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    return out, done


def test_the_user_suite_ran_with_the_fixture(benchmark_json):
    out, done = benchmark_json
    assert "4 passed" in done.stdout and "1 error" in done.stdout, done.stdout + done.stderr
    assert "membench_case needs a workload" in done.stdout
    data = json.loads(out.read_text())
    names = sorted(b["name"] for b in data["benchmarks"])
    assert names == ["test_my_softmax[softmax_passes[n=4096,chunk=1024]@cpu]",
                     "test_my_softmax[softmax_passes[n=5000,chunk=1024]@cpu]", "test_plain_pytest_benchmark"]
    tagged = next(b for b in data["benchmarks"] if b["name"].startswith("test_my_softmax"))
    info = tagged["extra_info"]["membench"]
    assert info["workload"] == "softmax_passes" and info["params"]["chunk"] == 1024 and info["check"]["passed"]
    assert len(tagged["stats"]["data"]) == tagged["stats"]["rounds"] >= 7


def test_import_reaches_records_compare_and_report(benchmark_json, tmp_path):
    out, _ = benchmark_json
    folder = import_benchmarks(out, tmp_path / "imported")
    records = {r["case"]: r for r in read_records(folder)}
    case = "long_context/softmax_passes/test_my_softmax[n=4096,chunk=1024,dtype=float32]@cpu"
    assert set(records) == {case, case.replace("4096", "5000"),
                            "pytest_benchmark/test_user_bench/test_plain_pytest_benchmark[]@cpu"}
    mine = records[case]
    latency = mine["metrics"]["latency_s"]
    assert mine["status"] == "ok" and latency["source"] == "pytest-benchmark" and len(latency["samples"]) >= 7
    assert 0 < latency["value"] < 0.1 and mine["metrics"]["quality.rel_l2_error"]["value"] < 1e-5
    assert mine["model"]["flops"] > 0 and mine["model"]["achieved_bytes_per_s"] > 0 and mine["workload_version"]

    # the same results twice compare as unchanged; a copy with one benchmark twice as slow regresses there
    same = compare(load_side(folder), load_side(folder), GateConfig(timing_basis="raw"))
    assert not same.regressed and len(same.cases) == 3
    data = json.loads(out.read_text())
    for bench in data["benchmarks"]:
        if bench["name"] == "test_plain_pytest_benchmark":
            bench["stats"]["data"] = [2.0 * d for d in bench["stats"]["data"]]
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["import-pytest-benchmark", str(slower), "--out", str(tmp_path / "slower")])
    assert result.exit_code == 0, result.output
    comparison = compare(load_side(folder), load_side(tmp_path / "slower"), GateConfig(timing_basis="raw"))
    regressed = [(c.case, m.metric) for c, m in comparison.rows(("regressed",))]
    assert regressed == [("pytest_benchmark/test_user_bench/test_plain_pytest_benchmark[]@cpu", "latency_s")]

    index = build_report([folder], tmp_path / "site", build_time="2026-01-01T00:00:00Z")
    assert index.is_file() and "softmax_passes" in index.read_text()


def test_summary_only_json_compares_by_threshold(tmp_path):
    bench = {"name": "test_f", "fullname": "t.py::test_f", "group": None, "params": None, "extra_info": {},
             "options": {}, "stats": {"median": 0.002, "iqr": 0.0001, "rounds": 9, "iterations": 1}}
    path = tmp_path / "saved.json"
    path.write_text(json.dumps({"machine_info": {}, "commit_info": {}, "benchmarks": [bench], "version": "5.1.0",
                                "datetime": "2026-01-02T03:04:05+00:00"}))
    record = read_records(import_benchmarks(path, tmp_path / "run"))[0]
    assert record["metrics"]["latency_s"]["value"] == 0.002 and "samples" not in record["metrics"]["latency_s"]
    assert "threshold only" in record["metrics"]["latency_s"]["note"]


def test_import_rejects_files_that_are_not_pytest_benchmark_output(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"results": []}))
    with pytest.raises(UserError, match="benchmark-json"):
        import_benchmarks(path, tmp_path / "run")


def test_case_params_fill_defaults_and_name_what_is_allowed():
    workload, params = case_params("softmax_passes", {"n": 100})
    assert workload.name == "softmax_passes" and params == {"n": 100, "chunk": params["chunk"], "dtype": "float32"}
    with pytest.raises(ValueError, match="allowed: chunk, dtype, n"):
        case_params("softmax_passes", {"size": 100})
    with pytest.raises(ValueError, match="allowed: 'float32', 'float64'"):
        case_params("softmax_passes", {"dtype": "int8"})
    with pytest.raises(ValueError, match="unknown membench workload"):
        membench_params("no_such_workload")
    assert [p.id for p in membench_params("softmax_passes", n=[10, 20])] == [
        "softmax_passes[n=10]@cpu", "softmax_passes[n=20]@cpu"]
