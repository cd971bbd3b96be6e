"""The Triton kernels behind triton_int4.py (import that module, not this one).

Kept apart so that importing triton_int4 needs no triton: this module is imported on the first launch, and
Triton reads TRITON_INTERPRET when these functions are decorated, i.e. then. Layout and math: triton_int4.py.
Both kernels walk K in blocks of 128: 32 rows of int16 containers, nibble j of row r holding k = 128b + 32j + r,
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
def scale_and_negzero(s_ptr, z_ptr, k0, K, group_size, n, n_ok, stride_sg, stride_zg, OFFSET: tl.constexpr,
                      SYMMETRIC: tl.constexpr, FP16: tl.constexpr):
    """Scale s [N] (float32) of the group holding k0 (0 for k0 >= K, the padding) and -(OFFSET + zero point) as
    a 16-bit float [N] (zero point 8 when symmetric), to subtract from OFFSET + code."""
    group = k0 // group_size
    ok = n_ok & (k0 < K)
    s = tl.load(s_ptr + group * stride_sg + n, mask=ok, other=0.0).to(tl.float32)
    if SYMMETRIC:
        negz = tl.full(n.shape, -(OFFSET + 8.0), tl.float32)
    else:
        negz = -(tl.load(z_ptr + group * stride_zg + n, mask=ok, other=0).to(tl.float32) + OFFSET)
    return s, negz.to(tl.float16 if FP16 else tl.bfloat16)


@triton.jit
def nibble_plus_128(h32, J: tl.constexpr):
    """128 + nibble J of each container (sign-extended to int32) as float32, with no int-to-float conversion:
    the nibble is moved to bits 16..19 and OR-ed into 0x43000000 (128.0, whose mantissa bit 16 weighs 1.0)."""
    return (((h32 << (16 - 4 * J)) & 0xF0000) | 0x43000000).to(tl.float32, bitcast=True)


@triton.jit
def load_containers(qw_ptr, block, n, n_ok, stride_qk, live):
    """The 32 int16 rows of K-block `block` for columns n ([32, BLOCK_N]), 0 past N or where `live` is false."""
    rows = block * ROWS + tl.arange(0, ROWS)
    return tl.load(qw_ptr + rows[:, None].to(tl.int64) * stride_qk + n[None, :], mask=live & n_ok[None, :],
                   other=0)


@triton.jit
def group_terms(s_ptr, z_ptr, k0, K, group_size, n, n_ok, stride_sg, stride_zg, OFFSET: tl.constexpr,
                SYMMETRIC: tl.constexpr):
    """Scale s [N] (float32) of the group holding k0, and s * (OFFSET + zero point): the correction that turns
    a sum of x * (OFFSET + code) into s * sum of x * (code - zero). Symmetric codes are stored + 8. Both are 0
    for k0 >= K (a slice of the padding, which has no group)."""
    group = k0 // group_size
    ok = n_ok & (k0 < K)
    s = tl.load(s_ptr + group * stride_sg + n, mask=ok, other=0.0).to(tl.float32)
    if SYMMETRIC:
        zc = s * (OFFSET + 8.0)
    else:
        zc = s * (tl.load(z_ptr + group * stride_zg + n, mask=ok, other=0).to(tl.float32) + OFFSET)
    return s, zc


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
def gemv_block(acc, h, block, last, x_row, qw_ptr, s_ptr, z_ptr, n, n_ok, K, group_size, stride_qk, stride_sg,
               stride_zg, SYMMETRIC: tl.constexpr, SLICE_SCALES: tl.constexpr, PREFETCH: tl.constexpr):
    """Fold K-block `block` into acc [32, BLOCK_N] on CUDA cores: per weight a shift, an and-or and an FMA.
    SLICE_SCALES (groups of 32 or 64): each 32-k slice has its own scale; else one per block. With PREFETCH,
    `h` holds this block's containers on entry and the next block's on return."""
    if PREFETCH:
        upcoming = load_containers(qw_ptr, block + 1, n, n_ok, stride_qk, block + 1 < last)
    else:
        h = load_containers(qw_ptr, block, n, n_ok, stride_qk, block < last)
    h32 = h.to(tl.int32)
    r = tl.arange(0, ROWS)
    part = tl.zeros(acc.shape, tl.float32)
    x_sum = tl.zeros([ROWS], tl.float32)
    for j in tl.static_range(4):
        k = block * 128 + j * ROWS + r
        xj = tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32)
        if SLICE_SCALES:
            s, zc = group_terms(s_ptr, z_ptr, block * 128 + j * ROWS, K, group_size, n, n_ok, stride_sg, stride_zg,
                                128.0, SYMMETRIC)
            acc += s[None, :] * (xj[:, None] * nibble_plus_128(h32, j)) - zc[None, :] * xj[:, None]
        else:
            part += xj[:, None] * nibble_plus_128(h32, j)
            x_sum += xj
    if not SLICE_SCALES:
        s, zc = group_terms(s_ptr, z_ptr, block * 128, K, group_size, n, n_ok, stride_sg, stride_zg, 128.0, SYMMETRIC)
        acc += s[None, :] * part - zc[None, :] * x_sum[:, None]
    if PREFETCH:
        h = upcoming
    return acc, h


@triton.jit
def int4_gemv_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, out_ptr, ws_ptr, lock_ptr, M, N, K, group_size, blocks,
                     blocks_per_split, num_splits, n_tiles, stride_xm, stride_qk, stride_sg, stride_zg, stride_om,
                     stride_ws, stride_wm, BLOCK_N: tl.constexpr, SYMMETRIC: tl.constexpr,
                     SLICE_SCALES: tl.constexpr, SPLIT: tl.constexpr, PREFETCH: tl.constexpr,
                     INTERPRETED: tl.constexpr):
    """Grid (M, N tiles, splits): one activation row against BLOCK_N columns over one split of K, on CUDA
    cores, accumulating [32, BLOCK_N] partial sums with no cross-thread reduction until the end."""
    m, pid_n, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < N
    first = split * blocks_per_split
    last = tl.minimum(first + blocks_per_split, blocks)
    x_row = x_ptr + m.to(tl.int64) * stride_xm
    acc = tl.zeros([ROWS, BLOCK_N], tl.float32)
    h = load_containers(qw_ptr, first, n, n_ok, stride_qk, first < last)
    if INTERPRETED:  # Triton 3.6's interpreter cannot take a run-time `range` bound under NumPy >= 2.4
        block = first
        while block < last:
            acc, h = gemv_block(acc, h, block, last, x_row, qw_ptr, s_ptr, z_ptr, n, n_ok, K, group_size, stride_qk,
                                stride_sg, stride_zg, SYMMETRIC, SLICE_SCALES, PREFETCH)
            block += 1
    else:
        for block in range(first, last):
            acc, h = gemv_block(acc, h, block, last, x_row, qw_ptr, s_ptr, z_ptr, n, n_ok, K, group_size, stride_qk,
                                stride_sg, stride_zg, SYMMETRIC, SLICE_SCALES, PREFETCH)
    y = tl.sum(acc, axis=0)
    store_or_reduce(y[None, :], out_ptr, ws_ptr, lock_ptr, m + tl.arange(0, 1), n, M, N, stride_om, stride_ws,
                    stride_wm, split, num_splits, m * n_tiles + pid_n, SPLIT)


@triton.jit
def mma_slice(acc, d, q, negz, s, x_ptr, m, m_ok, k0, K, stride_xm, FP16: tl.constexpr, SLICE_SCALES: tl.constexpr,
              INTERPRETED: tl.constexpr):
    """One 32-k slice on tensor cores: d += x[:, k0:k0+32] @ (q - z), exact 16-bit operands, float32 sums.
    SLICE_SCALES: acc += s * d at once (the slice is its own group) and d restarts."""
    k = k0 + tl.arange(0, ROWS)
    a = tl.load(x_ptr + m[:, None].to(tl.int64) * stride_xm + k[None, :], mask=m_ok[:, None] & (k < K)[None, :],
                other=0.0)
    w = minus_zero(q, negz[None, :], FP16, INTERPRETED)
    d = tl.dot(mma_operand(a, INTERPRETED), mma_operand(w, INTERPRETED), d)
    if SLICE_SCALES:
        acc += s[None, :] * d
        d = tl.zeros_like(d)
    return acc, d


@triton.jit
def mma_block(acc, block, x_ptr, qw_ptr, s_ptr, z_ptr, m, m_ok, n, n_ok, K, group_size, stride_xm, stride_qk,
              stride_sg, stride_zg, SYMMETRIC: tl.constexpr, SLICE_SCALES: tl.constexpr, FP16: tl.constexpr,
              INTERPRETED: tl.constexpr):
    """acc [BLOCK_M, BLOCK_N] += s * (x @ (q - z)) over K-block `block`: its 4 nibble planes dequantized to
    [32, BLOCK_N] tiles of q - z (exact in 16 bits) and multiplied with tl.dot; the scale is applied to the
    float32 product once per group."""
    offset: tl.constexpr = 1024.0 if FP16 else 128.0
    h = load_containers(qw_ptr, block, n, n_ok, stride_qk, True)
    q0, q1, q2, q3 = planes_as_half(h, FP16, INTERPRETED)
    d = tl.zeros_like(acc)
    k0 = block * 128
    s, negz = scale_and_negzero(s_ptr, z_ptr, k0, K, group_size, n, n_ok, stride_sg, stride_zg, offset, SYMMETRIC,
                                FP16)
    acc, d = mma_slice(acc, d, q0, negz, s, x_ptr, m, m_ok, k0, K, stride_xm, FP16, SLICE_SCALES, INTERPRETED)
    if SLICE_SCALES:
        s, negz = scale_and_negzero(s_ptr, z_ptr, k0 + ROWS, K, group_size, n, n_ok, stride_sg, stride_zg, offset,
                                    SYMMETRIC, FP16)
    acc, d = mma_slice(acc, d, q1, negz, s, x_ptr, m, m_ok, k0 + ROWS, K, stride_xm, FP16, SLICE_SCALES,
                       INTERPRETED)
    if SLICE_SCALES:
        s, negz = scale_and_negzero(s_ptr, z_ptr, k0 + 2 * ROWS, K, group_size, n, n_ok, stride_sg, stride_zg,
                                    offset, SYMMETRIC, FP16)
    acc, d = mma_slice(acc, d, q2, negz, s, x_ptr, m, m_ok, k0 + 2 * ROWS, K, stride_xm, FP16, SLICE_SCALES,
                       INTERPRETED)
    if SLICE_SCALES:
        s, negz = scale_and_negzero(s_ptr, z_ptr, k0 + 3 * ROWS, K, group_size, n, n_ok, stride_sg, stride_zg,
                                    offset, SYMMETRIC, FP16)
    acc, d = mma_slice(acc, d, q3, negz, s, x_ptr, m, m_ok, k0 + 3 * ROWS, K, stride_xm, FP16, SLICE_SCALES,
                       INTERPRETED)
    if not SLICE_SCALES:
        acc += s[None, :] * d
    return acc


@triton.jit
def int4_mma_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, out_ptr, ws_ptr, lock_ptr, M, N, K, group_size, blocks,
                    blocks_per_split, num_splits, n_tiles, stride_xm, stride_qk, stride_sg, stride_zg, stride_om,
                    stride_ws, stride_wm, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SYMMETRIC: tl.constexpr,
                    SLICE_SCALES: tl.constexpr, SPLIT: tl.constexpr, FP16: tl.constexpr,
                    INTERPRETED: tl.constexpr):
    """Grid (N tiles, M tiles, splits): a [BLOCK_M, BLOCK_N] output tile on tensor cores over one split of K."""
    pid_n, pid_m, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok, n_ok = m < M, n < N
    first = split * blocks_per_split
    last = tl.minimum(first + blocks_per_split, blocks)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    if INTERPRETED:  # see int4_gemv_kernel
        block = first
        while block < last:
            acc = mma_block(acc, block, x_ptr, qw_ptr, s_ptr, z_ptr, m, m_ok, n, n_ok, K, group_size, stride_xm,
                            stride_qk, stride_sg, stride_zg, SYMMETRIC, SLICE_SCALES, FP16, INTERPRETED)
            block += 1
    else:
        for block in range(first, last):
            acc = mma_block(acc, block, x_ptr, qw_ptr, s_ptr, z_ptr, m, m_ok, n, n_ok, K, group_size, stride_xm,
                            stride_qk, stride_sg, stride_zg, SYMMETRIC, SLICE_SCALES, FP16, INTERPRETED)
    store_or_reduce(acc, out_ptr, ws_ptr, lock_ptr, m, n, M, N, stride_om, stride_ws, stride_wm, split, num_splits,
                    pid_m * n_tiles + pid_n, SPLIT)
