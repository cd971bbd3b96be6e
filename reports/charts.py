"""Scaling charts: primary metric and memory overhead against the workload's sweep parameter.

plotly is imported inside the drawing functions only: the GPU box that runs benchmarks has no plotly,
and importing `reports` there must still work. Without plotly the report says so instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports import figure
from reports.cells import metric_unit
from reports.format import as_float, format_quantity, short_label
from reports.records import display_value, group_records, param_columns, rows_of, slug, value_sort_key

MEMORY_METRIC = "peak_memory_overhead_bytes"
ENERGY_METRIC = "energy_j"  # a third panel, only where some case of the chart has an energy value
# Okabe-Ito palette (distinguishable under the common colour-vision deficiencies), then four of Paul Tol's muted
# colours, so the ten memory stores (and most implementation lists) never share a colour in one chart.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#882255", "#44AA99", "#999933", "#888888")
CATEGORY_CAPTION = ("Each point is one {sweep} value (named, not a scale): compare heights within a panel; the "
                    "quality-vs-size chart below, where there is one, weighs them against their size.")
DEFAULT_CAPTION = (
    "On log–log axes the slope is the scaling exponent in {sweep} (1 = linear, 2 = quadratic); lines that "
    "flatten in the memory panel are the O(n)-memory implementations. Points are medians; bars span the IQR."
)


@dataclass(frozen=True)
class Chart:
    """A drawn figure (`html`) or the reason there is none (`message`), with its caption."""

    id: str
    title: str
    html: str | None
    message: str | None
    caption: str = ""


def impl_colors(impls: list[str]) -> dict[str, str]:
    """Fixed colour per implementation (sorted), so one impl looks the same in every panel and chart."""
    return {impl: PALETTE[i % len(PALETTE)] for i, impl in enumerate(sorted(impls))}


def plotly_js() -> str | None:
    """The bundled plotly.js source, written once into the site's assets; None without plotly."""
    if not figure.available():
        return None
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def build_charts(df: pd.DataFrame, workload: str, info: Mapping[str, Any],
                 specs: Mapping[str, Mapping[str, Any]], id_prefix: str) -> list[Chart]:
    """One chart per combination of the non-sweep params (and device) of one workload."""
    sweep = str(info.get("sweep_param", "seq"))
    primary = str(info.get("primary_metric", "latency_s"))
    base_id = slug(f"chart-{id_prefix}-{workload}")
    ok = df[(df["status"] == "ok") & df[primary].notna()] if primary in df.columns else df.iloc[0:0]
    if ok.empty:
        return [Chart(base_id, workload, None, f"No ok cases with a {primary} value: nothing to chart.")]
    if not figure.available():
        return [Chart(base_id, workload, None, "plotly is not installed here; charts were skipped.")]
    sweep_col = f"param.{sweep}"
    others = [c for c in param_columns(df, info) if c != sweep_col]
    colors = impl_colors([str(i) for i in df["impl"].unique()])
    caption = str(info.get("chart_caption") or DEFAULT_CAPTION.format(sweep=sweep))
    charts = []
    for n, (key, recs) in enumerate(group_records(rows_of(ok), [*others, "device"]), start=1):
        parts = [f"{c.removeprefix('param.')}={display_value(v)}" for c, v in zip(others, key, strict=False)]
        title = f"{workload} · {', '.join(parts) or 'all cases'} @ {display_value(key[-1])}"
        chart_id = f"{base_id}-{n}"
        sweep_values = {rec.get(sweep_col) for rec in recs}
        if len(sweep_values) < 2:
            only = ", ".join(display_value(v) for v in sweep_values)
            why = f"Only one {sweep} value ({only}): no scaling to plot."
            charts.append(Chart(chart_id, title, None, why))
            continue
        panels = list(info.get("chart_metrics") or [primary, MEMORY_METRIC])
        if primary != ENERGY_METRIC and any((as_float(r.get(ENERGY_METRIC)) or 0) > 0 for r in recs):
            panels.append(ENERGY_METRIC)
        fig = figure.Figure(cols=len(panels), horizontal_spacing=0.1 if len(panels) == 2 else 0.07)
        numeric = is_numeric_sweep(sweep_values)
        for impl, impl_recs in group_records(recs, ["impl"]):
            _add_impl_traces(fig, str(impl[0]), impl_recs, sweep_col, panels, colors[str(impl[0])], numeric)
        ticks = sorted(v for v in sweep_values if as_float(v)) if numeric else []
        _style(fig, title, sweep, panels, specs, ticks, numeric)
        _human_ticks(fig, [metric_unit(m, recs[0], specs) for m in panels])
        html = fig.to_html(chart_id)
        note = (" The right panel is energy per call (the hover says where it is modeled)."
                if panels[-1] == ENERGY_METRIC else "")
        text = caption if numeric or info.get("chart_caption") else CATEGORY_CAPTION.format(sweep=sweep)
        charts.append(Chart(chart_id, title, html, None, text + note))
    return charts


def is_numeric_sweep(values: Any) -> bool:
    """A sweep over positive numbers gets a log axis; anything else (formats, policies) a category axis."""
    return all(as_float(v) is not None and as_float(v) > 0 for v in values)


def _points(recs: list[dict], sweep_col: str, metric: str, numeric: bool = True) -> list[dict]:
    """Points of one metric sorted by the sweep value; x is the number, or the value's text for categories."""
    pts = []
    for rec in sorted(recs, key=lambda r: value_sort_key(r.get(sweep_col))):
        x = as_float(rec.get(sweep_col)) if numeric else display_value(rec.get(sweep_col))
        y = as_float(rec.get(metric))
        if x is not None and y is not None and math.isfinite(y):
            pts.append({"x": x, "y": y, "iqr": as_float(rec.get(f"{metric}__iqr")) or 0.0,
                        "unit": rec.get(f"{metric}__unit")})
    return pts


def _add_impl_traces(fig: figure.Figure, impl: str, recs: list[dict], sweep_col: str, panels: list[str],
                     color: str, numeric: bool = True) -> None:
    """Every panel's line for one implementation, sharing a legend entry and colour (IQR bars on the first)."""
    for col, metric in enumerate(panels, start=1):
        with_error = col == 1
        pts = _points(recs, sweep_col, metric, numeric)
        if not pts:
            continue
        unit = str(pts[0]["unit"] or ("B" if metric.endswith("_bytes") else ""))
        modeled = [r for r in recs if r.get(f"{metric}__source") == "modeled"]
        name_note = " (modeled)" if modeled and col > 1 else ""
        error = dict(type="data", array=[p["iqr"] / 2 for p in pts], visible=True) if with_error else None
        fig.add_trace(
            figure.Scatter(
                x=[p["x"] for p in pts], y=[p["y"] for p in pts], name=impl, legendgroup=impl,
                showlegend=col == 1, mode="lines+markers" if numeric else "markers", line=dict(color=color),
                marker=dict(color=color),
                error_y=error, text=[format_quantity(p["y"], unit) for p in pts],
                hovertemplate=f"<b>{figure.text(impl)}</b><br>%{{x}}: %{{text}}{name_note}<extra></extra>",
            ),
            row=1, col=col,
        )


def _axis_title(metric: str, specs: Mapping[str, Mapping[str, Any]], default_unit: str) -> str:
    spec = specs.get(metric, {})
    unit = spec.get("unit") or default_unit
    label = short_label(str(spec.get("label") or metric), metric)
    return f"{label} ({unit})" if unit and unit != "1" else str(label)



def _style(fig: Any, title: str, sweep: str, panels: list[str], specs: Mapping[str, Mapping[str, Any]],
           ticks: list[Any], numeric: bool = True) -> None:
    """Log axes ticked at the measured sweep values (a category axis for named values), unit titles, height.

    A panel with a zero or negative value (an SQNR in dB, a signed residual) gets a linear y axis."""
    if numeric:
        fig.update_xaxes(type="log", title_text=sweep, showgrid=True, tickvals=ticks,
                         ticktext=[display_value(t) for t in ticks])
    else:
        fig.update_xaxes(type="category", title_text=sweep, showgrid=True)
    for col in range(1, len(panels) + 1):
        axis = "y" if col == 1 else f"y{col}"
        ys = [y for trace in fig.data if trace.yaxis == axis for y in (trace.y or ())]
        log = bool(ys) and min(ys) > 0 and (numeric or max(ys) / min(ys) > 100)
        fig.update_yaxes(type="log" if log else "linear", exponentformat="SI", showgrid=True, row=1, col=col)
    for col, metric in enumerate(panels, start=1):
        default_unit = {MEMORY_METRIC: "B", ENERGY_METRIC: "J"}.get(metric, "")
        fig.update_yaxes(title_text=_axis_title(metric, specs, default_unit), row=1, col=col)
    for col, metric in enumerate(panels[1:], start=2):
        if not any(trace.xaxis == f"x{col}" for trace in fig.data):
            fig.add_annotation(text=f"{metric} not measured", xref=f"x{col} domain", yref=f"y{col} domain",
                               x=0.5, y=0.5, showarrow=False)
    fig.update_layout(
        title=dict(text=title, x=0.01, xanchor="left"), height=430, template="plotly_white",
        margin=dict(l=70, r=20, t=60, b=50), legend=dict(title_text="impl"), hovermode="closest",
    )


def log_ticks(lo: float, hi: float, unit: str) -> list[float]:
    """Round tick positions for a log axis: 1-2-5 per decade, or powers of 4 for bytes."""
    if unit == "B":
        first, last = math.floor(math.log2(lo)), math.ceil(math.log2(hi))
        step = 2 * max(1, math.ceil((last - first) / 16))
        start = first - first % step
        return [2.0**e for e in range(start, last + step, step) if lo / 4 <= 2.0**e <= hi * 4]
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if last - first <= 3 else (1,)
    ticks = [m * 10.0**k for k in range(first, last + 1) for m in mults]
    return [t for t in ticks if lo / 2 <= t <= hi * 2]


def tick_label(value: float, unit: str) -> str:
    """Axis labels in the table's units without trailing zeros: '2 ms', '64 MiB'."""
    text = format_quantity(value, unit)
    number, _, rest = text.partition(" ")
    if "." in number and "e" not in number:
        number = number.rstrip("0").rstrip(".")
    return f"{number} {rest}".strip()


def _human_ticks(fig: Any, units: list[str]) -> None:
    """Replace plotly's SI ticks (which read 'm' as milli, not minutes) with the report's units, panel by panel."""
    for axis, unit in zip(["y", *(f"y{col}" for col in range(2, len(units) + 1))], units, strict=True):
        ys = [y for trace in fig.data if trace.yaxis == axis for y in (trace.y or ()) if y]
        if not ys or unit not in ("s", "B", "J") or min(ys) <= 0:
            continue
        ticks = log_ticks(min(ys), max(ys), unit)
        layout_axis = "yaxis" + axis[1:]
        if len(ticks) >= 2 and fig.layout[layout_axis].get("type") == "log":
            fig.layout[layout_axis].update(tickvals=ticks, ticktext=[tick_label(t, unit) for t in ticks])
