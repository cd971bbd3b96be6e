"""Suites: valid files expand into the right cases; malformed ones give one clear paragraph and exit 2."""

import subprocess
import sys

import pytest

from harness.errors import SuiteError
from harness.registry import REGISTRY
from harness.suite import load_suite

GOOD = """
name: tiny
settings: {warmup_s: 0.0, min_repeats: 2, min_time_s: 0.0, timeout_s: 30, isolation: inline}
plugins: [membench_test_plugins]
cases:
  - workload: scaled_copy
    impls: [exact, wrong]
    grid: {n: [16, 32]}
"""


def test_good_suite_expands_grid_in_declared_param_order(write_suite):
    suite = load_suite(str(write_suite(GOOD)), REGISTRY)
    ids = [c.id for c in suite.cases]
    assert ids == [
        "testing/scaled_copy/exact[n=16,dtype=float32]@cpu",
        "testing/scaled_copy/exact[n=32,dtype=float32]@cpu",
        "testing/scaled_copy/wrong[n=16,dtype=float32]@cpu",
        "testing/scaled_copy/wrong[n=32,dtype=float32]@cpu",
    ]
    assert suite.settings.isolation == "inline" and suite.settings.min_repeats == 2


def test_smoke_suite_is_valid_and_covers_every_cpu_long_context_workload():
    suite = load_suite("smoke", REGISTRY.load())
    assert sum(c.workload == "attention_prefill" for c in suite.cases) == 24
    assert suite.cases[0].id.startswith("long_context/attention_prefill/")
    assert all(c.device == "cpu" for c in suite.cases)
    covered = {c.workload for c in suite.cases}
    assert {"attention_decode", "softmax_passes", "kv_allocation", "kv_compression", "context_sweep"} <= covered


@pytest.mark.parametrize("name", ["gpu", "decode", "long_context_cpu", "kv_compression", "passkey", "claims"])
def test_every_shipped_suite_loads(name):
    assert load_suite(name, REGISTRY.load()).cases


def test_device_override_replaces_devices(write_suite):
    suite = load_suite(str(write_suite(GOOD)), REGISTRY, device="cuda")
    assert {c.device for c in suite.cases} == {"cuda"}


@pytest.mark.parametrize("bad, expected", [
    (GOOD.replace("workload: scaled_copy", "workload: scaled_cpy"),
     ["cases[0]", "workload", "unknown workload 'scaled_cpy'", "Did you mean 'scaled_copy'"]),
    (GOOD.replace("n: [16, 32]", "n: [16, 32], dtype: [float8]"),
     ["cases[0] (scaled_copy)", "grid.dtype", "'float8' is not allowed", "'float32', 'float64'"]),
    (GOOD.replace("n: [16, 32]", "n: ['16']"), ["grid.n", "expected int, got str"]),
    (GOOD.replace("n: [16, 32]", "n: [0]"), ["grid.n", "below the minimum 1"]),
    (GOOD.replace("n: [16, 32]", "size: [16]"), ["grid.size", "unknown param", "allowed: dtype, n"]),
    (GOOD.replace("impls: [exact, wrong]", "impls: [exact, fast]"),
     ["impls", "unknown implementation 'fast'", "allowed:"]),
    (GOOD.replace("isolation: inline", "isolation: thread"), ["settings.isolation", "allowed: process, inline"]),
    (GOOD.replace("timeout_s: 30", "timeout: 30"), ["settings", "unknown field 'timeout'", "timeout_s"]),
    (GOOD.replace("min_repeats: 2", "min_repeats: two"), ["settings.min_repeats", "expected int"]),
    (GOOD.replace("    grid:", "    gird:"), ["cases[0]", "unknown field 'gird'", "allowed: devices, grid"]),
    (GOOD.replace("grid: {n: [16, 32]}", "grid: {n: [16, 32]}\n    devices: [tpu]"),
     ["devices", "'tpu' is not allowed", "cpu, cuda"]),
    (GOOD.replace("n: [16, 32]}", "n: [16, 32]"), ["YAML syntax error at line"]),
    ("- just\n- a list\n", ["a suite is a mapping"]),
])
def test_malformed_suites_name_file_entry_field_and_allowed_values(write_suite, bad, expected):
    path = write_suite(bad)
    with pytest.raises(SuiteError) as info:
        load_suite(str(path), REGISTRY)
    message = str(info.value)
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message


def test_unknown_suite_name_lists_known_suites():
    with pytest.raises(SuiteError, match="known suites: .*smoke"):
        load_suite("smoky", REGISTRY)


@pytest.mark.parametrize("replacement", [
    ("workload: scaled_copy", "workload: nope"),
    ("n: [16, 32]", "n: [16, 32], dtype: [int4]"),
    ("n: [16, 32]", "n: [sixteen]"),
    ("n: [16, 32]}", "n: [16, 32]"),
])
def test_cli_reports_bad_suite_in_one_paragraph_exit_2(write_suite, tmp_path, replacement):
    path = write_suite(GOOD.replace(*replacement))
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--suite", str(path), "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path,
                         env=_env())
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and str(path) in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def _env():
    import os
    from pathlib import Path

    plugins = Path(__file__).parent / "plugins"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugins), env.get("PYTHONPATH", "")])
    return env


def test_a_folder_named_like_a_suite_does_not_shadow_it(tmp_path, monkeypatch):
    from harness.suite import resolve_suite_path

    (tmp_path / "ci").mkdir()
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "ci.yaml").write_text("name: ci\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_suite_path("ci") == tmp_path / "suites" / "ci.yaml"
