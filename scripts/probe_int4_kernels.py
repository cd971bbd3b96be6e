"""Gluon kernels behind scripts/probe_int4_structure.py (issue 5, session 17): what the int4 GEMV's structure costs.

Diagnostics, not library code: each kernel isolates one part of v7's fragment kernel
(reference_impls/kernels/quant/triton_int4_fragment_kernel.py) at M = 1 (symmetric, group 128).
  probe_kernel  v7's loop (K_WARPS 1) with switches: PROBE 0 the real GEMV, 1 no scales, 2 no dequant or mma (the
                containers only xor-ed: what reading them in v7's grid costs), 3 as 2 without the x staging;
                AHEAD 1-3 K-blocks of containers loaded ahead; SCALE_SMEM the split's scales staged first; X_MODE
                0 v7's staging (x^T, 8 columns), 1 x from global one block ahead in registers, 2 x from global in
                the loop after an L1 prefetch of the split's x, 3 the same without the prefetch, 4 one row of x
                staged and broadcast to the columns (what became x_smem 3 in v9).
  chain_read    a pure read of 30 MB: STEPS dependent steps per program (each issued once the previous-but-one
                arrived) or all at once, VEC int32 per lane per load, each warp its own run or one per program.
  short_kernel  the GEMV with each warp loading all of its BPW K-blocks at once and the warps of a program
                splitting K (one cross-warp sum), no per-warp chain.
"""

import math

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2
from triton.language.extra.cuda import gdc_launch_dependents

from reference_impls.kernels.quant.triton_int4_fragment_kernel import (
    fragment_operands,
    fragment_planes,
    fragment_store,
    stage_x,
    stage_x_row,
    x_smem_layouts,
)


@gluon.jit
def probe_kernel(x_ptr, f_ptr, s_ptr, dst_ptr, N, K, blocks, blocks_per_split, stride_ft, stride_sg, stride_ds,
                 BLOCK_N: gl.constexpr, SPLIT_BLOCKS: gl.constexpr, AHEAD: gl.constexpr, SCALE_SMEM: gl.constexpr,
                 PROBE: gl.constexpr, X_MODE: gl.constexpr, X_LAYOUT: gl.constexpr, X_LAYOUT_ALL: gl.constexpr,
                 PDL: gl.constexpr = False):
    if PDL:
        gdc_launch_dependents()
    BLOCK_M: gl.constexpr = 8
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[1, gl.num_warps(), 1],
                                                  instr_shape=[1, 16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    pid_n, split = gl.program_id(0), gl.program_id(1)
    first = split * blocks_per_split
    last = gl.minimum(first + blocks_per_split, blocks)
    row0 = pid_n * BLOCK_N
    f_ptrs, x_ptrs, k_in_block = fragment_operands(f_ptr, x_ptr, row0, 0, 1, K, stride_ft, a_layout, b_layout, 1,
                                                   BLOCK_N, BLOCK_M)
    f_ptrs += first * 512
    n = row0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, gl.SliceLayout(2, mma)))
    acc = gl.zeros([1, BLOCK_N, BLOCK_M], gl.float32, mma)
    h = gl.load(f_ptrs, mask=first < last, other=0)
    h1 = h
    h2 = h
    if AHEAD >= 2:
        h1 = gl.load(f_ptrs + 512, mask=first + 1 < last, other=0)
    if AHEAD >= 3:
        h2 = gl.load(f_ptrs + 1024, mask=first + 2 < last, other=0)
    if SCALE_SMEM:
        sl: gl.constexpr = gl.BlockedLayout([1, 2], [4, 8], [gl.num_warps(), 1], [1, 0])
        c = gl.arange(0, SPLIT_BLOCKS, layout=gl.SliceLayout(1, sl))
        r = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, sl))
        st = gl.load(s_ptr + gl.expand_dims(first + c, 1) * stride_sg + row0 + gl.expand_dims(r, 0),
                     mask=gl.expand_dims(first + c < last, 1), other=0.0)
        s_smem = gl.allocate_shared_memory(s_ptr.dtype.element_ty, [SPLIT_BLOCKS, BLOCK_N],
                                           gl.SwizzledSharedLayout(1, 1, 1, [0]))
        s_smem._reinterpret(s_ptr.dtype.element_ty, [SPLIT_BLOCKS, BLOCK_N],
                            gl.SwizzledSharedLayout(1, 1, 1, [1, 0])).store(st)
    xp = x_ptrs + first * 128
    x0 = gl.load(xp, mask=first < last, other=0.0)
    x1 = gl.load(xp + 32, mask=first < last, other=0.0)
    x2 = gl.load(xp + 64, mask=first < last, other=0.0)
    x3 = gl.load(xp + 96, mask=first < last, other=0.0)
    if X_MODE == 2:  # the split's x into L1, 128 bytes a lane, no registers held
        pl: gl.constexpr = gl.BlockedLayout([1], [32], [gl.num_warps()], [0])
        line = gl.arange(0, SPLIT_BLOCKS * 2, layout=pl)
        gl.inline_asm_elementwise("prefetch.global.L1 [$1]; mov.u32 $0, 0;", "=r,l",
                                  [x_ptr + first * 128 + line * 64], dtype=gl.int32, is_pure=False, pack=1)
    if X_MODE == 4:  # one row of x staged (v9's x_smem 3), broadcast over the B operand's columns
        x_c = stage_x_row(x_ptr, K, first, last, SPLIT_BLOCKS)
        zb = gl.zeros([1, 32, BLOCK_M], x_ptr.dtype.element_ty, b_layout)
    if PROBE != 3 and not X_MODE:
        x_smem, xs_smem = stage_x(x_ptr, 0, 1, K, K, first, last, False, True, SPLIT_BLOCKS, BLOCK_M, X_LAYOUT,
                                  X_LAYOUT_ALL)
    hx = gl.zeros([1, BLOCK_N, 32], gl.int16, a_layout)
    for b in range(first, last):
        upcoming = gl.load(f_ptrs + (b + AHEAD - first) * 512, mask=b + AHEAD < last, other=0)
        if X_MODE == 1:
            xn = x_ptrs + (b + 1) * 128
            xu0 = gl.load(xn, mask=b + 1 < last, other=0.0)
            xu1 = gl.load(xn + 32, mask=b + 1 < last, other=0.0)
            xu2 = gl.load(xn + 64, mask=b + 1 < last, other=0.0)
            xu3 = gl.load(xn + 96, mask=b + 1 < last, other=0.0)
        if PROBE >= 2:
            hx = hx ^ h
        else:
            if X_MODE == 2 or X_MODE == 3:
                xc = x_ptrs + b * 128
                x0 = gl.load(xc)
                x1 = gl.load(xc + 32)
                x2 = gl.load(xc + 64)
                x3 = gl.load(xc + 96)
            if X_MODE == 4:
                xc4 = x_c.index(b - first)
                x0 = gl.broadcast(xc4.slice(0, 1, 0).load(b_layout), zb)[0]
                x1 = gl.broadcast(xc4.slice(1, 1, 0).load(b_layout), zb)[0]
                x2 = gl.broadcast(xc4.slice(2, 1, 0).load(b_layout), zb)[0]
                x3 = gl.broadcast(xc4.slice(3, 1, 0).load(b_layout), zb)[0]
            if not X_MODE:
                xblk = x_smem.index(b - first)
                x0 = xblk.slice(0, 1, 0).load(b_layout)
                x1 = xblk.slice(1, 1, 0).load(b_layout)
                x2 = xblk.slice(2, 1, 0).load(b_layout)
                x3 = xblk.slice(3, 1, 0).load(b_layout)
            q0, q1, q2, q3 = fragment_planes(h, False, True)
            d = gl.zeros(acc.shape, gl.float32, mma)
            d = mma_v2(q0, x0, d)
            d = mma_v2(q1, x1, d)
            d = mma_v2(q2, x2, d)
            d = mma_v2(q3, x3, d)
            if PROBE == 1:
                acc = acc + d
            else:
                if SCALE_SMEM:
                    s = gl.expand_dims(s_smem.index(b - first).load(gl.SliceLayout(0, gl.SliceLayout(2, mma))), 0)
                else:
                    s = gl.load(s_ptr + b * stride_sg + gl.expand_dims(n, 0))
                acc = acc + gl.expand_dims(s.to(gl.float32), 2) * d
        if X_MODE == 1:
            x0 = xu0
            x1 = xu1
            x2 = xu2
            x3 = xu3
        if AHEAD == 1:
            h = upcoming
        elif AHEAD == 2:
            h = h1
            h1 = upcoming
        else:
            h = h1
            h1 = h2
            h2 = upcoming
    if PROBE >= 2:
        rows = gl.sum(hx.to(gl.int32), axis=2)
        gl.store(dst_ptr + split * stride_ds + row0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(
            0, gl.SliceLayout(2, a_layout))), gl.sum(rows, axis=0).to(gl.float32))
    else:
        fragment_store(acc, dst_ptr, row0, 0, split, 1, N, N, stride_ds, BLOCK_N, BLOCK_M, mma)


def launch_probe(x, frags, scale, dst, n, k, splits, block_n=64, warps=4, ahead=1, scale_smem=False, probe=0,
                 x_mode=0, pdl=False):
    """probe_kernel over N / block_n tiles x `splits` splits of K into dst [splits, 1, N]; the splits it used."""
    blocks = k // 128
    per = -(-blocks // splits)
    splits = -(-blocks // per)
    split_blocks = 1 << max(0, per - 1).bit_length()
    lay = x_smem_layouts(1, split_blocks)
    probe_kernel[(n // block_n, splits)](x, frags, scale, dst, n, k, blocks, per, frags.stride(0), scale.stride(0),
                                         dst.stride(0), BLOCK_N=block_n, SPLIT_BLOCKS=split_blocks, AHEAD=ahead,
                                         SCALE_SMEM=scale_smem, PROBE=probe, X_MODE=x_mode, PDL=pdl,
                                         X_LAYOUT=lay[0], X_LAYOUT_ALL=lay[1], num_warps=warps)
    return splits


def probe_call(x, frags, scale, ws, out, n, k, splits, **kw):
    """A whole probe call: partials into ws, then v6's sum kernel as a programmatic dependent launch."""
    from reference_impls.kernels.quant import triton_int4_v6_kernels as kernels

    sp = launch_probe(x, frags, scale, ws, n, k, splits, pdl=True, **kw)
    kernels.sum_splits_kernel[(math.ceil(n / 256),)](ws, out, n, ws.stride(0), SPLITS=sp, BLOCK=256, PDL=True,
                                                     num_warps=4, launch_pdl=True)
    return out


@gluon.jit
def chain_read(src, dst, steps, zero, STEP: gl.constexpr, STEPS: gl.constexpr, VEC: gl.constexpr,
               WARP_STREAMS: gl.constexpr, AHEAD: gl.constexpr, SMEM: gl.constexpr):
    """Each program reads STEPS x STEP int32; WARP_STREAMS: each warp its own contiguous run (v7-like), else the
    program's run is contiguous and the warps share each step. AHEAD 0: all steps issued at once (read kernel)."""
    W: gl.constexpr = gl.num_warps()
    lay: gl.constexpr = gl.BlockedLayout([1, VEC], [1, 32], [W, 1], [1, 0])
    PER_WARP: gl.constexpr = STEP // W
    w = gl.arange(0, W, layout=gl.SliceLayout(1, lay))
    c = gl.arange(0, PER_WARP, layout=gl.SliceLayout(0, lay))
    pid = gl.program_id(0).to(gl.int64)
    if WARP_STREAMS:
        offs = (pid * W + gl.expand_dims(w, 1)) * (STEPS * PER_WARP) + gl.expand_dims(c, 0)
        step_stride: gl.constexpr = PER_WARP
    else:
        offs = pid * (STEPS * STEP) + gl.expand_dims(w, 1) * PER_WARP + gl.expand_dims(c, 0)
        step_stride: gl.constexpr = STEP
    ptrs = src + offs
    acc = gl.zeros([W, PER_WARP], gl.int32, lay)
    if SMEM:
        buf = gl.allocate_shared_memory(gl.int32, [W, PER_WARP], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
        buf.store(acc)
        gl.thread_barrier()
    if AHEAD == 0:
        for s in gl.static_range(STEPS):
            acc ^= gl.load(ptrs + s * step_stride)
    else:
        h = gl.load(ptrs)
        dep = acc
        for s in range(1, steps):
            nxt = gl.load(ptrs + s * step_stride + dep)  # issued before h is used, after the previous h was
            acc ^= h
            dep = h & zero
            h = nxt
        acc ^= h
    gl.store(dst + pid, gl.sum(gl.sum(acc, axis=1), axis=0))



@gluon.jit
def block_dot(acc, h, xp, s_ptrs, mask_a, mask_b, mask_s, b_layout: gl.constexpr, mma: gl.constexpr):
    x0 = gl.load(xp, mask=mask_b, other=0.0)
    x1 = gl.load(xp + 32, mask=mask_b, other=0.0)
    x2 = gl.load(xp + 64, mask=mask_b, other=0.0)
    x3 = gl.load(xp + 96, mask=mask_b, other=0.0)
    s = gl.load(s_ptrs, mask=mask_s, other=0.0).to(gl.float32)
    q0, q1, q2, q3 = fragment_planes(h, False, True)
    d = gl.zeros(acc.shape, gl.float32, mma)
    d = mma_v2(q0, x0, d)
    d = mma_v2(q1, x1, d)
    d = mma_v2(q2, x2, d)
    d = mma_v2(q3, x3, d)
    return acc + gl.expand_dims(s, 2) * d


@gluon.jit
def short_kernel(x_ptr, f_ptr, s_ptr, dst_ptr, M, N, blocks, stride_xm, stride_ft, stride_sg, stride_dm, stride_ds,
                 BPW: gl.constexpr, BLOCK_M: gl.constexpr, PDL: gl.constexpr = False):
    """Grid (N / 16, splits, M / BLOCK_M); num_warps warps along K, warp w of split s takes the BPW blocks from
    (s W + w) BPW. Containers, x and scales all requested up front; one cross-warp sum at the end."""
    if PDL:
        gdc_launch_dependents()
    W: gl.constexpr = gl.num_warps()
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[W, 1, 1], instr_shape=[1, 16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    pid_n, split, pid_m = gl.program_id(0), gl.program_id(1), gl.program_id(2)
    row0 = pid_n * 16
    # A operand: containers [W, 16, 32] of tile pid_n, warp w at block (split W + w) BPW
    wa = gl.arange(0, W, layout=gl.SliceLayout(1, gl.SliceLayout(2, a_layout)))
    n = gl.arange(0, 16, layout=gl.SliceLayout(0, gl.SliceLayout(2, a_layout)))
    kl = gl.arange(0, 32, layout=gl.SliceLayout(0, gl.SliceLayout(1, a_layout)))
    blk_a = (split * W + wa) * BPW  # first block of each warp
    row_off = ((n // 8) % 2) * 64 + (n % 8) * 8
    k_off = gl.max_contiguous(gl.multiple_of((kl // 16) * 256 + ((kl // 8) % 2) * 128 + ((kl // 2) % 4) * 2
                                             + kl % 2, 2), 2)
    f_ptrs = (f_ptr + pid_n.to(gl.int64) * stride_ft + gl.expand_dims(gl.expand_dims(blk_a * 512, 1), 2)
              + gl.expand_dims(gl.expand_dims(row_off, 0), 2) + gl.expand_dims(gl.expand_dims(k_off, 0), 1))
    live_a = gl.expand_dims(gl.expand_dims(blk_a, 1), 2)
    # B operand: x^T [W, 32, BLOCK_M] per plane, k = 128 blk + 32 j + kb
    wb = gl.arange(0, W, layout=gl.SliceLayout(1, gl.SliceLayout(2, b_layout)))
    kb = gl.arange(0, 32, layout=gl.SliceLayout(0, gl.SliceLayout(2, b_layout)))
    cols = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, gl.SliceLayout(1, b_layout)))
    blk_b = gl.expand_dims(gl.expand_dims((split * W + wb) * BPW, 1), 2)
    x_ptrs = (x_ptr + blk_b * 128 + gl.expand_dims(gl.expand_dims(kb, 0), 2)
              + gl.expand_dims(gl.expand_dims(gl.minimum(cols, M - 1).to(gl.int64) * stride_xm, 0), 1))
    # scales [W, 16] in the accumulator's row layout
    ws = gl.arange(0, W, layout=gl.SliceLayout(1, gl.SliceLayout(2, mma)))
    ns = row0 + gl.arange(0, 16, layout=gl.SliceLayout(0, gl.SliceLayout(2, mma)))
    blk_s = gl.expand_dims((split * W + ws) * BPW, 1)
    s_ptrs = s_ptr + blk_s * stride_sg + gl.expand_dims(ns, 0)
    acc = gl.zeros([W, 16, BLOCK_M], gl.float32, mma)
    h0 = gl.load(f_ptrs, mask=live_a < blocks, other=0)
    h1 = h0
    h2 = h0
    h3 = h0
    if BPW >= 2:
        h1 = gl.load(f_ptrs + 512, mask=live_a + 1 < blocks, other=0)
    if BPW >= 4:
        h2 = gl.load(f_ptrs + 1024, mask=live_a + 2 < blocks, other=0)
        h3 = gl.load(f_ptrs + 1536, mask=live_a + 3 < blocks, other=0)
    acc = block_dot(acc, h0, x_ptrs, s_ptrs, live_a < blocks, blk_b < blocks, blk_s < blocks, b_layout, mma)
    if BPW >= 2:
        acc = block_dot(acc, h1, x_ptrs + 128, s_ptrs + stride_sg, live_a + 1 < blocks, blk_b + 1 < blocks,
                        blk_s + 1 < blocks, b_layout, mma)
    if BPW >= 4:
        acc = block_dot(acc, h2, x_ptrs + 256, s_ptrs + 2 * stride_sg, live_a + 2 < blocks, blk_b + 2 < blocks,
                        blk_s + 2 < blocks, b_layout, mma)
        acc = block_dot(acc, h3, x_ptrs + 384, s_ptrs + 3 * stride_sg, live_a + 3 < blocks, blk_b + 3 < blocks,
                        blk_s + 3 < blocks, b_layout, mma)
    y = gl.sum(acc, axis=0)
    rows = row0 + gl.arange(0, 16, layout=gl.SliceLayout(1, gl.SliceLayout(0, mma)))
    cm = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, gl.SliceLayout(0, mma)))
    mask = gl.expand_dims(rows < N, 1) & gl.expand_dims(cm < M, 0)
    gl.store(dst_ptr + split * stride_ds + gl.expand_dims(cm, 0) * stride_dm + gl.expand_dims(rows, 1),
             y.to(dst_ptr.dtype.element_ty), mask=mask)


def launch_short(x, frags, scale, dst, n, k, warps=8, bpw=2, pdl=False):
    """dst [splits, M, N] (float32; or y itself, [M, N], when one split). Returns splits."""
    blocks = k // 128
    splits = -(-blocks // (warps * bpw))
    m = x.shape[0]
    short_kernel[(n // 16, splits, -(-m // 8))](x, frags, scale, dst, m, n, blocks, x.stride(0), frags.stride(0),
                                               scale.stride(0), dst.stride(-2), dst.stride(0) if dst.dim() == 3 else 0,
                                               BPW=bpw, BLOCK_M=8, PDL=pdl, num_warps=warps)
    return splits


def short_call(x, frags, scale, n, k, ws, out, warps=8, bpw=2):
    """The whole call: partials into ws (or out when one split), then the PDL sum kernel."""

    from reference_impls.kernels.quant import triton_int4_v6_kernels as kernels
    blocks = k // 128
    splits = -(-blocks // (warps * bpw))
    m = x.shape[0]
    if splits == 1:
        launch_short(x, frags, scale, out, n, k, warps, bpw)
        return out
    launch_short(x, frags, scale, ws, n, k, warps, bpw, pdl=True)
    kernels.sum_splits_kernel[(math.ceil(m * n / 256),)](ws, out, m * n, ws.stride(0), SPLITS=splits, BLOCK=256,
                                                         PDL=True, num_warps=4, launch_pdl=True)
    return out
