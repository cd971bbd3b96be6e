"""Baselines: plain casts to bf16 or fp16, stored as the cast values (16 bits per weight, nothing else).

Round-to-nearest-even to the target type; the bound is half an ulp of the target at each value (unit roundoff
2^-8 for bf16, 2^-11 for fp16, times |w|; half the subnormal spacing near zero). fp16 rejects weights beyond 65504.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.kernels.quant.formats import Format, check_weight, output_rounding, register_format
from reference_impls.kernels.quant.qtensor import QTensor


def _cast_format(name: str, target: torch.dtype) -> Format:
    def quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
        check_weight(w)
        if target == torch.float16 and float(w.abs().max()) > torch.finfo(torch.float16).max:
            raise ValueError(f"{name}: |w| up to {float(w.abs().max()):.3g} exceeds the fp16 range (65504)")
        return QTensor(name, tuple(w.shape), w.dtype, {"values": w.to(target)}, {})

    def dequantize(q: QTensor) -> Tensor:
        return q.payload["values"].to(q.dtype)

    def error_bound(w: Tensor, q: QTensor) -> Tensor:
        cast = output_rounding(w.double(), target)
        return cast + output_rounding(w.double() + cast, q.dtype)  # the way back to a narrower input dtype

    description = f"plain cast to {target} (round to nearest even), 16 bits per weight"
    return register_format(Format(name, "baseline", description, quantize, dequantize, error_bound))


BF16 = _cast_format("bf16", torch.bfloat16)
FP16 = _cast_format("fp16", torch.float16)
