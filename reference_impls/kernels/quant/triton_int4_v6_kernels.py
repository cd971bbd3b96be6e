"""The Triton kernels behind v6's two-pass mma path (triton_int4_v6.py); import triton_int4_v6, not this module.

Kept apart so that importing triton_int4_v6 needs no triton (as triton_int4 / triton_int4_kernels): this module is
imported on the first launch, and Triton reads TRITON_INTERPRET when these functions are decorated, i.e. then.
int4_mma_partial_kernel is v5's tensor-core loop (triton_int4_kernels.mma_block) over one split of K ending in a
plain float32 store; sum_splits_kernel adds the splits in order (deterministic), as a programmatic dependent launch.
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from reference_impls.kernels.quant.triton_int4_kernels import ROWS, load_block, mma_block


@triton.jit
def store_partial(acc, dst_ptr, rows, cols, M, N, split, stride_dm, stride_ds):
    """acc [R, C] (float32) -> dst[split, rows, cols] in dst's dtype: the float32 workspace, or y itself when
    there is one split (stride_ds = 0)."""
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    ptrs = dst_ptr + split * stride_ds + rows[:, None] * stride_dm + cols[None, :]
    tl.store(ptrs, acc.to(dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def int4_mma_partial_kernel(x_ptr, qw_ptr, qw_desc, s_ptr, z_ptr, dst_ptr, M, N, K, blocks, blocks_per_split,
                            stride_xm, stride_qk, stride_sg, stride_zg, stride_dm, stride_ds, BLOCK_M: tl.constexpr,
                            BLOCK_N: tl.constexpr, GROUP_SIZE: tl.constexpr, SYMMETRIC: tl.constexpr,
                            SLICE_SCALES: tl.constexpr, FP16: tl.constexpr, EVEN_N: tl.constexpr,
                            EVEN_K: tl.constexpr, TMA: tl.constexpr, PDL: tl.constexpr, INTERPRETED: tl.constexpr):
    """Grid (N tiles, M tiles, splits): v5's tensor-core loop over one split of K, then one plain store of the
    float32 partial (no fence, no atomic). TMA: qw_desc is a [32, BLOCK_N] descriptor over the containers."""
    if PDL:
        gdc_launch_dependents()  # the sum kernel may be scheduled now; it waits for this grid's completion
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
            if TMA:
                h = qw_desc.load([block * ROWS, pid_n * BLOCK_N])
            else:
                h = load_block(qw_ptr, block, n, n_ok, stride_qk, EVEN_N)
            acc = mma_block(acc, h, block, x_rows, s_ptr, z_ptr, n, n_ok, K, stride_sg, stride_zg, GROUP_SIZE,
                            SYMMETRIC, SLICE_SCALES, BLOCK_M <= 16, FP16, EVEN_N, EVEN_K, INTERPRETED)
            block += 1
    else:
        for block in range(first, last):
            if TMA:
                h = qw_desc.load([block * ROWS, pid_n * BLOCK_N])
            else:
                h = load_block(qw_ptr, block, n, n_ok, stride_qk, EVEN_N)
            acc = mma_block(acc, h, block, x_rows, s_ptr, z_ptr, n, n_ok, K, stride_sg, stride_zg, GROUP_SIZE,
                            SYMMETRIC, SLICE_SCALES, BLOCK_M <= 16, FP16, EVEN_N, EVEN_K, INTERPRETED)
    store_partial(acc, dst_ptr, m, n, M, N, split, stride_dm, stride_ds)


@triton.jit
def sum_splits_kernel(ws_ptr, out_ptr, numel, stride_ws, SPLITS: tl.constexpr, BLOCK: tl.constexpr,
                      PDL: tl.constexpr):
    """out[i] = sum over s of ws[s, i] (float32, in split order: deterministic), cast to out's dtype. PDL: launched
    as a programmatic dependent, so wait until the partial kernel's writes are visible."""
    if PDL:
        gdc_wait()
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    total = tl.load(ws_ptr + offs, mask=mask, other=0.0)
    for s in tl.static_range(1, SPLITS):
        total += tl.load(ws_ptr + s * stride_ws + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, total.to(out_ptr.dtype.element_ty), mask=mask)
