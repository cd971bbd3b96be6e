"""The Gluon kernel behind v6's fragment path (layout: triton_int4_fragment.py): W is the m16n8k16 A operand,
loaded from fragment order straight into its registers, x^T the B operand; import triton_int4_v6, not this module.

Kept apart so that only this module needs Gluon (triton.experimental.gluon): triton_int4_v6 imports it on the
first fragment launch. Gluon has no interpreter, so it runs on CUDA only; its arithmetic is checked against float64
on an H100 by scripts/bench_int4_v6.py (results/published/h100-quant-matmul/v6/v6_log.txt).
"""

from __future__ import annotations

import torch
from torch import Tensor
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2
from triton.language.extra.cuda import gdc_launch_dependents

from reference_impls.kernels.quant.triton_int4 import BLOCK_K
from reference_impls.kernels.quant.triton_int4_fragment import MAX_STAGED, FragmentInt4
from reference_impls.kernels.quant.triton_int4_kernels import PLANES_BF16, PLANES_FP16

# (OFFSET + q) * 1 - (OFFSET + 8), two weights per instruction: bf16 -136 = 0xC308, fp16 -1032 = 0xE408
SUB8_BF16 = gl.constexpr("{.reg .b32 one, c; mov.b32 one, 0x3F803F80; mov.b32 c, 0xC308C308; "
                         "fma.rn.bf16x2 $0, $1, one, c;}")
SUB8_FP16 = gl.constexpr("{.reg .b32 one, c; mov.b32 one, 0x3C003C00; mov.b32 c, 0xE408E408; "
                         "fma.rn.f16x2 $0, $1, one, c;}")



@gluon.jit
def fragment_operands(f_ptr, x_ptr, row0, pid_m, M, stride_xm, stride_ft, a_layout: gl.constexpr,
                      b_layout: gl.constexpr, K_WARPS: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_M: gl.constexpr):
    """Pointers at K-block 0 of the A operand (containers [K_WARPS, BLOCK_N, 32]: warp slot w reads K-block b + w)
    and of the B operand (x^T [K_WARPS, 32, BLOCK_M], columns = rows of x, repeated past M), and the k index of
    each B element within its block."""
    w = gl.arange(0, K_WARPS, layout=gl.SliceLayout(1, gl.SliceLayout(2, a_layout)))
    n = row0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, gl.SliceLayout(2, a_layout)))
    kl = gl.arange(0, 32, layout=gl.SliceLayout(0, gl.SliceLayout(1, a_layout)))
    row_off = (n // 16).to(gl.int64) * stride_ft + ((n // 8) % 2) * 64 + (n % 8) * 8
    k_off = gl.max_contiguous(gl.multiple_of((kl // 16) * 256 + ((kl // 8) % 2) * 128 + ((kl // 2) % 4) * 2
                                             + kl % 2, 2), 2)
    f_ptrs = (f_ptr + gl.expand_dims(gl.expand_dims(w * 512, 1), 2) + gl.expand_dims(gl.expand_dims(row_off, 0), 2)
              + gl.expand_dims(gl.expand_dims(k_off, 0), 1))
    wb = gl.arange(0, K_WARPS, layout=gl.SliceLayout(1, gl.SliceLayout(2, b_layout)))
    kb = gl.arange(0, 32, layout=gl.SliceLayout(0, gl.SliceLayout(2, b_layout)))
    cols = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, gl.SliceLayout(1, b_layout)))
    k_in_block = gl.expand_dims(gl.expand_dims(wb * 128, 1), 2) + gl.expand_dims(gl.expand_dims(kb, 0), 2)
    x_ptrs = x_ptr + k_in_block + gl.expand_dims(gl.expand_dims(gl.minimum(cols, M - 1).to(gl.int64) * stride_xm,
                                                                0), 1)
    return f_ptrs, x_ptrs, k_in_block


@gluon.jit
def fragment_planes(h, FP16: gl.constexpr, SUB8: gl.constexpr):
    """int16 containers (A-operand layout) -> the 4 nibble planes as OFFSET + code (SUB8: code - 8), 16-bit floats,
    two weights per instruction."""
    if FP16:
        q0, q1, q2, q3 = gl.inline_asm_elementwise(PLANES_FP16, "=r,=r,=r,=r,r", [h], dtype=(gl.float16,) * 4,
                                                   is_pure=True, pack=2)
        if SUB8:
            q0 = gl.inline_asm_elementwise(SUB8_FP16, "=r,r", [q0], dtype=gl.float16, is_pure=True, pack=2)
            q1 = gl.inline_asm_elementwise(SUB8_FP16, "=r,r", [q1], dtype=gl.float16, is_pure=True, pack=2)
            q2 = gl.inline_asm_elementwise(SUB8_FP16, "=r,r", [q2], dtype=gl.float16, is_pure=True, pack=2)
            q3 = gl.inline_asm_elementwise(SUB8_FP16, "=r,r", [q3], dtype=gl.float16, is_pure=True, pack=2)
    else:
        q0, q1, q2, q3 = gl.inline_asm_elementwise(PLANES_BF16, "=r,=r,=r,=r,r", [h], dtype=(gl.bfloat16,) * 4,
                                                   is_pure=True, pack=2)
        if SUB8:
            q0 = gl.inline_asm_elementwise(SUB8_BF16, "=r,r", [q0], dtype=gl.bfloat16, is_pure=True, pack=2)
            q1 = gl.inline_asm_elementwise(SUB8_BF16, "=r,r", [q1], dtype=gl.bfloat16, is_pure=True, pack=2)
            q2 = gl.inline_asm_elementwise(SUB8_BF16, "=r,r", [q2], dtype=gl.bfloat16, is_pure=True, pack=2)
            q3 = gl.inline_asm_elementwise(SUB8_BF16, "=r,r", [q3], dtype=gl.bfloat16, is_pure=True, pack=2)
    return q0, q1, q2, q3


@gluon.jit
def fragment_tile(acc, h, x0, x1, x2, x3, dx, s_ptr, z_ptr, blk, live, n, stride_sg, stride_zg,
                  GROUP_BLOCKS: gl.constexpr, SYMMETRIC: gl.constexpr, ZERO_BY_SUM: gl.constexpr,
                  FP16: gl.constexpr, layout: gl.constexpr):
    """acc [K_WARPS, R, BLOCK_M] += s * (q - z) @ x over one K-block per warp slot (blk [K_WARPS, 1]; live: its
    mask), for the rows n of containers h."""
    offset: gl.constexpr = 1024.0 if FP16 else 128.0
    q0, q1, q2, q3 = fragment_planes(h, FP16, not ZERO_BY_SUM)
    d = gl.zeros(acc.shape, gl.float32, layout)
    d = mma_v2(q0, x0, d)
    d = mma_v2(q1, x1, d)
    d = mma_v2(q2, x2, d)
    d = mma_v2(q3, x3, d)
    group = 0 if GROUP_BLOCKS == 0 else blk // GROUP_BLOCKS
    s = gl.load(s_ptr + group * stride_sg + gl.expand_dims(n, 0), mask=live, other=0.0).to(gl.float32)
    if ZERO_BY_SUM:
        if SYMMETRIC:
            negz = gl.full(s.shape, -(offset + 8.0), gl.float32, s.type.layout)
        else:
            negz = -(gl.load(z_ptr + group * stride_zg + gl.expand_dims(n, 0), mask=live, other=0).to(gl.float32)
                     + offset)
        d = d + gl.expand_dims(negz, 2) * dx
    return acc + gl.expand_dims(s, 2) * d


@gluon.jit
def int4_fragment_kernel(x_ptr, f_ptr, s_ptr, z_ptr, dst_ptr, M, N, K, blocks, blocks_per_split, stride_xm,
                         stride_ft, stride_sg, stride_zg, stride_dm, stride_ds, BLOCK_N: gl.constexpr,
                         BLOCK_M: gl.constexpr, ROW_TILES: gl.constexpr, K_WARPS: gl.constexpr,
                         GROUP_BLOCKS: gl.constexpr, SYMMETRIC: gl.constexpr, ZERO_BY_SUM: gl.constexpr,
                         FP16: gl.constexpr, EVEN_N: gl.constexpr, EVEN_K: gl.constexpr, PDL: gl.constexpr,
                         ZERO_FOLD: gl.constexpr = False, X_SMEM: gl.constexpr = False,
                         SPLIT_BLOCKS: gl.constexpr = 1, X_LAYOUT: gl.constexpr = None,
                         X_LAYOUT_ALL: gl.constexpr = None):
    """Grid (N / (ROW_TILES BLOCK_N), splits, M / BLOCK_M), Gluon: W is the mma A operand, loaded from fragment
    order straight into its registers (no shared memory, no barrier in the loop), x^T the B operand, shared by the
    ROW_TILES (1, 2) row tiles of BLOCK_N rows. K_WARPS warps walk K side by side (warp slot w takes blocks b + w),
    the others split BLOCK_N; their sums meet once, at the end (gl.sum). Per K-block: 4 nibble planes of OFFSET +
    code (a shift and a lop3 per two weights), d += q_j @ x_j; the zero point comes off per block (ZERO_BY_SUM:
    dx += 1 @ x_j on tensor cores, once for all row tiles; acc += s (d - (OFFSET + z) dx)) or per weight
    (symmetric only: one packed fma per two weights). The next K-step's containers are loaded one step ahead.
    ZERO_FOLD / X_SMEM (K_WARPS 1; v7): sum(x) per K-block (ZERO_FOLD: dx without the ones mma) and x itself (X_SMEM:
    the B operand read from shared memory instead of 16 global loads per block) are staged once per program for its
    SPLIT_BLOCKS (>= blocks_per_split) blocks, behind one barrier. X_SMEM 3 (M = 1; v9): only the one row of x is
    staged (stage_x_row), an eighth of X_SMEM 1's shared-memory traffic, and broadcast to the B operand's columns."""
    if PDL:
        gdc_launch_dependents()
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[K_WARPS, gl.num_warps() // K_WARPS,
                                                                                 1], instr_shape=[1, 16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    dtype: gl.constexpr = gl.float16 if FP16 else gl.bfloat16
    pid_n, split, pid_m = gl.program_id(0), gl.program_id(1), gl.program_id(2)
    first = split * blocks_per_split
    last = gl.minimum(first + blocks_per_split, blocks)
    f_ptrs, x_ptrs, k_in_block = fragment_operands(f_ptr, x_ptr, pid_n * BLOCK_N * ROW_TILES, pid_m, M, stride_xm,
                                                   stride_ft, a_layout, b_layout, K_WARPS, BLOCK_N, BLOCK_M)
    f_ptrs += first * 512
    x_ptrs += first * 128
    next_tile = (BLOCK_N // 16) * stride_ft  # containers of the second row tile
    slot_a = gl.expand_dims(gl.expand_dims(gl.arange(0, K_WARPS, layout=gl.SliceLayout(1, gl.SliceLayout(
        2, a_layout))), 1), 2)
    slot_b = k_in_block // 128
    slot_s = gl.expand_dims(gl.arange(0, K_WARPS, layout=gl.SliceLayout(1, gl.SliceLayout(2, mma))), 1)
    n = pid_n * BLOCK_N * ROW_TILES + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, gl.SliceLayout(2, mma)))
    ones = gl.full([K_WARPS, BLOCK_N, 32], 1.0, dtype, a_layout)
    acc = gl.zeros([K_WARPS, BLOCK_N, BLOCK_M], gl.float32, mma)
    acc2 = acc
    dx = acc
    h = gl.load(f_ptrs, mask=first + slot_a < last, other=0)
    h2 = h
    if ROW_TILES == 2:
        h2 = gl.load(f_ptrs + next_tile, mask=first + slot_a < last, other=0)
    if X_SMEM == 3:
        x_smem = stage_x_row(x_ptr, K, first, last, SPLIT_BLOCKS)
        x_cols = gl.zeros([K_WARPS, 32, BLOCK_M], dtype, b_layout)  # the shape x's planes are broadcast to
    elif ZERO_FOLD or X_SMEM:
        x_smem, xs_smem = stage_x(x_ptr, pid_m, M, K, stride_xm, first, last, ZERO_FOLD, X_SMEM, SPLIT_BLOCKS,
                                  BLOCK_M, X_LAYOUT, X_LAYOUT_ALL)
    for b in range(first, last, K_WARPS):
        ahead = b + K_WARPS
        upcoming = gl.load(f_ptrs + (ahead - first) * 512, mask=ahead + slot_a < last, other=0)
        upcoming2 = upcoming
        if ROW_TILES == 2:
            upcoming2 = gl.load(f_ptrs + next_tile + (ahead - first) * 512, mask=ahead + slot_a < last, other=0)
        xb = x_ptrs + (b - first) * 128
        live_b = b + slot_b < last  # the warp slot's block is in this split
        if X_SMEM == 3:  # one row of x, each plane broadcast across the B operand's columns
            xblk = x_smem.index(b - first)
            x0 = gl.broadcast(xblk.slice(0, 1, 0).load(b_layout), x_cols)[0]
            x1 = gl.broadcast(xblk.slice(1, 1, 0).load(b_layout), x_cols)[0]
            x2 = gl.broadcast(xblk.slice(2, 1, 0).load(b_layout), x_cols)[0]
            x3 = gl.broadcast(xblk.slice(3, 1, 0).load(b_layout), x_cols)[0]
        elif X_SMEM:
            xblk = x_smem.index(b - first)
            x0 = xblk.slice(0, 1, 0).load(b_layout)
            x1 = xblk.slice(1, 1, 0).load(b_layout)
            x2 = xblk.slice(2, 1, 0).load(b_layout)
            x3 = xblk.slice(3, 1, 0).load(b_layout)
        elif EVEN_K:
            x0 = gl.load(xb, mask=live_b, other=0.0)
            x1 = gl.load(xb + 32, mask=live_b, other=0.0)
            x2 = gl.load(xb + 64, mask=live_b, other=0.0)
            x3 = gl.load(xb + 96, mask=live_b, other=0.0)
        else:
            kk = b * 128 + k_in_block
            x0 = gl.load(xb, mask=live_b & (kk < K), other=0.0)
            x1 = gl.load(xb + 32, mask=live_b & (kk + 32 < K), other=0.0)
            x2 = gl.load(xb + 64, mask=live_b & (kk + 64 < K), other=0.0)
            x3 = gl.load(xb + 96, mask=live_b & (kk + 96 < K), other=0.0)
        if ZERO_FOLD:
            zx = gl.expand_dims(xs_smem.index(b - first).load(gl.SliceLayout(0, mma)), 0)  # [1, 1, BLOCK_M]
        else:
            if ZERO_BY_SUM:
                dx = gl.zeros([K_WARPS, BLOCK_N, BLOCK_M], gl.float32, mma)
                dx = mma_v2(ones, x0, dx)
                dx = mma_v2(ones, x1, dx)
                dx = mma_v2(ones, x2, dx)
                dx = mma_v2(ones, x3, dx)
            zx = dx
        blk = b + slot_s
        live = blk < last
        if not EVEN_N:
            live = live & gl.expand_dims(n < N, 0)
        acc = fragment_tile(acc, h, x0, x1, x2, x3, zx, s_ptr, z_ptr, blk, live, n, stride_sg, stride_zg,
                            GROUP_BLOCKS, SYMMETRIC, ZERO_BY_SUM, FP16, mma)
        if ROW_TILES == 2:
            live2 = blk < last
            if not EVEN_N:
                live2 = live2 & gl.expand_dims(n + BLOCK_N < N, 0)
            acc2 = fragment_tile(acc2, h2, x0, x1, x2, x3, zx, s_ptr, z_ptr, blk, live2, n + BLOCK_N, stride_sg,
                                 stride_zg, GROUP_BLOCKS, SYMMETRIC, ZERO_BY_SUM, FP16, mma)
            h2 = upcoming2
        h = upcoming
    fragment_store(acc, dst_ptr, pid_n * BLOCK_N * ROW_TILES, pid_m, split, M, N, stride_dm, stride_ds, BLOCK_N,
                   BLOCK_M, mma)
    if ROW_TILES == 2:
        fragment_store(acc2, dst_ptr, pid_n * BLOCK_N * ROW_TILES + BLOCK_N, pid_m, split, M, N, stride_dm,
                       stride_ds, BLOCK_N, BLOCK_M, mma)


def x_smem_layouts(x_smem: int, split_blocks: int) -> tuple:
    """Shared layouts of staged x (x_smem 1 swizzled, 2 lane-major): per block [4, 32, BLOCK_M] (the loop's view)
    and the same bytes as [split_blocks, 4, 32, BLOCK_M] (the staging store's view). Lane-major (block_m 8): lane
    4g + t' finds its 8 B-operand values of a plane (k = 2t' + {0, 1} + {0, 8} + {0, 16}, column g) in 16 bytes."""
    if x_smem != 2:
        return gl.SwizzledSharedLayout(2, 1, 8, [1, 2, 0]), gl.SwizzledSharedLayout(2, 1, 8, [2, 3, 1, 0])
    per_block = [[0, 1, 0], [0, 8, 0], [0, 16, 0], [0, 2, 0], [0, 4, 0], [0, 0, 1], [0, 0, 2], [0, 0, 4], [1, 0, 0],
                 [2, 0, 0]]
    blocks = [[1 << i, 0, 0, 0] for i in range(max(0, split_blocks - 1).bit_length())]
    return gl.SharedLinearLayout(per_block), gl.SharedLinearLayout([[0, *b] for b in per_block] + blocks)


@gluon.jit
def stage_x(x_ptr, pid_m, M, K, stride_xm, first, last, ZERO_FOLD: gl.constexpr, X_SMEM: gl.constexpr,
            SPLIT_BLOCKS: gl.constexpr, BLOCK_M: gl.constexpr, X_LAYOUT: gl.constexpr, X_LAYOUT_ALL: gl.constexpr):
    """x's K-blocks first .. last - 1 (columns = rows of x, repeated past M; zero past K) into shared memory, once
    per program, in one load (warps split the blocks): x_smem [SPLIT_BLOCKS, 4, 32, BLOCK_M] (X_SMEM: plane j of
    block i, X_LAYOUT per block) and xs_smem [SPLIT_BLOCKS, 1, BLOCK_M], sum(x) over each block in float32
    (ZERO_FOLD). One barrier at the end."""
    tile: gl.constexpr = gl.BlockedLayout([1, 4, 8, 1], [1, 1, 4, 8], [gl.num_warps(), 1, 1, 1], [2, 3, 1, 0])
    c = gl.arange(0, SPLIT_BLOCKS, layout=gl.SliceLayout(1, gl.SliceLayout(2, gl.SliceLayout(3, tile))))
    j = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(2, gl.SliceLayout(3, tile))))
    kl = gl.arange(0, 32, layout=gl.SliceLayout(0, gl.SliceLayout(1, gl.SliceLayout(3, tile))))
    cols = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, gl.SliceLayout(1, gl.SliceLayout(
        2, tile))))
    b4 = first + gl.expand_dims(gl.expand_dims(gl.expand_dims(c, 1), 2), 3)  # [SPLIT_BLOCKS, 1, 1, 1]
    k4 = b4 * 128 + (gl.expand_dims(gl.expand_dims(gl.expand_dims(j * 32, 0), 2), 3)
                     + gl.expand_dims(gl.expand_dims(gl.expand_dims(kl, 0), 1), 3))  # [SPLIT_BLOCKS, 4, 32, 1]
    col_off = gl.expand_dims(gl.expand_dims(gl.expand_dims(gl.minimum(cols, M - 1).to(gl.int64) * stride_xm, 0),
                                            1), 2)  # [1, 1, 1, BLOCK_M]
    xt = gl.load(x_ptr + k4 + col_off, mask=(b4 < last) & (k4 < K), other=0.0)
    x_smem = gl.allocate_shared_memory(x_ptr.dtype.element_ty, [SPLIT_BLOCKS if X_SMEM else 1, 4, 32, BLOCK_M],
                                       X_LAYOUT)
    xs_smem = gl.allocate_shared_memory(gl.float32, [SPLIT_BLOCKS if ZERO_FOLD else 1, 1, BLOCK_M],
                                        gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    if X_SMEM:
        x_smem._reinterpret(x_ptr.dtype.element_ty, [SPLIT_BLOCKS, 4, 32, BLOCK_M], X_LAYOUT_ALL).store(xt)
    if ZERO_FOLD:
        xs_smem._reinterpret(gl.float32, [SPLIT_BLOCKS, 1, BLOCK_M], gl.SwizzledSharedLayout(1, 1, 1, [2, 1, 0])).store(
            gl.expand_dims(gl.sum(gl.sum(xt.to(gl.float32), axis=2), axis=1), 1))
    gl.thread_barrier()
    return x_smem, xs_smem


@gluon.jit
def stage_x_row(x_ptr, K, first, last, SPLIT_BLOCKS: gl.constexpr):
    """x_smem 3 (M = 1, v9): x's K-blocks first .. last - 1 of the one row into shared memory, 2 bytes an element
    (x_smem 1 holds each element 8 times, once per B-operand column), zero past K; returned as [SPLIT_BLOCKS, 4, 32,
    1] (block, plane, k, column), which the loop broadcasts to the B operand's columns. One barrier at the end."""
    row: gl.constexpr = gl.BlockedLayout([8], [32], [gl.num_warps()], [0])
    k = first * 128 + gl.arange(0, SPLIT_BLOCKS * 128, layout=row)
    x = gl.load(x_ptr + k, mask=(k < last * 128) & (k < K), other=0.0)
    flat = gl.allocate_shared_memory(x_ptr.dtype.element_ty, [SPLIT_BLOCKS * 128], gl.SwizzledSharedLayout(
        1, 1, 1, [0]))
    flat.store(x)
    gl.thread_barrier()
    return flat._reinterpret(x_ptr.dtype.element_ty, [SPLIT_BLOCKS, 4, 32, 1], gl.SwizzledSharedLayout(
        1, 1, 1, [2, 1, 0]))


@gluon.jit
def fragment_store(acc, dst_ptr, row0, pid_m, split, M, N, stride_dm, stride_ds, BLOCK_N: gl.constexpr,
                   BLOCK_M: gl.constexpr, mma: gl.constexpr):
    """Sum the warp slots' partials (one cross-warp reduction) and store y^T [BLOCK_N, BLOCK_M] to dst[split]."""
    y = gl.sum(acc, axis=0)
    rows = row0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, gl.SliceLayout(0, mma)))
    cols = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, gl.SliceLayout(0, mma)))
    mask = gl.expand_dims(rows < N, 1) & gl.expand_dims(cols < M, 0)
    ptrs = dst_ptr + split * stride_ds + gl.expand_dims(cols, 0) * stride_dm + gl.expand_dims(rows, 1)
    gl.store(ptrs, y.to(dst_ptr.dtype.element_ty), mask=mask)



def launch_fragment(x: Tensor, w: FragmentInt4, dst: Tensor, zero: Tensor, plan: dict, cfg: dict, group: int,
                    even: dict) -> None:
    """One launch of int4_fragment_kernel over plan's grid, writing dst[split] (or y when stride 0 splits). Staging
    (zero_by_sum 2, x_smem) takes splits of up to MAX_STAGED x elements; longer ones fall back to zero_by_sum 0
    (symmetric) or 1 and x from global memory."""
    split_blocks = 1 << max(0, int(plan["per_split"]) - 1).bit_length()
    staged = split_blocks * BLOCK_K * (1 if cfg["x_smem"] == 3 else cfg["block_m"]) <= MAX_STAGED
    fold, x_smem = cfg["zero_by_sum"] == 2 and staged, int(cfg["x_smem"]) if staged else 0
    layouts = x_smem_layouts(x_smem, split_blocks) if (fold or x_smem) and x_smem != 3 else (None, None)
    if cfg["zero_by_sum"] == 2 and not fold:
        cfg = cfg | {"zero_by_sum": 0 if w.symmetric else 1}
    int4_fragment_kernel[(plan["n_tiles"], plan["splits"], plan["m_tiles"])](
        x, w.frags, w.scale, zero, dst, x.shape[0], w.out_features, w.in_features, plan["blocks"], plan["per_split"],
        x.stride(0), w.frags.stride(0), w.scale.stride(0), zero.stride(0), dst.stride(-2),
        dst.stride(0) if plan["splits"] > 1 else 0, BLOCK_N=cfg["block_n"] // cfg["row_tiles"],
        BLOCK_M=cfg["block_m"], ROW_TILES=int(cfg["row_tiles"]), K_WARPS=int(cfg["k_warps"]),
        GROUP_BLOCKS=group // BLOCK_K, ZERO_BY_SUM=bool(cfg["zero_by_sum"]), FP16=x.dtype == torch.float16,
        ZERO_FOLD=fold, X_SMEM=x_smem, SPLIT_BLOCKS=split_blocks if fold or x_smem else 1,
        X_LAYOUT=layouts[0], X_LAYOUT_ALL=layouts[1],
        num_warps=cfg["num_warps"], **even)
