"""LUT GEMV on CPU, LUT-GEMM style: b-bit weights as b bit-planes, activations as subset-sum tables.

Weights (`pack_bitplanes`): unsigned codes u [N, K] of b bits (RTN sym codes c are stored as u = c + 2^(b-1),
zero point 2^(b-1)) cut into b bit-planes packed along K: bit i of planes[p, n, c] is bit p of u[n, 8c + i]
(K padded with zero codes to whole bytes). That is exactly b bits per weight, plus scales and zero points.

Tables (`subset_sum_tables`): for each chunk of g activations (g = chunk_bits, 8 or 4),
    T[v, c] = sum_i bit_i(v) * x[g*c + i]      for every g-bit pattern v   ([2^g, ceil(K_padded / g)])
so the dot product of a chunk of x with one bit-plane of one row is a single lookup, T[plane byte or nibble, c]:
one gather replaces g multiply-adds per plane, and no float weight is ever materialized. Then
    y[n] = sum_g scale[n, g] * (sum_{c in g} sum_p 2^p T[planes[p, n, c], c] - zero[n, g] * sum_{k in g} x[k])
Groups must be whole chunks: group_size a multiple of 8, or one group per row. With g = 8 a packed byte is its own
table index (no unpacking); g = 4 splits bytes into nibbles (16-entry tables, twice the lookups).

Vectorized torch: rows are processed ROW_BLOCK at a time (their int64 indices and gathered values stay in
cache), tables are built with one [chunks, g] @ [g, 2^g] matmul per activation row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK_BITS = (4, 8)
ROW_BLOCK = 128  # weight rows per gather: their indices and values stay in cache (2x faster than all at once)
PLANE_BITS = (1, 2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class BitPlaneWeight:
    """A b-bit weight [N, K] as b bit-planes (see the module docstring)."""

    planes: Tensor  # uint8 [b, N, ceil(K / 8)]
    scale: Tensor  # [N, G]
    zero: Tensor | None  # [N, G] uint8; None: symmetric, zero point 2^(b-1)
    in_features: int  # K
    group_size: int  # >= K: one group per row

    @property
    def bits(self) -> int:
        return self.planes.shape[0]

    @property
    def out_features(self) -> int:
        return self.planes.shape[1]

    @property
    def nbytes(self) -> int:
        parts = [self.planes, self.scale] + ([] if self.zero is None else [self.zero])
        return int(sum(t.numel() * t.element_size() for t in parts))


def check_grouping(group_size: int, k: int, groups: int) -> None:
    if not isinstance(group_size, int) or group_size < 1 or (groups > 1 and group_size % 8):
        raise ValueError(f"group_size must be a multiple of 8 (groups are whole 8-element chunks) or >= K = {k}; "
                         f"got {group_size!r}")


def pack_bits_along_k(bits: Tensor) -> Tensor:
    """0/1 values [..., K] -> uint8 [..., ceil(K / 8)], element 8c + i in bit i of byte c (zero padded)."""
    padded = F.pad(bits.to(torch.uint8), (0, -bits.shape[-1] % 8))
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    return (padded.view(*bits.shape[:-1], -1, 8) << shifts).sum(dim=-1, dtype=torch.uint8)


def unpack_bits_along_k(packed: Tensor, k: int) -> Tensor:
    """Inverse of pack_bits_along_k: uint8 0/1 values [..., k]."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    return ((packed[..., None] >> shifts) & 1).flatten(-2)[..., :k]


def pack_bitplanes(codes: Tensor, scale: Tensor, zero: Tensor | None, group_size: int, bits: int) -> BitPlaneWeight:
    """RTN codes [N, K] (int8 in [-(2^(b-1) - 1), 2^(b-1) - 1] when zero is None, else uint8 in [0, 2^b - 1]),
    scale [N, G], zero [N, G] -> BitPlaneWeight."""
    if bits not in PLANE_BITS:
        raise ValueError(f"bits must be one of {PLANE_BITS}, got {bits!r}")
    if codes.dim() != 2 or scale.dim() != 2 or scale.shape[0] != codes.shape[0]:
        raise ValueError(f"expected codes [N, K] and scale [N, G]; got {tuple(codes.shape)}, {tuple(scale.shape)}")
    k = codes.shape[1]
    groups = -(-k // group_size) if isinstance(group_size, int) and group_size >= 1 else 0
    check_grouping(group_size, k, groups)
    if scale.shape[1] != groups:
        raise ValueError(f"scale has {scale.shape[1]} groups; K = {k} in groups of {group_size} needs {groups}")
    stored = codes.to(torch.int16) + (1 << (bits - 1) if zero is None else 0)
    if stored.numel() and (int(stored.min()) < 0 or int(stored.max()) >= 1 << bits):
        raise ValueError(f"codes do not fit {bits} bits ({'symmetric' if zero is None else 'asymmetric'})")
    if zero is not None and (zero.shape != scale.shape or int(zero.max()) >= 1 << bits):
        raise ValueError(f"zero must be [N, G] = {tuple(scale.shape)} with values below 2^{bits}")
    planes = torch.stack([pack_bits_along_k((stored >> p) & 1) for p in range(bits)])
    return BitPlaneWeight(planes, scale, zero, k, max(group_size, k) if groups == 1 else group_size)


def unpack_bitplanes(w: BitPlaneWeight) -> Tensor:
    """The stored unsigned codes [N, K] (uint8): sym codes still + 2^(b-1)."""
    planes = unpack_bits_along_k(w.planes, w.in_features).to(torch.int16)  # [b, N, K]
    weights = (1 << torch.arange(w.bits, dtype=torch.int16, device=planes.device))[:, None, None]
    return (planes * weights).sum(dim=0).to(torch.uint8)


def subset_sum_tables(x: Tensor, chunk_bits: int = 8) -> Tensor:
    """x [M, K] -> T [M, 2^g, chunks] with T[m, v, c] = sum_i bit_i(v) * x[m, g*c + i] (K zero-padded to whole
    bytes), in float32 (float64 for float64 x)."""
    if chunk_bits not in CHUNK_BITS:
        raise ValueError(f"chunk_bits must be one of {CHUNK_BITS}, got {chunk_bits!r}")
    work = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    work = F.pad(work, (0, -x.shape[-1] % 8)).view(x.shape[0], -1, chunk_bits)  # [M, chunks, g]
    patterns = torch.arange(1 << chunk_bits, device=x.device)
    bits = ((patterns[None, :] >> torch.arange(chunk_bits, device=x.device)[:, None]) & 1).to(work.dtype)
    return (work @ bits).transpose(1, 2).contiguous()  # [M, 2^g, chunks]


def chunk_indices(planes: Tensor, chunk_bits: int) -> Tensor:
    """uint8 plane bytes [..., C] -> int64 table indices [..., C * 8 / g]: the bytes themselves (g = 8), or
    their low then high nibbles (g = 4)."""
    if chunk_bits == 8:
        return planes.long()
    return torch.stack([planes & 0xF, planes >> 4], dim=-1).flatten(-2).long()


def plane_group_sums(tables: Tensor, planes: Tensor, plane_weights: Tensor, group_size: int, groups: int,
                     chunk_bits: int) -> Tensor:
    """sum over the chunks of each group of sum_p plane_weights[p] * tables[planes[p, n, c], c]: tables
    [2^g, chunks] of one activation row, planes uint8 [P, N, C] -> [N, groups]."""
    rows = planes.shape[1]
    out = torch.empty(rows, groups, dtype=tables.dtype, device=tables.device)
    per_group = group_size // chunk_bits
    for start in range(0, rows, ROW_BLOCK):
        block = planes[:, start:start + ROW_BLOCK]
        index = chunk_indices(block, chunk_bits)  # [P, R, chunks]
        values = torch.gather(tables, 0, index.flatten(0, 1)).view(index.shape)
        combined = torch.tensordot(plane_weights.to(tables.dtype), values, dims=1)  # [R, chunks]
        if groups == 1:
            out[start:start + ROW_BLOCK] = combined.sum(dim=1, keepdim=True)
        else:
            padded = F.pad(combined, (0, groups * per_group - combined.shape[1]))
            out[start:start + ROW_BLOCK] = padded.view(-1, groups, per_group).sum(dim=2)
    return out


def group_sums(x: Tensor, group_size: int, groups: int) -> Tensor:
    """x [M, K] -> [M, groups]: the sum of each group's activations (in the tables' dtype)."""
    work = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    return F.pad(work, (0, groups * group_size - x.shape[1])).view(x.shape[0], groups, -1).sum(dim=2)


def lut_gemv(x: Tensor, w: BitPlaneWeight, chunk_bits: int = 8) -> Tensor:
    """x [..., K] @ dequant(w)^T -> [..., N] in x's dtype, from the bit-planes and per-row subset-sum tables."""
    if x.shape[-1] != w.in_features:
        raise ValueError(f"x has K = {x.shape[-1]}, the weight has {w.in_features} input features")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, w.in_features)
    groups = w.scale.shape[1]
    tables = subset_sum_tables(x2, chunk_bits)  # [M, 2^g, chunks]
    plane_weights = 2.0 ** torch.arange(w.bits, device=x.device)
    scale = w.scale.to(tables.dtype)
    zero = (torch.full_like(scale, 1 << (w.bits - 1)) if w.zero is None else w.zero.to(tables.dtype))
    x_sums = group_sums(x2, w.group_size, groups)  # [M, G]
    rows = []
    for m in range(x2.shape[0]):
        sums = plane_group_sums(tables[m], w.planes, plane_weights, w.group_size, groups, chunk_bits)  # [N, G]
        rows.append(((sums - zero * x_sums[m]) * scale).sum(dim=1))
    return torch.stack(rows).to(x.dtype).reshape(*lead, w.out_features)
