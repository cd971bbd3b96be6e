"""Leaderboard cells of the hardware model: % of roofline, calibrated prediction and residual.

These are not measurements: they join the measured latency to a roofline model of the device under the
ceilings this run calibrated. Each cell says so on hover, and a missing one says why (no calibration,
case not ok, no cost for this case) instead of showing 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.cells import Cell
from reports.format import MISSING, as_float, as_text, data_value, format_percent, format_quantity
from reports.format import format_signed_percent as signed

ROOFLINE = "model.roofline_fraction"
PREDICTED = "model.predicted_latency_s"
RESIDUAL = "model.residual"
DATASHEET = "model.datasheet_roofline_fraction"
HARDWARE_KEYS = (ROOFLINE, PREDICTED, RESIDUAL)
NO_CALIBRATION = "no calibration in this run"


def has_hardware_model(df: pd.DataFrame) -> bool:
    """Whether any record of these has a hardware-model value; without one the columns are left out."""
    return any(c in df.columns and bool(df[c].notna().any()) for c in (*HARDWARE_KEYS, DATASHEET))


def missing_reason(rec: Mapping[str, Any]) -> str:
    """Why a record has no hardware-model value: not ok, no calibrated device, or no cost for this case."""
    status = as_text(rec.get("status")) or "unknown"
    if status != "ok":
        return f"case {status}: no measurement to compare with the model"
    if as_text(rec.get("model.device")) is None:
        return NO_CALIBRATION
    return "the hardware model has no value for this case (no FLOP/byte cost for its dtype)"


def _missing(rec: Mapping[str, Any], extra: str = "") -> Cell:
    return Cell(MISSING, title=missing_reason(rec) + extra, missing=True)


def _bound(rec: Mapping[str, Any]) -> str | None:
    bound = as_text(rec.get("model.bound"))
    return f"{bound}-bound" if bound else None


def roofline_cell(rec: Mapping[str, Any]) -> Cell:
    """'61%': calibrated roofline floor ÷ measured latency, i.e. how much of the machine the case uses."""
    value = as_float(rec.get(ROOFLINE))
    datasheet = as_float(rec.get(DATASHEET))
    if value is None:
        extra = f"; vs datasheet peaks: {format_percent(datasheet)} of roofline" if datasheet is not None else ""
        return _missing(rec, extra)
    floor = as_float(rec.get("model.floor_latency_s"))
    intensity = as_float(rec.get("model.arithmetic_intensity"))
    parts = [
        f"floor {format_quantity(floor, 's')} (min bytes, no launches)" if floor is not None else None,
        _bound(rec),
        f"arithmetic intensity {format_quantity(intensity, 'FLOP/B')}" if intensity is not None else None,
        f"vs datasheet peaks: {format_percent(datasheet)}" if datasheet is not None else None,
    ]
    if value > 1:
        parts.append("above 100%: faster than the floor, so the cost model or the measurement is wrong")
    title = "calibrated roofline floor ÷ measured · " + " · ".join(p for p in parts if p)
    return Cell(format_percent(value), data_value(value), title, css="over" if value > 1 else "")


def predicted_cell(rec: Mapping[str, Any]) -> tuple[Cell, str | None]:
    """The calibrated roofline prediction (expected traffic and launches), and the footnote naming the model."""
    value = as_float(rec.get(PREDICTED))
    if value is None:
        return _missing(rec), None
    launches = as_float(rec.get("model.launches"))
    traffic = as_float(rec.get("model.traffic_bytes"))
    parts = [
        _bound(rec),
        f"{launches:.0f} launch{'' if launches == 1 else 'es'}" if launches is not None else None,
        f"expected traffic {format_quantity(traffic, 'B')}" if traffic is not None else None,
        f"dtype {as_text(rec.get('model.dtype'))}" if as_text(rec.get("model.dtype")) else None,
    ]
    title = "calibrated roofline prediction · " + " · ".join(p for p in parts if p)
    device = as_text(rec.get("model.device")) or "this device"
    note = (f"Predicted, % of roofline, residual: roofline model of {device} under the ceilings calibrated "
            "for this run, not measurements")
    return Cell(format_quantity(value, "s"), data_value(value), title), note


def residual_cell(rec: Mapping[str, Any], primary: str = "latency_s") -> Cell:
    """'+12%': measured ÷ predicted − 1; positive means the case ran slower than the model says."""
    value = as_float(rec.get(RESIDUAL))
    if value is None:
        return _missing(rec)
    measured, predicted = as_float(rec.get(primary)), as_float(rec.get(PREDICTED))
    how = f"measured {format_quantity(measured, 's')} ÷ predicted {format_quantity(predicted, 's')} − 1"
    direction = "slower" if value >= 0 else "faster"
    title = f"{how}: the case ran {format_percent(abs(value))} {direction} than the model predicts"
    return Cell(signed(value), data_value(value), title)


def energy_hint(rec: Mapping[str, Any]) -> str:
    """' · hardware model: 4.2 mJ' for the energy cell's hover when a prediction exists, else ''."""
    predicted = as_float(rec.get("model.predicted_energy_j"))
    return f" · hardware model predicts {format_quantity(predicted, 'J')}" if predicted is not None else ""


def hardware_cell(key: str, rec: Mapping[str, Any]) -> tuple[Cell, str | None]:
    """Dispatch for the leaderboard: the cell of one hardware-model column and its footnote (if any)."""
    if key == ROOFLINE:
        return roofline_cell(rec), None
    if key == PREDICTED:
        return predicted_cell(rec)
    if key == RESIDUAL:
        return residual_cell(rec), None
    raise KeyError(key)
