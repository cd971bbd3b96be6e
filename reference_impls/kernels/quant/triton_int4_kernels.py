"""The tensor-core Triton kernel behind triton_int4.py and the helpers it shares with the GEMV
(triton_int4_gemv.py); import triton_int4, not this module.

Kept apart so that importing triton_int4 needs no triton: this module is imported on the first launch, and
Triton reads TRITON_INTERPRET when these functions are decorated, i.e. then. Layout and math: triton_int4.py.
The kernels walk K in blocks of 128: 32 rows of int16 containers, nibble j of row r holding k = 128b + 32j + r,
so nibble plane j is a plain [32, BLOCK_N] tile of the weight (no reshape, no gather).
"""

import triton
import triton.language as tl

from reference_impls.kernels.triton_decode_kernels import mma_operand  # the interpreter-safe dot operand, shared

ROWS = tl.constexpr(32)  # int16 rows per block of 128 k (4 nibbles each)

# bf16x2 / f16x2 of OFFSET + nibble, two weights per instruction: (h >> 4j) & 0x000F000F | OFFSET2.
# lop3 0xEA is (a & b) | c. Each asm instance gets two int16 containers (adjacent columns) in one register.
_PLANES_ASM = """{
.reg .b32 t;
lop3.b32 $0, $4, 0x000F000F, MAGIC, 0xEA;
shr.u32 t, $4, 4;
lop3.b32 $1, t, 0x000F000F, MAGIC, 0xEA;
shr.u32 t, $4, 8;
lop3.b32 $2, t, 0x000F000F, MAGIC, 0xEA;
shr.u32 t, $4, 12;
lop3.b32 $3, t, 0x000F000F, MAGIC, 0xEA;
}"""
PLANES_BF16 = tl.constexpr(_PLANES_ASM.replace("MAGIC", "0x43004300"))  # bf16 128.0 in both halves
PLANES_FP16 = tl.constexpr(_PLANES_ASM.replace("MAGIC", "0x64006400"))  # fp16 1024.0 in both halves


@triton.jit
def planes_as_half(h, FP16: tl.constexpr, INTERPRETED: tl.constexpr):
    """int16 containers [R, C] -> the 4 nibble planes as 16-bit floats OFFSET + code (OFFSET = 1024 for fp16,
    128 for bf16: the float whose mantissa unit is 1.0, so OR-ing a nibble into its bits adds it exactly).
    Compiled: inline PTX, one shift and one lop3 per two weights. Interpreted: the same bits with plain ops."""
    if INTERPRETED and FP16:
        q0 = ((h & 0xF) | 0x6400).to(tl.int16).to(tl.float16, bitcast=True)
        q1 = (((h >> 4) & 0xF) | 0x6400).to(tl.int16).to(tl.float16, bitcast=True)
        q2 = (((h >> 8) & 0xF) | 0x6400).to(tl.int16).to(tl.float16, bitcast=True)
        q3 = (((h >> 12) & 0xF) | 0x6400).to(tl.int16).to(tl.float16, bitcast=True)
    elif INTERPRETED:
        q0 = ((h & 0xF) | 0x4300).to(tl.int16).to(tl.bfloat16, bitcast=True)
        q1 = (((h >> 4) & 0xF) | 0x4300).to(tl.int16).to(tl.bfloat16, bitcast=True)
        q2 = (((h >> 8) & 0xF) | 0x4300).to(tl.int16).to(tl.bfloat16, bitcast=True)
        q3 = (((h >> 12) & 0xF) | 0x4300).to(tl.int16).to(tl.bfloat16, bitcast=True)
    elif FP16:
        q0, q1, q2, q3 = tl.inline_asm_elementwise(PLANES_FP16, "=r,=r,=r,=r,r", [h], dtype=(tl.float16,) * 4,
                                                   is_pure=True, pack=2)
    else:
        q0, q1, q2, q3 = tl.inline_asm_elementwise(PLANES_BF16, "=r,=r,=r,=r,r", [h], dtype=(tl.bfloat16,) * 4,
                                                   is_pure=True, pack=2)
    return q0, q1, q2, q3


@triton.jit
def minus_zero(q, negz, FP16: tl.constexpr, INTERPRETED: tl.constexpr):
    """q + negz in 16-bit floats, exact (OFFSET + code minus OFFSET + zero: integers below 2^11). Compiled: one
    packed fma (x1.0 + negz) per two weights."""
    if INTERPRETED:
        return (q.to(tl.float32) + negz.to(tl.float32)).to(q.dtype)
    elif FP16:
        return tl.inline_asm_elementwise("{.reg .b32 one; mov.b32 one, 0x3C003C00; fma.rn.f16x2 $0, $1, one, $2;}",
                                         "=r,r,r", [q, negz], dtype=tl.float16, is_pure=True, pack=2)
    else:
        return tl.inline_asm_elementwise("{.reg .b32 one; mov.b32 one, 0x3F803F80; fma.rn.bf16x2 $0, $1, one, $2;}",
                                         "=r,r,r", [q, negz], dtype=tl.bfloat16, is_pure=True, pack=2)


@triton.jit
def scale_and_negzero(s_ptr, z_ptr, k0, K, n, n_ok, stride_sg, stride_zg, OFFSET: tl.constexpr,
                      GROUP_SIZE: tl.constexpr, SYMMETRIC: tl.constexpr, EVEN: tl.constexpr):
    """Scale s [N] (float32) of the group holding k0 (0 for k0 >= K, the padding) and -(OFFSET + zero point)
    [N] (float32; zero point 8 when symmetric). GROUP_SIZE is a compile-time constant (0: one group per row), so
    the group index is a shift, not a division; EVEN: no masks (N a multiple of BLOCK_N, K of 128)."""
    group = 0 if GROUP_SIZE == 0 else k0 // GROUP_SIZE
    ok = n_ok & (k0 < K)
    if EVEN:
        s = tl.load(s_ptr + group * stride_sg + n).to(tl.float32)
    else:
        s = tl.load(s_ptr + group * stride_sg + n, mask=ok, other=0.0).to(tl.float32)
    if SYMMETRIC:
        negz = tl.full(n.shape, -(OFFSET + 8.0), tl.float32)
    elif EVEN:
        negz = -(tl.load(z_ptr + group * stride_zg + n).to(tl.float32) + OFFSET)
    else:
        negz = -(tl.load(z_ptr + group * stride_zg + n, mask=ok, other=0).to(tl.float32) + OFFSET)
    return s, negz


@triton.jit
def store_or_reduce(acc, out_ptr, ws_ptr, lock_ptr, rows, cols, M, N, stride_om, stride_ws, stride_wm, split,
                    num_splits, tile, SPLIT: tl.constexpr):
    """Write acc [R, C] (float32) to out[rows, cols] in out's dtype. With SPLIT, each split stores its partial
    in the float32 workspace, and the last split of the tile to arrive (an atomic counter per tile, reset by it
    for the next launch) adds the partials — four loads in flight at a time, in a fixed order: deterministic,
    and one launch in all."""
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    if SPLIT:
        ws = ws_ptr + rows[:, None] * stride_wm + cols[None, :]
        tl.store(ws + split * stride_ws, acc, mask=mask)
        tl.debug_barrier()  # every thread's partial is written before the counter says so (release below)
        arrived = tl.atomic_add(lock_ptr + tile, 1, sem="acq_rel")
        if arrived == num_splits - 1:
            tl.debug_barrier()
            total = tl.zeros_like(acc)
            s = 0
            while s < num_splits:  # a while loop: the interpreter cannot take a run-time `range` bound
                p0 = tl.load(ws + s * stride_ws, mask=mask, other=0.0, cache_modifier=".cg")
                p1 = tl.load(ws + (s + 1) * stride_ws, mask=mask & (s + 1 < num_splits), other=0.0,
                             cache_modifier=".cg")
                p2 = tl.load(ws + (s + 2) * stride_ws, mask=mask & (s + 2 < num_splits), other=0.0,
                             cache_modifier=".cg")
                p3 = tl.load(ws + (s + 3) * stride_ws, mask=mask & (s + 3 < num_splits), other=0.0,
                             cache_modifier=".cg")
                total += (p0 + p1) + (p2 + p3)
                s += 4
            tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :], total.to(out_ptr.dtype.element_ty),
                     mask=mask)
            tl.atomic_xchg(lock_ptr + tile, 0)
    else:
        tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def mma_slice(acc, d, dx, q, negz, s, x_rows, k0, K, FP16: tl.constexpr, SLICE_SCALES: tl.constexpr,
              ZERO_BY_SUM: tl.constexpr, EVEN_K: tl.constexpr, INTERPRETED: tl.constexpr):
    """One 32-k slice on tensor cores, float32 sums of exact 16-bit products. Groups of >= 128: d += x @ (OFFSET
    + q) and dx += x @ 1 (the sum of x, in every column), so the zero point is subtracted once per block from
    the float32 sums, not per weight (ZERO_BY_SUM; else d += x @ (q - z), one packed fma per two weights).
    SLICE_SCALES (groups of 32 or 64): acc += s * (x @ (q - z)) at once. x_rows: [BLOCK_M, 1] row pointers
    (rows past M repeat row M - 1: no mask needed)."""
    k = k0 + tl.arange(0, ROWS)
    if EVEN_K:
        a = tl.load(x_rows + k[None, :])
    else:
        a = tl.load(x_rows + k[None, :], mask=(k < K)[None, :], other=0.0)
    a = mma_operand(a, INTERPRETED)
    if SLICE_SCALES:
        w = minus_zero(q, negz[None, :].to(q.dtype), FP16, INTERPRETED)
        acc += s[None, :] * tl.dot(a, mma_operand(w, INTERPRETED), tl.zeros_like(acc))
    elif not ZERO_BY_SUM:
        w = minus_zero(q, negz[None, :].to(q.dtype), FP16, INTERPRETED)
        d = tl.dot(a, mma_operand(w, INTERPRETED), d)
    else:
        d = tl.dot(a, mma_operand(q, INTERPRETED), d)
        if INTERPRETED:  # the interpreter has no bfloat16 constants (and multiplies in float32 anyway)
            dx = tl.dot(a, tl.full(q.shape, 1.0, tl.float32), dx)
        else:
            dx = tl.dot(a, tl.full(q.shape, 1.0, q.dtype), dx)
    return acc, d, dx


@triton.jit
def mma_block(acc, h, block, x_rows, s_ptr, z_ptr, n, n_ok, K, stride_sg, stride_zg, GROUP_SIZE: tl.constexpr,
              SYMMETRIC: tl.constexpr, SLICE_SCALES: tl.constexpr, ZERO_BY_SUM: tl.constexpr, FP16: tl.constexpr,
              EVEN_N: tl.constexpr, EVEN_K: tl.constexpr, INTERPRETED: tl.constexpr):
    """acc [BLOCK_M, BLOCK_N] += s * (x @ (q - z)) over K-block `block`, whose containers are h [32, BLOCK_N]:
    4 nibble planes of OFFSET + q (exact in 16 bits) multiplied with tl.dot; the zero point and the scale are
    applied to the float32 sums once per group (ZERO_BY_SUM: the zero point too; else per weight). (Independent
    accumulators per slice, to shorten the mma chain, measured no faster on an H100.)"""
    offset: tl.constexpr = 1024.0 if FP16 else 128.0
    even: tl.constexpr = EVEN_N and EVEN_K
    q0, q1, q2, q3 = planes_as_half(h, FP16, INTERPRETED)
    d = tl.zeros_like(acc)
    dx = tl.zeros_like(acc)
    k0 = block * 128
    s, negz = scale_and_negzero(s_ptr, z_ptr, k0, K, n, n_ok, stride_sg, stride_zg, offset, GROUP_SIZE, SYMMETRIC,
                                even)
    acc, d, dx = mma_slice(acc, d, dx, q0, negz, s, x_rows, k0, K, FP16, SLICE_SCALES, ZERO_BY_SUM, EVEN_K,
                           INTERPRETED)
    if SLICE_SCALES:
        s, negz = scale_and_negzero(s_ptr, z_ptr, k0 + ROWS, K, n, n_ok, stride_sg, stride_zg, offset, GROUP_SIZE,
                                    SYMMETRIC, even)
    acc, d, dx = mma_slice(acc, d, dx, q1, negz, s, x_rows, k0 + ROWS, K, FP16, SLICE_SCALES, ZERO_BY_SUM,
                           EVEN_K, INTERPRETED)
    if SLICE_SCALES:
        s, negz = scale_and_negzero(s_ptr, z_ptr, k0 + 2 * ROWS, K, n, n_ok, stride_sg, stride_zg, offset,
                                    GROUP_SIZE, SYMMETRIC, even)
    acc, d, dx = mma_slice(acc, d, dx, q2, negz, s, x_rows, k0 + 2 * ROWS, K, FP16, SLICE_SCALES, ZERO_BY_SUM,
                           EVEN_K, INTERPRETED)
    if SLICE_SCALES:
        s, negz = scale_and_negzero(s_ptr, z_ptr, k0 + 3 * ROWS, K, n, n_ok, stride_sg, stride_zg, offset,
                                    GROUP_SIZE, SYMMETRIC, even)
    acc, d, dx = mma_slice(acc, d, dx, q3, negz, s, x_rows, k0 + 3 * ROWS, K, FP16, SLICE_SCALES, ZERO_BY_SUM,
                           EVEN_K, INTERPRETED)
    if ZERO_BY_SUM and not SLICE_SCALES:
        acc += s[None, :] * tl.fma(negz[None, :], dx, d)
    elif not SLICE_SCALES:
        acc += s[None, :] * d
    return acc


@triton.jit
def load_block(qw_ptr, block, n, n_ok, stride_qk, EVEN_N: tl.constexpr):
    """The 32 int16 container rows of K-block `block` for columns n ([32, BLOCK_N]; 0 past N)."""
    rows = block * ROWS + tl.arange(0, ROWS)
    ptrs = qw_ptr + rows[:, None].to(tl.int64) * stride_qk + n[None, :]
    if EVEN_N:
        return tl.load(ptrs)
    return tl.load(ptrs, mask=n_ok[None, :], other=0)


@triton.jit
def int4_mma_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, out_ptr, ws_ptr, lock_ptr, M, N, K, blocks, blocks_per_split,
                    num_splits, n_tiles, stride_xm, stride_qk, stride_sg, stride_zg, stride_om, stride_ws, stride_wm,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_SIZE: tl.constexpr, SYMMETRIC: tl.constexpr,
                    SLICE_SCALES: tl.constexpr, SPLIT: tl.constexpr, FP16: tl.constexpr, EVEN_N: tl.constexpr,
                    EVEN_K: tl.constexpr, INTERPRETED: tl.constexpr):
    """Grid (N tiles, M tiles, splits): a [BLOCK_M, BLOCK_N] output tile on tensor cores over one split of K.
    GROUP_SIZE: 32, 64, a multiple of 128, or 0 (one group per row); EVEN_N / EVEN_K: no column / k masks.
    The zero point comes off sum(x) (a second, cheap dot) only at BLOCK_M <= 16: at BLOCK_M = 32 that dot
    costs more than the per-weight subtraction it saves (H100: 14336 x 4096 at M = 64, 47 vs 37 us)."""
    pid_n, pid_m, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < N
    first = split * blocks_per_split
    last = tl.minimum(first + blocks_per_split, blocks)
    x_rows = x_ptr + tl.minimum(m, M - 1)[:, None].to(tl.int64) * stride_xm
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    if INTERPRETED:  # Triton 3.6's interpreter cannot take a run-time `range` bound under NumPy >= 2.4
        block = first
        while block < last:
            h = load_block(qw_ptr, block, n, n_ok, stride_qk, EVEN_N)
            acc = mma_block(acc, h, block, x_rows, s_ptr, z_ptr, n, n_ok, K, stride_sg, stride_zg, GROUP_SIZE,
                            SYMMETRIC, SLICE_SCALES, BLOCK_M <= 16, FP16, EVEN_N, EVEN_K, INTERPRETED)
            block += 1
    else:
        for block in range(first, last):
            h = load_block(qw_ptr, block, n, n_ok, stride_qk, EVEN_N)
            acc = mma_block(acc, h, block, x_rows, s_ptr, z_ptr, n, n_ok, K, stride_sg, stride_zg, GROUP_SIZE,
                            SYMMETRIC, SLICE_SCALES, BLOCK_M <= 16, FP16, EVEN_N, EVEN_K, INTERPRETED)
    store_or_reduce(acc, out_ptr, ws_ptr, lock_ptr, m, n, M, N, stride_om, stride_ws, stride_wm, split, num_splits,
                    pid_m * n_tiles + pid_n, SPLIT)
