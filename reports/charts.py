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

from reports.cells import metric_unit
from reports.format import as_float, format_quantity
from reports.records import display_value, group_records, param_columns, slug, value_sort_key

MEMORY_METRIC = "peak_memory_overhead_bytes"
# Okabe-Ito palette: distinguishable under the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
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
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        return None
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
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return [Chart(base_id, workload, None, "plotly is not installed here; charts were skipped.")]
    sweep_col = f"param.{sweep}"
    others = [c for c in param_columns(df, info) if c != sweep_col]
    colors = impl_colors([str(i) for i in df["impl"].unique()])
    caption = str(info.get("chart_caption") or DEFAULT_CAPTION.format(sweep=sweep))
    charts = []
    for n, (key, recs) in enumerate(group_records(ok.to_dict("records"), [*others, "device"]), start=1):
        parts = [f"{c.removeprefix('param.')}={display_value(v)}" for c, v in zip(others, key, strict=False)]
        title = f"{workload} · {', '.join(parts) or 'all cases'} @ {display_value(key[-1])}"
        chart_id = f"{base_id}-{n}"
        sweep_values = {rec.get(sweep_col) for rec in recs}
        if len(sweep_values) < 2:
            only = ", ".join(display_value(v) for v in sweep_values)
            why = f"Only one {sweep} value ({only}): no scaling to plot."
            charts.append(Chart(chart_id, title, None, why))
            continue
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1)
        for impl, impl_recs in group_records(recs, ["impl"]):
            _add_impl_traces(go, fig, str(impl[0]), impl_recs, sweep_col, primary, colors[str(impl[0])])
        _style(fig, title, sweep, primary, specs, sorted(v for v in sweep_values if as_float(v)))
        _human_ticks(fig, metric_unit(primary, recs[0], specs))
        html = fig.to_html(full_html=False, include_plotlyjs=False, div_id=chart_id,
                           config={"displaylogo": False, "responsive": True})
        charts.append(Chart(chart_id, title, html, None, caption))
    return charts


def _points(recs: list[dict], sweep_col: str, metric: str) -> list[dict]:
    """Positive (log-plottable) points of one metric, sorted by the sweep value."""
    pts = []
    for rec in sorted(recs, key=lambda r: value_sort_key(r.get(sweep_col))):
        x, y = as_float(rec.get(sweep_col)), as_float(rec.get(metric))
        if x is not None and y is not None and x > 0 and y > 0:
            pts.append({"x": x, "y": y, "iqr": as_float(rec.get(f"{metric}__iqr")) or 0.0,
                        "unit": rec.get(f"{metric}__unit")})
    return pts


def _add_impl_traces(go: Any, fig: Any, impl: str, recs: list[dict], sweep_col: str, primary: str,
                     color: str) -> None:
    """Both panels' lines for one implementation, sharing a legend entry and colour."""
    panels = ((1, primary, True), (2, MEMORY_METRIC, False))
    for col, metric, with_error in panels:
        pts = _points(recs, sweep_col, metric)
        if not pts:
            continue
        unit = str(pts[0]["unit"] or ("B" if metric.endswith("_bytes") else ""))
        error = dict(type="data", array=[p["iqr"] / 2 for p in pts], visible=True) if with_error else None
        fig.add_trace(
            go.Scatter(
                x=[p["x"] for p in pts], y=[p["y"] for p in pts], name=impl, legendgroup=impl,
                showlegend=col == 1, mode="lines+markers", line=dict(color=color), marker=dict(color=color),
                error_y=error, text=[format_quantity(p["y"], unit) for p in pts],
                hovertemplate=f"<b>{impl}</b><br>%{{x}}: %{{text}}<extra></extra>",
            ),
            row=1, col=col,
        )


def _axis_title(metric: str, specs: Mapping[str, Mapping[str, Any]], default_unit: str) -> str:
    spec = specs.get(metric, {})
    unit = spec.get("unit") or default_unit
    label = spec.get("label") or metric
    return f"{label} ({unit})" if unit and unit != "1" else str(label)


def _style(fig: Any, title: str, sweep: str, primary: str, specs: Mapping[str, Mapping[str, Any]],
           ticks: list[Any]) -> None:
    """Log axes ticked at the measured sweep values, unit titles, and a fixed height."""
    fig.update_xaxes(type="log", title_text=sweep, showgrid=True, tickvals=ticks,
                     ticktext=[display_value(t) for t in ticks])
    fig.update_yaxes(type="log", exponentformat="SI", showgrid=True)
    fig.update_yaxes(title_text=_axis_title(primary, specs, ""), row=1, col=1)
    fig.update_yaxes(title_text=_axis_title(MEMORY_METRIC, specs, "B"), row=1, col=2)
    if not any(trace.xaxis == "x2" for trace in fig.data):
        fig.add_annotation(text=f"{MEMORY_METRIC} not measured", xref="x2 domain", yref="y2 domain",
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


def _human_ticks(fig: Any, primary_unit: str) -> None:
    """Replace plotly's SI ticks (which read 'm' as milli, not minutes) with the report's units."""
    for axis, unit in (("y", primary_unit), ("y2", "B")):
        ys = [y for trace in fig.data if trace.yaxis == axis for y in (trace.y or ()) if y]
        if not ys or unit not in ("s", "B", "J"):
            continue
        ticks = log_ticks(min(ys), max(ys), unit)
        if len(ticks) >= 2:
            layout_axis = "yaxis" if axis == "y" else "yaxis2"
            fig.layout[layout_axis].update(tickvals=ticks, ticktext=[tick_label(t, unit) for t in ticks])
