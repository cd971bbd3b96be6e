"""Plan the site: which pages exist and the plain context each template receives.

Pages are data (path, template, context), so adding per-workload or claims pages later means adding
a planner function here and a template, not changing the builder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reports.charts import Chart, build_charts
from reports.claims import claim_rows, verdict_counts
from reports.environment import RunSummary, summarize
from reports.format import as_text
from reports.hardware import hardware_section
from reports.leaderboard import Leaderboards, build_tables
from reports.records import slug
from reports.runs_page import environment_matrix
from reports.workloads import by_family, case_anchors, workload_page_path, workload_views

Specs = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Page:
    """One output file: `path` is relative to the site root and may later contain folders."""

    path: str
    template: str
    title: str
    context: dict[str, Any] = field(default_factory=dict)
    in_nav: bool = True


@dataclass(frozen=True)
class WorkloadSection:
    """A workload's block on a page: description, leaderboards, and (on run pages) charts."""

    name: str
    family: str
    anchor: str
    description: str
    primary_label: str
    direction: str
    boards: Leaderboards
    charts: list[Chart]


def run_page_path(run: str) -> str:
    """`run-<run id>.html`, with characters unsafe in file names replaced."""
    return f"run-{slug(run)}.html"


def ordered_runs(records: pd.DataFrame, manifests: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """All runs from manifests and records, newest first (by started_at, then id) for a stable order."""
    runs = set(manifests) | {str(r) for r in records["run"].dropna().unique()}
    by_id = sorted(runs)

    def started(run: str) -> str:
        return as_text((manifests.get(run) or {}).get("started_at")) or ""

    return sorted(by_id, key=started, reverse=True)


def workload_order(df: pd.DataFrame, workload_info: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Workloads present in the records, grouped by family then name."""
    families: dict[str, str] = {}
    for workload, family in zip(df["workload"], df.get("family", df["workload"]), strict=True):
        if not pd.isna(workload):
            families.setdefault(str(workload), str(family))
    for workload in families:
        families[workload] = str(workload_info.get(workload, {}).get("family") or families[workload])
    return sorted(families, key=lambda w: (families[w], w))


def workload_sections(df: pd.DataFrame, run: str, workload_info: Mapping[str, Mapping[str, Any]],
                      specs: Specs, with_charts: bool) -> list[WorkloadSection]:
    """Leaderboards (and charts) of every workload in one run's records."""
    sections = []
    for workload in workload_order(df, workload_info):
        info = workload_info.get(workload, {})
        wdf = df[df["workload"] == workload]
        primary = str(info.get("primary_metric", "latency_s"))
        family = str(info.get("family") or (wdf["family"].iloc[0] if "family" in wdf.columns else ""))
        prefix = slug(run)
        sections.append(WorkloadSection(
            name=workload, family=family, anchor=slug(f"{run}-{workload}"),
            description=str(info.get("description") or ""),
            primary_label=str(specs.get(primary, {}).get("label") or primary),
            direction=str(specs.get(primary, {}).get("direction", "lower")),
            boards=build_tables(wdf, workload, info, specs, prefix),
            charts=build_charts(wdf, workload, info, specs, prefix) if with_charts else [],
        ))
    return sections


def _fallback_counts(df: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in df["status"].value_counts().sort_index().items()}


def plan_pages(records: pd.DataFrame, manifests: Mapping[str, Mapping[str, Any]], specs: Specs,
               workload_info: Mapping[str, Mapping[str, Any]],
               devices: Mapping[str, Mapping[str, Any]] | None = None,
               claims: list[Mapping[str, Any]] | None = None) -> list[Page]:
    """Index, runs, claims, one page per workload, one page per run; the builder renders them in this order.

    Workload pages hold every run's records together; run pages keep one run's leaderboards, scaling charts
    and hardware model.
    """
    runs = ordered_runs(records, manifests)
    summaries: list[RunSummary] = []
    run_pages: list[Page] = []
    for run in runs:
        df = records[records["run"].astype(str) == run]
        summary = summarize(run, manifests.get(run), _fallback_counts(df))
        summaries.append(summary)
        sections = workload_sections(df, run, workload_info, specs, with_charts=True)
        hardware = hardware_section(df, run, devices, [s.name for s in sections])
        run_pages.append(Page(run_page_path(run), "run.html", f"run {run}",
                              {"summary": summary, "sections": sections, "hardware": hardware,
                               "workload_pages": {s.name: workload_page_path(s.name) for s in sections}},
                              in_nav=False))
    views = workload_views(records, manifests, specs, workload_info, runs, workload_order(records, workload_info))
    workload_pages = [Page(v.path, "workload.html", v.name, {"view": v}, in_nav=False) for v in views]
    rows = claim_rows(claims or [], {v.name: v.path for v in views}, case_anchors(views))
    run_links = [(s, run_page_path(s.run)) for s in summaries]
    machines = sorted({m for v in views for m in v.machines})
    index = Page("index.html", "index.html", "overview", {
        "runs": run_links, "machines": machines, "families": by_family(views),
        "claims": rows, "verdicts": verdict_counts(rows),
    })
    runs_page = Page("runs.html", "runs.html", "runs", {"runs": run_links,
                                                         "matrix": environment_matrix(summaries, manifests)})
    claims_page = Page("claims.html", "claims.html", "claims", {"claims": rows, "verdicts": verdict_counts(rows)})
    return [index, runs_page, claims_page, *workload_pages, *run_pages]
