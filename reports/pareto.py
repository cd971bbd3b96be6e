"""Pareto charts: a quality metric against what it costs in bits, bytes or tokens, with the front marked.

Quantization formats, KV-compression budgets and memory stores all trade quality for size. Each ok case
is one point (colour by implementation); the front joins the cases no other case beats on both axes.
Which metrics form the pair is read from the records: the first size-like counter present (bits per
element, then stored bytes, then tokens) against the workload's most specific quality metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports import figure
from reports.charts import PALETTE, Chart, impl_colors
from reports.format import as_float, format_quantity, short_label
from reports.records import display_value, is_valid, param_columns, rows_of, slug

# Size-like metrics by preference: the name ends with one of these (checked in order), or its unit is one.
SIZE_SUFFIXES = ("effective_bits", "bits_per_element", "kv_allocated_bytes", "storage_bytes", "weight_bytes",
                 "tokens_per_query", "bytes_in_memory", "kv_bytes_read_per_step")
SIZE_UNITS = ("bit", "B", "tokens")
# Quality metrics by preference; quality.rel_l2_error is every workload's correctness check, so it comes last.
QUALITY_PREFERENCE = ("quality.evidence_recall_any@10", "quality.passkey_correct", "quality.perplexity_delta",
                      "quality.kl_to_fp32_nats", "quality.weight_rel_fro_error", "quality.layer_output_rel_error")
CHECK_METRIC = "quality.rel_l2_error"
SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x")  # past 8 groups the colours repeat: shapes do not
CAPTION = ("Each point is one ok case; the dark line joins the Pareto front (no other case has both less {x} and "
           "better {y}). Points up-and-left of the front would beat it; look for formats or budgets on the front.")


def _measured(df: pd.DataFrame) -> list[str]:
    return sorted(c[: -len("__unit")] for c in df.columns if c.endswith("__unit") and c[: -len("__unit")] in df.columns
                  and df[c[: -len("__unit")]].notna().any())


def pick_axes(df: pd.DataFrame) -> tuple[str, str] | None:
    """(size metric, quality metric) for this workload's records, or None when it has no such pair."""
    measured = _measured(df)
    size = next((m for suffix in SIZE_SUFFIXES for m in measured if m.endswith(suffix)), None)
    if size is None:
        units = {m: df[f"{m}__unit"].dropna().iloc[0] for m in measured if not m.startswith("quality.")}
        size = next((m for u in SIZE_UNITS for m, unit in sorted(units.items()) if unit == u
                     and m not in ("peak_memory_bytes", "peak_memory_overhead_bytes")), None)
    quality = next((m for m in QUALITY_PREFERENCE if m in measured), None)
    if quality is None:
        quality = next((m for m in measured if m.startswith("quality.") and m != CHECK_METRIC), None)
    if size is None or quality is None:
        return None
    return size, quality


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """Points not beaten on both axes (less x, better y), sorted by x."""
    front: list[tuple[float, float]] = []
    best: float | None = None
    for x, y in sorted(points, key=lambda p: (p[0], -p[1] if higher_is_better else p[1])):
        if best is None or (y > best if higher_is_better else y < best):
            front.append((x, y))
            best = y
    return front


def _label(metric: str, specs: Mapping[str, Mapping[str, Any]], unit: str) -> str:
    label = short_label(str(specs.get(metric, {}).get("label") or metric), metric)
    return f"{label} ({unit})" if unit and unit != "1" else label


def pareto_chart(df: pd.DataFrame, workload: str, info: Mapping[str, Any],
                 specs: Mapping[str, Mapping[str, Any]], id_prefix: str) -> Chart | None:
    """The quality-vs-size chart of one workload (all machines), or None when it measures no such pair."""
    axes = pick_axes(df)
    if axes is None:
        return None
    size, quality = axes
    chart_id = slug(f"pareto-{id_prefix}-{workload}")
    title = f"{workload} · quality vs size"
    recs = [r for r in rows_of(df) if r.get("status") == "ok" and is_valid(r)
            and as_float(r.get(size)) is not None and as_float(r.get(quality)) is not None]
    if len({as_float(r[size]) for r in recs}) < 2:
        return Chart(chart_id, title, None, f"fewer than two distinct {size} values: no trade-off to draw")
    if not figure.available():
        return Chart(chart_id, title, None, "plotly is not installed here; charts were skipped.")
    x_unit, y_unit = str(recs[0].get(f"{size}__unit") or ""), str(recs[0].get(f"{quality}__unit") or "")
    higher = str(specs.get(quality, {}).get("direction", "lower")) == "higher"
    pcols = param_columns(df, info)
    group_col = "impl"
    sweep_col = f"param.{info.get('sweep_param')}"
    if len({str(r.get("impl")) for r in recs}) == 1 and sweep_col in df.columns:
        group_col = sweep_col  # one implementation (a format registry): colour by what it sweeps
    colors = impl_colors([display_value(r.get(group_col)) for r in recs])
    fig = figure.Figure()
    for impl in sorted(colors):
        mine = sorted((r for r in recs if display_value(r.get(group_col)) == impl), key=lambda r: str(r.get("case")))
        custom = [[str(r.get("case")), ", ".join(f"{c.removeprefix('param.')}={display_value(r.get(c))}"
                                                 for c in pcols), format_quantity(r[size], x_unit),
                   format_quantity(r[quality], y_unit), str(r.get("device"))] for r in mine]
        fig.add_trace(figure.Scatter(
            x=[float(r[size]) for r in mine], y=[float(r[quality]) for r in mine], mode="markers", name=impl,
            marker={"color": colors[impl], "size": 9, "line": {"width": 0.5, "color": "#ffffff"},
                    "symbol": SYMBOLS[(sorted(colors).index(impl) // len(PALETTE)) % len(SYMBOLS)]},
            customdata=custom,
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br>size %{customdata[2]} · quality "
                          "%{customdata[3]} · %{customdata[4]}<extra></extra>"))
    front = pareto_front([(float(r[size]), float(r[quality])) for r in recs], higher)
    fig.add_trace(figure.Scatter(x=[p[0] for p in front], y=[p[1] for p in front], mode="lines", name="Pareto front",
                                 line={"color": "#333333", "width": 1.5, "shape": "hv"}, hoverinfo="skip"))
    positive = all(float(r[quality]) > 0 for r in recs)
    spread = max(float(r[quality]) for r in recs) / max(min(float(r[quality]) for r in recs), 1e-300)
    xs = [float(r[size]) for r in recs]
    wide = min(xs) > 0 and max(xs) / min(xs) > 100  # e.g. tokens: a store's 300 beside full context's 160k
    fig.update_xaxes(title_text=_label(size, specs, x_unit), type="log" if x_unit == "B" or wide else "linear")
    fig.update_yaxes(title_text=_label(quality, specs, y_unit), type="log" if positive and spread > 100 else "linear")
    legend = {"title_text": group_col.removeprefix("param.")}
    fig.update_layout(title={"text": title, "x": 0.01, "xanchor": "left"}, height=430, hovermode="closest",
                      margin={"l": 70, "r": 20, "t": 60, "b": 50}, legend=legend)
    short_x = str(specs.get(size, {}).get("label") or size)
    short_y = str(specs.get(quality, {}).get("label") or quality)
    return Chart(chart_id, title, fig.to_html(chart_id), None, CAPTION.format(x=short_x, y=short_y))
