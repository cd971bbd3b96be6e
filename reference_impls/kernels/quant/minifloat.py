"""Narrow floating-point element types (ExMy) as the OCP Microscaling Formats (MX) Specification v1.0 defines them.

A code is sign | exponent (e bits, bias b) | mantissa (m bits). Exponent field E > 0 is normal: (1 + M / 2^m) *
2^(E - b); E = 0 is subnormal: (M / 2^m) * 2^(1 - b). Per the spec:
- FP8 E4M3: bias 7, no infinities, S.1111.111 is NaN; max normal 448, min subnormal 2^-9.
- FP8 E5M2: bias 15, IEEE-like (E = 31 is inf / NaN); max normal 57344, min subnormal 2^-16.
- FP6 E3M2: bias 3, no inf / NaN; max normal 28, min subnormal 0.0625.
- FP6 E2M3: bias 1, no inf / NaN; max normal 7.5, min subnormal 0.125.
- FP4 E2M1: bias 1, no inf / NaN; max normal 6, min subnormal 0.5; values {0, 0.5, 1, 1.5, 2, 3, 4, 6} and
  their negatives.
Conversion (as the spec prescribes): round to nearest, ties to even, saturating: magnitudes beyond the max normal become
the max normal (never inf or NaN). The worst error at v is therefore half the grid step of v's binade (the
subnormal step below the normal range), or |v| - max_normal beyond it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MiniFloat:
    """An ExMy element type: sign bit, `exponent_bits`, `mantissa_bits`, exponent `bias`, largest finite value."""

    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int
    max_normal: float

    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def min_exponent(self) -> int:
        """Exponent of the smallest normal (and of the subnormal grid): 1 - bias."""
        return 1 - self.bias

    @property
    def max_exponent(self) -> int:
        """emax: the exponent of the largest normal, floor(log2(max_normal))."""
        return math.floor(math.log2(self.max_normal))

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.min_exponent - self.mantissa_bits)


E4M3 = MiniFloat("e4m3", 4, 3, 7, 448.0)
E5M2 = MiniFloat("e5m2", 5, 2, 15, 57344.0)
E3M2 = MiniFloat("e3m2", 3, 2, 3, 28.0)
E2M3 = MiniFloat("e2m3", 2, 3, 1, 7.5)
E2M1 = MiniFloat("e2m1", 2, 1, 1, 6.0)
ELEMENT_TYPES: dict[str, MiniFloat] = {t.name: t for t in (E4M3, E5M2, E3M2, E2M3, E2M1)}


_IEEE_LAYOUT: dict[torch.dtype, tuple[torch.dtype, int, int]] = {  # bit-view dtype, mantissa bits, bias
    torch.float32: (torch.int32, 23, 127),
    torch.float64: (torch.int64, 52, 1023),
}


def _floor_log2(magnitude: Tensor) -> Tensor:
    """floor(log2 |v|) of float32 / float64 values read from their exponent field (zero and subnormals give
    -bias, below every element type's emin, where the callers clamp)."""
    view, mantissa, bias = _IEEE_LAYOUT[magnitude.dtype]
    return ((magnitude.view(view) >> mantissa) & (2 * bias + 1)) - bias


def _pow2(exponent: Tensor, dtype: torch.dtype) -> Tensor:
    """2^exponent, exactly, for integer exponents in dtype's normal range."""
    view, mantissa, bias = _IEEE_LAYOUT[dtype]
    return ((exponent.to(view) + bias) << mantissa).view(dtype)


def _step_exponent(magnitude: Tensor, fmt: MiniFloat) -> Tensor:
    """log2 of the grid spacing at each magnitude: max(floor(log2 |v|), emin) - m."""
    return _floor_log2(magnitude).clamp(min=fmt.min_exponent) - fmt.mantissa_bits


def _check_dtype(values: Tensor) -> None:
    if values.dtype not in _IEEE_LAYOUT:
        raise ValueError(f"element conversion works on float32 or float64 values, got {values.dtype}")


def round_to_element(values: Tensor, fmt: MiniFloat) -> Tensor:
    """Nearest representable value (ties to even, saturating at +-max_normal), in the dtype of `values`
    (float32 or float64). Exact: scaling by a power-of-two step loses nothing."""
    _check_dtype(values)
    magnitude = values.abs()
    exponent = _step_exponent(magnitude, fmt)
    rounded = torch.round(magnitude * _pow2(-exponent, values.dtype)) * _pow2(exponent, values.dtype)  # half to even
    return torch.copysign(rounded.clamp_(max=fmt.max_normal), values)


def max_code(fmt: MiniFloat) -> int:
    """The positive code of max_normal: every larger code is inf, NaN or unused."""
    exponent = fmt.max_exponent
    mantissa = round((fmt.max_normal / 2.0**exponent - 1) * (1 << fmt.mantissa_bits))
    return ((exponent + fmt.bias) << fmt.mantissa_bits) | mantissa


def encode(values: Tensor, fmt: MiniFloat) -> Tensor:
    """Element codes (uint8, low `fmt.bits` bits) of the values rounded into the format.

    Works on float32 bit patterns: rounding the float32 mantissa to m bits with ties to even is an integer add
    and shift (a carry moves into the exponent by itself), and re-biasing the exponent gives the code; below the
    normal range the code is round(|v| / min_subnormal). Saturation clamps the code at max_normal's."""
    _check_dtype(values)
    if values.dtype == torch.float64:  # round once in float64, then the float32 view is exact
        values = round_to_element(values, fmt).to(torch.float32)
    raw = values.view(torch.int32)
    magnitude_raw = raw & 0x7FFFFFFF
    shift = 23 - fmt.mantissa_bits
    tie_to_even = ((magnitude_raw >> shift) & 1) + ((1 << (shift - 1)) - 1)
    normal_code = ((magnitude_raw + tie_to_even) >> shift) - ((127 - fmt.bias) << fmt.mantissa_bits)
    magnitude = magnitude_raw.view(torch.float32)
    below = magnitude < 2.0**fmt.min_exponent
    subnormal_code = torch.round(magnitude.clamp(max=2.0**fmt.min_exponent) / fmt.min_subnormal).to(torch.int32)
    code = torch.where(below, subnormal_code, normal_code).clamp_(max=max_code(fmt))
    return (code | ((raw >> 31) & 1) << (fmt.bits - 1)).to(torch.uint8)


def code_table(fmt: MiniFloat) -> Tensor:
    """Value of every code (float32 [2^bits]); E4M3's NaN patterns and E5M2's inf / NaN patterns included."""
    codes = torch.arange(1 << fmt.bits, dtype=torch.int64)
    sign = 1.0 - 2.0 * ((codes >> (fmt.bits - 1)) & 1).double()
    biased = (codes >> fmt.mantissa_bits) & ((1 << fmt.exponent_bits) - 1)
    mantissa = (codes & ((1 << fmt.mantissa_bits) - 1)).double() / (1 << fmt.mantissa_bits)
    normal = torch.ldexp(1.0 + mantissa, biased - fmt.bias)
    subnormal = torch.ldexp(mantissa, torch.full_like(biased, fmt.min_exponent))
    values = sign * torch.where(biased > 0, normal, subnormal)
    top = biased == (1 << fmt.exponent_bits) - 1
    if fmt.name == "e4m3":
        values[top & ((codes & 7) == 7)] = float("nan")
    elif fmt.name == "e5m2":
        values[top] = torch.where(mantissa[top] == 0, sign[top] * float("inf"), float("nan"))
    return values.float()


def decode(codes: Tensor, fmt: MiniFloat) -> Tensor:
    """Values (float32) of element codes."""
    return code_table(fmt).to(codes.device)[codes.long()]


def element_error_bound(values: Tensor, fmt: MiniFloat) -> Tensor:
    """Largest |v - round_to_element(v)| the format allows at each v (same dtype as values)."""
    _check_dtype(values)
    magnitude = values.abs()
    half_step = _pow2(_step_exponent(magnitude, fmt) - 1, values.dtype)
    return torch.where(magnitude > fmt.max_normal, magnitude - fmt.max_normal, half_step)
