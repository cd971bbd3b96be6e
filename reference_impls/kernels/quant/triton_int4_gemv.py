"""The CUDA-core GEMV behind triton_int4.int4_matmul(kernel="gemv"): small batch, no tensor cores, no shared memory.

Same packed layout as the mma kernel (int16 containers, nibble j of row 32b + r holds k = 128b + 32j + r), read
as it lies: a thread's 16-byte load is 8 neighbouring columns of one container row, 32 weights that share 4
values of x. Per two containers (one 32-bit register, columns n and n + 1) the inline PTX makes the 8 weights
as float32 M_j + code with no int-to-float conversion: one byte permute, two shifts and 8 lop3 (11 instructions
for 8 weights), where M_j = 128.0 for nibbles j = 0, 2 (OR-ed into bits 16..19 of 0x43000000, whose bit 16
weighs 1.0) and 2048.0 for j = 1, 3 (bits 12..15 of 0x45000000). Each weight then costs one FFMA: a row's 4
products are chained onto -(sum_j (M_j + zero) * x_j), so the chain ends at sum_j (code - zero) * x_j (every
product exact in float32, the offsets cancel within 4 terms), and the group's scale multiplies that partial once
per 4 weights: ~2.6 instructions per weight of arithmetic, ~4.2 in the sm_90 SASS of the loop with the x loads,
scales and addressing (v1: 6.5). The next PREFETCH blocks' containers are loaded into registers before this
block's math, so loads stay in flight without a shared-memory pipeline. On an H100 it is not faster than the mma
kernel at any M (results/published/h100-quant-matmul/NOTES.md), so `auto` does not pick it.
"""

import triton
import triton.language as tl

from reference_impls.kernels.quant.triton_int4_kernels import ROWS, store_or_reduce

# $8 = one int32 word: two int16 containers, column 2c in bits 0..15 and 2c + 1 in 16..31 (the kernel reads the
# int16 [rows, N] containers as int32 [rows, N / 2]). Outputs: $0,$1 = nibble 0 of the even and odd column (in bits
# 16..19: the even one's via the half swap r, the odd one's in place), $2,$3 = nibble 1 (bits 12..15: the even
# one's from a = u << 8, the odd one's from b = u >> 8), $4,$5 = nibble 2 (bits 16..19 of a, b), $6,$7 = nibble 3
# (bits 12..15 of u, r). lop3 0xEA is (a & b) | c.
NIBBLES_F32 = tl.constexpr("""{
.reg .b32 r, a, b;
prmt.b32 r, $8, $8, 0x1032;
shl.b32 a, $8, 8;
shr.u32 b, $8, 8;
lop3.b32 $0, r, 0x000F0000, 0x43000000, 0xEA;
lop3.b32 $1, $8, 0x000F0000, 0x43000000, 0xEA;
lop3.b32 $2, a, 0x0000F000, 0x45000000, 0xEA;
lop3.b32 $3, b, 0x0000F000, 0x45000000, 0xEA;
lop3.b32 $4, a, 0x000F0000, 0x43000000, 0xEA;
lop3.b32 $5, b, 0x000F0000, 0x43000000, 0xEA;
lop3.b32 $6, $8, 0x0000F000, 0x45000000, 0xEA;
lop3.b32 $7, r, 0x0000F000, 0x45000000, 0xEA;
}""")
M_EVEN = tl.constexpr(128.0)  # offset of nibbles 0 and 2
M_ODD = tl.constexpr(2048.0)  # offset of nibbles 1 and 3


@triton.jit
def half_as_f32(u):
    """float32 M_j + nibble j, j = 0..3 (M = 128, 2048, 128, 2048), of containers u (int32 in [0, 65535])."""
    f0 = (((u & 0xF) << 16) | 0x43000000).to(tl.float32, bitcast=True)
    f1 = (((u & 0xF0) << 8) | 0x45000000).to(tl.float32, bitcast=True)
    f2 = (((u & 0xF00) << 8) | 0x43000000).to(tl.float32, bitcast=True)
    f3 = ((u & 0xF000) | 0x45000000).to(tl.float32, bitcast=True)
    return f0, f1, f2, f3


@triton.jit
def nibbles_f32(h, INTERPRETED: tl.constexpr):
    """int32 words [R, C] (two containers each) -> (even column j = 0..3, odd column j = 0..3) as float32
    M_j + nibble, exactly. Compiled: the inline PTX above. Interpreted: the same bits with plain ops."""
    if INTERPRETED:
        e0, e1, e2, e3 = half_as_f32(h & 0xFFFF)
        o0, o1, o2, o3 = half_as_f32((h >> 16) & 0xFFFF)
    else:
        e0, o0, e1, o1, e2, o2, e3, o3 = tl.inline_asm_elementwise(
            NIBBLES_F32, "=r,=r,=r,=r,=r,=r,=r,=r,r", [h], dtype=(tl.float32,) * 8, is_pure=True, pack=1)
    return e0, e1, e2, e3, o0, o1, o2, o3


@triton.jit
def group_scale_zero(s_ptr, z_ptr, k0, K, n, n_ok, stride_sg, stride_zg, GROUP_SIZE: tl.constexpr,
                     SYMMETRIC: tl.constexpr, EVEN: tl.constexpr):
    """Scale [C] (float32) of the group holding k0 for columns n (0 past K or N) and its zero point (8 when
    symmetric). GROUP_SIZE is a compile-time constant (0: one group per row): the group index is no division."""
    group = 0 if GROUP_SIZE == 0 else k0 // GROUP_SIZE
    if EVEN:
        s = tl.load(s_ptr + group * stride_sg + n).to(tl.float32)
    else:
        s = tl.load(s_ptr + group * stride_sg + n, mask=n_ok & (k0 < K), other=0.0).to(tl.float32)
    if SYMMETRIC:
        z = tl.full(n.shape, 8.0, tl.float32)
    elif EVEN:
        z = tl.load(z_ptr + group * stride_zg + n).to(tl.float32)
    else:
        z = tl.load(z_ptr + group * stride_zg + n, mask=n_ok & (k0 < K), other=0).to(tl.float32)
    return s, z


@triton.jit
def column_block(acc, f0, f1, f2, f3, x0, x1, x2, x3, s_ptr, z_ptr, k0, K, n, n_ok, stride_sg, stride_zg,
                 GROUP_SIZE: tl.constexpr, SYMMETRIC: tl.constexpr, EVEN: tl.constexpr):
    """acc [32, C] += scale * sum_j (code - zero) * x_j for one parity of columns (n) over one K-block."""
    if GROUP_SIZE == 32 or GROUP_SIZE == 64:  # every 32-k slice j has its own scale and zero point
        s, z = group_scale_zero(s_ptr, z_ptr, k0, K, n, n_ok, stride_sg, stride_zg, GROUP_SIZE, SYMMETRIC, EVEN)
        acc += s[None, :] * ((f0 - (z + M_EVEN)[None, :]) * x0[:, None])
        s, z = group_scale_zero(s_ptr, z_ptr, k0 + ROWS, K, n, n_ok, stride_sg, stride_zg, GROUP_SIZE, SYMMETRIC,
                                EVEN)
        acc += s[None, :] * ((f1 - (z + M_ODD)[None, :]) * x1[:, None])
        s, z = group_scale_zero(s_ptr, z_ptr, k0 + 2 * ROWS, K, n, n_ok, stride_sg, stride_zg, GROUP_SIZE,
                                SYMMETRIC, EVEN)
        acc += s[None, :] * ((f2 - (z + M_EVEN)[None, :]) * x2[:, None])
        s, z = group_scale_zero(s_ptr, z_ptr, k0 + 3 * ROWS, K, n, n_ok, stride_sg, stride_zg, GROUP_SIZE,
                                SYMMETRIC, EVEN)
        acc += s[None, :] * ((f3 - (z + M_ODD)[None, :]) * x3[:, None])
    else:
        s, z = group_scale_zero(s_ptr, z_ptr, k0, K, n, n_ok, stride_sg, stride_zg, GROUP_SIZE, SYMMETRIC, EVEN)
        offsets = M_EVEN * (x0 + x2) + M_ODD * (x1 + x3)  # [32]: sum_j M_j x_j, shared by every column
        if SYMMETRIC:
            part = (-(offsets + 8.0 * ((x0 + x1) + (x2 + x3))))[:, None]  # [32, 1]: the first fma broadcasts
        else:
            part = -(offsets[:, None] + z[None, :] * ((x0 + x1) + (x2 + x3))[:, None])
        part = tl.fma(f0, x0[:, None], part)
        part = tl.fma(f1, x1[:, None], part)
        part = tl.fma(f2, x2[:, None], part)
        part = tl.fma(f3, x3[:, None], part)
        acc = tl.fma(s[None, :], part, acc)
    return acc


@triton.jit
def gemv_block(acc_e, acc_o, h, h1, h2, qw, block, last, x_row, s_ptr, z_ptr, c, c_ok, N, K, stride_qk, stride_sg,
               stride_zg, GROUP_SIZE: tl.constexpr, SYMMETRIC: tl.constexpr, PREFETCH: tl.constexpr,
               EVEN_N: tl.constexpr, EVEN_K: tl.constexpr, INTERPRETED: tl.constexpr):
    """Fold K-block `block` into the even- and odd-column accumulators [32, C]. qw points at the words [32, C] of
    block + PREFETCH, which this call loads (h, h1, h2: the blocks already loaded, in order), so PREFETCH blocks
    are in flight while this one is computed. EVEN_N / EVEN_K: no column / k masks."""
    if PREFETCH == 0 and EVEN_N:
        h = tl.load(qw)
        upcoming = h
    elif PREFETCH == 0:
        h = tl.load(qw, mask=c_ok[None, :], other=0)
        upcoming = h
    elif EVEN_N:
        upcoming = tl.load(qw, mask=block + PREFETCH < last, other=0)
    else:
        upcoming = tl.load(qw, mask=(block + PREFETCH < last) & c_ok[None, :], other=0)
    e0, e1, e2, e3, o0, o1, o2, o3 = nibbles_f32(h, INTERPRETED)
    k0 = block * 128
    k = k0 + tl.arange(0, ROWS)
    if EVEN_K:
        x0 = tl.load(x_row + k).to(tl.float32)
        x1 = tl.load(x_row + k + ROWS).to(tl.float32)
        x2 = tl.load(x_row + k + 2 * ROWS).to(tl.float32)
        x3 = tl.load(x_row + k + 3 * ROWS).to(tl.float32)
    else:
        x0 = tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32)
        x1 = tl.load(x_row + k + ROWS, mask=k + ROWS < K, other=0.0).to(tl.float32)
        x2 = tl.load(x_row + k + 2 * ROWS, mask=k + 2 * ROWS < K, other=0.0).to(tl.float32)
        x3 = tl.load(x_row + k + 3 * ROWS, mask=k + 3 * ROWS < K, other=0.0).to(tl.float32)
    even = EVEN_N and EVEN_K
    acc_e = column_block(acc_e, e0, e1, e2, e3, x0, x1, x2, x3, s_ptr, z_ptr, k0, K, 2 * c, 2 * c < N, stride_sg,
                         stride_zg, GROUP_SIZE, SYMMETRIC, even)
    acc_o = column_block(acc_o, o0, o1, o2, o3, x0, x1, x2, x3, s_ptr, z_ptr, k0, K, 2 * c + 1, 2 * c + 1 < N,
                         stride_sg, stride_zg, GROUP_SIZE, SYMMETRIC, even)
    if PREFETCH == 1:
        h = upcoming
    elif PREFETCH == 2:
        h, h1 = h1, upcoming
    elif PREFETCH == 3:
        h, h1, h2 = h1, h2, upcoming
    return acc_e, acc_o, h, h1, h2, qw + ROWS * stride_qk


@triton.jit
def int4_gemv_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, out_ptr, ws_ptr, lock_ptr, M, N, K, blocks, blocks_per_split,
                     num_splits, n_tiles, stride_xm, stride_qk, stride_sg, stride_zg, stride_om, stride_ws, stride_wm,
                     BLOCK_N: tl.constexpr, GROUP_SIZE: tl.constexpr, SYMMETRIC: tl.constexpr, SPLIT: tl.constexpr,
                     PREFETCH: tl.constexpr, EVEN_N: tl.constexpr, EVEN_K: tl.constexpr,
                     INTERPRETED: tl.constexpr):
    """Grid (N tiles, splits, M): one activation row against BLOCK_N columns over one split of K, accumulating
    [32, BLOCK_N / 2] partial sums per column parity in registers; one cross-thread reduction at the end.
    qw_ptr: the containers as int32 words [rows, N / 2] (N even), stride_qk in words. GROUP_SIZE: 32, 64, a
    multiple of 128, or 0 (one group per row). PREFETCH: K-blocks loaded ahead (0..3)."""
    pid_n, split, m = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    c = pid_n * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)  # word columns: containers 2c and 2c + 1
    c_ok = 2 * c < N
    first = split * blocks_per_split
    last = tl.minimum(first + blocks_per_split, blocks)
    x_row = x_ptr + m.to(tl.int64) * stride_xm
    acc_e = tl.zeros([ROWS, BLOCK_N // 2], tl.float32)
    acc_o = tl.zeros([ROWS, BLOCK_N // 2], tl.float32)
    rows = first * ROWS + tl.arange(0, ROWS)
    qw = qw_ptr + rows[:, None].to(tl.int64) * stride_qk + c[None, :]
    step = ROWS * stride_qk
    h = tl.load(qw, mask=(first < last) & c_ok[None, :], other=0)
    h1 = h  # placeholders when PREFETCH < 3: values the loop passes on unchanged
    h2 = h
    if PREFETCH >= 2:
        h1 = tl.load(qw + step, mask=(first + 1 < last) & c_ok[None, :], other=0)
    if PREFETCH >= 3:
        h2 = tl.load(qw + 2 * step, mask=(first + 2 < last) & c_ok[None, :], other=0)
    qw += PREFETCH * step
    if INTERPRETED:  # Triton 3.6's interpreter cannot take a run-time `range` bound under NumPy >= 2.4
        block = first
        while block < last:
            acc_e, acc_o, h, h1, h2, qw = gemv_block(acc_e, acc_o, h, h1, h2, qw, block, last, x_row, s_ptr, z_ptr, c,
                                                     c_ok, N, K, stride_qk, stride_sg, stride_zg, GROUP_SIZE,
                                                     SYMMETRIC, PREFETCH, EVEN_N, EVEN_K, INTERPRETED)
            block += 1
    else:
        for block in range(first, last):
            acc_e, acc_o, h, h1, h2, qw = gemv_block(acc_e, acc_o, h, h1, h2, qw, block, last, x_row, s_ptr, z_ptr, c,
                                                     c_ok, N, K, stride_qk, stride_sg, stride_zg, GROUP_SIZE,
                                                     SYMMETRIC, PREFETCH, EVEN_N, EVEN_K, INTERPRETED)
    y = tl.interleave(tl.sum(acc_e, axis=0), tl.sum(acc_o, axis=0))  # [BLOCK_N]: columns 2c, 2c + 1 in order
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    store_or_reduce(y[None, :], out_ptr, ws_ptr, lock_ptr, m + tl.arange(0, 1), n, M, N, stride_om, stride_ws,
                    stride_wm, split, num_splits, m * n_tiles + pid_n, SPLIT)
