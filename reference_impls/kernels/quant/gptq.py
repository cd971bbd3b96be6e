"""GPTQ (Frantar et al. 2022, "Accurate Post-Training Quantization for Generative Pre-trained Transformers").

GPTQ quantizes a weight W [out, in] one input column at a time and pushes each column's rounding error onto the
columns not yet quantized, weighted by the inverse Hessian of the layer-output error, so the output X W^T moves as
little as the grid allows. Exactly as done here:
- H = 2 X^T X / tokens from calibration X [tokens, in]; a dead input channel (H_ii = 0) gets H_ii = 1; dampening
  adds 1% of mean(diag H) to the diagonal. U = the upper Cholesky factor of H^-1.
- Columns in blocks of 128 (a multiple of the group size): within a block, column j is rounded, its error
  e = (w_j - q_j) / U_jj is subtracted from the block's later columns as e * U[j, later]; the block's errors are
  applied to every later column at once when the block ends (the "lazy batch" update).
- At the first column of each group, the group's scale and zero point are computed with RTN's asym rule
  (rtn.quantize_codes) from the current, already error-corrected weights of that group.
- act_order (off by default): columns are visited in decreasing H_ii, with group parameters fixed up front from
  the original weights ("static groups"), so the stored layout stays RTN's.
The result is stored exactly like RTN asym (codes and integer zero points packed at b bits, float16 scales) and
dequantizes with RTN's rule. When H is diagonal (X with orthogonal columns) no error is pushed anywhere and GPTQ
gives RTN's codes exactly. Formats: gptq-int{3,4,8}-g{32,64,128}. Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.kernels.quant import grouping, packing, rtn
from reference_impls.kernels.quant.calibration import check_calibration
from reference_impls.kernels.quant.formats import Format, check_weight, get_format, register_format
from reference_impls.kernels.quant.qtensor import QTensor

BITS: tuple[int, ...] = (3, 4, 8)
GROUP_SIZES: tuple[int, ...] = (32, 64, 128)
BLOCK_COLUMNS = 128  # columns per lazy batch update (rounded up to a multiple of the group size)
DAMPENING = 0.01  # fraction of mean(diag H) added to the diagonal


def damped_hessian(x: Tensor, dampening: float = DAMPENING, dtype: torch.dtype = torch.float32) -> Tensor:
    """H = 2 X^T X / tokens ([in, in]); a dead channel's H_ii becomes 1, then dampening * mean(diag H) is added
    to the diagonal."""
    if not 0.0 <= dampening < 1.0:
        raise ValueError(f"dampening must be in [0, 1), got {dampening!r}")
    x = x.to(dtype)
    hessian = 2.0 * (x.T @ x) / x.shape[0]  # [in, in]
    diag = torch.diagonal(hessian)  # a view: edits below land in hessian
    diag[diag == 0] = 1.0  # a channel that never fires constrains nothing
    diag += dampening * diag.mean()
    return hessian


def inverse_factor(hessian: Tensor) -> Tensor:
    """Upper Cholesky factor U of H^-1 (U^T U = H^-1): row j holds how column j's error spreads to later ones."""
    try:
        lower = torch.linalg.cholesky(hessian)
        return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
    except torch.linalg.LinAlgError as error:
        raise ValueError("the calibration Hessian is not positive definite: use dampening > 0 or more (and more "
                         "varied) calibration tokens") from error


def _group_params(w_group: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """RTN asym scale (float16) and zero point (uint8) of each row of a group [N, g] -> ([N], [N])."""
    _, scale, zero = rtn.quantize_codes(w_group, bits, w_group.shape[1], symmetric=False)
    return scale[:, 0], zero[:, 0]


def gptq_quantize_codes(w: Tensor, x: Tensor, bits: int = 4, group_size: int = 128, act_order: bool = False,
                        dampening: float = DAMPENING) -> tuple[Tensor, Tensor, Tensor]:
    """GPTQ codes of W [N, K] given calibration X [T, K] -> (codes uint8 [N, K], scale float16 [N, G], zero uint8
    [N, G]), laid out as rtn.quantize_codes(asym) lays them out."""
    check_weight(w)
    check_calibration(x, w.shape[1])
    grouping.check_group_size(group_size)
    if bits not in rtn.BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, rtn.BITS))}, got {bits!r}")
    dtype = grouping.working_dtype(w)
    n_rows, n_cols = w.shape
    n_groups, levels = grouping.num_groups(n_cols, group_size), (1 << bits) - 1
    block_columns = group_size * max(1, BLOCK_COLUMNS // group_size)  # a group never straddles two blocks
    hessian = damped_hessian(x, dampening, dtype)
    weight = w.to(dtype)
    scale = torch.empty(n_rows, n_groups, dtype=rtn.SCALE_DTYPE, device=w.device)
    zero = torch.empty(n_rows, n_groups, dtype=torch.uint8, device=w.device)
    order = torch.arange(n_cols, device=w.device)
    if act_order:
        for g in range(n_groups):  # static groups: parameters fixed from the original weights
            scale[:, g], zero[:, g] = _group_params(weight[:, g * group_size:(g + 1) * group_size], bits)
        order = torch.argsort(torch.diagonal(hessian), descending=True, stable=True)
        hessian = hessian[order][:, order]
    weight = weight[:, order].clone()  # [N, K] in visiting order, updated in place
    factor = inverse_factor(hessian)  # [K, K] upper triangular
    codes = torch.empty(n_rows, n_cols, dtype=torch.uint8, device=w.device)
    group_of = [column // group_size for column in order.tolist()]  # group of each visited column
    for start in range(0, n_cols, block_columns):
        stop = min(start + block_columns, n_cols)
        block, block_factor = weight[:, start:stop], factor[start:stop, start:stop]  # views: updates land in weight
        errors = torch.empty(n_rows, stop - start, dtype=dtype, device=w.device)
        for i in range(stop - start):
            column = start + i
            if not act_order and column % group_size == 0:  # group start: RTN parameters of the current weights
                scale[:, column // group_size], zero[:, column // group_size] = _group_params(
                    block[:, i:i + group_size], bits)
            step, offset = scale[:, group_of[column]].to(dtype), zero[:, group_of[column]].to(dtype)  # [N] each
            code = (torch.round(block[:, i] / step) + offset).clamp_(0, levels)
            codes[:, column] = code.to(torch.uint8)
            errors[:, i] = (block[:, i] - (code - offset) * step) / block_factor[i, i]
            block[:, i + 1:] -= errors[:, i:i + 1] * block_factor[i:i + 1, i + 1:]
        weight[:, stop:] -= errors @ factor[start:stop, stop:]  # the lazy batch update of every later column
    return codes[:, torch.argsort(order)], scale, zero


def _rtn_view(q: QTensor) -> QTensor:
    """The same payload read as the RTN asym format it is laid out as."""
    rtn_name = f"int{q.meta['bits']}-g{q.meta['group_size']}-asym"
    meta = {"bits": q.meta["bits"], "group_size": q.meta["group_size"], "granularity": f"g{q.meta['group_size']}",
            "symmetric": 0}
    return QTensor(rtn_name, q.shape, q.dtype, q.payload, meta)


def dequantize(q: QTensor) -> Tensor:
    """RTN asym decoding of GPTQ's codes: (code - zero) * scale, in the original dtype."""
    view = _rtn_view(q)
    return get_format(view.format).dequantize(view)


def _make_format(bits: int, group_size: int) -> Format:
    name = f"gptq-int{bits}-g{group_size}"

    def quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
        codes, scale, zero = gptq_quantize_codes(w, check_calibration(calibration, w.shape[1]), bits, group_size)
        payload = {"codes": packing.pack_bits(codes, bits), "scale": scale, "zero": packing.pack_bits(zero, bits)}
        meta = {"bits": bits, "group_size": group_size, "act_order": 0, "dampening": DAMPENING}
        return QTensor(name, tuple(w.shape), w.dtype, payload, meta)

    description = (f"GPTQ int{bits}, groups of {group_size} along the input dim: column-wise rounding with "
                   "inverse-Hessian error feedback (1% dampening, lazy blocks of 128); stored and decoded as RTN asym")
    return Format(name, "calibrated", description, quantize, dequantize, None, needs_calibration=True)


FORMATS: tuple[Format, ...] = tuple(_make_format(b, g) for b in BITS for g in GROUP_SIZES)
for _fmt in FORMATS:
    register_format(_fmt)
