"""membench gate: baseline round trip, pass on a clean tree, exit 1 on an injected slowdown, exit 2 on errors,
and the interleaved A/B mode against a revision of a git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.baseline import read_baseline
from harness.cli import main
from harness.errors import UserError
from harness.gate import EXIT_PASS, EXIT_REGRESSION, GateRequest, run_gate
from harness.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"
SUITE = """
name: tiny_gate
plugins: [membench_test_plugins]
settings: {warmup_s: 0.01, min_repeats: 20, min_time_s: 0.05, max_repeats: 100, timeout_s: 60, isolation: inline}
cases:
  - workload: scaled_copy
    impls: [exact]
    grid: {n: [4000000]}
  - workload: counted_copy
    impls: [exact]
    grid: {n: [1000]}
"""
# inline isolation (fast, and the in-process injection reaches it) measures the test process's RSS: not gated here
CONFIG = """
defaults: {sampled: {min_effect: 1.0}}
metrics: {peak_memory_bytes: {min_effect: 100.0}, peak_memory_overhead_bytes: {min_effect: 100.0}}
baseline_runs: 3
noise_z: 0
"""
SLOW_CASE = "testing/scaled_copy/exact[n=4000000,dtype=float32]@cpu"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gate")


@pytest.fixture(scope="module")
def suite_file(shared: Path) -> Path:
    path = shared / "tiny_gate.yaml"
    path.write_text(SUITE)
    return path


@pytest.fixture(scope="module")
def config(shared: Path) -> Path:
    path = shared / "gate.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def baseline(shared: Path, suite_file: Path, config: Path) -> Path:
    """A baseline written by `gate --update-baseline` from three runs of the tiny suite (once per module)."""
    path = shared / "baselines" / "tiny.json"
    outcome = run_gate(GateRequest(str(suite_file), path, config, update_baseline=True, out=shared / "first",
                                   calibrate=False))
    assert outcome.exit_code == EXIT_PASS and outcome.baseline_written == path
    return path


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`membench ARGS` in this process through the real entry point (its exit code, its stderr)."""
    monkeypatch.setattr(sys, "argv", ["membench", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


def _env() -> dict:
    paths = [str(ROOT), str(PLUGINS), os.environ.get("PYTHONPATH")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


def _membench(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_update_baseline_writes_a_small_digest_and_the_same_run_passes(shared, baseline, config):
    manifest, records = read_baseline(baseline)
    assert {r["case"] for r in records} == {SLOW_CASE, "testing/counted_copy/exact[n=1000,dtype=float32,"
                                                       "declared=True]@cpu"}
    assert all(r["status"] == "ok" and len(r["metrics"]["latency_s"]["samples"]) >= 20 for r in records)
    assert all(r["metrics"]["latency_s"]["between_runs"]["runs"] == 3 for r in records)  # baseline_runs: 3
    assert manifest["repeats"] == [str(shared / "first" / "repeat-1"), str(shared / "first" / "repeat-2")]
    assert baseline.stat().st_size < 50_000 and manifest["suite"]["name"] == "tiny_gate"
    outcome = run_gate(GateRequest(baseline=baseline, run=str(shared / "first"), config=config))
    assert outcome.exit_code == EXIT_PASS
    assert outcome.summary.startswith("## membench gate: PASS") and (shared / "first" / "gate.json").is_file()


def test_injected_slowdown_fails_the_gate_with_a_readable_summary(tmp_path, suite_file, baseline, config):
    import membench_slowdown

    REGISTRY.load(["membench_test_plugins"])
    original = REGISTRY.impls["scaled_copy"]["exact"]
    try:
        assert membench_slowdown.inject(9.0, "^scaled_copy/exact$") == ["scaled_copy/exact"]
        outcome = run_gate(GateRequest(str(suite_file), baseline, config, out=tmp_path / "slow", calibrate=False))
    finally:
        REGISTRY.impls["scaled_copy"]["exact"] = original
    assert outcome.exit_code == EXIT_REGRESSION
    regressed = [(c.case, m.metric) for c, m in outcome.comparison.rows(("regressed",))]
    assert (SLOW_CASE, "latency_s") in regressed  # (this shared machine may slow the other case too)
    summary = outcome.summary
    assert summary.startswith("## membench gate: FAIL") and "### Regressions (" in summary
    assert f"`{SLOW_CASE}`" in summary and "p=" in summary
    assert (tmp_path / "slow" / "gate.md").read_text() == summary


def test_cli_exit_codes(tmp_path, suite_file, baseline, config, monkeypatch, capsys):
    code, err = _main(monkeypatch, capsys, "gate", "--suite", str(suite_file), "--baseline", str(tmp_path / "no.json"))
    assert code == 2 and "does not exist" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("alpha: 5\n")
    code, err = _main(monkeypatch, capsys, "gate", "--baseline", str(baseline), "--run", str(baseline.parent.parent /
                      "first"), "--config", str(bad))
    assert code == 2 and "alpha: must be in (0, 1)" in err
    summary = tmp_path / "summary.md"
    code, _ = _main(monkeypatch, capsys, "gate", "--baseline", str(baseline), "--run",
                    str(baseline.parent.parent / "first"), "--summary", str(summary), "--config", str(config))
    assert code == 0 and summary.read_text().startswith("## membench gate: PASS")


def test_environment_switch_fails_the_real_command(tmp_path, suite_file, baseline, config):
    """`membench gate` in a fresh process with MEMBENCH_INJECT_SLOWDOWN and the test-only plugin: exit 1."""
    summary = tmp_path / "summary.md"
    env = {**_env(), "MEMBENCH_INJECT_SLOWDOWN": "9", "MEMBENCH_INJECT_MATCH": "^scaled_copy/"}
    slow = _membench("gate", "--suite", str(suite_file), "--baseline", str(baseline), "--plugin", "membench_slowdown",
                     "--no-calibrate", "--config", str(config), "--out", str(tmp_path / "cli_slow"),
                     "--summary", str(summary), env=env)
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert SLOW_CASE in slow.stdout and summary.read_text().startswith("## membench gate: FAIL")


def test_errors_are_user_errors(tmp_path, suite_file, baseline, config):
    with pytest.raises(UserError, match="give --baseline"):
        run_gate(GateRequest(str(suite_file)))
    with pytest.raises(UserError, match="does not combine"):
        run_gate(GateRequest(str(suite_file), baseline, against="HEAD", update_baseline=True))
    other = tmp_path / "other.yaml"
    other.write_text(SUITE.replace("n: [4000000]", "n: [300000]").replace("counted_copy", "scaled_copy")
                     .replace("n: [1000]", "n: [400000]"))
    with pytest.raises(UserError, match="nothing to compare"):
        run_gate(GateRequest(str(other), baseline, config, out=tmp_path / "other_run", calibrate=False))


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def test_against_runs_the_revision_and_this_tree_in_alternation(tmp_path, monkeypatch):
    """A throwaway repository holding membench's code: REV runs from its worktree, this tree in-process."""
    repo = tmp_path / "repo"
    for part in ("harness", "workloads", "reference_impls", "tests/plugins"):
        shutil.copytree(ROOT / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "revision under test")
    commit = _git(repo, "rev-parse", "HEAD")
    suite_file = tmp_path / "one_case.yaml"
    suite_file.write_text(SUITE.split("  - workload: counted_copy")[0])
    monkeypatch.setenv("PYTHONPATH", str(PLUGINS))  # the revision's run imports the suite's test plugin too
    config = tmp_path / "gate.yaml"
    config.write_text("timing_basis: both\ndefaults: {sampled: {min_effect: 100.0}, single: {min_effect: 100.0}}\n")
    lines: list[str] = []
    outcome = run_gate(GateRequest(str(suite_file), against="HEAD", repo=repo, out=tmp_path / "ab", config=config,
                                   calibrate=False), echo=lines.append)
    assert outcome.exit_code == EXIT_PASS, outcome.summary
    assert [c.case for c in outcome.comparison.cases] == [SLOW_CASE]
    assert outcome.comparison.base["commit"] == commit  # the base side really ran the revision's checkout
    assert outcome.summary.startswith("## membench gate vs HEAD: PASS")
    assert outcome.comparison.config.timing_basis == "raw"  # paired in time: each side's calibration is not used
    assert lines[-1].startswith("  1/1 AB ") and _git(repo, "worktree", "list").count("\n") == 0


def test_a_timing_regression_counts_only_when_every_re_run_confirms_it():
    from harness.compare import Side, compare
    from harness.gate import confirm_regressions
    from harness.gate_config import GateConfig

    def run(factors: dict[str, float]) -> Side:
        records = {}
        for case, factor in factors.items():
            samples = [factor * (1e-3 + 1e-6 * i) for i in range(30)]
            records[case] = {"schema": 1, "run": "r", "case": case, "family": "testing", "workload": "w",
                             "impl": "i", "params": {}, "device": "cpu", "seed": 0, "status": "ok", "error": None,
                             "metrics": {"latency_s": {"value": samples[15], "unit": "s", "source": "perf_counter_ns",
                                                       "samples": samples}},
                             "unmeasured": {}, "model": {}, "validity": {"ok": True, "reasons": []}}
        return Side("s", {"run": "r"}, records)

    base = run({"a": 1.0, "b": 1.0, "c": 1.0})
    first = compare(base, run({"a": 1.5, "b": 1.5, "c": 1.0}), GateConfig(timing_basis="raw"))
    assert {c.case for c, _ in first.rows(("regressed",))} == {"a", "b"}
    re_runs = iter([run({"a": 1.5, "b": 1.0}), run({"a": 1.4})])  # b was a burst; a is in the code
    patterns = []

    def remeasure(pattern: str, attempt: int):
        patterns.append(pattern)
        return base, next(re_runs)

    confirm_regressions(first, remeasure, runs=2, echo=lambda line: None)
    verdicts = {c.case: m.verdict for c, m in first.rows() if m.metric == "latency_s"}
    assert verdicts == {"a": "regressed", "b": "unchanged", "c": "unchanged"}
    assert patterns == ["^(?:a|b)$", "^(?:a)$"]
    reasons = {c.case: m.reason for c, m in first.rows() if m.metric == "latency_s"}
    assert "confirmed by re-run 2" in reasons["a"] and reasons["b"].startswith("not confirmed")
    assert "2 timing regression(s) flagged, 1 confirmed" in first.notes[-1]
