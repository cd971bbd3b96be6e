"""Human-readable number formatting for report cells.

Benchmarks span nanoseconds to minutes and bytes to gigabytes; raw floats in a table are unreadable,
so every value is scaled to a unit prefix and shown with three significant digits.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import pandas as pd

MISSING = "—"

_TIME_STEPS = ((1e-6, 1e-9, "ns"), (1e-3, 1e-6, "µs"), (1.0, 1e-3, "ms"))
_ENERGY_STEPS = ((1e-3, 1e-6, "µJ"), (1.0, 1e-3, "mJ"), (1e3, 1.0, "J"))
_BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")
_SI_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
SI_UNITS = ("FLOP", "FLOP/s", "B/s", "W", "FLOP/B")


def is_missing(value: Any) -> bool:
    """True for None/NaN/NA scalars; pandas gives all three for 'no value' depending on dtype."""
    kind = type(value)
    if kind is float:  # the common cases first: this runs millions of times for a large report
        return value != value
    if kind is str or kind is int or kind is bool:
        return False
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return math.isnan(float(value))
    return False


def as_float(value: Any) -> float | None:
    """Coerce a cell to float, or None when it is missing or not numeric."""
    if type(value) is float:  # the common case, first: a large report calls this a million times
        return None if value != value else value
    if is_missing(value) or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def as_text(value: Any) -> str | None:
    """Coerce a cell to a non-empty string, or None; pandas stores absent strings as NaN."""
    if type(value) is str:
        return value.strip() or None
    if value is None or is_missing(value):
        return None
    text = str(value).strip()
    return text or None


def sig3(x: float) -> str:
    """Three significant digits without scientific notation (12.3, 1.23, 123)."""
    ax = abs(x)
    if ax >= 100 or ax == 0:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _scaled(value: float, steps: tuple[tuple[float, float, str], ...], base_unit: str) -> str:
    value = float(f"{value:.3g}")  # so 999.96 µs shows as 1.00 ms, not 1000 µs
    ax = abs(value)
    for limit, scale, name in steps:
        if ax < limit and ax != 0:
            return f"{sig3(value / scale)} {name}"
    if base_unit == "J" and ax >= 1e3:
        return f"{sig3(value / 1e3)} kJ"
    return f"{sig3(value)} {base_unit}"


def format_bytes(value: float) -> str:
    """Binary prefixes (KiB, MiB, GiB) because allocators and memory sizes are powers of two."""
    ax = abs(value)
    if ax < 1024:
        return f"{value:.0f} B"
    scaled = value
    for name in _BYTE_UNITS:
        scaled /= 1024
        if abs(scaled) < 1024 or name == _BYTE_UNITS[-1]:
            return f"{sig3(scaled)} {name}"
    raise AssertionError("unreachable")


def format_plain(value: float) -> str:
    """Dimensionless values such as relative errors; tiny or huge ones in scientific notation."""
    ax = abs(value)
    if ax == 0:
        return "0"
    if ax < 1e-3 or ax >= 1e5:
        return f"{value:.2e}"
    return f"{value:.3g}"


def format_quantity(value: Any, unit: str | None) -> str:
    """Format a value in its unit with a human prefix; missing values become an em dash, never 0."""
    number = as_float(value)
    if number is None:
        return MISSING
    unit = (unit or "").strip()
    if unit == "s":
        return _scaled(number, _TIME_STEPS, "s")
    if unit == "B":
        return format_bytes(number)
    if unit == "J":
        return _scaled(number, _ENERGY_STEPS, "J")
    if unit in ("", "1"):
        return format_plain(number)
    if unit in SI_UNITS:
        return format_si(number, unit)
    return f"{number:.3g} {unit}"


def format_si(value: float, unit: str) -> str:
    """Decimal prefixes for rates and counts: '989 TFLOP/s', '3.35 TB/s' (datasheets quote them so)."""
    value = float(f"{value:.3g}")
    for scale, prefix in _SI_PREFIXES:
        if abs(value) >= scale:
            return f"{sig3(value / scale)} {prefix}{unit}"
    return f"{sig3(value)} {unit}"


def format_percent(fraction: Any) -> str:
    """A fraction as a percentage: 0.61 → '61%', 0.061 → '6.1%', 0.0045 → '0.45%'."""
    number = as_float(fraction)
    if number is None:
        return MISSING
    pct = 100.0 * number
    if abs(pct) >= 10 or pct == 0:
        return f"{pct:.0f}%"
    return f"{pct:.1f}%" if abs(pct) >= 1 else f"{pct:.2g}%"


def format_signed_percent(fraction: Any) -> str:
    """A relative error with its sign: 0.12 → '+12%', -0.3 → '−30%' (a typographic minus)."""
    number = as_float(fraction)
    if number is None:
        return MISSING
    return ("−" if number < 0 else "+") + format_percent(abs(number))


def format_ratio(value: Any) -> str:
    """Ratio to the best entry, e.g. '1.00×' or '12.3×'."""
    number = as_float(value)
    if number is None:
        return MISSING
    return f"{sig3(number)}×"


def data_value(value: Any) -> str:
    """Value for a data-value attribute: repr-exact so sorting uses the raw number, '' when missing."""
    number = as_float(value)
    return "" if number is None else repr(number)


def short_label(label: str, metric: str, limit: int = 36) -> str:
    """An axis or header fits a short label; a long one (a formula, a sentence), or a bare metric name, gives
    way to the metric's name without its namespace ('quant.effective_bits' -> 'effective_bits')."""
    return label if len(label) <= limit and label != metric else metric.split(".", 1)[-1]
