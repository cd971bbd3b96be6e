"""The run page's hardware-model section: device ceilings, a roofline per device, residuals, prediction scatter.

`devices` (device model name → label, datasheet and calibrated ceilings) comes from the CLI, built from each
run's calibration profile and the device registry; this module only renders it beside the records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports.charts import Chart, impl_colors
from reports.format import MISSING, format_quantity, sig3
from reports.prediction_chart import prediction_chart
from reports.records import slug
from reports.residuals import NO_MODEL, ResidualTable, residual_table
from reports.roofline import ALIASES, Devices, peak_for, roofline_charts


@dataclass(frozen=True)
class DeviceBlock:
    """One device model: its roofline chart and its ceilings (what, calibrated, datasheet, ratio)."""

    name: str
    label: str
    chart: Chart
    ceilings: list[tuple[str, str, str, str]]


@dataclass(frozen=True)
class HardwareSection:
    """Everything the run page shows about the hardware model; `message` when the run has none."""

    anchor: str
    devices: list[DeviceBlock]
    residuals: ResidualTable
    prediction: Chart | None
    message: str | None


def _ratio(calibrated: float | None, datasheet: float | None) -> str:
    if calibrated is None or not datasheet:
        return MISSING
    return f"{sig3(100 * calibrated / datasheet)}%"


def ceiling_rows(info: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """Bandwidth and per-dtype peaks, calibrated beside datasheet; '—' where one side is unknown."""
    cal, sheet = info.get("calibrated") or {}, info.get("datasheet") or {}
    if not cal and not sheet:
        return []
    rows = []
    bw_cal, bw_sheet = cal.get("bandwidth_bytes_per_s"), sheet.get("bandwidth_bytes_per_s")
    rows.append(("memory bandwidth", format_quantity(bw_cal, "B/s"), format_quantity(bw_sheet, "B/s"),
                 _ratio(float(bw_cal) if bw_cal else None, float(bw_sheet) if bw_sheet else None)))
    names = {ALIASES.get(str(k).lower(), str(k).lower())
             for side in (cal, sheet) for k in (side.get("peak_flops") or {})}
    for dtype in sorted(names):
        p_cal, p_sheet = peak_for(cal.get("peak_flops"), dtype), peak_for(sheet.get("peak_flops"), dtype)
        rows.append((f"peak {dtype}", format_quantity(p_cal, "FLOP/s"), format_quantity(p_sheet, "FLOP/s"),
                     _ratio(p_cal, p_sheet)))
    return rows


def _has_model(df: pd.DataFrame) -> bool:
    cols = ("model.device", "model.predicted_latency_s", "model.roofline_fraction")
    return any(c in df.columns and bool(df[c].notna().any()) for c in cols)


def hardware_section(df: pd.DataFrame, run: str, devices: Devices | None,
                     order: Iterable[str] = ()) -> HardwareSection:
    """The section for one run's records; device blocks in device-name order, fixed ids throughout."""
    anchor = slug(f"{run}-hardware-model")
    residuals = residual_table(df, slug(f"residuals-{run}"), order)
    if not _has_model(df):
        return HardwareSection(anchor, [], residuals, None, NO_MODEL)
    devices = devices or {}
    colors = impl_colors([str(i) for i in df["impl"].dropna().unique()])
    blocks = []
    for name, chart in roofline_charts(df, run, devices, colors):
        info = devices.get(name) or {}
        blocks.append(DeviceBlock(name, str(info.get("label") or name), chart, ceiling_rows(info)))
    prediction = prediction_chart(df, slug(f"prediction-{run}"), colors)
    return HardwareSection(anchor, blocks, residuals, prediction, None)
