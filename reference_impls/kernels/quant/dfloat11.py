"""DFloat11: lossless bf16 weights with a Huffman-coded exponent (Zhang et al. 2025, "70% Size, 100% Accuracy").

A bf16 number is 1 sign, 8 exponent and 7 mantissa bits. In trained weights the exponent carries ~2.6 bits of
information, so DFloat11 entropy-codes it and keeps sign and mantissa raw. What is stored, per tensor:

- `exponent_stream` uint8: the exponents, Huffman-coded (a canonical code built from this tensor's exponent
  histogram) and packed into a real bitstream, most significant bit first;
- `sign_mantissa` uint8 [numel]: sign << 7 | mantissa, one byte per weight;
- `code_first_symbol` uint8 [1] and `code_lengths` uint8 [span]: the codebook, as the code length of every exponent
  from the smallest to the largest one present (0 = absent); canonical codes are rebuilt from the lengths alone;
- `block_bit_offsets` int32 (int64 past 2^31 bits) [ceil(numel / block_size)]: where each block of `block_size`
  exponents starts in the stream, so that blocks decode independently.

Decoding is vectorized in two passes. First every bit position of the stream is decoded speculatively: the
`max_code_length` bits starting there index a flat table of 2^max_code_length entries giving (symbol, length) of the
code that would start there (8 vectorized passes over the bytes, one per bit phase). Then every block walks its
own chain from its offset, all blocks at once: cursor += length_at[cursor], `block_size` steps, and the symbols are
gathered at the visited positions. Code lengths are capped at 16 bits (so the table has at most 65,536 entries and
16 bits plus a 7-bit phase fit in a 3-byte window) by halving the rare counts until the Huffman tree fits; only
exponents seen a handful of times lose a bit or two. DFloat11's GPU kernel instead splits the table of its
up-to-32-bit codes into four 256-entry tables that fit in shared memory, and coordinates threads with per-thread bit
gaps and per-block output positions; this file is the CPU reference of the same format idea, not of that kernel.

DFloat11 is defined for bf16: other dtypes are refused (ValueError), because casting them would not be lossless.
`encode(..., cast_to_bf16=True)` casts on request; the round trip is then exact with respect to the bf16 cast and
`decode` returns the original dtype. Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import heapq
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reference_impls.kernels.quant.formats import Format, register_format
from reference_impls.kernels.quant.qtensor import QTensor

FORMAT_NAME = "dfloat11"
MAX_CODE_LENGTH = 16  # decode table of 2^16 entries; 16 + 7 phase bits fit a 3-byte window
DEFAULT_BLOCK_SIZE = 1024  # exponents per independently decodable block (one 32-bit offset each)
NUM_SYMBOLS = 256  # an 8-bit exponent


def _unlimited_code_lengths(counts: list[int]) -> list[int]:
    """Huffman code length of each symbol with a nonzero count (0 for absent ones), by merging the two lightest."""
    lengths = [0] * len(counts)
    heap = [(count, symbol, [symbol]) for symbol, count in enumerate(counts) if count > 0]
    if len(heap) == 1:  # one symbol still needs one bit to be written
        lengths[heap[0][2][0]] = 1
        return lengths
    heapq.heapify(heap)
    while len(heap) > 1:
        count_a, tie_a, members_a = heapq.heappop(heap)
        count_b, tie_b, members_b = heapq.heappop(heap)
        for symbol in members_a + members_b:  # every leaf under the merged node sinks one level
            lengths[symbol] += 1
        heapq.heappush(heap, (count_a + count_b, min(tie_a, tie_b), members_a + members_b))
    return lengths


def huffman_code_lengths(counts: list[int], max_length: int = MAX_CODE_LENGTH) -> list[int]:
    """Huffman code lengths for a histogram, capped at `max_length` bits by halving counts (never to 0) until the
    tree is shallow enough; with all counts at 1 the tree is balanced, so this stops while 2^max_length >= symbols."""
    present = sum(1 for c in counts if c > 0)
    if present == 0:
        raise ValueError("counts must contain at least one nonzero entry")
    if present > 2**max_length:
        raise ValueError(f"{present} symbols cannot have codes of at most {max_length} bits")
    counts = list(counts)
    lengths = _unlimited_code_lengths(counts)
    while max(lengths) > max_length:
        counts = [(c + 1) // 2 if c > 0 else 0 for c in counts]
        lengths = _unlimited_code_lengths(counts)
    return lengths


def canonical_codes(lengths: list[int]) -> list[int]:
    """Canonical prefix codes from code lengths: symbols sorted by (length, symbol) take consecutive codes, and the
    code is shifted left whenever the length grows, so the lengths alone define the code."""
    codes = [0] * len(lengths)
    code, previous_length = 0, 0
    for length, symbol in sorted((length, symbol) for symbol, length in enumerate(lengths) if length > 0):
        code <<= length - previous_length
        codes[symbol] = code
        code, previous_length = code + 1, length
    return codes


def _split_bf16(w: Tensor) -> tuple[Tensor, Tensor]:
    """bf16 tensor -> (exponent int64 [numel], sign << 7 | mantissa uint8 [numel])."""
    bits = w.reshape(-1).view(torch.int16).to(torch.int32) & 0xFFFF  # [numel] raw 16-bit patterns
    exponent = ((bits >> 7) & 0xFF).to(torch.int64)
    sign_mantissa = (((bits >> 8) & 0x80) | (bits & 0x7F)).to(torch.uint8)
    return exponent, sign_mantissa


def _join_bf16(exponent: Tensor, sign_mantissa: Tensor) -> Tensor:
    sm = sign_mantissa.to(torch.int32)
    bits = ((sm & 0x80) << 8) | (exponent.to(torch.int32) << 7) | (sm & 0x7F)  # [numel] in [0, 65535]
    return bits.to(torch.int16).view(torch.bfloat16)  # int32 -> int16 wraps the top bit into the sign


def _pack_codes(code: Tensor, length: Tensor) -> tuple[Tensor, Tensor, int]:
    """Write variable-length codes back to back, MSB first -> (uint8 stream, start bit of every code, total bits).
    A code of <= 16 bits starting at bit phase p < 8 lies inside a 24-bit window of 3 bytes; the windows' bytes are
    summed into place, which equals OR-ing them because different codes never share a bit."""
    start = torch.cumsum(length, 0) - length  # [numel] exclusive prefix sum
    total_bits = int(start[-1] + length[-1])
    window = code << (24 - length - (start & 7))  # [numel] the code placed in its 3-byte window
    byte = start >> 3
    stream = torch.zeros((total_bits + 7) // 8 + 2, dtype=torch.int64, device=code.device)
    for shift, offset in ((16, 0), (8, 1), (0, 2)):
        stream.index_add_(0, byte + offset, (window >> shift) & 0xFF)
    return stream[: (total_bits + 7) // 8].to(torch.uint8), start, total_bits


def _check_bf16(w: Tensor, cast_to_bf16: bool) -> Tensor:
    if not isinstance(w, Tensor):
        raise ValueError(f"dfloat11 expects a torch.Tensor, got {type(w).__name__}")
    if w.numel() == 0:
        raise ValueError("dfloat11 needs a non-empty tensor")
    if w.dtype == torch.bfloat16:
        return w.contiguous()
    if cast_to_bf16 and w.is_floating_point():
        return w.to(torch.bfloat16).contiguous()
    raise ValueError(
        f"dfloat11 is lossless only for bfloat16 input, got {w.dtype}; cast it yourself or pass cast_to_bf16=True "
        "(then the round trip is exact with respect to the bf16 cast)"
    )


def encode(w: Tensor, block_size: int = DEFAULT_BLOCK_SIZE, cast_to_bf16: bool = False) -> QTensor:
    """Compress a bf16 tensor of any shape losslessly (see the module docstring for the payload)."""
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    original_dtype = w.dtype if isinstance(w, Tensor) else None
    w16 = _check_bf16(w, cast_to_bf16)
    exponent, sign_mantissa = _split_bf16(w16)
    counts = torch.bincount(exponent, minlength=NUM_SYMBOLS).tolist()
    lengths = huffman_code_lengths(counts)
    codes = canonical_codes(lengths)
    present = [s for s, n in enumerate(lengths) if n > 0]
    first, last = present[0], present[-1]
    length_table = torch.tensor(lengths, dtype=torch.int64, device=w16.device)
    code_table = torch.tensor(codes, dtype=torch.int64, device=w16.device)
    stream, start, total_bits = _pack_codes(code_table[exponent], length_table[exponent])
    offset_dtype = torch.int32 if total_bits < 2**31 else torch.int64
    payload = {
        "exponent_stream": stream,
        "sign_mantissa": sign_mantissa,
        "code_first_symbol": torch.tensor([first], dtype=torch.uint8, device=w16.device),
        "code_lengths": torch.tensor(lengths[first : last + 1], dtype=torch.uint8, device=w16.device),
        "block_bit_offsets": start[::block_size].to(offset_dtype),
    }
    meta = {"block_size": block_size, "max_code_length": max(lengths)}
    return QTensor(FORMAT_NAME, tuple(w16.shape), original_dtype, payload, meta)


def _decode_table(lengths: list[int], width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Flat lookup on the next `width` bits -> (symbol, code length) as uint8; a code of length n fills
    2^(width - n) consecutive slots."""
    symbol_of = torch.zeros(2**width, dtype=torch.uint8, device=device)
    length_of = torch.zeros(2**width, dtype=torch.uint8, device=device)
    for symbol, (code, length) in enumerate(zip(canonical_codes(lengths), lengths, strict=True)):
        if length > 0:
            lo, hi = code << (width - length), (code + 1) << (width - length)
            symbol_of[lo:hi], length_of[lo:hi] = symbol, length
    return symbol_of, length_of


def _decode_at_every_bit(window_at_byte: Tensor, width: int, table: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Speculative decode: the (symbol, length) of a code that would start at each bit position of the stream,
    one pass per bit phase over all bytes -> two uint8 tensors [8 * bytes]."""
    symbol_of, length_of = table
    symbol_at = torch.empty(window_at_byte.numel(), 8, dtype=torch.uint8, device=window_at_byte.device)
    length_at = torch.empty_like(symbol_at)
    for phase in range(8):  # bit `phase` (from the top) of every byte starts a code here
        key = (window_at_byte >> (24 - width - phase)) & ((1 << width) - 1)  # [bytes]
        symbol_at[:, phase], length_at[:, phase] = symbol_of[key], length_of[key]
    return symbol_at.reshape(-1), length_at.reshape(-1)


def _decode_exponents(q: QTensor, numel: int) -> Tensor:
    """Every bit position is decoded speculatively first; then all blocks walk their chains of codes in parallel,
    one code per block per step, a step being one lookup and one add: cursor += length_at[cursor]."""
    p = q.payload
    first = int(p["code_first_symbol"][0])
    lengths = [0] * NUM_SYMBOLS
    lengths[first : first + p["code_lengths"].numel()] = p["code_lengths"].tolist()
    width, block_size = int(q.meta["max_code_length"]), int(q.meta["block_size"])
    table = _decode_table(lengths, width, p["exponent_stream"].device)
    steps = min(block_size, numel)
    # padding: the ragged last block keeps stepping past the end (those symbols are dropped), at most `steps`
    # codes of `width` bits, and a window reads 2 bytes beyond its first
    padded = F.pad(p["exponent_stream"].to(torch.int32), (0, (steps * width) // 8 + 3))
    window_at_byte = (padded[:-2] << 16) | (padded[1:-1] << 8) | padded[2:]  # [bytes] 24 bits from each byte
    symbol_at, length_at = _decode_at_every_bit(window_at_byte, width, table)
    index_dtype = torch.int32 if symbol_at.numel() < 2**31 else torch.int64
    cursor = p["block_bit_offsets"].to(index_dtype)  # [blocks] bit position of each block's next code
    position = torch.empty(steps, cursor.numel(), dtype=index_dtype, device=cursor.device)
    for step in range(steps):
        position[step] = cursor
        cursor = cursor + length_at[cursor]
    return symbol_at[position.t().reshape(-1)[:numel]]  # uint8 [numel]: block-major order is element order


def decode(q: QTensor) -> Tensor:
    """Exact inverse of `encode`: the bf16 tensor (cast to the recorded dtype if the user asked for a cast)."""
    if q.format != FORMAT_NAME:
        raise ValueError(f"dfloat11.decode got a QTensor of format {q.format!r}")
    numel = math.prod(q.shape)
    exponent = _decode_exponents(q, numel)
    return _join_bf16(exponent, q.payload["sign_mantissa"]).reshape(q.shape).to(q.dtype)


def exponent_entropy_bits(w: Tensor) -> float:
    """Shannon entropy of the exponent histogram of w (of its bf16 cast if w is not bf16), bits per weight: the
    floor for any code that writes one exponent at a time."""
    exponent, _ = _split_bf16(_check_bf16(w, cast_to_bf16=True))
    probability = torch.bincount(exponent, minlength=NUM_SYMBOLS).double() / exponent.numel()
    probability = probability[probability > 0]
    return float(-(probability * probability.log2()).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def _quantize(w: Tensor, calibration: Tensor | None = None) -> QTensor:
    return encode(w)  # the registered format never casts: a non-bf16 weight is a ValueError


def _error_bound(w: Tensor, q: QTensor) -> Tensor:
    return torch.zeros(w.shape, dtype=torch.float64, device=w.device)  # lossless


FORMATS = (
    Format(
        name=FORMAT_NAME,
        family="lossless",
        description="bf16 with the 8-bit exponent canonical-Huffman coded (codes <= 16 bits), sign+mantissa raw "
        "(8 bits), a 32-bit bit offset per 1024 weights; bf16 input only",
        quantize=_quantize,
        dequantize=decode,
        error_bound=_error_bound,
        lossless=True,
    ),
)
for _fmt in FORMATS:
    register_format(_fmt)
