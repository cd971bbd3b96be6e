"""Cross-device leaderboards: one implementation per row, one machine per column, at one configuration.

Runs from several machines (a CPU box, an H100) measure the same cases; a reader wants to see at a glance
how each implementation moves between them. Machines are labelled from the run manifests (`cuda · NVIDIA
H100 80GB HBM3`), not by the bare device name, so two different CPUs are never merged into one column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports.cells import Cell, metric_cell
from reports.format import MISSING, as_float
from reports.records import display_value, group_records, is_valid, param_columns, rows_of, slug


@dataclass(frozen=True)
class CrossRow:
    impl: str
    cells: list[Cell]


@dataclass(frozen=True)
class CrossTable:
    """The primary metric of each implementation on each machine, at one parameter configuration."""

    id: str
    heading: str
    machines: list[str]
    rows: list[CrossRow]


def machine_label(manifest: Mapping[str, Any] | None, device: str) -> str:
    """'cuda · NVIDIA H100 80GB HBM3' or 'cpu · Intel Xeon': the device name plus the hardware behind it."""
    env = (manifest or {}).get("environment") or {}
    if device.startswith("cuda"):
        gpu = env.get("gpu") if isinstance(env.get("gpu"), Mapping) else {}
        name = gpu.get("name")
    else:
        cpu = env.get("cpu") if isinstance(env.get("cpu"), Mapping) else {}
        name = cpu.get("model")
    return f"{device} · {name}" if name else device


def with_machines(df: pd.DataFrame, manifests: Mapping[str, Mapping[str, Any]]) -> pd.Series:
    """The machine label of every record (its run's manifest joined to its device)."""
    labels: dict[tuple[str, str], str] = {}
    out = []
    for run, device in zip(df["run"].astype(str), df["device"].astype(str), strict=True):
        key = (run, device)
        if key not in labels:
            labels[key] = machine_label(manifests.get(run), device)
        out.append(labels[key])
    return pd.Series(out, index=df.index, dtype=object)


def cross_device_tables(df: pd.DataFrame, workload: str, info: Mapping[str, Any],
                        specs: Mapping[str, Mapping[str, Any]], machine_col: str = "machine") -> list[CrossTable]:
    """One table per configuration that at least two machines measured; empty with fewer than two machines."""
    machines = sorted({str(m) for m in df[machine_col].dropna().unique()})
    primary = str(info.get("primary_metric", "latency_s"))
    if len(machines) < 2 or primary not in df.columns:
        return []
    pcols = param_columns(df, info)
    ok = [r for r in rows_of(df) if r.get("status") == "ok" and is_valid(r)
          and as_float(r.get(primary)) is not None]
    tables = []
    for key, recs in group_records(ok, pcols):
        present = sorted({str(r[machine_col]) for r in recs})
        if len(present) < 2:
            continue
        by_impl: dict[str, dict[str, dict]] = {}
        for rec in recs:
            by_impl.setdefault(str(rec.get("impl")), {})[str(rec[machine_col])] = rec
        rows = []
        for impl in sorted(by_impl):
            cells = []
            for machine in present:
                rec = by_impl[impl].get(machine)
                if rec is None:
                    cells.append(Cell(MISSING, title=f"{impl} was not measured on {machine}", missing=True))
                else:
                    cells.append(metric_cell(primary, rec, specs, with_spread=True)[0])
            rows.append(CrossRow(impl, cells))
        heading = " · ".join(f"{c.removeprefix('param.')}={display_value(v)}" for c, v in zip(pcols, key, strict=True))
        tables.append(CrossTable(slug(f"cross-{workload}-{len(tables) + 1}"), heading or "default parameters",
                                 present, rows))
    return tables
