"""BitMoD-style per-group mixture of 4-bit data types (Chen et al. 2025, "BitMoD: Bit-serial Mixture-of-Datatype
LLM Acceleration"), format `bitmod-g128`.

BitMoD notes that FP4 (E2M1) spends two codes on +0 and -0 and gives the -0 code (0b1000) a special value instead,
chosen per group of weights. Here each group of 128 input weights picks, by least squared error, one of:
- type 0, int4 asym: RTN's rule (rtn.quantize_codes, asym) — scale (hi - lo) / 15, integer zero point;
- type 1, FP4-ER (extra resolution): E2M1 codes with 0b1000 meaning +5, between 4 and 6;
- type 2, FP4-EA (extra asymmetry): E2M1 codes with 0b1000 meaning +8, beyond 6.
E2M1 code c means (-1)^(c >> 3) * [0, 0.5, 1, 1.5, 2, 3, 4, 6][c & 7]. An FP group's scale is signed: |scale| =
absmax / 6 (ER) or absmax / 8 (EA), and a negative scale mirrors the grid, which turns the special value into -5
or -8; both signs are tried, so the search covers BitMoD's own four types (ER+, ER-, EA+, EA-) plus int4 asym:
five candidates, three type ids (id 3 is unused). Ties go to the lower id, then the positive sign. Codes are
rounded to the nearest grid value against the stored (float16) scale.
Payload: `codes` 4-bit packed [N*K], `scale` float16 [N, G] (signed), `zero` 4-bit packed [N, G] (the int4 zero
point; 0 for FP groups), `dtype_id` 2-bit packed [N, G]: 4 + 22/128 bits per weight. Imports nothing from the
benchmark harness.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.kernels.quant import grouping, packing, rtn
from reference_impls.kernels.quant.formats import Format, check_weight, output_rounding, register_format
from reference_impls.kernels.quant.qtensor import QTensor

FORMAT_NAME = "bitmod-g128"
GROUP_SIZE = 128
E2M1_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
SPECIAL_VALUES = {1: 5.0, 2: 8.0}  # type id -> value of code 0b1000 (ER, EA)
SCALE_REACH = {1: 6.0, 2: 8.0}  # |scale| = absmax / reach: ER maps the group's extreme to 6, EA to 8
CANDIDATE_TYPE = {"int4-asym": 0, "fp4-er+": 1, "fp4-er-": 1, "fp4-ea+": 2, "fp4-ea-": 2}  # searched in this order


def fp4_table(special: float) -> Tensor:
    """Value of each of the 16 codes (float64): E2M1 with the -0 code 0b1000 replaced by `special`."""
    values = list(E2M1_MAGNITUDES) + [-m for m in E2M1_MAGNITUDES]
    values[8] = special
    return torch.tensor(values, dtype=torch.float64)


def code_tables() -> Tensor:
    """[3, 16] value of each code per type id, in units of the group scale; row 0 (int4 asym) is code - zero and
    depends on the zero point, so it is left as the code itself."""
    return torch.stack([torch.arange(16, dtype=torch.float64)] + [fp4_table(SPECIAL_VALUES[t]) for t in (1, 2)])


def _round_to_table(t: Tensor, table: Tensor) -> Tensor:
    """Code (index into `table`) of the value nearest to each t; a tie goes to the smaller value."""
    values, code_of_rank = torch.sort(table)
    midpoints = ((values[1:] + values[:-1]) / 2).to(t.dtype)
    return code_of_rank.to(t.device)[torch.bucketize(t, midpoints.to(t.device))]


def _fp_candidate(groups: Tensor, type_id: int, sign: float) -> tuple[Tensor, Tensor, Tensor]:
    """One FP4 type on grouped weights [N, G, g] -> (codes uint8 [N, G, g], signed scale float16 [N, G], values
    [N, G, g] in the working dtype)."""
    table = fp4_table(SPECIAL_VALUES[type_id])
    tiny = torch.finfo(torch.float16).smallest_normal
    magnitude = (groups.abs().amax(dim=-1) / SCALE_REACH[type_id]).clamp_min(tiny)  # [N, G]
    scale = (sign * magnitude).to(torch.float16)
    if not bool(torch.isfinite(scale).all()):
        raise ValueError("weights too large: the scales exceed the float16 range (65504)")
    scale_w = scale[..., None].to(groups.dtype)
    codes = _round_to_table(groups / scale_w, table)
    return codes.to(torch.uint8), scale, table.to(groups.dtype).to(groups.device)[codes] * scale_w


def candidates(w: Tensor) -> dict[str, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Every candidate on the groups of W [N, K] -> name: (codes uint8 [N, G, g], scale float16 [N, G], zero uint8
    [N, G], dequantized [N, G, g] in the working dtype). A ragged last group's padding dequantizes to 0 in every
    candidate, so it adds nothing to a group's squared error."""
    check_weight(w)
    work = grouping.working_dtype(w)
    groups = grouping.group_view(w.to(work), GROUP_SIZE)  # [N, G, g]
    codes, scale, zero = rtn.quantize_codes(w, 4, GROUP_SIZE, symmetric=False)
    values = rtn.dequantize_codes(codes, scale, zero, GROUP_SIZE).to(work)  # exact: fp16 scale x small integer
    out = {"int4-asym": (grouping.group_view(codes, GROUP_SIZE), scale, zero, grouping.group_view(values, GROUP_SIZE))}
    for name, type_id, sign in (("fp4-er+", 1, 1.0), ("fp4-er-", 1, -1.0), ("fp4-ea+", 2, 1.0), ("fp4-ea-", 2, -1.0)):
        fp_codes, fp_scale, fp_values = _fp_candidate(groups, type_id, sign)
        out[name] = (fp_codes, fp_scale, torch.zeros_like(zero), fp_values)
    return out


def quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
    """Each group of 128 takes the candidate with the least squared error (see the module docstring)."""
    check_weight(w)
    groups = grouping.group_view(w.to(grouping.working_dtype(w)), GROUP_SIZE)  # [N, G, g]
    best = None
    for name, (codes, scale, zero, values) in candidates(w).items():
        error = (values - groups).square().sum(dim=-1)  # [N, G]
        type_id = torch.full_like(zero, CANDIDATE_TYPE[name])
        if best is None:
            best = [error, codes, scale, zero, type_id]
            continue
        better = error < best[0]  # strict: a tie keeps the earlier candidate
        for i, new in enumerate((error, codes, scale, zero, type_id)):
            best[i] = torch.where(better[..., None] if new.dim() == 3 else better, new, best[i])
    _, codes, scale, zero, type_id = best
    rows, cols = w.shape
    payload = {
        "codes": packing.pack_bits(codes.flatten(1)[:, :cols], 4),
        "scale": scale.contiguous(),
        "zero": packing.pack_bits(zero, 4),
        "dtype_id": packing.pack_bits(type_id, 2),
    }
    return QTensor(FORMAT_NAME, (rows, cols), w.dtype, payload, {"group_size": GROUP_SIZE})


def _stored(q: QTensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(codes [N, G, g] int64, scale [N, G] float16, zero [N, G] int64, type id [N, G] int64) from the payload."""
    rows, cols = q.shape
    scale = q.payload["scale"]
    codes = packing.unpack_bits(q.payload["codes"], 4, rows * cols).view(rows, cols).to(torch.int64)
    zero = packing.unpack_bits(q.payload["zero"], 4, scale.numel()).view(scale.shape).to(torch.int64)
    type_id = packing.unpack_bits(q.payload["dtype_id"], 2, scale.numel()).view(scale.shape).to(torch.int64)
    if int(type_id.max()) > 2:
        raise ValueError("bitmod payload holds an unknown dtype_id (allowed: 0, 1, 2)")
    return grouping.group_view(codes, GROUP_SIZE), scale, zero, type_id


def _grid(q: QTensor, work: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(codes [N, G, g], each group's 16 code values in scale units [N, G, 16], scale [N, G]) in `work`."""
    codes, scale, zero, type_id = _stored(q)
    grid = code_tables().to(device=codes.device, dtype=work)[type_id]  # [N, G, 16]
    grid = torch.where((type_id == 0)[..., None], grid - zero[..., None].to(work), grid)  # int4: code - zero
    return codes, grid, scale.to(work)


def dequantize(q: QTensor) -> Tensor:
    """code value x scale per group, in the original dtype (exact in float32: small grid value x fp16 scale)."""
    codes, grid, scale = _grid(q, torch.float32)
    values = torch.gather(grid, -1, codes) * scale[..., None]  # [N, G, g]
    return values.flatten(1)[:, : q.shape[1]].to(q.dtype)


def error_bound(w: Tensor, q: QTensor) -> Tensor:
    """Per element: half the gap between the two grid values around w / scale (the distance to the grid's end
    outside it) times |scale|, plus w / scale's rounding in the working dtype and the output rounding."""
    _, grid, scale = _grid(q, torch.float64)
    values, _ = torch.sort(grid, dim=-1)  # [N, G, 16]
    w64 = w.double()
    t = grouping.group_view(w64, GROUP_SIZE) / scale[..., None]  # [N, G, g]
    upper = torch.searchsorted(values, t.contiguous()).clamp(1, 15)
    lo, hi = torch.gather(values, -1, upper - 1), torch.gather(values, -1, upper)
    gap = torch.maximum((hi - lo) / 2, torch.maximum(values[..., :1] - t, t - values[..., -1:]))
    core = (gap * scale.abs()[..., None]).flatten(1)[:, : q.shape[1]]
    core = core + w64.abs() * torch.finfo(grouping.working_dtype(w)).eps
    return core + output_rounding(w64.abs() + core, q.dtype)


FORMATS = (
    Format(
        name=FORMAT_NAME,
        family="mixed-datatype",
        description="BitMoD-style: per group of 128, the least-squared-error of int4 asym, FP4-ER (E2M1, -0 -> +/-5) "
        "and FP4-EA (E2M1, -0 -> +/-8, scale absmax/8); fp16 signed scale, 4-bit zero, 2-bit type id per group",
        quantize=quantize,
        dequantize=dequantize,
        error_bound=error_bound,
    ),
)
for _fmt in FORMATS:
    register_format(_fmt)
