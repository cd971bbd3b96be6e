"""Round-to-nearest (RTN) integer formats: int{8,4,3,2} x {tensor, channel, g32, g64, g128} x {sym, asym}.

Groups run along the input (last) dim; `channel` is one group per output row, `tensor` one for the whole matrix.
- sym: scale = absmax / (2^(b-1) - 1), code = clamp(round(w / scale), -(2^(b-1) - 1), 2^(b-1) - 1), w^ = code *
  scale. Codes are stored as b-bit two's complement.
- asym: the group's range is widened to include 0 (lo = min(min w, 0), hi = max(max w, 0), as PyTorch observers
  and GPTQ do, so an integer zero point can represent it); scale = (hi - lo) / (2^b - 1), zero point z =
  clamp(round(-lo / scale), 0, 2^b - 1), code = clamp(round(w / scale) + z, 0, 2^b - 1), w^ = (code - z) * scale.
Scales are stored float16 (and clamped to its smallest normal, so a zero group is fine); codes are computed
against the stored scale, so decoding reproduces exactly what was rounded. Codes and zero points are packed at b
bits (packing.pack_bits). Bound per element: half a step inside the representable range, the distance to the range
outside it (the end codes saturate), plus rounding of the result to the output dtype.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from reference_impls.kernels.quant import grouping, packing
from reference_impls.kernels.quant.formats import (
    Format,
    check_weight,
    output_rounding,
    register_alias,
    register_format,
)
from reference_impls.kernels.quant.qtensor import QTensor

BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)  # quantize_codes accepts these; formats are registered for 8/4/3/2
FORMAT_BITS: tuple[int, ...] = (8, 4, 3, 2)
GRANULARITIES: dict[str, int | str] = {"tensor": "tensor", "channel": "channel", "g32": 32, "g64": 64, "g128": 128}
SCALE_DTYPE = torch.float16

GroupSize = int | Literal["channel", "tensor"]


def _check(bits: int, group_size: GroupSize) -> None:
    if not isinstance(bits, int) or bits not in BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, BITS))}, got {bits!r}")
    if group_size not in ("channel", "tensor"):
        if isinstance(group_size, str):
            raise ValueError(f"group_size must be an integer >= 1, 'channel' or 'tensor', got {group_size!r}")
        grouping.check_group_size(group_size)


def _grouped(x: Tensor, group_size: GroupSize) -> Tensor:
    """[N, K] -> [N, G, gs]: tensor granularity is one group of the whole matrix, seen as [1, 1, N*K]."""
    if group_size == "tensor":
        return x.reshape(1, 1, -1)
    return grouping.group_view(x, x.shape[1] if group_size == "channel" else group_size)


def _ungrouped(x: Tensor, shape: tuple[int, int]) -> Tensor:
    """Inverse of _grouped: [N or 1, G, gs] -> [N, K], dropping the ragged padding."""
    return x.reshape(-1)[: shape[0] * shape[1]].view(shape) if x.shape[0] == 1 else x.flatten(1)[:, : shape[1]]


def _stored_scale(raw: Tensor) -> Tensor:
    scale = raw.to(SCALE_DTYPE).clamp_min(torch.finfo(SCALE_DTYPE).smallest_normal)
    if not bool(torch.isfinite(scale).all()):
        raise ValueError("weights too large: the scales exceed the float16 range (65504)")
    return scale


def quantize_codes(w: Tensor, bits: int, group_size: GroupSize, symmetric: bool
                   ) -> tuple[Tensor, Tensor, Tensor | None]:
    """RTN codes of a 2-D weight [N, K]: (codes [N, K] unpacked — int8 for sym, uint8 for asym; scale [N, G]
    float16; zero [N, G] uint8 or None for sym). group_size is an int, "channel" (G = 1) or "tensor" (G = 1,
    the one scale repeated over the rows)."""
    check_weight(w)
    _check(bits, group_size)
    groups = _grouped(w.to(grouping.working_dtype(w)), group_size)  # [N or 1, G, gs]
    pad = 0.0 if group_size == "tensor" else None
    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        absmax = groups.abs().amax(dim=-1)  # padding is 0: harmless for absmax
        scale = _stored_scale(absmax / qmax)  # [N or 1, G]
        codes = torch.round(groups / scale[..., None].to(groups.dtype)).clamp_(-qmax, qmax).to(torch.int8)
        zero = None
    else:
        levels = (1 << bits) - 1
        lows, highs = (groups.amin(dim=-1), groups.amax(dim=-1)) if pad is not None else \
            grouping.group_min_max(w, w.shape[1] if group_size == "channel" else group_size)
        lows, highs = lows.clamp(max=0), highs.clamp(min=0)  # padding 0 is inside [lo, hi] anyway
        scale = _stored_scale((highs - lows) / levels)
        scale_w = scale.to(groups.dtype)
        zero_w = torch.round(-lows / scale_w).clamp_(0, levels)
        codes = (torch.round(groups / scale_w[..., None]) + zero_w[..., None]).clamp_(0, levels).to(torch.uint8)
        zero = zero_w.to(torch.uint8)
    codes = _ungrouped(codes, tuple(w.shape))
    if group_size == "tensor":
        scale = scale.expand(w.shape[0], 1)
        zero = None if zero is None else zero.expand(w.shape[0], 1)
    return codes, scale, zero


def dequantize_codes(codes: Tensor, scale: Tensor, zero: Tensor | None, group_size: int) -> Tensor:
    """(codes - zero) * scale in float32 ([N, K]; scale/zero [N, G] with G = ceil(K / group_size)); exact, since
    a float16 scale times an integer below 2^9 fits float32's mantissa."""
    shifted = codes.to(torch.float32) if zero is None else codes.to(torch.float32) - grouping.expand_groups(
        zero.to(torch.float32), group_size, codes.shape[1])
    return shifted * grouping.expand_groups(scale.to(torch.float32), group_size, codes.shape[1])


def _layout(q: QTensor) -> tuple[int, Tensor, Tensor | None]:
    """Group size along K, scale [N, G] and zero [N, G] (None for sym) of a stored RTN QTensor."""
    rows, cols = q.shape
    bits, group_size = int(q.meta["bits"]), int(q.meta["group_size"])
    scale = q.payload["scale"]
    zero = None
    if "zero" in q.payload:
        zero = packing.unpack_bits(q.payload["zero"], bits, scale.numel()).view(scale.shape)
    if q.meta["granularity"] == "tensor":  # one stored scale (and zero) stands for every row
        scale = scale.expand(rows, 1)
        zero = None if zero is None else zero.expand(rows, 1)
    return group_size, scale, zero


def _codes(q: QTensor) -> Tensor:
    bits = int(q.meta["bits"])
    patterns = packing.unpack_bits(q.payload["codes"], bits, q.numel).view(q.shape)
    return packing.from_twos_complement(patterns, bits) if q.meta["symmetric"] else patterns


def _make_format(bits: int, granularity: str, symmetric: bool) -> Format:
    name = f"int{bits}-{granularity}-{'sym' if symmetric else 'asym'}"
    group_spec = GRANULARITIES[granularity]

    def quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
        codes, scale, zero = quantize_codes(w, bits, group_spec, symmetric)
        group_size = group_spec if isinstance(group_spec, int) else w.shape[1]
        if granularity == "tensor":
            scale, zero = scale[:1], None if zero is None else zero[:1]
        stored = packing.to_twos_complement(codes, bits) if symmetric else codes
        payload = {"codes": packing.pack_bits(stored, bits), "scale": scale.contiguous()}
        if zero is not None:
            payload["zero"] = packing.pack_bits(zero, bits)
        meta = {"bits": bits, "group_size": group_size, "granularity": granularity, "symmetric": int(symmetric)}
        return QTensor(name, tuple(w.shape), w.dtype, payload, meta)

    def dequantize(q: QTensor) -> Tensor:
        group_size, scale, zero = _layout(q)
        return dequantize_codes(_codes(q), scale, zero, group_size).to(q.dtype)

    def error_bound(w: Tensor, q: QTensor) -> Tensor:
        group_size, scale, zero = _layout(q)
        cols = q.shape[1]
        step = grouping.expand_groups(scale.double(), group_size, cols)
        w64 = w.double()
        if zero is None:
            top = ((1 << (bits - 1)) - 1) * step
            core = torch.maximum(step / 2, w64.abs() - top)
        else:
            z = grouping.expand_groups(zero.double(), group_size, cols)
            core = torch.maximum(torch.maximum(step / 2, -z * step - w64), w64 - ((1 << bits) - 1 - z) * step)
        core = core + w64.abs() * torch.finfo(grouping.working_dtype(w)).eps  # w / scale in working precision
        return core + output_rounding(w64.abs() + core, q.dtype)

    kind = "absmax / (2^(b-1)-1), two's complement codes" if symmetric else \
        "(hi-lo) / (2^b-1) over [min(w,0), max(w,0)], integer zero point packed at b bits"
    where = {"tensor": "one scale per tensor", "channel": "one scale per output row"}.get(
        granularity, f"groups of {group_spec} along the input dim")
    description = f"RTN int{bits} {'sym' if symmetric else 'asym'}: {where}; scale = {kind}; fp16 scales"
    return register_format(Format(name, "rtn", description, quantize, dequantize, error_bound))


for _bits in FORMAT_BITS:
    for _granularity in GRANULARITIES:
        for _symmetric in (True, False):
            _make_format(_bits, _granularity, _symmetric)
    for _granularity in ("g32", "g64", "g128"):
        register_alias(f"int{_bits}-{_granularity}", f"int{_bits}-{_granularity}-asym")
