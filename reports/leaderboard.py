"""Rank implementations into plain leaderboard rows, one table per parameter configuration.

Ranking lives here, away from HTML, so that other outputs (markdown, claims pages) can reuse it.
Only ok and valid cases with a primary value are ranked; everything else is listed after them with
the reason, because a failed or invalid case must never look like a winner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from reports.cells import MODELED_MARK, Cell, is_modeled, metric_cell, model_cell
from reports.format import MISSING, as_float, as_text, data_value, format_quantity, format_ratio, short_label
from reports.hardware_cells import PREDICTED, RESIDUAL, ROOFLINE, energy_hint, hardware_cell, has_hardware_model
from reports.records import as_list, display_value, group_records, is_valid, param_columns, rows_of, slug

OVERHEAD, PEAK = "peak_memory_overhead_bytes", "peak_memory_bytes"
EXTRA_METRICS = (OVERHEAD, PEAK, "energy_j")
FOOTPRINT = "model.footprint_bytes"
STATUS_ORDER = ("ok", "failed", "timeout", "oom", "skipped")


@dataclass(frozen=True)
class Column:
    """A leaderboard column; `key` is a metric name or one of rank/impl/status/ratio."""

    key: str
    label: str
    title: str = ""
    numeric: bool = True
    role: str = "metric"  # rank | impl | primary | metric | model | hw | status | ratio; used for styling
    sublabel: str = ""


@dataclass
class Row:
    """One implementation in one table, with cells keyed by column key."""

    impl: str
    case: str
    status: str
    rank: int | None
    error: str | None
    valid: bool
    reasons: list[str]
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Table:
    """One leaderboard: all implementations of a workload at one parameter configuration."""

    id: str
    params: list[tuple[str, str]]
    device: str
    columns: list[Column]
    rows: list[Row]
    warnings: list[str] = field(default_factory=list)

    @property
    def heading(self) -> str:
        """'seq=4096 · heads=4 @ cpu': the configuration this table compares implementations at."""
        params = " · ".join(f"{k}={v}" for k, v in self.params) or "default parameters"
        return f"{params} @ {self.device}" if self.device else params


@dataclass
class Leaderboards:
    """All tables of one workload in one run, sharing one numbered list of provenance footnotes."""

    id: str
    tables: list[Table]
    footnotes: list[str]


def is_rankable(rec: Mapping[str, Any], primary: str) -> bool:
    """Only ok, valid cases with a measured primary value may be ranked."""
    return rec.get("status") == "ok" and is_valid(rec) and as_float(rec.get(primary)) is not None


def rank_records(records: list[dict], primary: str, direction: str) -> list[tuple[int | None, dict]]:
    """Competition ranking (1, 1, 3) of rankable rows by the primary metric, then the rest unranked."""
    sign = -1.0 if direction == "higher" else 1.0
    ranked = sorted(
        (r for r in records if is_rankable(r, primary)),
        key=lambda r: (sign * float(r[primary]), str(r.get("impl")), str(r.get("case"))),
    )
    out: list[tuple[int | None, dict]] = []
    for i, rec in enumerate(ranked):
        tied = i > 0 and float(rec[primary]) == float(ranked[i - 1][primary])
        out.append((out[-1][0] if tied else i + 1, rec))
    rest = [r for r in records if not is_rankable(r, primary)]

    def rest_key(r: dict) -> tuple:
        status = str(r.get("status"))
        order = STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)
        return (order, str(r.get("impl")), str(r.get("case")))

    out.extend((None, r) for r in sorted(rest, key=rest_key))
    return out


def shown_metrics(df: pd.DataFrame, primary: str) -> list[str]:
    """Secondary metric columns: present, and either measured or explained for some row (workloads' own too)."""
    measured = {c[: -len("__unit")] for c in df.columns if c.endswith("__unit")}
    quality = sorted(c for c in measured if c.startswith("quality.") and c in df.columns)
    counted = sorted(c for c in measured - {*EXTRA_METRICS, *quality, "latency_s"} if c in df.columns)
    candidates = [*EXTRA_METRICS, *quality, *counted]
    shown = []
    for m in candidates:
        if m == primary or m not in df.columns:
            continue
        reasons = df.get(f"{m}__missing")
        if df[m].notna().any() or (reasons is not None and reasons.notna().any()):
            shown.append(m)
    if OVERHEAD in shown and PEAK in shown:
        shown.remove(PEAK)  # the total peak moves into the overhead cell's hover: the table is wide enough
    return shown


def hardware_columns() -> list[Column]:
    """Compact columns joining each case to the device's roofline model (see reports.hardware_cells)."""
    return [
        Column(ROOFLINE, "% of roofline", "calibrated roofline floor ÷ measured latency: the share of what this "
               "machine can do that the case achieves", role="hw", sublabel="model"),
        Column(PREDICTED, "predicted", "latency the calibrated roofline predicts from the implementation's "
               "expected traffic and launches", role="hw", sublabel="model"),
        Column(RESIDUAL, "residual", "measured ÷ predicted − 1: + ran slower than the model, − faster",
               role="hw", sublabel="vs model"),
    ]


def build_columns(primary: str, metrics: list[str], specs: Mapping[str, Mapping[str, Any]],
                  with_footprint: bool, with_hardware: bool = False) -> list[Column]:
    """Column list in display order, with header tooltips explaining each one."""
    def label(m: str) -> str:
        return str(specs.get(m, {}).get("label") or m)

    direction = specs.get(primary, {}).get("direction", "lower")
    cols = [
        Column("rank", "#", f"rank by {label(primary)}, {direction} is better", role="rank"),
        Column("impl", "impl", "implementation; hover for the case id", numeric=False, role="impl"),
        Column(primary, short_label(label(primary), primary),
               f"{label(primary)}: median of samples ± IQR; {direction} is better",
               role="primary", sublabel="± IQR" if "median" in label(primary).lower() else "median ± IQR"),
    ]
    if with_hardware:
        cols += hardware_columns()
    cols += [Column(m, short_label(label(m), m), f"{label(m)} ({m})") for m in metrics]
    if with_footprint:
        cols.append(Column(FOOTPRINT, "Footprint", "minimum memory footprint from the cost model",
                           role="model", sublabel="analytic"))
    cols.append(Column("status", "status", "case status and validity", numeric=False, role="status"))
    cols.append(Column("ratio", "× best", f"{label(primary)} ÷ best ranked {label(primary)}", role="ratio"))
    return cols


class _Footnotes:
    """Numbers distinct provenance texts across a workload's tables so identical notes share one marker."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, cell: Cell, text: str | None) -> Cell:
        if text is None:
            return cell
        if text not in self.texts:
            self.texts.append(text)
        return replace(cell, footnote=str(self.texts.index(text) + 1))


def build_row(rank: int | None, rec: dict, columns: list[Column], specs: Mapping[str, Mapping[str, Any]],
              best: float | None, notes: _Footnotes) -> Row:
    """Turn one record into a Row whose cells are formatted and annotated with provenance."""
    status = as_text(rec.get("status")) or "unknown"
    row = Row(impl=str(rec.get("impl")), case=str(rec.get("case")), status=status, rank=rank,
              error=as_text(rec.get("error")), valid=is_valid(rec),
              reasons=as_list(rec.get("validity_reasons")))
    primary = next(c.key for c in columns if c.role == "primary")
    unranked_why = _unranked_reason(row, primary)
    for col in columns:
        if col.key == "rank":
            cell = Cell(str(rank), str(rank)) if rank is not None else Cell(MISSING, title=unranked_why)
        elif col.key == "impl":
            cell = Cell(row.impl, row.impl, title=row.case)
        elif col.key == "status":
            cell = Cell(status, str(STATUS_ORDER.index(status) if status in STATUS_ORDER else 9))
        elif col.key == "ratio":
            cell = _ratio_cell(as_float(rec.get(primary)), best, status)
        elif col.key == FOOTPRINT:
            cell = notes.mark(*model_cell(FOOTPRINT, rec, "B", "footprint"))
        elif col.role == "hw":
            cell = notes.mark(*hardware_cell(col.key, rec))
        else:
            cell = notes.mark(*metric_cell(col.key, rec, specs, with_spread=col.key == primary))
            cell = _with_hover_extra(col.key, cell, rec)
        row.cells[col.key] = cell
    return row


def _with_hover_extra(key: str, cell: Cell, rec: Mapping[str, Any]) -> Cell:
    """Hover additions: the total peak (its column is folded into the overhead), the modeled energy, and for a
    multi-rank case each rank's time and memory beside its slowest-rank latency."""
    if cell.missing:
        return cell
    if rec.get("ranks_summary") and key in ("latency_s", OVERHEAD, PEAK):
        cell = replace(cell, title=f"{cell.title} · per rank: {rec['ranks_summary']}")
    if key == OVERHEAD and as_float(rec.get(PEAK)) is not None:
        return replace(cell, title=f"{cell.title} · total peak incl. inputs {format_quantity(rec.get(PEAK), 'B')}")
    if key == "energy_j" and not is_modeled(key, rec):
        return replace(cell, title=cell.title + energy_hint(rec))
    return cell


def provenance_warnings(recs: list[dict], columns: list[Column]) -> list[str]:
    """Say so wherever modeled values (hardware model, no counter) sit beside measured ones in a column."""
    out = []
    for col in columns:
        if col.role not in ("primary", "metric"):
            continue
        have = [r for r in recs if r.get("status") == "ok" and as_float(r.get(col.key)) is not None]
        modeled = sum(is_modeled(col.key, r) for r in have)
        if not modeled or (modeled == len(have) and col.role != "primary"):
            continue
        if modeled == len(have):
            out.append(f"Ranked by modeled {col.label} ({MODELED_MARK}): no value in this table was measured.")
        elif col.role == "primary":
            out.append(f"Ranked by {col.label} although {modeled} of {len(have)} values are modeled "
                       f"({MODELED_MARK}), not measured: those ranks compare an estimate with measurements.")
        else:
            out.append(f"{col.label}: {modeled} of {len(have)} values are modeled ({MODELED_MARK}, hardware "
                       "model), the rest measured; do not rank them against each other.")
    return out


def _unranked_reason(row: Row, primary: str) -> str:
    if row.status != "ok":
        return f"not ranked: case {row.status}"
    if not row.valid:
        return "not ranked: invalid result"
    return f"not ranked: no {primary} value"


def _ratio_cell(value: float | None, best: float | None, status: str) -> Cell:
    if value is None or best is None or best == 0 or status != "ok":
        return Cell(MISSING, title="no ratio: no value or no ranked best")
    ratio = value / best
    return Cell(format_ratio(ratio), data_value(ratio), title=f"{value:.6g} ÷ best {best:.6g}")


def build_tables(df: pd.DataFrame, workload: str, info: Mapping[str, Any],
                 specs: Mapping[str, Mapping[str, Any]], id_prefix: str) -> Leaderboards:
    """One Table per (params..., device) of a single workload's records, ranked by its primary metric."""
    primary = str(info.get("primary_metric", "latency_s"))
    direction = str(specs.get(primary, {}).get("direction", "lower"))
    pcols = param_columns(df, info)
    with_footprint = FOOTPRINT in df.columns and bool(df[FOOTPRINT].notna().any())
    columns = build_columns(primary, shown_metrics(df, primary), specs, with_footprint, has_hardware_model(df))
    board_id = slug(f"{id_prefix}-{workload}-board")
    notes = _Footnotes()
    tables = []
    for key, recs in group_records(rows_of(df), [*pcols, "device"]):
        ranked = rank_records(recs, primary, direction)
        best = as_float(ranked[0][1].get(primary)) if ranked and ranked[0][0] is not None else None
        rows = [build_row(rank, rec, columns, specs, best, notes) for rank, rec in ranked]
        params = [(c.removeprefix("param."), display_value(v)) for c, v in zip(pcols, key[:-1], strict=True)]
        device = display_value(key[-1]) if key[-1] is not None else ""
        tables.append(Table(f"{board_id}-{len(tables) + 1}", params, device, columns, rows,
                            provenance_warnings(recs, columns)))
    return Leaderboards(board_id, tables, notes.texts)
