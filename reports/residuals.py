"""How well the hardware model predicts each workload and implementation: the residual table.

A residual is measured ÷ predicted − 1 for one case. Per workload (all implementations together, then
each implementation) the table gives how many ok cases have a prediction, the median |residual|, the
worst residual with its sign, and the median % of roofline; rows are plain data for the template.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from statistics import median

import pandas as pd

from reports.cells import Cell
from reports.format import MISSING, as_float, as_text, data_value, format_percent, format_signed_percent
from reports.hardware_cells import RESIDUAL, ROOFLINE
from reports.records import rows_of

ALL_IMPLS = "all implementations"
NO_MODEL = "No hardware model for this run (run with calibration)."
CAPTION = (
    "Residual = measured latency ÷ the calibrated roofline's predicted latency − 1 for one ok case: +50% ran "
    "half again slower than predicted, −20% faster; a small median |residual| means the cost model explains "
    "the implementation."
)


@dataclass(frozen=True)
class ResidualRow:
    """One line of the residual table; `overall` marks the all-implementations line of a workload."""

    workload: str
    impl: str
    overall: bool
    n: int
    median_abs: Cell
    worst: Cell
    median_fraction: Cell


@dataclass(frozen=True)
class ResidualTable:
    """The rows, or the message saying why there are none."""

    id: str
    rows: list[ResidualRow]
    message: str | None
    caption: str = CAPTION


def _cases(df: pd.DataFrame) -> list[dict]:
    """Ok cases with a residual, as plain dicts."""
    if RESIDUAL not in df.columns or "status" not in df.columns:
        return []
    ok = df[(df["status"] == "ok") & df[RESIDUAL].notna()]
    return rows_of(ok)


def summarize(workload: str, impl: str, recs: list[dict]) -> ResidualRow:
    """Counts, median |residual|, worst signed residual (hover: its case) and median % of roofline."""
    residuals = [(float(r[RESIDUAL]), str(r.get("case"))) for r in recs]
    # worst by |residual|, ties broken by case id so the choice never depends on row order
    worst, worst_case = max(residuals, key=lambda rc: (abs(rc[0]), rc[1]))
    med = median(abs(v) for v, _ in residuals)
    fractions = [f for f in (as_float(r.get(ROOFLINE)) for r in recs) if f is not None]
    med_fraction = median(fractions) if fractions else None
    fraction_cell = (Cell(format_percent(med_fraction), data_value(med_fraction),
                          f"median over {len(fractions)} case{'s' if len(fractions) != 1 else ''}")
                     if med_fraction is not None else Cell(MISSING, title="no % of roofline", missing=True))
    return ResidualRow(
        workload=workload, impl=impl, overall=impl == ALL_IMPLS, n=len(recs),
        median_abs=Cell(format_percent(med), data_value(med), f"median of |residual| over {len(recs)} cases"),
        worst=Cell(format_signed_percent(worst), data_value(worst), f"worst case: {worst_case}"),
        median_fraction=fraction_cell,
    )


def residual_table(df: pd.DataFrame, table_id: str, order: Iterable[str] = ()) -> ResidualTable:
    """Per workload: the all-implementations line first, then implementations by median |residual|."""
    cases = _cases(df)
    if not cases:
        return ResidualTable(table_id, [], NO_MODEL)
    by_workload: dict[str, list[dict]] = {}
    for rec in cases:
        by_workload.setdefault(as_text(rec.get("workload")) or "?", []).append(rec)
    ranked = [w for w in order if w in by_workload]
    workloads = ranked + sorted(w for w in by_workload if w not in ranked)
    rows: list[ResidualRow] = []
    for workload in workloads:
        recs = by_workload[workload]
        by_impl: dict[str, list[dict]] = {}
        for rec in recs:
            by_impl.setdefault(str(rec.get("impl")), []).append(rec)
        impl_rows = [summarize(workload, impl, impl_recs) for impl, impl_recs in by_impl.items()]
        impl_rows.sort(key=lambda r: (float(r.median_abs.value), r.impl))
        rows += [summarize(workload, ALL_IMPLS, recs), *impl_rows]
    return ResidualTable(table_id, rows, None)
