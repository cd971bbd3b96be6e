"""Compare two runs case by case and metric by metric: improved, regressed, unchanged or incomparable.

A side is a run folder, a run id or a baseline file. Per metric:
- timing with raw samples on both sides ("sampled"): ratio of medians, its bootstrap 95% CI and a Mann-Whitney
  U p-value; a change counts when p < alpha AND the ratio passes the minimum effect. latency_s is also tested
  after dividing each side's samples by that run's calibrated prediction for the case (`model.
  predicted_latency_s`, from the ceilings measured at the start of that run): machine drift that slows the
  case and the calibration alike cancels there. `timing_basis` (ci/gate.yaml) says which test decides:
  raw, normalized, or both (default: a change counts only when both agree; see ci/README.md for why).
- declared deterministic (bytes, recall on seeded data): equal, or within the configured tolerance.
- one value per side (peak memory, quality, single-shot timings): the minimum effect only, no p-value.
- status: ok -> failed/timeout/oom regresses, the reverse improves; a skipped side is incomparable.
A baseline made from several runs raises each metric's minimum effect to what its between-run noise allows
(noise_rule). An edited workload (different version) is incomparable, not a regression, and so are timings
taken with different thread settings. Modeled metrics (energy from the hardware model) are functions of
latency and are not compared twice.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from harness import metrics as metric_specs
from harness.baseline import is_baseline, read_baseline
from harness.compare_stats import bootstrap_ratio_ci, mann_whitney_p, ratio_of_medians, stable_seed
from harness.errors import UserError
from harness.gate_config import GateConfig, Rule
from harness.registry import REGISTRY
from harness.store import MANIFEST, read_records, resolve_run

VERDICTS = ("regressed", "improved", "incomparable", "unchanged")  # a case shows its most severe
BROKEN = ("failed", "timeout", "oom")
NORMALIZABLE = {"latency_s": "predicted_latency_s"}  # metric -> the model field its run's calibration predicts


@dataclass
class Side:
    """One side of a comparison: where it came from, its manifest, its records by case id."""

    label: str
    manifest: dict
    records: dict[str, dict]

    def info(self) -> dict:
        env = self.manifest.get("environment") or {}
        git = env.get("git") or {}
        return {"label": self.label, "run": self.manifest.get("run"), "suite": (self.manifest.get("suite") or {})
                .get("name"), "started_at": self.manifest.get("started_at"), "commit": git.get("commit"),
                "dirty": git.get("dirty"), "cpu": (env.get("cpu") or {}).get("model"),
                "cases": len(self.records)}


def load_side(path_or_id: str | Path) -> Side:
    """A baseline file, a run folder, or a run id under results/."""
    if is_baseline(path_or_id):
        manifest, records = read_baseline(path_or_id)
    else:
        folder = resolve_run(str(path_or_id))
        manifest, records = json.loads((folder / MANIFEST).read_text()), read_records(folder)
    _load_plugins(manifest)
    return Side(str(path_or_id), manifest, {r["case"]: r for r in records})


def _load_plugins(manifest: dict) -> None:
    """Metrics a plugin declares are known only once it is imported; a plugin that is not importable here
    leaves its metrics undeclared, and they compare as incomparable (saying so)."""
    REGISTRY.load()
    for plugin in (manifest.get("suite") or {}).get("plugins") or []:
        try:
            REGISTRY.load([plugin])
        except UserError:
            continue


@dataclass
class MetricComparison:
    metric: str
    kind: str  # status | version | sampled | single | single_timing | deterministic | missing | undeclared
    verdict: str
    reason: str
    unit: str = ""
    base: float | str | None = None
    cand: float | str | None = None
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    p: float | None = None
    basis: str = ""  # which test decided: raw, normalized, raw+normalized, exact, threshold, status
    rule: str = ""
    tests: dict[str, dict] = field(default_factory=dict)  # sampled: basis -> {ratio, ci, p, verdict, reason}


@dataclass
class CaseComparison:
    case: str
    workload: str
    status_base: str
    status_cand: str
    metrics: list[MetricComparison]

    @property
    def verdict(self) -> str:
        verdicts = {m.verdict for m in self.metrics}
        return next(v for v in VERDICTS if v in verdicts) if verdicts else "unchanged"


@dataclass
class Comparison:
    base: dict
    cand: dict
    config: GateConfig
    cases: list[CaseComparison]
    only_base: list[str]
    only_cand: list[str]
    notes: list[str]

    def rows(self, verdicts: tuple[str, ...] = VERDICTS) -> list[tuple[CaseComparison, MetricComparison]]:
        return [(c, m) for c in self.cases for m in c.metrics if m.verdict in verdicts]

    def counts(self) -> dict[str, int]:
        counted = Counter(m.verdict for _, m in self.rows())
        return {v: counted.get(v, 0) for v in VERDICTS}

    @property
    def regressed(self) -> bool:
        return any(m.verdict == "regressed" for _, m in self.rows())

    def to_json(self) -> dict:
        return {"base": self.base, "cand": self.cand, "config": self.config.to_json(), "counts": self.counts(),
                "notes": self.notes, "only_base": self.only_base, "only_cand": self.only_cand,
                "cases": [{"case": c.case, "workload": c.workload, "status_base": c.status_base,
                           "status_cand": c.status_cand, "verdict": c.verdict,
                           "metrics": [_clean(asdict(m)) for m in c.metrics]} for c in self.cases]}


def _clean(value):
    """JSON has no inf or NaN: they become null (a ratio against a zero base is shown as such by the renderer)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


TIMING_KINDS = ("sampled", "single_timing")
TIMING_UNITS = ("s", "ms", "us", "µs", "ns")  # a single value in these units is a one-shot timing
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def compare(base: Side, cand: Side, config: GateConfig) -> Comparison:
    """Every case present on both sides, in the base's order; cases on one side only are listed apart."""
    common = [case for case in base.records if case in cand.records]
    threads = thread_mismatch(base, cand)
    cases = [compare_case(base.records[c], cand.records[c], config, threads) for c in common]
    notes = _notes(base, cand) + ([threads] if threads else [])
    return Comparison(base.info(), cand.info(), config, cases,
                      only_base=[c for c in base.records if c not in cand.records],
                      only_cand=[c for c in cand.records if c not in base.records], notes=notes)


def thread_mismatch(base: Side, cand: Side) -> str | None:
    """Timings taken with different thread settings (the suite's `threads`, or OMP/MKL variables) do not compare."""
    def settings(side: Side) -> dict:
        env = (side.manifest.get("environment") or {}).get("env") or {}
        suite_threads = ((side.manifest.get("suite") or {}).get("settings") or {}).get("threads") or "default"
        return {"suite threads": suite_threads, **{name: env.get(name, "default") for name in THREAD_VARIABLES}}

    b, c = settings(base), settings(cand)
    if b == c:
        return None
    return f"timings not compared: thread settings differ (base {b}, candidate {c})"


def compare_case(b: dict, c: dict, config: GateConfig, timing_incomparable: str | None = None) -> CaseComparison:
    out = CaseComparison(b["case"], b["workload"], b["status"], c["status"], [])
    vb, vc = b.get("workload_version") or "", c.get("workload_version") or ""
    if vb and vc and vb != vc:
        out.metrics.append(MetricComparison("workload_version", "version", "incomparable",
                                            f"workload edited ({vb} -> {vc}): different code, not compared",
                                            base=vb, cand=vc, basis="version"))
        return out
    out.metrics.append(_status(b, c))
    if b["status"] != "ok" or c["status"] != "ok":
        return out  # a failed case's timing is not a result
    for name in sorted(set(b["metrics"]) | set(c["metrics"])):
        compared = compare_metric(name, b, c, config)
        if compared is not None and timing_incomparable and compared.kind in TIMING_KINDS:
            compared.verdict, compared.reason = "incomparable", timing_incomparable
        if compared is not None:
            out.metrics.append(compared)
    return out


def _status(b: dict, c: dict) -> MetricComparison:
    sb, sc = b["status"], c["status"]
    row = MetricComparison("status", "status", "unchanged", f"{sb} on both sides", base=sb, cand=sc, basis="status")
    if sb == sc:
        return row
    if "skipped" in (sb, sc):
        row.verdict, row.reason = "incomparable", f"{sb} -> {sc}: a skipped case was not measured"
    elif sb == "ok":
        row.verdict, row.reason = "regressed", f"ok -> {sc}: {c.get('error') or 'no reason recorded'}"
    elif sc == "ok":
        row.verdict, row.reason = "improved", f"{sb} -> ok"
    else:
        row.reason = f"{sb} -> {sc}: not ok on either side"
    return row


def compare_metric(name: str, b: dict, c: dict, config: GateConfig) -> MetricComparison | None:
    mb, mc = b["metrics"].get(name), c["metrics"].get(name)
    if mb is None or mc is None:
        side, missing = ("candidate", c) if mc is None else ("base", b)
        why = missing.get("unmeasured", {}).get(name, "absent")
        present = mb or mc
        if present.get("source") == "modeled":
            return None
        return MetricComparison(name, "missing", "incomparable", f"not measured in the {side}: {why}",
                                unit=present.get("unit", ""))
    if "modeled" in (mb["source"], mc["source"]):
        return None
    try:
        spec = metric_specs.get(name)
    except KeyError:
        return MetricComparison(name, "undeclared", "incomparable", "metric not declared here (load its plugin)",
                                unit=mb["unit"], base=mb["value"], cand=mc["value"])
    if mb["source"] != mc["source"] or mb["unit"] != mc["unit"]:
        return MetricComparison(name, "missing", "incomparable", f"measured differently: {mb['source']} "
                                f"[{mb['unit']}] vs {mc['source']} [{mc['unit']}]", unit=mb["unit"],
                                base=mb["value"], cand=mc["value"])
    samples_b, samples_c = mb.get("samples") or [], mc.get("samples") or []
    if spec.deterministic:
        kind = "deterministic"
    elif len(samples_b) >= config.min_samples and len(samples_c) >= config.min_samples:
        kind = "sampled"
    else:
        kind = "single_timing" if spec.unit in TIMING_UNITS else "single"
    rule = noise_rule(config.rule(b["workload"], name, kind), mb, kind, config)
    row = MetricComparison(name, kind, "unchanged", "", unit=spec.unit, base=mb["value"], cand=mc["value"],
                           rule=rule.describe(kind))
    if kind == "deterministic":
        _deterministic(row, spec.direction, rule)
    elif kind == "sampled":
        _sampled(row, b, c, samples_b, samples_c, spec.direction, rule, config)
    else:
        row.ratio = _ratio(row.base, row.cand)
        row.basis = "threshold"
        row.verdict, row.reason = effect_verdict(row.ratio, row.cand - row.base, spec.direction, rule)
        if row.verdict != "unchanged":
            row.reason += "; one value per side, no significance test"
    return row


def noise_rule(rule: Rule, base_metric: dict, kind: str, config: GateConfig) -> Rule:
    """Raise the minimum effect to what this case's own between-run noise allows, when the baseline measured it.

    Two runs of unchanged code differ in log(median) by about sqrt(2) x the between-run sd s; a change counts
    only beyond noise_z of those: min_effect >= exp(noise_z * sqrt(2) * s) - 1. On a quiet machine that stays
    under the configured floor; on a shared one it says honestly how large a change this case can show.
    """
    spread = base_metric.get("between_runs") or {}
    if kind == "deterministic" or spread.get("runs", 0) < config.noise_min_runs or config.noise_z <= 0:
        return rule
    needed = math.expm1(config.noise_z * math.sqrt(2.0) * spread["log_sd"])
    return replace(rule, min_effect=needed, from_noise=True) if needed > rule.min_effect else rule


def _ratio(base: float, cand: float) -> float:
    if base == 0:
        return 1.0 if cand == 0 else math.inf
    return cand / base


def _deterministic(row: MetricComparison, direction: str, rule: Rule) -> None:
    row.basis, row.ratio = "exact", _ratio(row.base, row.cand)
    delta = row.cand - row.base
    allowed = max(rule.abs_tol, rule.rel_tol * abs(row.base))
    if abs(delta) <= allowed:
        row.reason = "equal" if delta == 0 else f"within tolerance ({abs(delta):.3g} <= {allowed:.3g})"
        return
    worse = delta > 0 if direction == "lower" else delta < 0
    row.verdict = "regressed" if worse else "improved"
    row.reason = f"{row.base:.6g} -> {row.cand:.6g} (deterministic: {row.rule})"


def effect_verdict(ratio: float, delta: float, direction: str, rule: Rule, p: float | None = None,
                   alpha: float | None = None) -> tuple[str, str]:
    """The minimum-effect test, then the significance test when there is a p-value."""
    up, down = ratio > 1.0 + rule.min_effect, ratio < 1.0 / (1.0 + rule.min_effect)
    if not (up or down):
        return "unchanged", f"×{ratio:.3f} within ×{1 + rule.min_effect:.3g}"
    if abs(delta) <= rule.abs_floor:
        return "unchanged", f"×{ratio:.3f} but |Δ| {abs(delta):.3g} <= floor {rule.abs_floor:.3g}"
    if p is not None and alpha is not None and p >= alpha:
        return "unchanged", f"×{ratio:.3f} not significant (p={p:.2g} >= {alpha:g})"
    worse = up if direction == "lower" else down
    significance = f", p={p:.2g}" if p is not None else ""
    return ("regressed" if worse else "improved"), f"×{ratio:.3f}{significance}"


def sample_test(base: list[float], cand: list[float], direction: str, rule: Rule, config: GateConfig,
                seed: int) -> dict:
    ratio = ratio_of_medians(base, cand)
    low, high = bootstrap_ratio_ci(base, cand, 0.95, config.resamples, seed)
    p = mann_whitney_p(base, cand)
    delta = float(np.median(cand) - np.median(base))
    verdict, reason = effect_verdict(ratio, delta, direction, rule, p, config.alpha)
    return {"ratio": ratio, "ci": (low, high), "p": p, "verdict": verdict, "reason": reason}


def _sampled(row: MetricComparison, b: dict, c: dict, samples_b: list, samples_c: list, direction: str,
             rule: Rule, config: GateConfig) -> None:
    seed = stable_seed(b["case"], row.metric, str(config.seed))
    tests = {"raw": sample_test(samples_b, samples_c, direction, rule, config, seed)}
    field_name = NORMALIZABLE.get(row.metric)
    pred_b, pred_c = (b["model"].get(field_name), c["model"].get(field_name)) if field_name else (None, None)
    if pred_b and pred_c:
        # time in units of what this run's own calibration predicts for the case; the floor scales alike
        scaled = Rule(rule.min_effect, rule.abs_floor / pred_b, rule.rel_tol, rule.abs_tol)
        tests["normalized"] = sample_test([s / pred_b for s in samples_b], [s / pred_c for s in samples_c],
                                          direction, scaled, config, seed)
        tests["normalized"]["calibration_ratio"] = pred_b / pred_c
    row.tests = tests
    row.base, row.cand = float(np.median(samples_b)), float(np.median(samples_c))
    basis = config.timing_basis if "normalized" in tests else "raw"
    shown = tests["normalized" if basis == "normalized" else "raw"]
    row.ratio, row.ci, row.p = shown["ratio"], shown["ci"], shown["p"]
    if basis == "raw" and config.timing_basis != "raw":
        row.basis = "raw (no calibrated prediction on both sides)"
        row.verdict, row.reason = tests["raw"]["verdict"], tests["raw"]["reason"]
    elif basis in ("raw", "normalized"):
        row.basis, row.verdict, row.reason = basis, shown["verdict"], shown["reason"]
    else:
        raw, norm = tests["raw"], tests["normalized"]
        row.basis = "raw+normalized"
        if raw["verdict"] == norm["verdict"]:
            row.verdict = raw["verdict"]
            row.reason = f"raw {raw['reason']}; normalized {norm['reason']}"
        else:
            row.verdict = "unchanged"
            row.reason = (f"raw {raw['verdict']} ({raw['reason']}) but normalized {norm['verdict']} "
                          f"({norm['reason']}): not counted without both")


def _notes(base: Side, cand: Side) -> list[str]:
    """What a reader must know before trusting raw timings: different machines, different calibrations."""
    notes = []
    bi, ci = base.info(), cand.info()
    if bi["cpu"] and ci["cpu"] and bi["cpu"] != ci["cpu"]:
        notes.append(f"different CPUs: base {bi['cpu']}, candidate {ci['cpu']}; raw timings compare machines")
    cal_b, cal_c = base.manifest.get("calibration") or {}, cand.manifest.get("calibration") or {}
    for device in sorted(set(cal_b) & set(cal_c)):
        pb, pc = cal_b[device], cal_c[device]
        parts = []
        if pb.get("copy_bytes_per_s") and pc.get("copy_bytes_per_s"):
            parts.append(f"copy bandwidth ×{pc['copy_bytes_per_s'] / pb['copy_bytes_per_s']:.2f}")
        fb, fc = (pb.get("matmul_flops_per_s") or {}).get("float32"), (pc.get("matmul_flops_per_s") or {}).get(
            "float32")
        if fb and fc:
            parts.append(f"float32 matmul ×{fc / fb:.2f}")
        if parts:
            notes.append(f"{device} calibration, candidate vs base: {', '.join(parts)}")
    missing = sorted(set(cal_b) ^ set(cal_c))
    if missing:
        notes.append(f"calibration on one side only for {', '.join(missing)}: those timings compare raw")
    return notes
