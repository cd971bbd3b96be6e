"""Bit packing: integer codes of any width from 1 to 8 bits as a dense bitstream in uint8 storage.

Code i occupies stream bits [i * b, (i + 1) * b), least significant bit first, and stream bit j is bit j mod 8 of
byte j // 8. For widths that divide 8 this is the usual "first code in the low bits" layout (two 4-bit codes per
byte: byte = c0 | c1 << 4); 3-, 5-, 6- and 7-bit codes straddle byte boundaries, so nothing is wasted: n codes
take exactly ceil(n * b / 8) bytes. Signed codes are stored as b-bit two's complement.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

PACK_WIDTHS: tuple[int, ...] = tuple(range(1, 9))


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or bits not in PACK_WIDTHS:
        raise ValueError(f"bits must be an integer from 1 to 8, got {bits!r}")


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes that `numel` codes of `bits` bits take in the bitstream."""
    return -(-numel * bits // 8)


def _run_layout(bits: int) -> tuple[int, int, torch.dtype]:
    """Codes and bytes in the shortest run that ends on a byte boundary (lcm(b, 8) bits), and a word type that
    holds it: 3 and 6 bits fit 24-bit runs in int32; 5 and 7 bits need 40- and 56-bit runs in int64."""
    run_bits = math.lcm(bits, 8)
    return run_bits // bits, run_bits // 8, torch.int32 if run_bits < 32 else torch.int64


def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """Integer codes in [0, 2^bits) (any shape, flattened row-major) -> 1-D uint8 of ceil(numel * bits / 8) bytes."""
    _check_bits(bits)
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise ValueError(f"codes must have an integer dtype, got {codes.dtype}")
    flat = codes.reshape(-1)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(f"{bits}-bit codes must lie in [0, {(1 << bits) - 1}], got [{int(flat.min())}, "
                         f"{int(flat.max())}]")
    numel = flat.numel()
    if bits == 8:
        return flat.to(torch.uint8).clone()
    if 8 % bits == 0:  # whole codes per byte: stay in uint8
        per_byte = 8 // bits
        lanes = F.pad(flat.to(torch.uint8), (0, -numel % per_byte)).view(-1, per_byte)  # [bytes, per_byte]
        shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=codes.device)
        return (lanes << shifts).sum(dim=-1, dtype=torch.uint8)  # disjoint bits: the sum is a bitwise or
    # a run of lcm(b, 8) / b codes fills lcm(b, 8) / 8 whole bytes: gather it into one word, cut that into bytes
    run_codes, run_bytes, word_dtype = _run_layout(bits)
    runs = F.pad(flat.to(word_dtype), (0, -numel % run_codes)).view(-1, run_codes)  # [runs, run_codes]
    shifts = torch.arange(run_codes, device=codes.device, dtype=word_dtype) * bits
    word = (runs << shifts).sum(dim=-1, dtype=word_dtype)  # [runs]: disjoint bits, the sum is an or
    cut = (word[:, None] >> (torch.arange(run_bytes, device=codes.device, dtype=word_dtype) * 8)) & 0xFF
    return cut.to(torch.uint8).reshape(-1)[:packed_nbytes(numel, bits)]


def unpack_bits(packed: Tensor, bits: int, numel: int) -> Tensor:
    """Inverse of pack_bits: the first `numel` codes as a 1-D uint8 tensor."""
    _check_bits(bits)
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError(f"packed must be a 1-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
    if numel < 0 or packed.numel() < packed_nbytes(numel, bits):
        raise ValueError(f"{packed.numel()} bytes cannot hold {numel} codes of {bits} bits")
    if bits == 8:
        return packed[:numel].clone()
    mask = (1 << bits) - 1
    if 8 % bits == 0:
        shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=packed.device)
        return ((packed[:, None] >> shifts) & mask).reshape(-1)[:numel]
    run_codes, run_bytes, word_dtype = _run_layout(bits)
    used = packed[:packed_nbytes(numel, bits)].to(word_dtype)
    runs = F.pad(used, (0, -used.numel() % run_bytes)).view(-1, run_bytes)  # [runs, run_bytes]
    shifts = torch.arange(run_bytes, device=packed.device, dtype=word_dtype) * 8
    word = (runs << shifts).sum(dim=-1, dtype=word_dtype)  # [runs]
    codes = (word[:, None] >> (torch.arange(run_codes, device=packed.device, dtype=word_dtype) * bits)) & mask
    return codes.reshape(-1)[:numel].to(torch.uint8)


def to_twos_complement(codes: Tensor, bits: int) -> Tensor:
    """Signed codes in [-2^(b-1), 2^(b-1)) -> their b-bit two's complement patterns as uint8 in [0, 2^b)."""
    _check_bits(bits)
    return (codes.to(torch.int16) & ((1 << bits) - 1)).to(torch.uint8)


def from_twos_complement(patterns: Tensor, bits: int) -> Tensor:
    """b-bit two's complement patterns (uint8) -> signed int8 codes."""
    _check_bits(bits)
    wide = patterns.to(torch.int16)
    return (wide - (((wide >> (bits - 1)) & 1) << bits)).to(torch.int8)
