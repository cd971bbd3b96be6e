"""Measured against predicted latency for every ok case with a prediction, with the y = x line.

Points on the diagonal are cases the calibrated roofline explains; above it they ran slower than
predicted (positive residual), below it faster. The dotted lines mark a factor of two either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports import figure
from reports.charts import Chart, log_ticks, tick_label
from reports.format import format_quantity, format_signed_percent
from reports.hardware_cells import PREDICTED, RESIDUAL
from reports.records import by_workload_and_impl, rows_of
from reports.roofline import SYMBOLS

MEASURED = "latency_s"
CAPTION = ("Each point is one ok case: x is the calibrated roofline's prediction from the implementation's expected "
           "traffic and launches, y the measured median. On the solid line the model is exact; above it the case "
           "ran slower than predicted, below it faster; dotted lines mark 2× either way.")


def _cases(df: pd.DataFrame) -> list[dict]:
    if PREDICTED not in df.columns or MEASURED not in df.columns:
        return []
    predicted = pd.to_numeric(df[PREDICTED], errors="coerce")
    measured = pd.to_numeric(df[MEASURED], errors="coerce")
    sel = df[(df["status"] == "ok") & (predicted > 0) & (measured > 0)]
    return sorted(rows_of(sel), key=lambda r: str(r.get("case")))


def _add_guides(go: Any, fig: Any, lo: float, hi: float) -> None:
    for factor, dash, name in ((1.0, "solid", "measured = predicted"), (2.0, "dot", "2× either way"),
                               (0.5, "dot", "2× faster")):
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * factor, hi * factor], mode="lines", name=name,
                                 line=dict(color="#555555" if factor == 1 else "#aaaaaa", dash=dash, width=1.2),
                                 hoverinfo="skip", showlegend=factor != 0.5, legendgroup=f"guide-{dash}"))


def _add_points(go: Any, fig: Any, cases: list[dict], colors: Mapping[str, str]) -> None:
    workloads, groups = by_workload_and_impl(cases)
    for (workload, impl), recs in groups:
        custom = [[str(r.get("case")), format_quantity(r.get(MEASURED), "s"), format_quantity(r.get(PREDICTED), "s"),
                   format_signed_percent(r.get(RESIDUAL))] for r in recs]
        fig.add_trace(go.Scatter(
            x=[float(r[PREDICTED]) for r in recs], y=[float(r[MEASURED]) for r in recs], mode="markers",
            name=impl if len(workloads) == 1 else f"{impl} ({workload})",
            marker=dict(color=colors.get(impl, "#000000"), size=9, line=dict(width=0.5, color="#ffffff"),
                        symbol=SYMBOLS[workloads.index(workload) % len(SYMBOLS)]),
            customdata=custom,
            hovertemplate=("<b>%{customdata[0]}</b><br>measured %{customdata[1]} · predicted %{customdata[2]}"
                           "<br>residual %{customdata[3]}<extra></extra>"),
        ))


def prediction_chart(df: pd.DataFrame, chart_id: str, colors: Mapping[str, str]) -> Chart | None:
    """The scatter, a message without plotly, or None when no case has a prediction."""
    cases = _cases(df)
    title = "Measured vs predicted latency"
    if not cases:
        return None
    if not figure.available():
        return Chart(chart_id, title, None, "plotly is not installed here; charts were skipped.")
    values = [float(c[k]) for c in cases for k in (PREDICTED, MEASURED)]
    lo, hi = min(values) / 2, max(values) * 2
    go = figure
    fig = go.Figure()
    _add_guides(go, fig, lo, hi)
    _add_points(go, fig, cases, colors)
    ticks = log_ticks(lo, hi, "s")
    axis = dict(type="log", showgrid=True, range=[math.log10(lo), math.log10(hi)])
    if len(ticks) >= 2:
        axis |= dict(tickvals=ticks, ticktext=[tick_label(t, "s") for t in ticks])
    fig.update_xaxes(title_text="predicted latency (s, calibrated roofline)", **axis)
    fig.update_yaxes(title_text="measured latency (s, median)", scaleanchor="x", **axis)
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left"), height=520, width=None,
                      template="plotly_white", margin=dict(l=70, r=20, t=60, b=50), hovermode="closest",
                      legend=dict(font=dict(size=11)))
    html = fig.to_html(chart_id)
    return Chart(chart_id, title, html, None, CAPTION)

