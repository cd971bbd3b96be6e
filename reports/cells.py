"""Table cells that carry their provenance.

A number in a benchmark report is only as good as how it was measured, so every metric cell keeps the
source, sample count, IQR and note next to the formatted value (shown on hover and as a footnote).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from reports.format import MISSING, as_float, as_text, data_value, format_quantity


@dataclass(frozen=True)
class Cell:
    """One rendered table cell: display text, raw sort value, hover title and optional footnote."""

    text: str
    value: str = ""
    title: str = ""
    spread: str = ""
    footnote: str | None = None
    missing: bool = False
    css: str = ""  # extra class, e.g. "modeled" for a value that was estimated rather than measured


MODELED = "modeled"  # metric source of a value the hardware model filled in where no counter exists
MODELED_MARK = "≈"


def is_modeled(metric: str, row: Mapping[str, Any]) -> bool:
    """True when the metric's value comes from the hardware model, not from a measurement."""
    return as_text(row.get(f"{metric}__source")) == MODELED


def metric_unit(metric: str, row: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]]) -> str:
    """Unit from the metric spec, falling back to the record's own `M__unit` column."""
    spec_unit = as_text(specs.get(metric, {}).get("unit"))
    return spec_unit or as_text(row.get(f"{metric}__unit")) or ""


def provenance_title(metric: str, row: Mapping[str, Any], unit: str) -> str:
    """'source: perf_counter_ns · n=37 · IQR 0.12 ms · note' from the record's detail columns."""
    parts = []
    source = as_text(row.get(f"{metric}__source"))
    if source == MODELED:
        parts.append("source: modeled (hardware model estimate, not a measurement)")
    elif source:
        parts.append(f"source: {source}")
    n = as_float(row.get(f"{metric}__n"))
    if n is not None:
        parts.append(f"n={n:.0f}")
    iqr = as_float(row.get(f"{metric}__iqr"))
    if iqr is not None:
        parts.append(f"IQR {format_quantity(iqr, unit)}")
    note = as_text(row.get(f"{metric}__note"))
    if note:
        parts.append(note)
    return " · ".join(parts) if parts else f"{metric}: no provenance recorded"


def footnote_text(metric: str, row: Mapping[str, Any], label: str) -> str:
    """Footnote body: how a metric was measured, without the per-row numbers (n, IQR)."""
    source = as_text(row.get(f"{metric}__source")) or "unknown source"
    note = as_text(row.get(f"{metric}__note"))
    how = "modeled by the hardware model (no counter), not measured" if source == MODELED else f"measured by {source}"
    return f"{label}: {how}" + (f" — {note}" if note else "")


def metric_cell(
    metric: str,
    row: Mapping[str, Any],
    specs: Mapping[str, Mapping[str, Any]],
    *,
    with_spread: bool = False,
) -> tuple[Cell, str | None]:
    """Build the cell for metric M of one record, plus the footnote text it should point at.

    A NaN value is never shown as 0: it becomes an em dash whose title is the recorded
    `M__missing` reason, or the row's status when the case did not run.
    """
    label = as_text(specs.get(metric, {}).get("label")) or metric
    value = as_float(row.get(metric))
    if value is None:
        reason = as_text(row.get(f"{metric}__missing"))
        if reason:
            cell = Cell(MISSING, title=f"not measured: {reason}", missing=True)
            return cell, f"{label}: not measured — {reason}"
        status = as_text(row.get("status")) or "unknown"
        why = "not recorded" if status == "ok" else f"case {status}"
        return Cell(MISSING, title=f"no value ({why})", missing=True), None
    unit = metric_unit(metric, row, specs)
    spread = ""
    if with_spread:
        iqr = as_float(row.get(f"{metric}__iqr"))
        spread = f"± {format_quantity(iqr, unit)}" if iqr is not None else ""
    text = format_quantity(value, unit)
    modeled = is_modeled(metric, row)
    cell = Cell(f"{MODELED_MARK} {text}" if modeled else text, data_value(value), provenance_title(metric, row, unit),
                spread, css=MODELED if modeled else "")
    return cell, footnote_text(metric, row, label)


def model_cell(column: str, row: Mapping[str, Any], unit: str, what: str) -> tuple[Cell, str | None]:
    """Cell for an analytic model value; its provenance is the cost model, not a measurement."""
    value = as_float(row.get(column))
    if value is None:
        return Cell(MISSING, title=f"no analytic {what} for this case", missing=True), None
    title = f"analytic model ({column}), computed from the case parameters, not measured"
    note = f"{what.capitalize()}: analytic cost model ({column}), not a measurement"
    return Cell(format_quantity(value, unit), data_value(value), title), note


def escape(value: Any) -> str:
    """html.escape for any value: plain str out (markupsafe's Markup objects cost a second per 100k cells)."""
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def cell_html(c: Cell, board_id: str, numeric: bool = True) -> Markup:
    """The `<td>` of one cell, every string escaped. Python, not a Jinja macro: a 10,000-record report has
    over 100,000 cells, and a macro call per cell cost seconds."""
    css = ("num" if numeric else "text") + (" missing" if c.missing else "") + (f" {c.css}" if c.css else "")
    out = [f'<td class="{escape(css)}" data-value="{escape(c.value)}"']
    if c.title:
        out.append(f' title="{escape(c.title)}"')
    out.append(f">{escape(c.text)}")
    if c.spread:
        out.append(f' <span class="spread">{escape(c.spread)}</span>')
    if c.footnote:
        note = escape(c.footnote)
        out.append(f'<sup class="fn"><a href="#{escape(board_id)}-fn{note}">{note}</a></sup>')
    out.append("</td>")
    return Markup("".join(out))
