"""AWQ-style activation-aware scaling (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization").

Input channels that see large activations matter more to the layer output, so AWQ scales them up before rounding:
with s_c = m_c^alpha (m_c = mean |x_c| over the calibration tokens), normalized by sqrt(max s * min s), the stored
weight is Q(W diag(s)) and the weight it stands for is Q(W diag(s)) diag(1/s). Exactly as done here:
- Q is RTN int4 asym in groups of 128 along the input dim (the `int4-g128-asym` format);
- alpha is searched over 20 points evenly spaced in [0, 1] (both ends included) and the one with the least
  layer-output error ||X W^T - X W^^T|| on the calibration batch wins; alpha = 0 gives s = 1, i.e. plain RTN, so
  the search can never do worse than RTN on that batch;
- s is rounded to float16 before it is used, and stored (`input_scale`, float16 [in]), so it is counted in the
  effective bits and decoding reproduces exactly what was searched.
AWQ's weight clipping search is not included. Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.kernels.quant.calibration import channel_magnitude, check_calibration, output_error
from reference_impls.kernels.quant.formats import Format, check_weight, get_format, register_format
from reference_impls.kernels.quant.qtensor import QTensor

FORMAT_NAME = "awq-int4-g128"
INNER_FORMAT = "int4-g128-asym"  # the quantizer Q applied to W diag(s)
ALPHA_GRID: tuple[float, ...] = tuple(i / 19 for i in range(20))
SCALE_RANGE = (1e-4, 1e4)  # s is clamped here so it (and W s) stays well inside float16


def input_scale(x: Tensor, alpha: float) -> Tensor:
    """s = m^alpha / sqrt(max(m^alpha) * min(m^alpha)) per input channel, clamped and rounded to float16 ([in])."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    magnitude = channel_magnitude(x).clamp_min(1e-12) ** alpha  # [in] float64
    scale = magnitude / torch.sqrt(magnitude.max() * magnitude.min())
    return scale.clamp(*SCALE_RANGE).to(torch.float16)


def _quantize_scaled(w: Tensor, scale: Tensor) -> QTensor:
    """Q(W diag(s)) as an RTN QTensor; W is scaled in its working dtype (float32, or float64 for float64)."""
    work = _work_dtype(w.dtype)
    return get_format(INNER_FORMAT).quantize(w.to(work) * scale.to(work), None)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _unscale(inner: QTensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """Q(W s) / s, computed in float32 (float64 for float64 weights), returned in `dtype`."""
    work = _work_dtype(dtype)
    return (get_format(INNER_FORMAT).dequantize(inner).to(work) / scale.to(work)).to(dtype)


def awq_search(w: Tensor, x: Tensor, alphas: tuple[float, ...] = ALPHA_GRID) -> tuple[float, Tensor, QTensor]:
    """Grid search of alpha -> (best alpha, its float16 scale [in], the RTN QTensor of W diag(s)); the first alpha
    wins a tie."""
    check_weight(w)
    check_calibration(x, w.shape[1])
    if not alphas:
        raise ValueError("alphas must name at least one value in [0, 1]")
    best = None
    for alpha in alphas:
        scale = input_scale(x, alpha)
        inner = _quantize_scaled(w, scale)
        error = output_error(x, w, _unscale(inner, scale, w.dtype), _work_dtype(w.dtype))
        if best is None or error < best[0]:
            best = (error, alpha, scale, inner)
    return best[1], best[2], best[3]


def quantize(w: Tensor, calibration: Tensor | None = None, alphas: tuple[float, ...] = ALPHA_GRID) -> QTensor:
    """AWQ int4 g128: the RTN payload of W diag(s) plus the float16 input scales s."""
    check_weight(w)
    alpha, scale, inner = awq_search(w, check_calibration(calibration, w.shape[1]), alphas)
    payload = dict(inner.payload, input_scale=scale)
    return QTensor(FORMAT_NAME, tuple(w.shape), w.dtype, payload, dict(inner.meta, alpha=alpha))


def dequantize(q: QTensor) -> Tensor:
    """Q(W s) / s in the original dtype."""
    payload = {k: v for k, v in q.payload.items() if k != "input_scale"}
    meta = {k: v for k, v in q.meta.items() if k != "alpha"}
    inner = QTensor(INNER_FORMAT, q.shape, _work_dtype(q.dtype), payload, meta)  # as _quantize_scaled made it
    return _unscale(inner, q.payload["input_scale"], q.dtype)


FORMATS = (
    Format(
        name=FORMAT_NAME,
        family="calibrated",
        description="AWQ: RTN int4 asym g128 of W diag(s), s = mean|x_c|^alpha normalized, alpha from a 20-point "
        "grid in [0, 1] minimizing the calibration output error; s stored float16; decodes to Q(W s) / s",
        quantize=quantize,
        dequantize=dequantize,
        error_bound=None,
        needs_calibration=True,
    ),
)
for _fmt in FORMATS:
    register_format(_fmt)
