"""Calibration activations shared by the activation-aware formats (GPTQ, AWQ, outlier reordering).

Calibration is a batch of layer inputs X [tokens, in_features]; a layer computes X W^T with W [out, in]. What a
calibrated format tries to keep small is the layer-output error ||X W^T - X W^^T||, not the weight error.
Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import torch
from torch import Tensor

FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check_calibration(x: Tensor | None, in_features: int, what: str = "calibration") -> Tensor:
    """Calibration must be a finite, non-empty float tensor [tokens, in_features]; returns it unchanged."""
    if x is None:
        raise ValueError(f"{what} activations [tokens, {in_features}] are required")
    if not isinstance(x, Tensor):
        raise ValueError(f"{what} must be a torch.Tensor [tokens, {in_features}], got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{what} must have a float dtype ({', '.join(map(str, FLOAT_DTYPES))}), got {x.dtype}")
    if x.dim() != 2 or x.shape[1] != in_features or x.shape[0] < 1:
        raise ValueError(f"{what} must be [tokens >= 1, in_features = {in_features}], got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} must be finite (no inf or nan)")
    return x


def channel_magnitude(x: Tensor) -> Tensor:
    """Mean |x| of every input channel over the tokens ([tokens, in] -> [in], float64): AWQ's saliency."""
    return x.double().abs().mean(dim=0)


def output_error(x: Tensor, w: Tensor, w_hat: Tensor, dtype: torch.dtype = torch.float64) -> float:
    """Frobenius norm of the layer-output error ||X W^T - X W^^T|| = ||X (W - W^)^T||, computed in `dtype`
    (float64 by default; float32 is enough to rank candidates and 2x-4x faster on a CPU)."""
    return float(torch.linalg.matrix_norm(x.to(dtype) @ (w.to(dtype) - w_hat.to(dtype)).T))
