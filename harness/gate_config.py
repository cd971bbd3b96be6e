"""Gate thresholds (ci/gate.yaml): significance level, minimum effect per kind of metric, per metric, per workload.

A change counts only when it is both significant (p < alpha) and large (the ratio of medians passes the
minimum effect): a fixed threshold alone drifts, a p-value alone flags every benchmark on a noisy machine.
Rules merge from general to specific: defaults[kind] < metrics[name] < workloads[workload][name].
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError

KINDS = ("sampled", "single", "single_timing", "deterministic")
TIMING_BASES = ("raw", "normalized", "both")
CONFIG_NAME = Path("ci") / "gate.yaml"
OWN_CONFIG = Path(__file__).resolve().parent.parent / CONFIG_NAME


class GateConfigError(UserError):
    """A mistake in the gate's threshold file."""


@dataclass(frozen=True)
class Rule:
    """How much change counts for one metric.

    min_effect: the ratio of medians must exceed 1 + min_effect (or fall below 1 / (1 + min_effect)).
    abs_floor: and the absolute difference must exceed this (in the metric's unit): tiny numbers jitter.
    rel_tol / abs_tol: deterministic metrics are equal when |cand - base| <= max(abs_tol, rel_tol * |base|).
    """

    min_effect: float = 0.10
    abs_floor: float = 0.0
    rel_tol: float = 0.0
    abs_tol: float = 0.0
    from_noise: bool = False  # min_effect raised to the case's between-run noise (harness.compare.noise_rule)

    def describe(self, kind: str) -> str:
        if kind == "deterministic":
            if self.rel_tol == 0 and self.abs_tol == 0:
                return "exact"
            return f"tol max({self.abs_tol:g}, {self.rel_tol:g}·|base|)"
        floor = f", |Δ|>{self.abs_floor:g}" if self.abs_floor else ""
        noise = " (this case's between-run noise)" if self.from_noise else ""
        return f"×{1 + self.min_effect:.3g}{floor}{noise}"


DEFAULT_RULES = {"sampled": Rule(min_effect=0.10), "single": Rule(min_effect=0.25),
                 "single_timing": Rule(min_effect=0.50), "deterministic": Rule()}


@dataclass(frozen=True)
class GateConfig:
    alpha: float = 0.01
    timing_basis: str = "both"
    # --against: both sides run in the same minutes, so raw times are already paired; each side's own
    # calibration (measured minutes apart, ×0.55-1.8 apart on this VM) would only add noise to them
    interleaved_timing_basis: str = "raw"
    resamples: int = 2000
    seed: int = 0
    min_samples: int = 5
    confirm_runs: int = 0  # re-runs of a case whose timing regressed; the regression counts if every one agrees
    baseline_runs: int = 1  # --update-baseline runs the suite this often and keeps each metric's between-run spread
    noise_z: float = 3.0  # a change must exceed noise_z x the between-run sd of the difference of two runs
    noise_min_runs: int = 3  # fewer baseline runs: the spread is not used
    defaults: dict[str, dict] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)
    workloads: dict[str, dict[str, dict]] = field(default_factory=dict)
    path: str | None = None

    def rule(self, workload: str, metric: str, kind: str) -> Rule:
        merged = {f.name: getattr(DEFAULT_RULES[kind], f.name) for f in fields(Rule) if f.name != "from_noise"}
        merged.update(self.defaults.get(kind, {}))
        merged.update(self.metrics.get(metric, {}))
        merged.update(self.workloads.get(workload, {}).get(metric, {}))
        return Rule(**merged)

    def to_json(self) -> dict:
        return {"alpha": self.alpha, "timing_basis": self.timing_basis,
                "interleaved_timing_basis": self.interleaved_timing_basis, "resamples": self.resamples,
                "seed": self.seed, "min_samples": self.min_samples, "confirm_runs": self.confirm_runs,
                "baseline_runs": self.baseline_runs, "noise_z": self.noise_z, "noise_min_runs": self.noise_min_runs,
                "defaults": self.defaults,
                "metrics": self.metrics, "workloads": self.workloads, "path": self.path}


def find_config(explicit: str | Path | None) -> Path | None:
    """--config, else ./ci/gate.yaml, else membench's own ci/gate.yaml; None means the built-in defaults."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise GateConfigError(f"gate config {path} does not exist")
        return path
    for candidate in (Path.cwd() / CONFIG_NAME, OWN_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: str | Path | None = None) -> GateConfig:
    path = find_config(explicit)
    if path is None:
        return GateConfig()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GateConfigError(f"{path}: YAML syntax error: {exc}") from None
    return parse_config(data, str(path))


def parse_config(data: Any, where: str = "gate config") -> GateConfig:
    """Validate a gate config mapping; every error names the file, the key and what is allowed."""
    if not isinstance(data, dict):
        raise GateConfigError(f"{where}: a gate config is a mapping (alpha, timing_basis, defaults, metrics, ...)")
    allowed = {"alpha", "timing_basis", "interleaved_timing_basis", "bootstrap", "min_samples", "confirm_runs",
               "defaults", "metrics", "workloads", "baseline_runs", "noise_z", "noise_min_runs"}
    _keys(where, "top level", data, allowed)
    alpha = _number(where, "alpha", data.get("alpha", 0.01))
    if not 0.0 < alpha < 1.0:
        raise GateConfigError(f"{where}: alpha: must be in (0, 1), got {alpha}")
    basis = data.get("timing_basis", "both")
    interleaved = data.get("interleaved_timing_basis", "raw")
    for key, value in (("timing_basis", basis), ("interleaved_timing_basis", interleaved)):
        if value not in TIMING_BASES:
            raise GateConfigError(f"{where}: {key}: {value!r} is not allowed; allowed: {', '.join(TIMING_BASES)}")
    bootstrap = data.get("bootstrap") or {}
    if not isinstance(bootstrap, dict):
        raise GateConfigError(f"{where}: bootstrap: expected a mapping with resamples and seed")
    _keys(where, "bootstrap", bootstrap, {"resamples", "seed"})
    resamples, seed = bootstrap.get("resamples", 2000), bootstrap.get("seed", 0)
    min_samples, confirm_runs = data.get("min_samples", 5), data.get("confirm_runs", 0)
    baseline_runs = data.get("baseline_runs", 1)
    noise_min_runs = data.get("noise_min_runs", 3)
    noise_z = _number(where, "noise_z", data.get("noise_z", 3.0))
    if noise_z < 0:
        raise GateConfigError(f"{where}: noise_z: must be >= 0 (0 turns the noise threshold off), got {noise_z}")
    for key, value, low in (("bootstrap.resamples", resamples, 100), ("bootstrap.seed", seed, 0),
                            ("min_samples", min_samples, 2), ("confirm_runs", confirm_runs, 0),
                            ("baseline_runs", baseline_runs, 1),
                            ("noise_min_runs", noise_min_runs, 2)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise GateConfigError(f"{where}: {key}: expected an integer >= {low}, got {value!r}")
    defaults = _mapping(where, "defaults", data.get("defaults"))
    _keys(where, "defaults", defaults, set(KINDS))
    metrics = _mapping(where, "metrics", data.get("metrics"))
    workloads = _mapping(where, "workloads", data.get("workloads"))
    return GateConfig(
        alpha=alpha, timing_basis=basis, interleaved_timing_basis=interleaved, resamples=resamples, seed=seed,
        min_samples=min_samples,
        confirm_runs=confirm_runs, baseline_runs=baseline_runs, noise_z=noise_z,
        noise_min_runs=noise_min_runs,
        defaults={kind: _rule(where, f"defaults.{kind}", value) for kind, value in defaults.items()},
        metrics={name: _rule(where, f"metrics.{name}", value) for name, value in metrics.items()},
        workloads={w: {m: _rule(where, f"workloads.{w}.{m}", r)
                       for m, r in _mapping(where, f"workloads.{w}", rules).items()}
                   for w, rules in workloads.items()},
        path=where)


def _rule(where: str, key: str, value: Any) -> dict:
    value = _mapping(where, key, value)
    names = {f.name for f in fields(Rule)} - {"from_noise"}
    _keys(where, key, value, names)
    out = {}
    for name, number in value.items():
        number = _number(where, f"{key}.{name}", number)
        if number < 0:
            raise GateConfigError(f"{where}: {key}.{name}: must be >= 0, got {number}")
        out[name] = number
    return out


def _mapping(where: str, key: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GateConfigError(f"{where}: {key}: expected a mapping, got {value!r}")
    return value


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GateConfigError(f"{where}: {key}: expected a number, got {value!r}")
    return float(value)


def _keys(where: str, section: str, mapping: dict, allowed: set[str]) -> None:
    for key in mapping:
        if key not in allowed:
            raise GateConfigError(f"{where}: {section}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
