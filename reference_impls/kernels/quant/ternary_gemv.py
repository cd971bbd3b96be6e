"""Packed ternary GEMV on CPU: weights in {-1, 0, +1} as two bit-planes, no float weight ever materialized.

Storage (`pack_ternary`): nonzero [N, ceil(K / 8)] uint8 (bit i of byte c set where w[n, 8c + i] != 0) and
negative [N, ceil(K / 8)] uint8 (set where w = -1), so 2 bits per weight, plus a scale per group of K
(`scale` [N, G]; BitNet b1.58's per-tensor absmean scale is G = 1 with the one value repeated per row).
    y[n] = sum_g scale[n, g] * (sum of x where w = +1  -  sum of x where w = -1)   over group g
         = sum_g scale[n, g] * sum_{c in g} (T[nonzero[n, c], c] - 2 * T[negative[n, c], c])
with T the subset-sum tables of lut_gemv (T[v, c] = sum of the chunk's activations whose bit is set in v): two
lookups per 8 weights (g = 8) replace 8 multiply-adds, straight from the packed planes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reference_impls.kernels.quant.lut_gemv import (
    check_grouping,
    pack_bits_along_k,
    plane_group_sums,
    subset_sum_tables,
    unpack_bits_along_k,
)


@dataclass(frozen=True)
class TernaryWeight:
    """A ternary weight [N, K] as a nonzero plane and a sign plane (see the module docstring)."""

    planes: Tensor  # uint8 [2, N, ceil(K / 8)]: nonzero, negative
    scale: Tensor  # [N, G]
    in_features: int  # K
    group_size: int  # >= K: one group per row

    @property
    def out_features(self) -> int:
        return self.planes.shape[1]

    @property
    def nbytes(self) -> int:
        return int(self.planes.numel() + self.scale.numel() * self.scale.element_size())


def pack_ternary(codes: Tensor, scale: Tensor, group_size: int) -> TernaryWeight:
    """Ternary codes [N, K] (any integer dtype, values in {-1, 0, 1}) and scale [N, G] -> TernaryWeight."""
    if codes.dim() != 2 or scale.dim() != 2 or scale.shape[0] != codes.shape[0]:
        raise ValueError(f"expected codes [N, K] and scale [N, G]; got {tuple(codes.shape)}, {tuple(scale.shape)}")
    if codes.dtype.is_floating_point or (codes.numel() and int(codes.abs().max()) > 1):
        raise ValueError("ternary codes must be integers in {-1, 0, 1}")
    k = codes.shape[1]
    groups = -(-k // group_size) if isinstance(group_size, int) and group_size >= 1 else 0
    check_grouping(group_size, k, groups)
    if scale.shape[1] != groups:
        raise ValueError(f"scale has {scale.shape[1]} groups; K = {k} in groups of {group_size} needs {groups}")
    planes = torch.stack([pack_bits_along_k(codes != 0), pack_bits_along_k(codes < 0)])
    return TernaryWeight(planes, scale, k, max(group_size, k) if groups == 1 else group_size)


def unpack_ternary(w: TernaryWeight) -> Tensor:
    """The codes [N, K] as int8 in {-1, 0, 1}."""
    nonzero, negative = unpack_bits_along_k(w.planes, w.in_features).to(torch.int8)
    return nonzero - 2 * negative


def ternary_gemv(x: Tensor, w: TernaryWeight, chunk_bits: int = 8) -> Tensor:
    """x [..., K] @ (codes * scale)^T -> [..., N] in x's dtype, from the two packed planes."""
    if x.shape[-1] != w.in_features:
        raise ValueError(f"x has K = {x.shape[-1]}, the weight has {w.in_features} input features")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, w.in_features)
    groups = w.scale.shape[1]
    tables = subset_sum_tables(x2, chunk_bits)  # [M, 2^g, chunks]
    plane_weights = torch.tensor([1.0, -2.0], device=x.device)
    scale = w.scale.to(tables.dtype)
    rows = [(plane_group_sums(tables[m], w.planes, plane_weights, w.group_size, groups, chunk_bits) * scale).sum(1)
            for m in range(x2.shape[0])]
    return torch.stack(rows).to(x.dtype).reshape(*lead, w.out_features)
