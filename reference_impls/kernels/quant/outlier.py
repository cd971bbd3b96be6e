"""int4 g128 with outlier input channels reordered first and kept in bf16 (`int4-g128-outlier`).

A few input channels of a trained layer carry much larger weights (or see much larger activations) than the rest;
inside a group of 128 one of them stretches the scale for all 128. Here, as in reorder-based schemes (Atom,
QUIK), the input channels are permuted so the k most salient come first; those k columns are kept in bf16
(bf16, not fp16, because outliers need its range), and the remaining K - k columns, in permuted order, are RTN
int4 asym in groups of 128 (the `int4-g128-asym` format, ragged last group allowed). Exactly:
- saliency: max |w| over the column, or, when calibration X [tokens, in] is given, mean |x_c| over the tokens;
- k = max(1, round(outlier_fraction * K)) with outlier_fraction = 1% by default (K = 4096: 41 channels), k <= K;
- permutation: the k most salient channels (most salient first; ties to the lower index), then the others in
  their original order; stored whole (`permutation`, int16 when K <= 32767, else int32), since a kernel gathers
  activations with it;
- payload: `outlier_columns` bf16 [N, k], the RTN payload (`codes`, `scale`, `zero`) of W[:, perm[k:]], and
  `permutation`. Decoding writes both parts back through the permutation.
Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.kernels.quant.calibration import channel_magnitude, check_calibration
from reference_impls.kernels.quant.formats import Format, check_weight, get_format, output_rounding, register_format
from reference_impls.kernels.quant.qtensor import QTensor

FORMAT_NAME = "int4-g128-outlier"
INNER_FORMAT = "int4-g128-asym"
OUTLIER_FRACTION = 0.01
KEPT_DTYPE = torch.bfloat16
RTN_KEYS = ("codes", "scale", "zero")


def num_outliers(in_features: int, fraction: float = OUTLIER_FRACTION) -> int:
    """k = max(1, round(fraction * in_features)), at most in_features."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"outlier fraction must be in [0, 1], got {fraction!r}")
    return min(in_features, max(1, round(fraction * in_features)))


def outlier_permutation(w: Tensor, calibration: Tensor | None, k: int) -> Tensor:
    """Input-channel order [K] (int64): the k most salient channels first, then the rest in original order."""
    saliency = w.double().abs().amax(dim=0) if calibration is None else channel_magnitude(calibration)  # [K]
    top = torch.argsort(-saliency, stable=True)[:k]
    rest = torch.ones(w.shape[1], dtype=torch.bool, device=w.device)
    rest[top] = False
    return torch.cat([top, torch.nonzero(rest).flatten()])


def quantize(w: Tensor, calibration: Tensor | None = None, fraction: float = OUTLIER_FRACTION) -> QTensor:
    """Reorder, keep the first k columns in bf16, RTN int4 g128 asym the rest."""
    check_weight(w)
    if calibration is not None:
        check_calibration(calibration, w.shape[1])
    k = num_outliers(w.shape[1], fraction)
    order = outlier_permutation(w, calibration, k)
    index_dtype = torch.int16 if w.shape[1] <= torch.iinfo(torch.int16).max else torch.int32
    payload = {"outlier_columns": w[:, order[:k]].to(KEPT_DTYPE).contiguous(), "permutation": order.to(index_dtype)}
    if k < w.shape[1]:
        payload.update(get_format(INNER_FORMAT).quantize(w[:, order[k:]], None).payload)
    meta = {"bits": 4, "group_size": 128, "outliers": k}
    return QTensor(FORMAT_NAME, tuple(w.shape), w.dtype, payload, meta)


def _inner(q: QTensor) -> QTensor | None:
    """The RTN part of the payload as an `int4-g128-asym` QTensor over the K - k reordered columns."""
    rows, cols = q.shape
    k = int(q.meta["outliers"])
    if k == cols:
        return None
    meta = {"bits": 4, "group_size": 128, "granularity": "g128", "symmetric": 0}
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    return QTensor(INNER_FORMAT, (rows, cols - k), dtype, {key: q.payload[key] for key in RTN_KEYS}, meta)


def dequantize(q: QTensor) -> Tensor:
    """Both parts written back to their original columns, in the original dtype."""
    order = q.payload["permutation"].to(torch.int64)
    k = int(q.meta["outliers"])
    out = torch.empty(q.shape, dtype=q.dtype, device=order.device)
    out[:, order[:k]] = q.payload["outlier_columns"].to(q.dtype)
    inner = _inner(q)
    if inner is not None:
        out[:, order[k:]] = get_format(INNER_FORMAT).dequantize(inner).to(q.dtype)
    return out


def error_bound(w: Tensor, q: QTensor) -> Tensor:
    """bf16 rounding on the kept columns (then rounding to the output dtype), RTN's bound on the rest."""
    order = q.payload["permutation"].to(torch.int64)
    k = int(q.meta["outliers"])
    w64 = w.double()
    bound = torch.empty(q.shape, dtype=torch.float64, device=w.device)
    kept = w64[:, order[:k]].abs()
    kept_error = output_rounding(kept, KEPT_DTYPE)
    bound[:, order[:k]] = kept_error + output_rounding(kept + kept_error, q.dtype)
    inner = _inner(q)
    if inner is not None:
        rest = get_format(INNER_FORMAT).error_bound(w[:, order[k:]], inner)
        bound[:, order[k:]] = rest + output_rounding(w64[:, order[k:]].abs() + rest, q.dtype)
    return bound


FORMATS = (
    Format(
        name=FORMAT_NAME,
        family="outlier",
        description="input channels reordered by max|w| (or mean|x| with calibration); the top 1% (>= 1) kept bf16, "
        "the rest RTN int4 asym g128 in the new order; the permutation stored int16/int32",
        quantize=quantize,
        dequantize=dequantize,
        error_bound=error_bound,
    ),
)
for _fmt in FORMATS:
    register_format(_fmt)
