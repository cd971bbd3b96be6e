"""The claims page's rows: each seed-paper claim, what was measured here, and the verdict.

Input is what `harness.claims.Claim.evaluate` returns (plain dicts: id, paper, statement, expected,
comparison, tolerance, unit, how, verdict, measured, spread, device, detail). A claim links to the
workload pages whose names its text mentions, and to exact cases when the row lists them under `cases`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reports.format import MISSING, as_float, as_text, format_plain

VERDICT_CSS = {"reproduced": "reproduced", "not reproduced": "not-reproduced", "not measurable here": "unmeasurable"}


@dataclass(frozen=True)
class ClaimRow:
    id: str
    paper: str
    statement: str
    expected: str
    measured: str
    spread: str
    device: str
    verdict: str
    verdict_css: str
    how: str
    detail: str
    workloads: list[tuple[str, str]] = field(default_factory=list)  # (workload, page path)
    cases: list[tuple[str, str]] = field(default_factory=list)  # (case id, page path#anchor)


def _number(value: Any, unit: str) -> str:
    x = as_float(value)
    if x is None:
        return MISSING
    text = f"{x:.4g}" if abs(x) < 1e5 else format_plain(x)
    return f"{text} {unit}".strip()


def expected_text(row: Mapping[str, Any]) -> str:
    """'>= 59 x', '<= 4 %' or '2 bit ± 10%': the bound the measurement is held to."""
    unit = as_text(row.get("unit")) or ""
    comparison = as_text(row.get("comparison")) or ""
    value = _number(row.get("expected"), unit)
    if comparison == "within":
        tolerance = as_float(row.get("tolerance")) or 0.0
        return f"{value} ± {tolerance:.0%}"
    return f"{comparison} {value}".strip()


def spread_text(row: Mapping[str, Any]) -> str:
    """The measurement's spread (relative IQR of the underlying samples), or a dash saying there is none."""
    spread = as_float(row.get("spread"))
    return MISSING if spread is None else f"± {spread:.1%}"


def mentioned(text: str, names: Iterable[str]) -> list[str]:
    """Workload names that appear as whole words in the claim's text."""
    return [n for n in sorted(names) if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", text)]


def claim_rows(claims: Iterable[Mapping[str, Any]], workload_pages: Mapping[str, str],
               case_pages: Mapping[str, str] | None = None) -> list[ClaimRow]:
    """Rows in the order given; `workload_pages` maps workload -> page path, `case_pages` case -> path#anchor."""
    case_pages = case_pages or {}
    rows = []
    for c in claims:
        unit = as_text(c.get("unit")) or ""
        verdict = as_text(c.get("verdict")) or "not measurable here"
        text = " ".join(as_text(c.get(k)) or "" for k in ("statement", "how", "detail"))
        cases = [str(x) for x in (c.get("cases") or [])]
        rows.append(ClaimRow(
            id=as_text(c.get("id")) or MISSING, paper=as_text(c.get("paper")) or MISSING,
            statement=as_text(c.get("statement")) or "", expected=expected_text(c),
            measured=_number(c.get("measured"), unit), spread=spread_text(c),
            device=as_text(c.get("device")) or MISSING, verdict=verdict,
            verdict_css=VERDICT_CSS.get(verdict, "unmeasurable"), how=as_text(c.get("how")) or "",
            detail=as_text(c.get("detail")) or "",
            workloads=[(w, workload_pages[w]) for w in mentioned(text, workload_pages)],
            cases=[(case, case_pages[case]) for case in cases if case in case_pages],
        ))
    return rows


def verdict_counts(rows: Iterable[ClaimRow]) -> list[tuple[str, str, int]]:
    """(verdict, css class, count) in a fixed order, zeros dropped: the index page's headline."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.verdict] = counts.get(row.verdict, 0) + 1
    return [(v, css, counts[v]) for v, css in VERDICT_CSS.items() if counts.get(v)]
