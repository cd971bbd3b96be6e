"""The report as markdown for CI comments and terminals: the top of each leaderboard, then what went wrong.

It reads the same workload views as the HTML site, so a ranking never differs between the two. Every
string from a record is escaped for markdown tables (pipes, backticks, angle brackets), so a case name
cannot break the table or inject HTML into a rendered comment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.claims import claim_rows
from reports.format import MISSING
from reports.pages import ordered_runs, workload_order
from reports.workloads import WorkloadView, by_family, workload_views

TOP = 3


def md(text: Any) -> str:
    """A table-safe, HTML-inert markdown fragment."""
    out = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("\n", " ")
    return out.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _leaderboard_lines(view: WorkloadView) -> list[str]:
    lines = [f"### {md(view.name)}", "", f"Ranked by {md(view.primary_label)} ({view.direction} is better).", "",
             "| configuration @ machine | 1st | 2nd | 3rd | ranked |", "|---|---|---|---|---:|"]
    for p in view.podiums:
        places = [f"**{md(impl)}** {md(value)}" for _, impl, value in p.top]
        places += ["—"] * (TOP - len(places))
        lines.append(f"| {md(p.heading)} | {' | '.join(places[:TOP])} | {p.ranked} |")
    return [*lines, ""]


def _problem_lines(views: list[WorkloadView]) -> list[str]:
    rows = [(v.name, p.heading, impl, status, why)
            for v in views for p in v.podiums for impl, status, why in p.problems]
    if not rows:
        return ["## Failed and invalid cases", "", "None: every case ran and passed its check.", ""]
    lines = ["## Failed and invalid cases", "", "| workload | configuration @ machine | impl | status | why |",
             "|---|---|---|---|---|"]
    lines += [f"| {md(w)} | {md(h)} | {md(i)} | **{md(s)}** | {md(y) or '—'} |" for w, h, i, s, y in rows]
    return [*lines, ""]


def _claim_lines(claims: list[Mapping[str, Any]]) -> list[str]:
    rows = claim_rows(claims, {})
    if not rows:
        return []
    lines = ["## Claims", "", "| claim | expected | measured | device | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {md(c.id)}: {md(c.statement)} | {md(c.expected)} | {md(_with_spread(c.measured, c.spread))} | "
              f"{md(c.device)} | **{md(c.verdict)}** |" for c in rows]
    return [*lines, ""]


def _with_spread(measured: str, spread: str) -> str:
    return measured if spread == MISSING else f"{measured} {spread}"


def render_markdown(records: pd.DataFrame, manifests: Mapping[str, Mapping[str, Any]],
                    specs: Mapping[str, Mapping[str, Any]], workload_info: Mapping[str, Mapping[str, Any]],
                    claims: list[Mapping[str, Any]] | None = None) -> str:
    """The whole summary as one markdown string (ends with a newline)."""
    runs = ordered_runs(records, manifests)
    views = workload_views(records, manifests, specs, workload_info, runs, workload_order(records, workload_info),
                           with_charts=False)
    lines = ["# membench summary", "", f"{len(runs)} run(s): " + ", ".join(f"`{md(r)}`" for r in runs), ""]
    for family, family_views in by_family(views):
        lines += [f"## {md(family)}", ""]
        for view in family_views:
            lines += _leaderboard_lines(view)
    lines += _problem_lines(views)
    lines += _claim_lines(list(claims or []))
    return "\n".join(lines).rstrip("\n") + "\n"
