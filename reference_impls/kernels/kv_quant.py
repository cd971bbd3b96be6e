"""KIVI KV-cache quantization with codes packed into real uint8 storage, so bytes held are true bytes.

KIVI (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache"): keys are quantized per
channel — each channel's run of `group_size` consecutive tokens shares one scale and zero point — because key
outliers live in fixed channels; values per token — each token's run of `group_size` consecutive channels shares
them. Asymmetric: zero point = the group minimum, scale = (max - min) / (2^bits - 1), code = round((x - zero) /
scale) in [0, 2^bits - 1]. The `residual` most recent tokens stay in full precision for both keys and values
(KIVI's R; its code starts keys at L mod R full-precision tokens and fills groups of R while decoding — a fixed
window of R is the simpler, slightly larger upper end of that). A ragged last group is allowed.

Scales and zero points are stored as float16, as KIVI does for fp16 models, so a quantized element costs
bits + 2 * 16 / group_size bits (2-bit, G=32: 3 bits; 4-bit: 5 bits) before the full-precision window.

Packing and the per-group min/max come from reference_impls.kernels.quant (one implementation for KV and weight
formats). Imports nothing from the benchmark harness.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reference_impls.kernels.quant import grouping, packing

BITS: tuple[int, ...] = (1, 2, 4, 8)  # widths that tile a byte exactly
SCALE_DTYPE = torch.float16


def _check_bits(bits: int) -> None:
    if bits not in BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, BITS))}, got {bits!r}")


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Integer codes in [0, 2^bits) (any shape) -> 1-D uint8 of ceil(numel * bits / 8) bytes, low bits first
    (the shared bitstream layout of quant.packing)."""
    _check_bits(bits)
    return packing.pack_bits(codes.to(torch.uint8) if codes.dtype.is_floating_point else codes, bits)


def unpack_codes(packed: Tensor, bits: int, numel: int) -> Tensor:
    """Inverse of pack_codes: 1-D uint8 codes, the first `numel` of them."""
    _check_bits(bits)
    return packing.unpack_bits(packed, bits, numel)


group_min_max = grouping.group_min_max  # per-group min and max along the last dim, shared with the weight formats
expand_groups = grouping.expand_groups  # [..., groups] -> [..., length]


@dataclass(frozen=True)
class PackedGroups:
    """A tensor quantized in groups along its last dim: packed codes plus a scale and zero point per group."""

    packed: Tensor  # [ceil(numel * bits / 8)] uint8
    scale: Tensor  # [..., groups] float16
    zero: Tensor  # [..., groups] float16: the group minimum
    shape: tuple[int, ...]
    bits: int
    group_size: int

    def nbytes(self) -> int:
        return int(sum(t.numel() * t.element_size() for t in (self.packed, self.scale, self.zero)))

    def codes(self) -> Tensor:
        numel = 1
        for size in self.shape:
            numel *= size
        return unpack_codes(self.packed, self.bits, numel).view(self.shape)

    def dequantize(self, dtype: torch.dtype) -> Tensor:
        """codes * scale + zero, computed in float32 and returned in `dtype`."""
        length = self.shape[-1]
        scale = expand_groups(self.scale.float(), self.group_size, length)
        zero = expand_groups(self.zero.float(), self.group_size, length)
        return (self.codes().float() * scale + zero).to(dtype)


def quantize_last_dim(x: Tensor, bits: int, group_size: int, scale_dtype: torch.dtype = SCALE_DTYPE) -> PackedGroups:
    """Asymmetric min/scale quantization of x [..., n] in groups of `group_size` along the last dim.

    Codes are computed against the stored (rounded) scale and zero point, so dequantization reproduces exactly
    what was rounded; a constant group gets the smallest normal scale and code 0."""
    _check_bits(bits)
    if not x.dtype.is_floating_point or x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must be a non-empty floating tensor, got {x.dtype} {tuple(x.shape)}")
    lows, highs = group_min_max(x, group_size)
    levels = (1 << bits) - 1
    scale = ((highs - lows) / levels).to(scale_dtype).clamp_min(torch.finfo(scale_dtype).tiny)
    zero = lows.to(scale_dtype)
    if not (torch.isfinite(scale).all() and torch.isfinite(zero).all()):
        raise ValueError(f"values exceed the {scale_dtype} range of the scales and zero points")
    length = x.shape[-1]
    scale_e = expand_groups(scale.float(), group_size, length)
    zero_e = expand_groups(zero.float(), group_size, length)
    codes = torch.round((x.float() - zero_e) / scale_e).clamp_(0, levels)
    return PackedGroups(pack_codes(codes, bits), scale, zero, tuple(x.shape), bits, group_size)


@dataclass(frozen=True)
class KiviCache:
    """One layer's KIVI cache: quantized older tokens and a full-precision window of the newest."""

    keys_q: PackedGroups | None  # keys transposed to [..., d, n_q]: groups of tokens per channel
    values_q: PackedGroups | None  # [..., n_q, d]: groups of channels per token
    keys_fp: Tensor  # [..., n_fp, d], the newest tokens
    values_fp: Tensor  # [..., n_fp, d]

    def nbytes(self) -> int:
        """Bytes actually held: packed codes, scales, zero points and the full-precision window."""
        quantized = sum(p.nbytes() for p in (self.keys_q, self.values_q) if p is not None)
        return int(quantized + sum(t.numel() * t.element_size() for t in (self.keys_fp, self.values_fp)))

    def elements(self) -> int:
        """Elements of K and V together (what a full-precision cache would hold)."""
        length = self.keys_fp.shape[-2] + (0 if self.values_q is None else self.values_q.shape[-2])
        return 2 * _leading(self.keys_fp) * length * self.keys_fp.shape[-1]

    def effective_bits(self) -> float:
        """Bits held per K/V element, everything included."""
        return 8.0 * self.nbytes() / self.elements()

    def dequantize(self) -> tuple[Tensor, Tensor]:
        """The cache as attention sees it: [..., L, d] keys and values in the full-precision dtype."""
        dtype = self.keys_fp.dtype
        if self.keys_q is None:
            return self.keys_fp, self.values_fp
        keys = torch.cat([self.keys_q.dequantize(dtype).transpose(-2, -1), self.keys_fp], dim=-2)
        values = torch.cat([self.values_q.dequantize(dtype), self.values_fp], dim=-2)
        return keys, values


def _leading(x: Tensor) -> int:
    count = 1
    for size in x.shape[:-2]:
        count *= size
    return count


def kivi_compress(keys: Tensor, values: Tensor, bits: int = 2, group_size: int = 32, residual: int = 128,
                  scale_dtype: torch.dtype = SCALE_DTYPE) -> KiviCache:
    """Quantize a [..., L, d] cache the KIVI way: tokens before the last `residual` in `bits` bits (keys per
    channel, values per token, groups of `group_size`), the last `residual` kept as they are (copied)."""
    if keys.shape != values.shape or keys.dim() < 2:
        raise ValueError(f"keys and values must share a [..., L, d] shape; got {tuple(keys.shape)}, "
                         f"{tuple(values.shape)}")
    if residual < 0 or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"need residual >= 0 and group_size >= 1; got {residual}, {group_size}")
    _check_bits(bits)
    n_q = max(keys.shape[-2] - residual, 0)
    keys_fp, values_fp = keys[..., n_q:, :].clone(), values[..., n_q:, :].clone()
    if n_q == 0:
        return KiviCache(None, None, keys_fp, values_fp)
    keys_q = quantize_last_dim(keys[..., :n_q, :].transpose(-2, -1), bits, group_size, scale_dtype)
    values_q = quantize_last_dim(values[..., :n_q, :], bits, group_size, scale_dtype)
    return KiviCache(keys_q, values_q, keys_fp, values_fp)


def quantization_error_bound(x: Tensor, bits: int, group_size: int, out_dtype: torch.dtype,
                             scale_dtype: torch.dtype = SCALE_DTYPE) -> Tensor:
    """Largest |x - dequantize(quantize(x))| quantize_last_dim allows, per element of x [..., n] (float64).

    Half a step, (max - min) / (2^bits - 1) / 2, widened for the rounding of the stored scale and zero point (a
    code clamped at either end misses by the zero point's rounding, or by levels times the scale's) and for the
    cast of the result to out_dtype; each rounding is charged at eps, twice its worst case."""
    lows, highs = group_min_max(x.double(), group_size)
    length = x.shape[-1]
    spread = expand_groups(highs - lows, group_size, length)
    size = expand_groups(torch.maximum(lows.abs(), highs.abs()), group_size, length)
    stored = torch.finfo(scale_dtype).eps  # twice the unit roundoff: a safety factor of 2
    half_step = spread / ((1 << bits) - 1) / 2
    return half_step * (1 + stored) + stored * (spread + size) + torch.finfo(out_dtype).eps * (size + 2 * half_step)


def kivi_error_bound(keys: Tensor, values: Tensor, bits: int, group_size: int, residual: int,
                     out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Per-element bounds [..., L, d] on |K - K^|, |V - V^| for kivi_compress: quantization_error_bound on the
    quantized tokens (keys grouped per channel, values per token), 0 on the full-precision window."""
    n_q = max(keys.shape[-2] - residual, 0)
    key_bound = torch.zeros(keys.shape, dtype=torch.float64, device=keys.device)
    value_bound = torch.zeros_like(key_bound)
    if n_q:
        key_bound[..., :n_q, :] = quantization_error_bound(keys[..., :n_q, :].transpose(-2, -1), bits, group_size,
                                                           out_dtype).transpose(-2, -1)
        value_bound[..., :n_q, :] = quantization_error_bound(values[..., :n_q, :], bits, group_size, out_dtype)
    return key_bound, value_bound


def kivi_quantized_bits(bits: int, group_size: int, scale_bits: int = 16) -> float:
    """Bits per quantized element with whole groups: the code plus a share of one scale and one zero point."""
    _check_bits(bits)
    return bits + 2.0 * scale_bits / group_size
