"""The fragment kernel with its weights staged in shared memory (v8, fragment config w_smem=1): every program
starts asynchronous copies (cp.async) of all its K-blocks at once, then computes each block as it lands.

Why: the register path (triton_int4_fragment_kernel.py) keeps one K-block per warp in flight (about 1 KB), so a
warp waits a DRAM round trip per block and the kernel streams at 64% of DRAM peak (ncu, v8/NOTES.md). Here a
program of block_n 64 asks for its whole split (7 blocks = 28 KB at 4096 x 14336) before computing anything, and
with 7-8 programs resident per SM the whole weight is requested near the start. Import triton_int4_v6, not this
module (Gluon, CUDA only; checked against float64 by scripts/bench_int4_v8.py).
"""

from __future__ import annotations

from torch import Tensor
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
from triton.experimental.gluon.language.nvidia.ampere import mma_v2
from triton.language.extra.cuda import gdc_launch_dependents

from reference_impls.kernels.quant.triton_int4 import BLOCK_K
from reference_impls.kernels.quant.triton_int4_fragment import FragmentInt4
from reference_impls.kernels.quant.triton_int4_fragment_kernel import (
    block_live,
    fragment_operands,
    fragment_scales,
    fragment_store,
    fragment_tile,
)

MAX_STAGED_BYTES = 48 * 1024  # weights staged per program at most (a launch over it takes the register path)


def staged_layout(block_n: int) -> gl.SharedLinearLayout:
    """One staged K-block as int16 [1, block_n, 32] over [block_n / 16 tiles, 512] containers in fragment order
    (FragmentInt4's docstring): offset bit i holds basis i's coordinates, so each lane's A-operand words are
    4-byte ld.shared (or ldmatrix) reads, a warp's contiguous."""
    bases = [[0, 0, 1], [0, 0, 2], [0, 0, 4], [0, 1, 0], [0, 2, 0], [0, 4, 0], [0, 8, 0], [0, 0, 8], [0, 0, 16]]
    return gl.SharedLinearLayout(bases + [[0, 16 << i, 0] for i in range(max(0, block_n // 16 - 1).bit_length())])


@gluon.jit
def int4_fragment_staged_kernel(x_ptr, f_ptr, s_ptr, z_ptr, dst_ptr, M, N, K, blocks, blocks_per_split, stride_xm,
                                stride_fw, stride_sg, stride_zg, stride_dm, stride_ds, BLOCK_N: gl.constexpr,
                                BLOCK_M: gl.constexpr, SPLIT_BLOCKS: gl.constexpr, GROUP_BLOCKS: gl.constexpr,
                                SYMMETRIC: gl.constexpr, ZERO_BY_SUM: gl.constexpr, FP16: gl.constexpr,
                                EVEN_N: gl.constexpr, EVEN_K: gl.constexpr, PDL: gl.constexpr,
                                W_LAYOUT: gl.constexpr):
    """Grid (N / BLOCK_N, splits, M / BLOCK_M) as int4_fragment_kernel (k_warps 1, row_tiles 1, x from global
    memory). f_ptr: the containers as int32 words, tile t's block b at t * stride_fw + 256 b. SPLIT_BLOCKS
    (>= blocks_per_split) K-blocks are copied into shared memory, one commit group each, all before the loop;
    block j waits for its own group only."""
    if PDL:
        gdc_launch_dependents()
    TILES: gl.constexpr = BLOCK_N // 16
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[1, gl.num_warps(), 1],
                                                  instr_shape=[1, 16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    copy_layout: gl.constexpr = gl.BlockedLayout([1, 4], [1, 32], [gl.num_warps(), 1], [1, 0])
    pid_n, split, pid_m = gl.program_id(0), gl.program_id(1), gl.program_id(2)
    first = split * blocks_per_split
    last = gl.minimum(first + blocks_per_split, blocks)

    tile = gl.arange(0, TILES, layout=gl.SliceLayout(1, copy_layout))
    word = gl.arange(0, 256, layout=gl.SliceLayout(0, copy_layout))
    src = (f_ptr + gl.expand_dims((pid_n * TILES + tile).to(gl.int64) * stride_fw, 1) + gl.expand_dims(word, 0)
           + first * 256)
    staged = gl.allocate_shared_memory(gl.int32, [SPLIT_BLOCKS, TILES, 256], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    for j in gl.static_range(SPLIT_BLOCKS):
        cp.async_copy_global_to_shared(staged.index(j), src + j * 256,
                                       mask=gl.expand_dims(word >= 0, 0) & (first + j < last))
        cp.commit_group()

    _, x_ptrs, k_in_block = fragment_operands(f_ptr, x_ptr, pid_n * BLOCK_N, pid_m, M, stride_xm, 0, a_layout,
                                              b_layout, 1, BLOCK_N, BLOCK_M)
    x_ptrs += first * 128
    slot_s = gl.expand_dims(gl.arange(0, 1, layout=gl.SliceLayout(1, gl.SliceLayout(2, mma))), 1)
    n = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, gl.SliceLayout(2, mma)))
    dtype: gl.constexpr = gl.float16 if FP16 else gl.bfloat16
    ones = gl.full([1, BLOCK_N, 32], 1.0, dtype, a_layout)
    acc = gl.zeros([1, BLOCK_N, BLOCK_M], gl.float32, mma)
    for j in gl.static_range(SPLIT_BLOCKS):
        b = first + j
        live_b = b < last
        xb = x_ptrs + j * 128
        if EVEN_K:
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
        s, negz = fragment_scales(s_ptr, z_ptr, b + slot_s, block_live(b + slot_s, last, n, N, EVEN_N), n,
                                  stride_sg, stride_zg, GROUP_BLOCKS, SYMMETRIC, ZERO_BY_SUM, FP16)
        dx = acc
        if ZERO_BY_SUM:
            dx = gl.zeros([1, BLOCK_N, BLOCK_M], gl.float32, mma)
            dx = mma_v2_sum(ones, x0, x1, x2, x3, dx)
        cp.wait_group(SPLIT_BLOCKS - 1 - j)  # this thread's copies of block j have landed ...
        gl.thread_barrier()  # ... and everyone's
        h = staged.index(j)._reinterpret(gl.int16, [1, BLOCK_N, 32], W_LAYOUT).load(a_layout)
        acc = fragment_tile(acc, h, x0, x1, x2, x3, dx, s, negz, ZERO_BY_SUM, FP16, mma)
    fragment_store(acc, dst_ptr, pid_n * BLOCK_N, pid_m, split, M, N, stride_dm, stride_ds, BLOCK_N, BLOCK_M, mma)


@gluon.jit
def mma_v2_sum(ones, x0, x1, x2, x3, acc):
    """acc + 1 @ x over the four planes: sum(x) per K-block for the zero point by block."""
    acc = mma_v2(ones, x0, acc)
    acc = mma_v2(ones, x1, acc)
    acc = mma_v2(ones, x2, acc)
    return mma_v2(ones, x3, acc)


def staged_fits(plan: dict, cfg: dict) -> bool:
    """Whether a launch can stage its weights: k_warps 1, row_tiles 1, and the split's blocks within
    MAX_STAGED_BYTES."""
    return (int(cfg["k_warps"]) == 1 and int(cfg["row_tiles"]) == 1
            and int(plan["per_split"]) * int(cfg["block_n"]) * BLOCK_K // 2 <= MAX_STAGED_BYTES)


def launch_fragment_staged(x: Tensor, w: FragmentInt4, dst: Tensor, zero: Tensor, plan: dict, cfg: dict,
                           group: int, even: dict) -> None:
    """One launch of int4_fragment_staged_kernel over plan's grid (as launch_fragment)."""
    import torch

    words = w.frags.view(torch.int32)
    int4_fragment_staged_kernel[(plan["n_tiles"], plan["splits"], plan["m_tiles"])](
        x, words, w.scale, zero, dst, x.shape[0], w.out_features, w.in_features, plan["blocks"], plan["per_split"],
        x.stride(0), words.stride(0), w.scale.stride(0), zero.stride(0), dst.stride(-2),
        dst.stride(0) if plan["splits"] > 1 else 0, BLOCK_N=cfg["block_n"], BLOCK_M=cfg["block_m"],
        SPLIT_BLOCKS=int(plan["per_split"]), GROUP_BLOCKS=group // BLOCK_K, ZERO_BY_SUM=bool(cfg["zero_by_sum"]),
        FP16=x.dtype == torch.float16, W_LAYOUT=staged_layout(cfg["block_n"]), num_warps=cfg["num_warps"], **even)
