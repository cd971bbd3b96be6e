"""NormalFloat-4 (NF4) and NF4 with double quantization, as defined by QLoRA (Dettmers et al. 2023, "QLoRA:
Efficient Finetuning of Quantized LLMs").

NF4 levels: the 16 values q_i normalized to [-1, 1] with 8 positive and 7 negative normal quantiles plus an exact
zero: positive = Phi^-1(linspace(delta, 1/2, 9)[:-1]), negative = -Phi^-1(linspace(delta, 1/2, 8)[:-1]), delta =
1 - (1/(2*15) + 1/(2*16)) / 2 = 0.9677083, all divided by Phi^-1(delta) (QLoRA's appendix publishes the values;
NF4_LEVELS holds that published list, normal_float_levels() derives it).
- `nf4`: blocks of 64 along the input dim; each block stores its absmax as float32; code = the level nearest to
  w / absmax (4 bits, packed two per byte); w^ = level * absmax. 4 + 32/64 = 4.5 bits.
- `nf4-dq`: the same codes, but the float32 absmax values c (one per block, flattened row-major) are themselves
  quantized: their mean m is subtracted (one float32 offset), then blocks of 256 of (c - m) are quantized to 8-bit
  symmetric integers with a float32 absmax scale s2: c^ = m + round(127 (c - m) / s2) * s2 / 127. QLoRA codes the
  second level as 8-bit floats (bitsandbytes' dynamic map); this linear int8 has the same storage, 4 + 8/64 +
  32/(64 * 256) bits. Codes are chosen against the decoded scale c^, so the stored format reproduces what was
  rounded.
Bound: half the gap between the two levels around w / scale, times |scale|; beyond +-1 (a decoded scale smaller
than the block absmax) the clipped distance |w| - |scale|; plus working-precision and output rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.kernels.quant import grouping, packing
from reference_impls.kernels.quant.formats import Format, check_weight, output_rounding, register_format
from reference_impls.kernels.quant.qtensor import QTensor

NF4_LEVELS: tuple[float, ...] = (  # as published by QLoRA (and bitsandbytes), float32
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)
NF4_OFFSET = 1.0 - (1.0 / (2 * 15) + 1.0 / (2 * 16)) / 2  # delta = 0.96770833...
BLOCK = 64
DQ_BLOCK = 256
DQ_LEVELS = 127


def normal_float_levels(offset: float = NF4_OFFSET) -> Tensor:
    """Derive the 16 NF4 levels (float64) from normal quantiles, as QLoRA builds them."""
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])  # 8 values > 0
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])  # 7 values < 0
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return levels / levels.abs().max()


def _levels(device: torch.device) -> Tensor:
    return torch.tensor(NF4_LEVELS, dtype=torch.float32, device=device)


def nearest_level(normalized: Tensor) -> Tensor:
    """Index (uint8) of the NF4 level nearest each value (values outside [-1, 1] take the end levels)."""
    levels = _levels(normalized.device).to(normalized.dtype)
    midpoints = (levels[1:] + levels[:-1]) / 2
    return torch.bucketize(normalized, midpoints).to(torch.uint8)


def _double_quantize(absmax: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Quantize the float32 block absmax values [N, G]: payload tensors and the decoded scales [N, G]."""
    flat = absmax.reshape(-1)  # [N * G]
    offset = flat.mean().reshape(1)  # [1] float32
    centred = grouping.group_view(flat - offset, DQ_BLOCK)  # [B, 256]
    second = centred.abs().amax(dim=-1).clamp_min(torch.finfo(torch.float32).tiny)  # [B] float32
    codes = torch.round(centred / second[:, None] * DQ_LEVELS).clamp_(-DQ_LEVELS, DQ_LEVELS).to(torch.int8)
    payload = {"scale_codes": codes.reshape(-1)[: flat.numel()].contiguous(), "scale_scales": second,
               "scale_offset": offset}
    return payload, _decode_scales(payload, absmax.shape)


def _decode_scales(payload: dict[str, Tensor], shape: torch.Size | tuple[int, ...]) -> Tensor:
    codes = payload["scale_codes"].to(torch.float32)
    step = grouping.expand_groups(payload["scale_scales"] / DQ_LEVELS, DQ_BLOCK, codes.numel())
    return (codes * step + payload["scale_offset"]).view(shape)


def _block_scales(q: QTensor) -> Tensor:
    """The per-block scales [N, G] the codes were chosen against (float32)."""
    groups = grouping.num_groups(q.shape[1], BLOCK)
    if "absmax" in q.payload:
        return q.payload["absmax"]
    return _decode_scales(q.payload, (q.shape[0], groups))


def _make_format(name: str, double: bool) -> Format:
    def quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
        check_weight(w)
        blocks = grouping.group_view(w.to(grouping.working_dtype(w)), BLOCK)  # [N, G, 64]
        absmax = blocks.abs().amax(dim=-1).to(torch.float32)  # [N, G]
        if double:
            payload, scales = _double_quantize(absmax)
        else:
            payload, scales = {"absmax": absmax}, absmax
        safe = torch.where(scales != 0, scales, torch.ones_like(scales)).to(blocks.dtype)
        codes = nearest_level(blocks / safe[..., None]).flatten(1)[:, : w.shape[1]]  # zero scale: code of 0.0
        payload = {"codes": packing.pack_bits(codes, 4), **payload}
        return QTensor(name, tuple(w.shape), w.dtype, payload, {"block": BLOCK})

    def dequantize(q: QTensor) -> Tensor:
        codes = packing.unpack_bits(q.payload["codes"], 4, q.numel).view(q.shape)
        values = _levels(codes.device)[codes.long()]
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        scales = grouping.expand_groups(_block_scales(q).to(work), BLOCK, q.shape[1])
        return (values.to(work) * scales).to(q.dtype)

    def error_bound(w: Tensor, q: QTensor) -> Tensor:
        scales = grouping.expand_groups(_block_scales(q).double(), BLOCK, q.shape[1])
        w64 = w.double()
        normalized = torch.where(scales != 0, w64 / torch.where(scales != 0, scales, 1.0), 0.0)
        clipped = normalized.clamp(-1, 1)
        levels = _levels(w.device).double()
        lower = (torch.searchsorted(levels, clipped.contiguous(), right=True) - 1).clamp_(0, len(levels) - 2)
        half_gap = (levels[lower + 1] - levels[lower]) / 2
        core = scales.abs() * (half_gap + (normalized - clipped).abs()) + torch.where(scales == 0, w64.abs(), 0.0)
        core = core + 2 * (w64.abs() + core) * torch.finfo(grouping.working_dtype(w)).eps  # w/scale, level*scale
        return core + output_rounding(w64.abs() + core, q.dtype)

    description = ("QLoRA NF4: blocks of 64, float32 absmax, 4-bit index of the nearest NormalFloat level" +
                   ("; absmax double-quantized to int8 in blocks of 256 after subtracting their mean" if double
                    else ""))
    return register_format(Format(name, "nf4", description, quantize, dequantize, error_bound))


NF4 = _make_format("nf4", double=False)
NF4_DQ = _make_format("nf4-dq", double=True)
