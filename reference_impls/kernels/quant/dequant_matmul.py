"""Dequantize-then-matmul: the plain path every packed kernel is measured against.

y = x @ W^T with W [N, K] = (codes - zero) * scale per group of `group_size` along K, RTN's convention
(rtn.quantize_codes): sym codes int8 with no zero point, asym codes uint8 with zero uint8 [N, G], scale [N, G]
float16. `dequant_matmul` materializes W in the activation dtype (float32 arithmetic, one rounding) and calls
torch's matmul; `reference_matmul` is the exact answer in float64, the golden value of the quant kernels' tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reference_impls.kernels.quant import rtn


def check_operands(x: Tensor, codes: Tensor, scale: Tensor, zero: Tensor | None, group_size: int) -> None:
    """ValueError naming the mismatch: x [..., K], codes [N, K], scale (and zero) [N, ceil(K / group_size)]."""
    if codes.dim() != 2 or x.shape[-1] != codes.shape[1]:
        raise ValueError(f"expected x [..., K] and codes [N, K] with the same K; got {tuple(x.shape)}, "
                         f"{tuple(codes.shape)}")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")
    groups = -(-codes.shape[1] // group_size)
    if tuple(scale.shape) != (codes.shape[0], groups):
        raise ValueError(f"scale must be [N, G] = [{codes.shape[0]}, {groups}] for K = {codes.shape[1]} in groups "
                         f"of {group_size}; got {tuple(scale.shape)}")
    if zero is not None and zero.shape != scale.shape:
        raise ValueError(f"zero must have scale's shape {tuple(scale.shape)}, got {tuple(zero.shape)}")


def dequantize(codes: Tensor, scale: Tensor, zero: Tensor | None, group_size: int,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """W [N, K] in `dtype`: computed exactly in float32 (a float16 scale times an integer below 2^9), then cast."""
    return rtn.dequantize_codes(codes, scale, zero, group_size).to(dtype)


def dequant_matmul(x: Tensor, codes: Tensor, scale: Tensor, zero: Tensor | None, group_size: int) -> Tensor:
    """x [..., K] @ dequantize(...)^T -> [..., N] in x's dtype: W materialized in x's dtype, then torch matmul."""
    check_operands(x, codes, scale, zero, group_size)
    return F.linear(x, dequantize(codes, scale, zero, group_size, x.dtype))


def reference_matmul(x: Tensor, codes: Tensor, scale: Tensor, zero: Tensor | None, group_size: int) -> Tensor:
    """The exact product in float64 (x as given, W from its codes): the golden answer of the quant kernels."""
    check_operands(x, codes, scale, zero, group_size)
    weight = dequantize(codes, scale, zero, group_size, torch.float64)
    return x.to(torch.float64) @ weight.t()
