"""OCP Microscaling (MX) formats, per the OCP Microscaling Formats (MX) Specification v1.0 (2023).

A block of k = 32 consecutive elements along the input dim shares one scale X, stored as E8M0: an unsigned 8-bit
biased exponent (X = 2^(code - 127); code 255 is NaN and never produced). The spec's conversion picks
    X = 2^(floor(log2(amax)) - emax_elem),
with amax the block's largest |w| and emax_elem the exponent of the element type's largest normal (E4M3 8, E5M2
15, E3M2 4, E2M3 2, E2M1 2, INT8 0), clamped to E8M0's range [-127, 127] (an all-zero block takes 2^-127). Each
element is then P_i = w_i / X converted to the element type (round to nearest even, saturating at the max normal):
- mxfp8-e4m3, mxfp8-e5m2, mxfp6-e3m2, mxfp6-e2m3, mxfp4 (E2M1): minifloat elements (see minifloat.py);
- mxint8: 8-bit two's complement integers with an implicit scale 2^-6 (values code / 64), clamped to +-127
  (symmetric, as the spec's reference code does).
Element codes are packed at their width (8, 6 or 4 bits; a real bitstream for 6) and the scales are uint8, so an
MX element costs bits + 8 / 32: 8.25, 6.25 or 4.25 bits.
Bound: the element's own bound (half its grid step, or the saturation distance) times X, plus output rounding;
X is a power of two, so w / X and element * X are exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.kernels.quant import grouping, minifloat, packing
from reference_impls.kernels.quant.formats import Format, check_weight, output_rounding, register_format
from reference_impls.kernels.quant.qtensor import QTensor

BLOCK = 32
E8M0_BIAS = 127
INT8_MAX = 127
INT8_UNIT = 2.0**-6  # MXINT8's implicit element scale
ELEMENTS: dict[str, minifloat.MiniFloat | None] = {  # None: MXINT8
    "mxfp8-e4m3": minifloat.E4M3, "mxfp8-e5m2": minifloat.E5M2, "mxfp6-e3m2": minifloat.E3M2,
    "mxfp6-e2m3": minifloat.E2M3, "mxfp4": minifloat.E2M1, "mxint8": None,
}


def element_bits(element: minifloat.MiniFloat | None) -> int:
    return 8 if element is None else element.bits


def element_max_exponent(element: minifloat.MiniFloat | None) -> int:
    return 0 if element is None else element.max_exponent


def shared_exponents(blocks: Tensor, element: minifloat.MiniFloat | None) -> Tensor:
    """E8M0 scale exponents (int32 [..., G]) of blocks [..., G, 32]: floor(log2 amax) - emax, clamped."""
    amax = blocks.abs().amax(dim=-1)
    _, exponent = torch.frexp(amax)  # floor(log2 amax) = exponent - 1 for amax > 0
    shared = torch.where(amax > 0, exponent - 1 - element_max_exponent(element), -E8M0_BIAS)
    return shared.clamp(-E8M0_BIAS, E8M0_BIAS).to(torch.int32)


def encode_elements(scaled: Tensor, element: minifloat.MiniFloat | None) -> Tensor:
    """Element codes (uint8) of values already divided by the shared scale."""
    if element is None:
        codes = torch.round(scaled / INT8_UNIT).clamp_(-INT8_MAX, INT8_MAX)
        return packing.to_twos_complement(codes.to(torch.int16), 8)
    return minifloat.encode(scaled, element)


def decode_elements(codes: Tensor, element: minifloat.MiniFloat | None) -> Tensor:
    """Element values (float32) of codes."""
    if element is None:
        return packing.from_twos_complement(codes, 8).to(torch.float32) * INT8_UNIT
    return minifloat.decode(codes, element)


def element_error_bound(scaled: Tensor, element: minifloat.MiniFloat | None) -> Tensor:
    if element is None:
        magnitude = scaled.abs()
        top = INT8_MAX * INT8_UNIT
        return torch.where(magnitude > top, magnitude - top, torch.full_like(magnitude, INT8_UNIT / 2))
    return minifloat.element_error_bound(scaled, element)


def _scales(q: QTensor, dtype: torch.dtype) -> Tensor:
    """Shared scales X = 2^(code - 127) expanded to [N, K] in `dtype`."""
    exponents = q.payload["scales"].to(torch.int32) - E8M0_BIAS
    scale = torch.ldexp(torch.ones(exponents.shape, dtype=dtype, device=exponents.device), exponents)
    return grouping.expand_groups(scale, BLOCK, q.shape[1])


def _make_format(name: str, element: minifloat.MiniFloat | None) -> Format:
    bits = element_bits(element)

    def quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
        check_weight(w)
        blocks = grouping.group_view(w.to(grouping.working_dtype(w)), BLOCK)  # [N, G, 32]
        shared = shared_exponents(blocks, element)  # [N, G]
        scale = torch.ldexp(torch.ones_like(shared, dtype=blocks.dtype), shared)
        codes = encode_elements(blocks / scale[..., None], element).flatten(1)[:, : w.shape[1]]
        payload = {"codes": packing.pack_bits(codes, bits), "scales": (shared + E8M0_BIAS).to(torch.uint8)}
        return QTensor(name, tuple(w.shape), w.dtype, payload, {"block": BLOCK, "element_bits": bits})

    def dequantize(q: QTensor) -> Tensor:
        codes = packing.unpack_bits(q.payload["codes"], bits, q.numel).view(q.shape)
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        return (decode_elements(codes, element).to(work) * _scales(q, work)).to(q.dtype)

    def error_bound(w: Tensor, q: QTensor) -> Tensor:
        scale = _scales(q, torch.float64)
        core = element_error_bound(w.double() / scale, element) * scale
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        return core + output_rounding(w.double().abs() + core, work) + output_rounding(w.double().abs() + core,
                                                                                        q.dtype)

    kind = "int8 (x 2^-6)" if element is None else element.name.upper()
    description = (f"OCP MX v1.0 {name}: blocks of 32 along the input dim, E8M0 scale 2^(floor(log2 amax) - emax), "
                   f"{kind} elements (round to nearest even, saturating)")
    return register_format(Format(name, "mx", description, quantize, dequantize, error_bound))


for _name, _element in ELEMENTS.items():
    _make_format(_name, _element)
