"""A comparison for people: a rich table in the terminal, markdown for a pull request, JSON for machines."""

from __future__ import annotations

import json
import math

from rich.markup import escape
from rich.table import Table

from harness.compare import VERDICTS, CaseComparison, Comparison, MetricComparison
from harness.console import format_seconds, format_si

STYLE = {"regressed": "bold red", "improved": "green", "incomparable": "yellow", "unchanged": "dim"}
MARK = {"regressed": "🔴", "improved": "🟢", "incomparable": "🟡", "unchanged": "⚪"}


def format_value(value: float | str | None, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if unit == "s":
        return format_seconds(value) if value > 0 else "0 s"
    if unit == "B":
        for name, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= scale:
                return f"{value / scale:.4g} {name}"
        return f"{value:.4g} B"
    if unit in ("1", ""):
        return f"{value:.4g}"
    return format_si(value, unit) if abs(value) >= 1e3 else f"{value:.4g} {unit}"


def format_ratio(row: MetricComparison) -> str:
    if row.ratio is None:
        return "—"
    if not math.isfinite(row.ratio):
        return "×∞ (base 0)"
    text = f"×{row.ratio:.3f}"
    if row.ci is not None:
        text += f" [{row.ci[0]:.3f}, {row.ci[1]:.3f}]"
    return text


def format_p(row: MetricComparison) -> str:
    return "—" if row.p is None else f"{row.p:.2g}"


def normalized_ratio(row: MetricComparison) -> str:
    test = row.tests.get("normalized")
    return "—" if test is None else f"×{test['ratio']:.3f}"


def headline(comparison: Comparison) -> str:
    counts = comparison.counts()
    state = "FAIL" if comparison.regressed else "PASS"
    parts = [f"{counts[v]} {v}" for v in VERDICTS if counts[v]]
    return f"{state}: {', '.join(parts) or 'nothing compared'} ({len(comparison.cases)} cases compared)"


def _side_text(info: dict) -> str:
    commit = (info.get("commit") or "unknown commit")[:10] + (" (dirty)" if info.get("dirty") else "")
    return (f"`{info['label']}` — run {info.get('run') or '?'}, {commit}, {info.get('cpu') or 'unknown CPU'}, "
            f"started {info.get('started_at') or '?'}")


def _rule_text(comparison: Comparison) -> str:
    config = comparison.config
    basis = {"both": "raw and calibration-normalized latency must agree",
             "raw": "raw latency", "normalized": "latency normalized by each run's own calibration"}
    source = f"`{config.path}`" if config.path else "built-in defaults"
    return (f"A change counts when p < {config.alpha:g} (Mann-Whitney U on raw samples) and the ratio of medians "
            f"passes the minimum effect; timing: {basis[config.timing_basis]}; deterministic metrics compare "
            f"exactly or within their tolerance. Thresholds: {source}.")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table_md(rows: list[tuple[CaseComparison, MetricComparison]]) -> list[str]:
    lines = ["| case | metric | base | candidate | ratio [95% CI] | p | normalized | verdict | why |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case, row in rows:
        lines.append(f"| `{_md(case.case)}` | {_md(row.metric)} | {format_value(row.base, row.unit)} | "
                     f"{format_value(row.cand, row.unit)} | {format_ratio(row)} | {format_p(row)} | "
                     f"{normalized_ratio(row)} | {MARK[row.verdict]} {row.verdict} | {_md(row.reason)} "
                     f"(rule {_md(row.rule) or row.basis}) |")
    return lines


def to_markdown(comparison: Comparison, title: str = "membench compare", show_unchanged: bool = False) -> str:
    """The summary a pull request shows: verdict first, then what changed, then everything in a fold."""
    lines = [f"## {title}: {headline(comparison)}", "",
             f"- base: {_side_text(comparison.base)}", f"- candidate: {_side_text(comparison.cand)}",
             f"- rule: {_rule_text(comparison)}"]
    lines += [f"- note: {_md(note)}" for note in comparison.notes]
    for verdict, heading in (("regressed", "Regressions"), ("improved", "Improvements"),
                             ("incomparable", "Incomparable")):
        rows = comparison.rows((verdict,))
        if rows:
            lines += ["", f"### {heading} ({len(rows)})", "", *_table_md(rows)]
    for label, cases in (("base only", comparison.only_base), ("candidate only", comparison.only_cand)):
        if cases:
            lines += ["", f"### Cases in the {label} ({len(cases)})", ""]
            lines += [f"- `{_md(c)}`" for c in cases]
    unchanged = comparison.rows(("unchanged",))
    if unchanged:
        if show_unchanged:
            lines += ["", f"### Unchanged ({len(unchanged)})", "", *_table_md(unchanged)]
        else:
            lines += ["", f"<details><summary>Unchanged ({len(unchanged)} comparisons)</summary>", "",
                      *_table_md(unchanged), "", "</details>"]
    return "\n".join(lines) + "\n"


def to_json_text(comparison: Comparison) -> str:
    return json.dumps(comparison.to_json(), indent=1, allow_nan=False, default=str)


def rich_table(comparison: Comparison, show_all: bool = False) -> Table:
    """Changed and incomparable rows (every row with show_all), most severe first."""
    table = Table("case", "metric", "base", "candidate", "ratio [95% CI]", "p", "norm.", "verdict", "why",
                  title=escape(headline(comparison)), show_lines=False)
    shown = VERDICTS if show_all else ("regressed", "improved", "incomparable")
    for verdict in shown:
        for case, row in comparison.rows((verdict,)):
            style = STYLE[row.verdict]
            table.add_row(escape(case.case), escape(row.metric), format_value(row.base, row.unit),
                          format_value(row.cand, row.unit), format_ratio(row), format_p(row), normalized_ratio(row),
                          f"[{style}]{row.verdict}[/]", escape(row.reason))
    return table


def print_comparison(comparison: Comparison, console, show_all: bool = False) -> None:
    console.print(f"base:      {escape(_side_text(comparison.base))}")
    console.print(f"candidate: {escape(_side_text(comparison.cand))}")
    for note in comparison.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    table = rich_table(comparison, show_all)
    console.print(table if table.row_count else headline(comparison))
    hidden = len(comparison.rows(("unchanged",)))
    if hidden and not show_all:
        console.print(f"[dim]{hidden} unchanged comparisons hidden (--all shows them)[/]")
    for label, cases in (("base only", comparison.only_base), ("candidate only", comparison.only_cand)):
        for case in cases:
            console.print(f"[yellow]{label}:[/] {escape(case)}")
