"""membench compare: the statistics, every verdict rule, the thresholds file and the three renderings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import mannwhitneyu

from harness.baseline import digest, read_baseline, write_baseline
from harness.cli import cli
from harness.compare import Side, compare, load_side
from harness.compare_render import print_comparison, to_json_text, to_markdown
from harness.compare_stats import bootstrap_ratio_ci, mann_whitney_p, ratio_of_medians, stable_seed
from harness.console import console
from harness.gate_config import GateConfig, GateConfigError, load_config, parse_config
from harness.metrics import declare
from harness.store import RunStore

EXACT = declare("testing.compare_exact_bytes", "B", "lower", "exact bytes", deterministic=True)
RECALL = declare("testing.compare_recall", "1", "higher", "recall", deterministic=True)
CASE = "testing/w/impl[n=1]@cpu"


def latency(rng: np.random.Generator, median: float, n: int = 60, spread: float = 0.02) -> dict:
    samples = (median * (1.0 + spread * rng.standard_normal(n))).tolist()
    return {"value": float(np.median(samples)), "unit": "s", "source": "perf_counter_ns", "samples": samples}


def record(case: str = CASE, status: str = "ok", metrics: dict | None = None, predicted: float | None = None,
           version: str = "v1", error: str | None = None) -> dict:
    return {"schema": 1, "run": "r", "case": case, "family": "testing", "workload": "w", "impl": "impl",
            "params": {"n": 1}, "device": "cpu", "seed": 0, "status": status, "error": error,
            "metrics": metrics or {}, "unmeasured": {}, "workload_version": version,
            "model": {"predicted_latency_s": predicted} if predicted else {}, "validity": {"ok": True, "reasons": []}}


def side(*records: dict, calibration: dict | None = None) -> Side:
    manifest = {"run": "r", "environment": {"cpu": {"model": "test CPU"}}, "calibration": calibration or {}}
    return Side("test", manifest, {r["case"]: r for r in records})


def only(comparison, metric: str):
    return next(m for _, m in comparison.rows() if m.metric == metric)


RAW = GateConfig(timing_basis="raw")


# --- statistics ---------------------------------------------------------------------------------------------


def test_ratio_ci_covers_the_true_ratio_and_is_reproducible():
    rng = np.random.default_rng(1)
    base, cand = rng.lognormal(0.0, 0.05, 80), 1.3 * rng.lognormal(0.0, 0.05, 80)
    assert ratio_of_medians(base, cand) == pytest.approx(np.median(cand) / np.median(base))
    low, high = bootstrap_ratio_ci(base, cand, seed=7)
    assert low < 1.3 < high and high - low < 0.1
    assert bootstrap_ratio_ci(base, cand, seed=7) == (low, high)
    assert bootstrap_ratio_ci(base, cand, seed=8) != (low, high)


def test_mann_whitney_matches_scipy_and_handles_constant_samples():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 0.1, 30), rng.normal(1.1, 0.1, 30)
    assert mann_whitney_p(a, b) == pytest.approx(mannwhitneyu(b, a, alternative="two-sided").pvalue)
    assert mann_whitney_p([2.0] * 5, [2.0] * 5) == 1.0
    assert mann_whitney_p([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]) < 0.1


def test_stable_seed_depends_only_on_the_names():
    assert stable_seed("case", "latency_s") == stable_seed("case", "latency_s")
    assert stable_seed("case", "latency_s") != stable_seed("case", "peak_memory_bytes")


# --- timing verdicts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor, verdict", [(1.3, "regressed"), (1.0, "unchanged"), (1.04, "unchanged"),
                                             (0.7, "improved")])
def test_sampled_latency_verdict_needs_significance_and_minimum_effect(factor, verdict):
    rng = np.random.default_rng(3)
    base = record(metrics={"latency_s": latency(rng, 1e-3)})
    cand = record(metrics={"latency_s": latency(rng, factor * 1e-3)})
    row = only(compare(side(base), side(cand), RAW), "latency_s")
    assert row.verdict == verdict, row.reason
    assert row.kind == "sampled" and row.basis == "raw"
    assert row.ratio == pytest.approx(factor, rel=0.03)
    assert row.ci[0] <= row.ratio <= row.ci[1]


def test_large_effect_without_significance_is_not_counted():
    noisy = {"latency_s": {"value": 1.0, "unit": "s", "source": "perf_counter_ns",
                           "samples": [1.0, 3.0, 0.5, 2.0, 1.0]}}
    shifted = {"latency_s": {"value": 1.5, "unit": "s", "source": "perf_counter_ns",
                             "samples": [1.5, 4.5, 0.75, 3.0, 1.5]}}
    row = only(compare(side(record(metrics=noisy)), side(record(metrics=shifted)), RAW), "latency_s")
    assert row.ratio == pytest.approx(1.5)
    assert row.verdict == "unchanged" and "not significant" in row.reason


def test_thresholds_come_from_the_workload_entry_first():
    rng = np.random.default_rng(4)
    base = record(metrics={"latency_s": latency(rng, 1e-3)})
    cand = record(metrics={"latency_s": latency(rng, 1.3e-3)})
    loose = parse_config({"timing_basis": "raw", "workloads": {"w": {"latency_s": {"min_effect": 0.5}}}})
    assert only(compare(side(base), side(cand), loose), "latency_s").verdict == "unchanged"
    assert loose.rule("w", "latency_s", "sampled").min_effect == 0.5
    assert loose.rule("other", "latency_s", "sampled").min_effect == 0.10


def test_machine_drift_cancels_after_normalization_and_both_must_agree():
    """The whole candidate machine ran 40% slower, its calibration saw it: raw alone would cry regression."""
    rng = np.random.default_rng(5)
    base = record(metrics={"latency_s": latency(rng, 1e-3)}, predicted=0.5e-3)
    cand = record(metrics={"latency_s": latency(rng, 1.4e-3)}, predicted=0.7e-3)
    row = only(compare(side(base), side(cand), GateConfig(timing_basis="both")), "latency_s")
    assert row.tests["raw"]["verdict"] == "regressed"
    assert row.tests["normalized"]["verdict"] == "unchanged"
    assert row.tests["normalized"]["ratio"] == pytest.approx(1.0, abs=0.03)
    assert row.verdict == "unchanged" and row.basis == "raw+normalized" and "not counted" in row.reason
    assert only(compare(side(base), side(cand), RAW), "latency_s").verdict == "regressed"
    norm = GateConfig(timing_basis="normalized")
    assert only(compare(side(base), side(cand), norm), "latency_s").verdict == "unchanged"


def test_real_slowdown_is_caught_on_both_bases():
    rng = np.random.default_rng(6)
    base = record(metrics={"latency_s": latency(rng, 1e-3)}, predicted=0.5e-3)
    cand = record(metrics={"latency_s": latency(rng, 1.25e-3)}, predicted=0.5e-3)
    row = only(compare(side(base), side(cand), GateConfig()), "latency_s")
    assert row.verdict == "regressed" and row.basis == "raw+normalized"


def test_without_a_prediction_the_gate_says_it_used_raw():
    rng = np.random.default_rng(7)
    base, cand = record(metrics={"latency_s": latency(rng, 1e-3)}), record(metrics={"latency_s": latency(rng, 2e-3)})
    row = only(compare(side(base), side(cand), GateConfig()), "latency_s")
    assert row.verdict == "regressed" and row.basis.startswith("raw (no calibrated prediction")


# --- exact, single-valued and status verdicts ---------------------------------------------------------------


def test_deterministic_metrics_compare_exactly_or_within_tolerance():
    def exact(value: float, recall: float) -> dict:
        return {EXACT.name: {"value": value, "unit": "B", "source": "counted"},
                RECALL.name: {"value": recall, "unit": "1", "source": "check"}}

    comparison = compare(side(record(metrics=exact(1000.0, 0.75))), side(record(metrics=exact(1001.0, 1.0))), RAW)
    assert only(comparison, EXACT.name).verdict == "regressed"  # one byte more, direction lower
    assert only(comparison, RECALL.name).verdict == "improved"  # recall up, direction higher
    tolerant = parse_config({"metrics": {EXACT.name: {"abs_tol": 2}}})
    row = only(compare(side(record(metrics=exact(1000.0, 1.0))), side(record(metrics=exact(1001.0, 1.0))),
                       tolerant), EXACT.name)
    assert row.verdict == "unchanged" and "within tolerance" in row.reason


def test_single_values_use_the_minimum_effect_and_its_floor():
    def peak(value: float) -> dict:
        return {"peak_memory_bytes": {"value": value, "unit": "B", "source": "isolated_rss"}}

    config = parse_config({"metrics": {"peak_memory_bytes": {"min_effect": 0.1, "abs_floor": 2**20}}})
    grown = only(compare(side(record(metrics=peak(100e6))), side(record(metrics=peak(130e6))), config),
                 "peak_memory_bytes")
    assert grown.verdict == "regressed" and grown.kind == "single" and grown.p is None
    tiny = only(compare(side(record(metrics=peak(1e5))), side(record(metrics=peak(5e5))), config),
                "peak_memory_bytes")
    assert tiny.verdict == "unchanged" and "floor" in tiny.reason


@pytest.mark.parametrize("before, after, verdict", [("ok", "failed", "regressed"), ("ok", "timeout", "regressed"),
                                                     ("oom", "ok", "improved"), ("ok", "skipped", "incomparable"),
                                                     ("failed", "failed", "unchanged")])
def test_status_changes(before, after, verdict):
    comparison = compare(side(record(status=before)), side(record(status=after, error="boom")), RAW)
    assert only(comparison, "status").verdict == verdict
    assert comparison.regressed == (verdict == "regressed")


def test_edited_workload_is_incomparable_and_one_sided_cases_are_listed():
    rng = np.random.default_rng(8)
    base = side(record(metrics={"latency_s": latency(rng, 1e-3)}), record(case="testing/w/impl[n=2]@cpu"))
    cand = side(record(metrics={"latency_s": latency(rng, 9e-3)}, version="v2"), record(case="testing/w/new[n=1]@cpu"))
    comparison = compare(base, cand, RAW)
    assert [m.verdict for _, m in comparison.rows()] == ["incomparable"]
    assert not comparison.regressed
    assert comparison.only_base == ["testing/w/impl[n=2]@cpu"] and comparison.only_cand == ["testing/w/new[n=1]@cpu"]


def test_modeled_metrics_are_not_compared_and_missing_ones_are_incomparable():
    modeled = {"energy_j": {"value": 1.0, "unit": "J", "source": "modeled"},
               "peak_memory_bytes": {"value": 5.0, "unit": "B", "source": "isolated_rss"}}
    comparison = compare(side(record(metrics=modeled)), side(record(metrics={})), RAW)
    assert {m.metric: m.verdict for _, m in comparison.rows()} == {"status": "unchanged",
                                                                   "peak_memory_bytes": "incomparable"}


# --- thresholds file ----------------------------------------------------------------------------------------


def test_shipped_gate_config_loads():
    config = load_config()
    assert config.path and config.path.endswith("gate.yaml")
    assert 0 < config.alpha < 0.1 and config.timing_basis in ("raw", "normalized", "both")
    assert config.interleaved_timing_basis == "raw" and parse_config({}).interleaved_timing_basis == "raw"


@pytest.mark.parametrize("data, fragment", [({"alpha": 2}, "alpha: must be in (0, 1)"),
                                             ({"timing_basis": "median"}, "allowed: raw, normalized, both"),
                                             ({"interleaved_timing_basis": "both!"}, "interleaved_timing_basis"),
                                             ({"metrics": {"latency_s": {"min_efect": 0.1}}}, "unknown key"),
                                             ({"defaults": {"timing": {}}}, "allowed: deterministic"),
                                             ({"metrics": {"latency_s": {"min_effect": -1}}}, "must be >= 0")])
def test_bad_gate_config_names_the_key_and_what_is_allowed(data, fragment):
    with pytest.raises(GateConfigError, match=None) as info:
        parse_config(data, "ci/gate.yaml")
    assert fragment in str(info.value) and "ci/gate.yaml" in str(info.value)


# --- renderings, baseline round trip, CLI -------------------------------------------------------------------


def _run_folder(tmp_path, name: str, records: list[dict]):
    store = RunStore.create(tmp_path / name, {"run": name, "suite": {"name": "t", "plugins": []},
                                              "environment": {"cpu": {"model": "test CPU"}}, "calibration": {}})
    with store.records_path.open("a") as f:
        for r in records:
            f.write(json.dumps({**r, "run": name}) + "\n")
    return store.folder


def test_renderings_and_the_compare_command(tmp_path):
    rng = np.random.default_rng(9)
    base = _run_folder(tmp_path, "base", [record(metrics={"latency_s": latency(rng, 1e-3)})])
    cand = _run_folder(tmp_path, "cand", [record(metrics={"latency_s": latency(rng, 1.5e-3)})])
    comparison = compare(load_side(base), load_side(cand), RAW)
    text = to_markdown(comparison)
    assert text.startswith("## membench compare: FAIL: 1 regressed") and "### Regressions (1)" in text
    assert f"`{CASE}`" in text and "×1.5" in text
    data = json.loads(to_json_text(comparison))
    assert data["counts"]["regressed"] == 1 and data["cases"][0]["metrics"][1]["verdict"] == "regressed"
    with console.capture() as captured:
        print_comparison(comparison, console)
    assert "regressed" in captured.get()
    result = CliRunner().invoke(cli, ["compare", str(base), str(cand), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["regressed"] == 1
    result = CliRunner().invoke(cli, ["compare", str(base), str(cand), "--markdown", str(tmp_path / "c.md")])
    assert result.exit_code == 0 and (tmp_path / "c.md").read_text().startswith("## membench compare")


def test_baseline_digest_round_trip_keeps_what_compare_reads(tmp_path):
    rng = np.random.default_rng(10)
    rec = record(metrics={"latency_s": latency(rng, 1e-3)}, predicted=5e-4)
    rec["device_state"] = {"before": {"lots": "of detail"}}
    folder = _run_folder(tmp_path, "run", [rec])
    path = write_baseline(folder, tmp_path / "baselines" / "b.json")
    manifest, records = read_baseline(path)
    assert manifest["run"] == "run" and "device_state" not in records[0]
    kept = records[0]["metrics"]["latency_s"]["samples"]
    assert np.allclose(kept, rec["metrics"]["latency_s"]["samples"], rtol=1e-4)
    assert records[0]["model"]["predicted_latency_s"] == 5e-4
    same = compare(load_side(path), load_side(folder), GateConfig())
    assert only(same, "latency_s").verdict == "unchanged" and digest(folder)["kind"] == "membench-baseline"


def test_different_thread_settings_make_timings_incomparable():
    rng = np.random.default_rng(11)
    base = side(record(metrics={"latency_s": latency(rng, 1e-3)}))
    cand = side(record(metrics={"latency_s": latency(rng, 3e-3)}))
    cand.manifest["environment"]["env"] = {"OMP_NUM_THREADS": "1"}
    comparison = compare(base, cand, RAW)
    row = only(comparison, "latency_s")
    assert row.verdict == "incomparable" and "thread settings differ" in row.reason
    assert not comparison.regressed and any("thread settings differ" in n for n in comparison.notes)


def test_a_case_noisier_than_the_threshold_gets_a_threshold_from_its_own_spread():
    rng = np.random.default_rng(12)
    base_metrics = {"latency_s": {**latency(rng, 1e-3), "between_runs": {"runs": 5, "log_sd": 0.2}}}
    cand = side(record(metrics={"latency_s": latency(rng, 1.5e-3)}))
    row = only(compare(side(record(metrics=base_metrics)), cand, RAW), "latency_s")
    assert row.verdict == "unchanged" and "between-run noise" in row.rule
    assert row.rule.startswith("×2.34")  # exp(3 * sqrt(2) * 0.2) = 2.336
    base_metrics["latency_s"]["between_runs"]["runs"] = 2  # too few runs to trust the spread
    row = only(compare(side(record(metrics=base_metrics)), cand, RAW), "latency_s")
    assert row.verdict == "regressed" and row.rule == "×1.1"
