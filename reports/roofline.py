"""Roofline chart per device model: achieved FLOP/s against arithmetic intensity, under the device's ceilings.

For each dtype among a device's ok cases the calibrated roofline min(peak, AI × bandwidth) is drawn solid
and the datasheet one dashed; every case is a point coloured by implementation. plotly is imported inside
the drawing function only, as in reports.charts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports import figure
from reports.charts import Chart, log_ticks, tick_label
from reports.format import format_percent, format_quantity
from reports.records import by_workload_and_impl, rows_of, slug

AI, ACHIEVED = "model.arithmetic_intensity", "model.achieved_flops_per_s"
LINE_COLORS = ("#222222", "#7a5195", "#8c6d1f", "#3d7a7a", "#9a3b3b")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon")
ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32",
           "fp64": "float64", "double": "float64", "fp8": "float8"}
CAPTION = ("Points near the lines run at the machine's ceiling; points far below have headroom — or a cost model "
           "that undercounts.")
Devices = Mapping[str, Mapping[str, Any]]


def peak_for(peaks: Mapping[str, Any] | None, dtype: str) -> float | None:
    """A dtype's peak FLOP/s from a ceilings dict, tolerating 'bf16' vs 'bfloat16' style names."""
    if not peaks:
        return None
    want = ALIASES.get(dtype.lower(), dtype.lower())
    for key, value in peaks.items():
        if ALIASES.get(str(key).lower(), str(key).lower()) == want and value:
            return float(value)
    return None


def roof_points(peak: float, bandwidth: float, lo: float, hi: float) -> tuple[list[float], list[float]]:
    """min(peak, AI × bandwidth) over [lo, hi]; straight on log-log axes, so the ridge is the only corner."""
    ridge = peak / bandwidth
    xs = [lo, ridge, hi] if lo < ridge < hi else [lo, hi]
    return xs, [min(peak, x * bandwidth) for x in xs]


def device_points(df: pd.DataFrame, device: str) -> list[dict]:
    """The device's ok cases with a positive intensity and achieved rate (log-plottable), in case order."""
    if AI not in df.columns or ACHIEVED not in df.columns:
        return []
    intensity = pd.to_numeric(df[AI], errors="coerce")
    achieved = pd.to_numeric(df[ACHIEVED], errors="coerce")
    sel = df[(df["status"] == "ok") & (df["model.device"] == device) & (intensity > 0) & (achieved > 0)]
    return sorted(rows_of(sel), key=lambda r: str(r.get("case")))


def _ceilings(entry: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], float | None]:
    if not entry:
        return {}, None
    bandwidth = entry.get("bandwidth_bytes_per_s")
    return entry.get("peak_flops") or {}, float(bandwidth) if bandwidth else None


def _add_roofs(go: Any, fig: Any, info: Mapping[str, Any], dtypes: list[str], span: tuple[float, float]) -> list[str]:
    """The calibrated (solid) and datasheet (dashed) roofline per dtype; returns what could not be drawn."""
    lacking = []
    for i, dtype in enumerate(dtypes):
        color = LINE_COLORS[i % len(LINE_COLORS)]
        for kind, dash in (("calibrated", "solid"), ("datasheet", "dash")):
            peaks, bandwidth = _ceilings(info.get(kind))
            peak = peak_for(peaks, dtype)
            if peak is None or bandwidth is None:
                lacking.append(f"{kind} {dtype}")
                continue
            xs, ys = roof_points(peak, bandwidth, *span)
            name = f"{kind} · {dtype} ({format_quantity(peak, 'FLOP/s')}, {format_quantity(bandwidth, 'B/s')})"
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines", name=name, legendgroup=f"roof-{dtype}",
                line=dict(color=color, dash=dash, width=2 if kind == "calibrated" else 1.5),
                hovertemplate=f"{kind} roofline, {dtype}<br>AI %{{x:.3g}} FLOP/B → %{{y:.3s}}FLOP/s<extra></extra>",
            ))
    return lacking


def _add_cases(go: Any, fig: Any, points: list[dict], colors: Mapping[str, str]) -> None:
    """One marker trace per (workload, impl): colour by implementation, symbol by workload."""
    workloads, groups = by_workload_and_impl(points)
    for (workload, impl), recs in groups:
        custom = [[str(r.get("case")), format_quantity(r.get("latency_s"), "s"),
                   format_percent(r.get("model.roofline_fraction")), str(r.get("model.bound") or "unknown")]
                  for r in recs]
        fig.add_trace(go.Scatter(
            x=[float(r[AI]) for r in recs], y=[float(r[ACHIEVED]) for r in recs], mode="markers",
            name=impl if len(workloads) == 1 else f"{impl} ({workload})", legendgroup=f"case-{impl}",
            marker=dict(color=colors.get(impl, "#000000"), size=9, line=dict(width=0.5, color="#ffffff"),
                        symbol=SYMBOLS[workloads.index(workload) % len(SYMBOLS)]),
            customdata=custom,
            hovertemplate=("<b>%{customdata[0]}</b><br>latency %{customdata[1]} · %{customdata[2]} of roofline"
                           "<br>%{customdata[3]}-bound · AI %{x:.3g} FLOP/B · %{y:.3s}FLOP/s<extra></extra>"),
        ))


def _span(points: list[dict], info: Mapping[str, Any], dtypes: list[str]) -> tuple[float, float]:
    """x range covering every point and every ridge, with a margin of 4× on each side."""
    xs = [float(p[AI]) for p in points]
    for kind in ("calibrated", "datasheet"):
        peaks, bandwidth = _ceilings(info.get(kind))
        for dtype in dtypes:
            peak = peak_for(peaks, dtype)
            if peak is not None and bandwidth:
                xs.append(peak / bandwidth)
    return min(xs) / 4, max(xs) * 4


def _caption(info: Mapping[str, Any], lacking: list[str]) -> str:
    parts = []
    calibrated, datasheet = info.get("calibrated"), info.get("datasheet")
    if calibrated:
        parts.append(f"Solid: ceilings calibrated for this run ({calibrated.get('measured_at') or 'time unknown'}).")
    if datasheet:
        parts.append(f"Dashed: datasheet ({datasheet.get('source') or 'source unknown'}).")
    if not calibrated and not datasheet:
        parts.append("No ceilings known for this device: points only.")
    elif lacking:
        parts.append(f"No line for: {', '.join(lacking)}.")
    return " ".join([*parts, CAPTION])


def _readable_ticks(fig: Any) -> None:
    """Ticks at 1-2-5 (or decades) labelled '100 TFLOP/s' and '256', not plotly's mixed '10¹⁵' and '2'."""
    for axis, unit in (("x", ""), ("y", "FLOP/s")):
        values = [v for trace in fig.data for v in (getattr(trace, axis) or ()) if v and v > 0]
        ticks = log_ticks(min(values), max(values), unit) if values else []
        if len(ticks) >= 2:
            text = [tick_label(t, unit) if unit else f"{t:,.10g}" for t in ticks]
            fig.layout[f"{axis}axis"].update(tickvals=ticks, ticktext=text)


def roofline_chart(df: pd.DataFrame, device: str, devices: Devices, chart_id: str,
                   colors: Mapping[str, str]) -> Chart:
    """The roofline figure of one device model, or a message saying why none was drawn."""
    info = devices.get(device) or {}
    label = str(info.get("label") or device)
    title = f"Roofline · {label}" + (f" ({device})" if label != device else "")
    points = device_points(df, device)
    if not points:
        return Chart(chart_id, title, None, "no ok case with FLOPs and a measured latency on this device")
    if not figure.available():
        return Chart(chart_id, title, None, "plotly is not installed here; charts were skipped.")
    dtypes = sorted({str(p.get("model.dtype")) for p in points if p.get("model.dtype")})
    go = figure
    fig = go.Figure()
    lacking = _add_roofs(go, fig, info, dtypes, _span(points, info, dtypes))
    _add_cases(go, fig, points, colors)
    fig.update_xaxes(type="log", title_text="arithmetic intensity (FLOP/byte)", showgrid=True)
    fig.update_yaxes(type="log", title_text="achieved FLOP/s", showgrid=True)
    _readable_ticks(fig)
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left"), height=480, template="plotly_white",
                      margin=dict(l=70, r=20, t=60, b=50), hovermode="closest", legend=dict(font=dict(size=11)))
    html = fig.to_html(chart_id)
    return Chart(chart_id, title, html, None, _caption(info, lacking))


def roofline_charts(df: pd.DataFrame, run: str, devices: Devices,
                    colors: Mapping[str, str]) -> list[tuple[str, Chart]]:
    """(device model, chart) for each `model.device` present in the run's records, in name order."""
    if "model.device" not in df.columns:
        return []
    names = sorted({str(d) for d in df["model.device"].dropna().unique()})
    return [(name, roofline_chart(df, name, devices, slug(f"roofline-{run}-{name}"), colors)) for name in names]
