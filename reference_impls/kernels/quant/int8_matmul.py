"""W8A8 dynamic: int8 x int8 -> int32 through torch._int_mm, per-token activation and per-channel weight scales.

y[m, n] = sx[m] * sw[n] * sum_k qx[m, k] * qw[n, k]
  qx = round(x / sx), sx = max|x[m, :]| / 127  (per token, at call time: "dynamic")
  qw int8 [N, K], sw [N]                        (per output channel, symmetric: RTN int8-channel-sym)
The integer dot products are exact (int32); the only roundings are the activation's and the final scaling's.

torch._int_mm(a int8 [M, K], b int8 [K, N]) -> int32 [M, N]. On CUDA (cuBLASLt's int8 path) it requires
M > 16 and K, N multiples of 8 (and b column-major): `prepare_int8_weight` pads the weight's N and K with zero
rows and columns once; each call pads x to at least 17 rows and to the padded K with zeros (zeros add nothing to
a dot product) and slices the answer. Where torch has no _int_mm, `int_mm_unavailable` says so and
`int8_linear` raises that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

CUDA_MIN_ROWS = 17  # torch._int_mm on CUDA: "self.size(0) needs to be greater than 16"
CUDA_MULTIPLE = 8  # ... and K, N multiples of 8
CUDA_CONSTRAINT = "torch._int_mm on CUDA needs M > 16 and K, N multiples of 8"


@dataclass(frozen=True)
class Int8Weight:
    """A per-channel int8 weight [N, K], padded and laid out for torch._int_mm."""

    qweight_t: Tensor  # int8 [Kp, Np]: the transpose of a contiguous [Np, Kp] (column-major, as cuBLASLt wants)
    scale: Tensor  # float32 [N]
    in_features: int  # K
    out_features: int  # N

    @property
    def nbytes(self) -> int:
        return self.qweight_t.numel() + self.scale.numel() * self.scale.element_size()


def int_mm_unavailable(device: torch.device | str) -> str | None:
    """Why torch._int_mm cannot run on `device` with this torch, or None when it can."""
    device = torch.device(device)
    if not hasattr(torch, "_int_mm"):
        return f"torch {torch.__version__} has no torch._int_mm"
    if device.type not in ("cpu", "cuda"):
        return f"torch._int_mm runs on cpu and cuda, not {device.type}"
    return None


def prepare_int8_weight(codes: Tensor, scale: Tensor) -> Int8Weight:
    """codes int8 [N, K] in [-127, 127], scale [N] or [N, 1] (any float dtype) -> Int8Weight (padded on CUDA)."""
    if codes.dim() != 2 or codes.dtype != torch.int8:
        raise ValueError(f"codes must be int8 [N, K], got {codes.dtype} {tuple(codes.shape)}")
    rows, k = codes.shape
    if scale.numel() != rows:
        raise ValueError(f"per-channel int8 needs one scale per output row ({rows}), got {tuple(scale.shape)}")
    pad_k = -k % CUDA_MULTIPLE if codes.is_cuda else 0
    pad_n = -rows % CUDA_MULTIPLE if codes.is_cuda else 0
    padded = F.pad(codes, (0, pad_k, 0, pad_n)) if pad_k or pad_n else codes.contiguous()
    return Int8Weight(padded.t(), scale.reshape(rows).to(torch.float32), k, rows)


def quantize_per_token(x: Tensor) -> tuple[Tensor, Tensor]:
    """x [M, K] -> (qx int8 [M, K], sx float32 [M]) with sx = max|x[m]| / 127 (an all-zero row gets sx = 1)."""
    wide = x.to(torch.float32)
    sx = wide.abs().amax(dim=1) / 127.0
    sx = torch.where(sx > 0, sx, torch.ones_like(sx))
    qx = torch.round(wide / sx[:, None]).clamp_(-127, 127).to(torch.int8)
    return qx, sx


def int8_linear(x: Tensor, w: Int8Weight) -> Tensor:
    """x [..., K] (any float dtype) -> [..., N] in x's dtype: dynamic per-token int8 x per-channel int8 weight."""
    reason = int_mm_unavailable(x.device)
    if reason:
        raise ValueError(reason)
    if x.shape[-1] != w.in_features:
        raise ValueError(f"x has K = {x.shape[-1]}, the weight has {w.in_features} input features")
    lead = x.shape[:-1]
    qx, sx = quantize_per_token(x.reshape(-1, w.in_features))
    rows = qx.shape[0]
    pad_k = w.qweight_t.shape[0] - w.in_features
    pad_m = max(0, CUDA_MIN_ROWS - rows) if x.is_cuda else 0
    if pad_k or pad_m:
        qx = F.pad(qx, (0, pad_k, 0, pad_m))
    try:
        acc = torch._int_mm(qx, w.qweight_t)
    except RuntimeError as exc:
        raise ValueError(f"torch._int_mm refused [{qx.shape[0]}, {qx.shape[1]}] x [{w.qweight_t.shape[0]}, "
                         f"{w.qweight_t.shape[1]}] on {x.device.type} ({CUDA_CONSTRAINT}): {exc}") from exc
    y = acc[:rows, :w.out_features].to(torch.float32) * sx[:, None] * w.scale[None, :]
    return y.to(x.dtype).reshape(*lead, w.out_features)
