"""The runs/environment page: every run's manifest side by side (versions, device, clocks, calibration).

Numbers from two runs only compare when their machines and software do; one column per run puts the
differences next to each other. Rows that hold the same value in every run are marked, so the eye goes
to the ones that differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reports.environment import RunSummary
from reports.format import MISSING, format_quantity


@dataclass(frozen=True)
class MatrixRow:
    label: str
    values: list[str]
    same: bool  # every run has this value


def calibration_text(profile: Mapping[str, Any]) -> str:
    """'full · copy 2.99 TB/s · bfloat16 784 TFLOP/s · launch 8.79 µs · 2026-11-22T05:57:26+00:00'."""
    parts = [str(profile.get("mode") or "?")]
    if profile.get("copy_bytes_per_s"):
        parts.append(f"copy {format_quantity(profile['copy_bytes_per_s'], 'B/s')}")
    flops = profile.get("matmul_flops_per_s") or {}
    parts += [f"{dtype} {format_quantity(v, 'FLOP/s')}" for dtype, v in sorted(flops.items()) if v]
    if profile.get("launch_overhead_s"):
        parts.append(f"launch {format_quantity(profile['launch_overhead_s'], 's')}")
    if profile.get("measured_at"):
        parts.append(str(profile["measured_at"]))
    if profile.get("reused_from"):
        parts.append(f"reused from {profile['reused_from']}")
    return " · ".join(parts)


def _run_values(summary: RunSummary, manifest: Mapping[str, Any]) -> dict[str, str]:
    values = {"suite": summary.suite, "started": summary.started, "finished": summary.finished,
              "machine": summary.device, "git": summary.git,
              "cases": ", ".join(f"{n} {s}" for s, n in summary.counts) or MISSING}
    values.update(dict(summary.environment))
    for device, profile in sorted((manifest.get("calibration") or {}).items()):
        if isinstance(profile, Mapping):
            values[f"calibration {device}"] = calibration_text(profile)
    values.update({f"package {name}": version for name, version in summary.packages})
    return values


def environment_matrix(summaries: list[RunSummary],
                       manifests: Mapping[str, Mapping[str, Any]]) -> list[MatrixRow]:
    """Rows in first-seen order (fixed keys first, packages last); a run lacking a row shows a dash."""
    per_run = [_run_values(s, manifests.get(s.run) or {}) for s in summaries]
    labels: list[str] = []
    for values in per_run:
        labels += [k for k in values if k not in labels and not k.startswith(("package ", "calibration "))]
    labels += sorted({k for values in per_run for k in values if k.startswith("calibration ")})
    labels += sorted({k for values in per_run for k in values if k.startswith("package ")})
    rows = []
    for label in labels:
        cells = [values.get(label, MISSING) for values in per_run]
        rows.append(MatrixRow(label, cells, len(per_run) > 1 and len(set(cells)) == 1))
    return rows
