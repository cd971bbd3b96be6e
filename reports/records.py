"""Reading the records DataFrame: ids, parameter columns, NaN-safe grouping and ordering, validity.

Shared by the leaderboards, the charts and the hardware-model section, so each groups and sorts cases
the same way and ids never change between builds.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from reports.format import MISSING, is_missing


def slug(text: str) -> str:
    """Filesystem- and id-safe form of a name; deterministic so ids never change between builds."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def param_columns(df: pd.DataFrame, info: Mapping[str, Any]) -> list[str]:
    """`param.*` columns that vary within this workload: declared order first, then any others."""
    declared = [f"param.{p}" for p in info.get("params", []) if f"param.{p}" in df.columns]
    others = sorted(c for c in df.columns if c.startswith("param.") and c not in declared)
    return declared + [c for c in others if df[c].notna().any()]


def value_sort_key(value: Any) -> tuple:
    """Order mixed parameter values: numbers numerically, then strings, then missing."""
    if is_missing(value):
        return (2, "")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def display_value(value: Any) -> str:
    """Param values as in the case id: 4, not 4.0 (a column turns float when other workloads lack it)."""
    if is_missing(value):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def group_records(records: Iterable[dict], keys: list[str]) -> list[tuple[tuple, list[dict]]]:
    """Group rows by the given columns, groups sorted by their values (NaN-safe, type-safe)."""
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        key = tuple(_hashable(rec.get(k)) for k in keys)
        groups.setdefault(key, []).append(rec)
    return sorted(groups.items(), key=lambda kv: [value_sort_key(v) for v in kv[0]])


def by_workload_and_impl(points: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[tuple[tuple[str, str], list]]]:
    """(sorted workload names, [((workload, impl), points)] sorted): one chart trace per pair."""
    groups: dict[tuple[str, str], list] = {}
    for p in points:
        groups.setdefault((str(p.get("workload")), str(p.get("impl"))), []).append(p)
    return sorted({workload for workload, _ in groups}), sorted(groups.items())


def _hashable(value: Any) -> Any:
    """Group key for a cell: None when missing, repr for unhashable values such as lists."""
    if is_missing(value):
        return None
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def is_valid(rec: Mapping[str, Any]) -> bool:
    """A missing `valid` flag counts as valid; only an explicit False marks a case invalid."""
    value = rec.get("valid", True)
    return True if is_missing(value) else bool(value)


def as_list(value: Any) -> list[str]:
    """Validity reasons arrive as a list, a numpy array (from parquet), a string, or nothing."""
    if value is None or (not hasattr(value, "__len__") and is_missing(value)):
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def rows_of(df: pd.DataFrame) -> list[dict[str, Any]]:
    """`df.to_dict("records")`, several times faster: one `tolist()` per column instead of boxing each cell.

    Columns that hold no value at all are left out (absent and NaN read the same through `rec.get`), so a
    workload's rows do not carry every other workload's metric columns."""
    columns = [c for c in df.columns if df[c].notna().any()]
    values = [df[c].tolist() for c in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)] if columns else [{}] * len(df)
