"""Seed-paper claims held against measured records: the claim, what was measured, and a verdict.

A claim lives beside the workloads that measure it (workloads/claims.py) and is registered like a workload.
Its `measure` reads the records of one or more runs (the DataFrame `harness.store.load` returns) and gives
a Measurement, or None when those runs hold nothing that measures it. Verdicts never bend a measurement:
`reproduced` when the measured value meets the claim's bound, `not reproduced` when it does not, `not
measurable here` when nothing measured it (a claim that needs hardware or weights we lack says why).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

VERDICTS = ("reproduced", "not reproduced", "not measurable here")
COMPARISONS = (">=", "<=", "within")


@dataclass(frozen=True)
class Measurement:
    value: float
    detail: str  # what was compared with what, in words, with the key figures
    spread: float | None = None  # e.g. the relative IQR of the underlying latencies, when it matters
    device: str = ""
    cases: tuple[str, ...] = ()  # the case ids measured (the report links each to its leaderboard row)


@dataclass(frozen=True)
class Claim:
    """One headline number. `expected` is held to the measurement by `comparison`:
    ">=" measured must reach it, "<=" must not exceed it, "within" must lie within `tolerance` (relative)."""

    id: str
    paper: str
    statement: str
    expected: float
    unit: str
    comparison: str
    how: str
    measure: Callable[[pd.DataFrame], Measurement | None] = field(compare=False)
    tolerance: float = 0.0
    unmeasurable_reason: str = ""  # what this machine lacks, for claims that cannot be measured at all

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"claim {self.id}: comparison must be one of {COMPARISONS}, got {self.comparison!r}")

    def verdict(self, measured: Measurement | None) -> str:
        if measured is None or not math.isfinite(measured.value):
            return "not measurable here"
        if self.comparison == ">=":
            return "reproduced" if measured.value >= self.expected else "not reproduced"
        if self.comparison == "<=":
            return "reproduced" if measured.value <= self.expected else "not reproduced"
        close = abs(measured.value - self.expected) <= self.tolerance * abs(self.expected)
        return "reproduced" if close else "not reproduced"

    def evaluate(self, records: pd.DataFrame) -> dict:
        """The claim with its measured value and verdict, as one JSON-able row."""
        measured = self.measure(records)
        row = {"id": self.id, "paper": self.paper, "statement": self.statement, "expected": self.expected,
               "comparison": self.comparison, "tolerance": self.tolerance, "unit": self.unit, "how": self.how,
               "verdict": self.verdict(measured)}
        if measured is not None:
            row.update(measured=measured.value, detail=measured.detail, spread=measured.spread,
                       device=measured.device, cases=list(measured.cases))
        else:
            row["detail"] = self.unmeasurable_reason or "no record in these runs measures it"
        return row


def ok_rows(records: pd.DataFrame, workload: str, **params: object) -> pd.DataFrame:
    """Valid, finished records of one workload whose params equal `params` (a helper for claim measures)."""
    if "workload" not in records:
        return records.iloc[0:0]
    rows = records[(records["workload"] == workload) & (records["status"] == "ok")]
    if "valid" in rows:
        rows = rows[rows["valid"].fillna(True).astype(bool)]
    for name, value in params.items():
        column = f"param.{name}"
        if column not in rows:
            return rows.iloc[0:0]
        rows = rows[rows[column] == value]
    return rows
