"""NVFP4: NVIDIA's 4-bit float format (Blackwell; "Introducing NVFP4 for Efficient and Accurate Low-Precision
Inference", NVIDIA technical blog, 2025, and the Transformer Engine / TensorRT Model Optimizer recipes).

Two-level scaling. One float32 per-tensor scale S = amax(|w|) / (448 * 6), chosen so every block scale fits
E4M3 (448 is E4M3's max normal, 6 E2M1's). Blocks of 16 consecutive elements along the input dim each store an
E4M3 scale s_b = e4m3(amax_b / 6 / S) (round to nearest even; at most 448 by construction; kept as
torch.float8_e4m3fn). The block's decoding scale is X_b = s_b * S (float32), elements are E2M1 codes of w / X_b
(round to nearest even, saturating at +-6), packed two per byte; w^ = e2m1 * X_b. A block whose scale rounds to 0
decodes to 0. Cost: 4 + 8/16 = 4.5 bits plus 32 bits per tensor.
Bound: the E2M1 bound at w / X_b (half its grid step, or |w / X_b| - 6 where a block scale rounded down saturates
the block's largest element) times X_b; |w| where X_b = 0; plus rounding of w / X_b and of the output.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.kernels.quant import grouping, minifloat, packing
from reference_impls.kernels.quant.formats import Format, check_weight, output_rounding, register_format
from reference_impls.kernels.quant.qtensor import QTensor

BLOCK = 16
SCALE_MAX = minifloat.E4M3.max_normal  # 448
ELEMENT_MAX = minifloat.E2M1.max_normal  # 6


def _decode_scales(q: QTensor) -> Tensor:
    """X_b = s_b * S expanded to [N, K], float32."""
    scale = q.payload["block_scales"].to(torch.float32) * q.payload["tensor_scale"]  # [N, G]
    return grouping.expand_groups(scale, BLOCK, q.shape[1])


def quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
    check_weight(w)
    work = w.to(torch.float32)
    if not bool(torch.isfinite(work).all()):
        raise ValueError("nvfp4: weights exceed the float32 range")
    blocks = grouping.group_view(work, BLOCK)  # [N, G, 16]
    amax = blocks.abs().amax(dim=-1)  # [N, G]
    tensor_scale = (amax.max() / (SCALE_MAX * ELEMENT_MAX)).clamp_min(torch.finfo(torch.float32).tiny).reshape(1)
    block_scales = (amax / ELEMENT_MAX / tensor_scale).clamp_(max=SCALE_MAX).to(torch.float8_e4m3fn)
    decode = block_scales.to(torch.float32) * tensor_scale  # [N, G]
    safe = torch.where(decode > 0, decode, torch.ones_like(decode))
    scaled = torch.where(decode[..., None] > 0, blocks / safe[..., None], 0.0)
    codes = minifloat.encode(scaled, minifloat.E2M1).flatten(1)[:, : w.shape[1]]
    payload = {"codes": packing.pack_bits(codes, 4), "block_scales": block_scales, "tensor_scale": tensor_scale}
    return QTensor("nvfp4", tuple(w.shape), w.dtype, payload, {"block": BLOCK})


def dequantize(q: QTensor) -> Tensor:
    codes = packing.unpack_bits(q.payload["codes"], 4, q.numel).view(q.shape)
    return (minifloat.decode(codes, minifloat.E2M1) * _decode_scales(q)).to(q.dtype)


def error_bound(w: Tensor, q: QTensor) -> Tensor:
    scale = _decode_scales(q).double()
    w64 = w.double()
    scaled = torch.where(scale > 0, w64 / torch.where(scale > 0, scale, 1.0), 0.0)
    core = minifloat.element_error_bound(scaled, minifloat.E2M1) * scale + torch.where(scale > 0, 0.0, w64.abs())
    core = core + 2 * w64.abs() * torch.finfo(torch.float32).eps  # w / X_b rounded in float32
    return core + output_rounding(w64.abs() + core, torch.float32) + output_rounding(w64.abs() + core, q.dtype)


NVFP4 = register_format(Format(
    "nvfp4", "mx",
    "NVIDIA NVFP4: blocks of 16, E4M3 block scale amax_b/6/S, fp32 tensor scale S = amax/(448*6), E2M1 elements",
    quantize, dequantize, error_bound))
