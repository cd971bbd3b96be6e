"""Ternary weights: BitNet b1.58 absmean ternary and Sherry's 3:4-sparse 1.25-bit ternary.

- `ternary` (BitNet b1.58: Ma et al. 2024, "The Era of 1-bit LLMs: All Large Language Models are in 1.58 Bits"):
  scale = mean |w| over the tensor (float32), code = clamp(round(w / scale), -1, 1), w^ = code * scale.
  `ternary-channel`: the same with one float16 scale per output row. Trits are packed five per byte in base 3
  (byte = sum (code_i + 1) 3^i, at most 242 < 256): 8/5 = 1.6 bits per weight plus the scales.
- `sherry` (Huang et al. 2026, "Sherry: Hardware-Efficient 1.25-Bit Ternary Quantization via Fine-grained
  Sparsification", arXiv 2601.07892): in every run of 4 consecutive weights along the input dim exactly one is 0
  (the smallest |w|, first on ties) and the other three are sign(w) * scale, with scale = mean |w| over the kept
  weights of the row (float16; the L2-optimal scale for the fixed pattern). A run is stored in 5 bits (the zero's
  position in 2 bits, then the three signs in index order, 1 = negative), as a bitstream: 5/4 = 1.25 bits plus
  the scales. A ragged last run keeps all its real weights (its padding takes the zero).
Bounds: ternary max(scale / 2, |w| - scale) (half a step inside, saturation beyond); sherry |w| on the zeroed
weight (the smallest of its run) and ||w| - scale| on a kept one — the format is deterministic given w. Plus
rounding of w / scale and of the output.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.kernels.quant import grouping, packing
from reference_impls.kernels.quant.formats import Format, check_weight, output_rounding, register_format
from reference_impls.kernels.quant.qtensor import QTensor

TRITS_PER_BYTE = 5
SHERRY_RUN = 4
SHERRY_BITS = 5
CHANNEL_SCALE_DTYPE = torch.float16


def pack_trits(codes: Tensor) -> Tensor:
    """Ternary codes in {-1, 0, 1} (any shape) -> 1-D uint8, five trits per byte, the first in the lowest digit."""
    flat = codes.reshape(-1).to(torch.int16) + 1  # digits 0, 1, 2
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) > 2):
        raise ValueError("ternary codes must lie in {-1, 0, 1}")
    digits = torch.nn.functional.pad(flat, (0, -flat.numel() % TRITS_PER_BYTE), value=1).view(-1, TRITS_PER_BYTE)
    powers = 3 ** torch.arange(TRITS_PER_BYTE, dtype=torch.int16, device=codes.device)
    return (digits * powers).sum(dim=-1).to(torch.uint8)


def unpack_trits(packed: Tensor, numel: int) -> Tensor:
    """Inverse of pack_trits: the first `numel` codes as int8."""
    if packed.dtype != torch.uint8 or packed.numel() * TRITS_PER_BYTE < numel:
        raise ValueError(f"need a uint8 tensor of at least ceil({numel} / 5) bytes")
    powers = 3 ** torch.arange(TRITS_PER_BYTE, dtype=torch.int16, device=packed.device)
    digits = (packed.to(torch.int16)[:, None] // powers) % 3  # [bytes, 5]
    return (digits.reshape(-1)[:numel] - 1).to(torch.int8)


def _ternary_scale(w: Tensor, per_channel: bool) -> Tensor:
    """Stored absmean scale: [1, 1] float32, or [N, 1] float16 per row; never zero."""
    if per_channel:
        scale = w.abs().mean(dim=1, keepdim=True).to(CHANNEL_SCALE_DTYPE)
        if not bool(torch.isfinite(scale).all()):
            raise ValueError("weights too large: per-row scales exceed the float16 range (65504)")
        return scale.clamp_min(torch.finfo(CHANNEL_SCALE_DTYPE).smallest_normal)
    return w.abs().mean().reshape(1, 1).to(torch.float32).clamp_min(torch.finfo(torch.float32).smallest_normal)


def _make_ternary(name: str, per_channel: bool) -> Format:
    def quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
        check_weight(w)
        work = w.to(grouping.working_dtype(w))
        scale = _ternary_scale(work, per_channel)
        codes = torch.round(work / scale.to(work.dtype)).clamp_(-1, 1)
        return QTensor(name, tuple(w.shape), w.dtype, {"codes": pack_trits(codes), "scale": scale}, {})

    def dequantize(q: QTensor) -> Tensor:
        codes = unpack_trits(q.payload["codes"], q.numel).view(q.shape)
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        return (codes.to(work) * q.payload["scale"].to(work)).to(q.dtype)

    def error_bound(w: Tensor, q: QTensor) -> Tensor:
        scale, w64 = q.payload["scale"].double(), w.double()
        core = torch.maximum(scale.expand_as(w64) / 2, w64.abs() - scale)
        core = core + w64.abs() * torch.finfo(grouping.working_dtype(w)).eps
        return core + output_rounding(w64.abs() + core, q.dtype)

    where = "one float16 scale per output row" if per_channel else "one float32 scale per tensor"
    description = f"BitNet b1.58 absmean ternary: code = clamp(round(w / mean|w|), -1, 1), {where}, 5 trits/byte"
    return register_format(Format(name, "ternary", description, quantize, dequantize, error_bound))


def sherry_code_table() -> Tensor:
    """[32, 4] float32: the ternary run each 5-bit code stands for (bits 0-1 the zero's slot, bits 2-4 the kept
    slots' signs in index order, 1 = negative)."""
    code = torch.arange(1 << SHERRY_BITS)[:, None]  # [32, 1]
    slots = torch.arange(SHERRY_RUN)  # [4]
    position = code & 3
    rank = slots - (slots > position).to(torch.int64)  # a kept slot's index among the three signs
    negative = (code >> (2 + rank.clamp(max=2))) & 1
    return ((1 - 2 * negative) * (slots != position)).to(torch.float32)


def _encode_table() -> Tensor:
    """[64] int64: the 5-bit code of (zero slot p, the 4 slots' sign bits s) at index p * 16 + s."""
    values = sherry_code_table()  # [32, 4]
    position = (values == 0).to(torch.int64).argmax(dim=1)
    table = torch.zeros(SHERRY_RUN * 16, dtype=torch.int64)
    for signs in range(16):  # 16 sign patterns; the zero slot's own sign bit is ignored
        negative = (signs >> torch.arange(SHERRY_RUN)) & 1
        matches = ((values < 0) == (negative.bool() & (values != 0))).all(dim=1)
        for code in torch.nonzero(matches).flatten().tolist():
            table[position[code] * 16 + signs] = code
    return table


_SHERRY_VALUES = sherry_code_table()
_SHERRY_ENCODE = _encode_table()


def sherry_codes(w: Tensor) -> Tensor:
    """5-bit codes [N, R] (int64) of every run of 4 along the input dim (a ragged last run padded with zeros):
    the zero goes to the smallest |w| (first on ties), the kept slots carry their signs."""
    runs = grouping.group_view(w, SHERRY_RUN)  # [N, R, 4]
    position = runs.abs().argmin(dim=-1)  # first minimum on ties
    weights = torch.tensor([1, 2, 4, 8], device=w.device)
    signs = ((runs < 0).to(torch.int64) * weights).sum(dim=-1)  # [N, R]: 4 sign bits
    return _SHERRY_ENCODE.to(w.device)[position * 16 + signs]


def _sherry_values(q: QTensor) -> Tensor:
    """Ternary values [N, K] (float32) in {-1, 0, 1} of a sherry QTensor."""
    rows, cols = q.shape
    runs = grouping.num_groups(cols, SHERRY_RUN)
    code = packing.unpack_bits(q.payload["codes"], SHERRY_BITS, rows * runs).view(rows, runs)
    return _SHERRY_VALUES.to(code.device)[code.long()].flatten(1)[:, :cols]  # [N, R, 4] -> [N, K]


def _sherry_quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
    check_weight(w)
    work = w.to(grouping.working_dtype(w))
    code = sherry_codes(work)
    kept = _SHERRY_VALUES.to(w.device)[code].flatten(1)[:, : w.shape[1]] != 0  # [N, K]
    total = (work.abs() * kept).sum(dim=1, keepdim=True)
    scale = (total / kept.sum(dim=1, keepdim=True).clamp_min(1)).to(CHANNEL_SCALE_DTYPE)
    if not bool(torch.isfinite(scale).all()):
        raise ValueError("weights too large: per-row scales exceed the float16 range (65504)")
    scale = scale.clamp_min(torch.finfo(CHANNEL_SCALE_DTYPE).smallest_normal)
    payload = {"codes": packing.pack_bits(code, SHERRY_BITS), "scale": scale}
    return QTensor("sherry", tuple(w.shape), w.dtype, payload, {"run": SHERRY_RUN})


def _sherry_dequantize(q: QTensor) -> Tensor:
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    return (_sherry_values(q).to(work) * q.payload["scale"].to(work)).to(q.dtype)


def _sherry_error_bound(w: Tensor, q: QTensor) -> Tensor:
    w64 = w.double()
    kept = _sherry_values(q) != 0
    core = torch.where(kept, (w64.abs() - q.payload["scale"].double()).abs(), w64.abs())
    core = core + w64.abs() * torch.finfo(grouping.working_dtype(w)).eps
    return core + output_rounding(w64.abs() + core, q.dtype)


TERNARY = _make_ternary("ternary", per_channel=False)
TERNARY_CHANNEL = _make_ternary("ternary-channel", per_channel=True)
SHERRY = register_format(Format(
    "sherry", "ternary",
    "Sherry 3:4-sparse ternary: per run of 4, the smallest |w| -> 0, the rest sign(w) * row scale (mean kept |w|, "
    "fp16); 2-bit zero position + 3 sign bits = 5 bits per 4 weights",
    _sherry_quantize, _sherry_dequantize, _sherry_error_bound))
