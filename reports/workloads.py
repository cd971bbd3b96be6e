"""Per-workload views over every run: the leaderboards, cross-device tables and charts of one workload.

The index, the workload pages and the markdown summary all read these views, so they rank identically.
Records are labelled with their machine (device plus the CPU or GPU behind it, from the run manifest);
when two runs measured the same case on the same machine, the newest run's record is kept and the page
says how many older ones it set aside (they stay on their run pages).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports.charts import Chart, build_charts
from reports.cross_device import CrossTable, cross_device_tables, with_machines
from reports.leaderboard import Leaderboards, Table, build_tables
from reports.pareto import pareto_chart
from reports.records import slug

Specs = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Podium:
    """The top of one leaderboard and its unranked cases, for the index and the markdown summary."""

    heading: str
    top: list[tuple[int, str, str]]  # (rank, impl, primary value with spread)
    ranked: int
    problems: list[tuple[str, str, str]]  # (impl, failed/timeout/oom/skipped/invalid, why)


@dataclass(frozen=True)
class WorkloadView:
    name: str
    family: str
    path: str
    description: str
    primary_label: str
    direction: str
    boards: Leaderboards
    cross: list[CrossTable]
    charts: list[Chart]
    machines: list[str]
    runs: list[str]
    superseded: int
    podiums: list[Podium]


def workload_page_path(workload: str) -> str:
    return f"workload-{slug(workload)}.html"


def varying_params(tables: list[Table]) -> set[str]:
    """Parameters whose value differs between a workload's tables: the only ones a summary row needs."""
    seen: dict[str, set[str]] = {}
    for table in tables:
        for key, value in table.params:
            seen.setdefault(key, set()).add(value)
    return {key for key, values in seen.items() if len(values) > 1}


def short_heading(table: Table, keep: set[str]) -> str:
    """'seq=4096 @ cuda · NVIDIA H100': the table's heading without the parameters every table shares."""
    params = " · ".join(f"{k}={v}" for k, v in table.params if k in keep) or "all cases"
    return f"{params} @ {table.device}" if table.device else params


def podium(table: Table, top: int = 3, keep: set[str] | None = None) -> Podium:
    primary = next(c.key for c in table.columns if c.role == "primary")
    best = []
    problems = []
    for row in table.rows:
        if row.rank is not None and len(best) < top:
            cell = row.cells[primary]
            best.append((row.rank, row.impl, f"{cell.text} {cell.spread}".strip()))
        if row.status != "ok":
            problems.append((row.impl, row.status, row.error or ""))
        elif not row.valid:
            problems.append((row.impl, "invalid", "; ".join(row.reasons)))
    heading = table.heading if keep is None else short_heading(table, keep)
    return Podium(heading, best, sum(r.rank is not None for r in table.rows), problems)


def newest_per_case(df: pd.DataFrame, run_order: list[str]) -> tuple[pd.DataFrame, int]:
    """Keep one record per (case, machine): the one from the newest run; return it and how many were dropped."""
    rank = {run: i for i, run in enumerate(run_order)}
    order = np.array([rank.get(r, len(rank)) for r in df["run"].astype(str)])
    newest_first = df.iloc[np.argsort(order, kind="stable")]
    kept = newest_first[~newest_first.duplicated(subset=["case", "machine"], keep="first")]
    return kept.sort_index(), len(df) - len(kept)


def workload_views(records: pd.DataFrame, manifests: Mapping[str, Mapping[str, Any]], specs: Specs,
                   workload_info: Mapping[str, Mapping[str, Any]], run_order: list[str],
                   order: list[str], with_charts: bool = True) -> list[WorkloadView]:
    """One view per workload in `order`, over the records of all runs."""
    if records.empty:
        return []
    labelled = pd.concat([records, with_machines(records, manifests).rename("machine")], axis=1)
    views = []
    for workload in order:
        info = workload_info.get(workload, {})
        wdf, superseded = newest_per_case(labelled[labelled["workload"] == workload], run_order)
        # leaderboards group by `device`: group by machine so two different CPUs get two tables
        wdf = wdf.copy()
        wdf["device"] = wdf["machine"]
        primary = str(info.get("primary_metric", "latency_s"))
        prefix = "all"
        boards = build_tables(wdf, workload, info, specs, prefix)
        charts = []
        if with_charts:
            charts = build_charts(wdf, workload, info, specs, prefix)
            pareto = pareto_chart(wdf, workload, info, specs, prefix)
            charts += [pareto] if pareto is not None else []
        family = str(info.get("family") or wdf["family"].iloc[0])
        views.append(WorkloadView(
            name=workload, family=family, path=workload_page_path(workload),
            description=str(info.get("description") or ""),
            primary_label=str(specs.get(primary, {}).get("label") or primary),
            direction=str(specs.get(primary, {}).get("direction", "lower")), boards=boards,
            cross=cross_device_tables(wdf, workload, info, specs), charts=charts,
            machines=sorted({str(m) for m in wdf["machine"].unique()}),
            runs=[r for r in run_order if r in set(wdf["run"].astype(str))], superseded=superseded,
            podiums=[podium(t, keep=keep) for keep in [varying_params(boards.tables)] for t in boards.tables],
        ))
    return views


def by_family(views: list[WorkloadView]) -> list[tuple[str, list[WorkloadView]]]:
    """Views grouped by family, families and workloads in name order."""
    out: dict[str, list[WorkloadView]] = {}
    for view in views:
        out.setdefault(view.family, []).append(view)
    return sorted(out.items())


def case_anchors(views: list[WorkloadView]) -> dict[str, str]:
    """case id -> 'workload page#table id': where each case's record is shown, for links from claims."""
    out = {}
    for view in views:
        for table in view.boards.tables:
            for row in table.rows:
                out.setdefault(row.case, f"{view.path}#{table.id}")
    return out
