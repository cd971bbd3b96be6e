"""The Gluon kernel behind v8's stream path (plan and schedule: triton_int4_stream.py); import triton_int4_v6.

Kept apart so that only this module needs Gluon. Gluon has no interpreter: the schedule is tested on CPU against
triton_int4_stream's plan, the arithmetic against float64 on an H100 (scripts/bench_int4_v8.py).
"""

from __future__ import annotations

import torch
from torch import Tensor
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
from triton.experimental.gluon.language.nvidia.ampere import mma_v2
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from reference_impls.kernels.quant.triton_int4 import BLOCK_K
from reference_impls.kernels.quant.triton_int4_fragment import FragmentInt4
from reference_impls.kernels.quant.triton_int4_fragment_kernel import fragment_planes
from reference_impls.kernels.quant.triton_int4_stream import counters, stream_plan

UNIT_WORDS = 256  # int32 words of one unit (16 rows x 128 k)


def unit_layout(units: int) -> gl.SharedLinearLayout:
    """A stage's bytes as int16 [units, 16 rows, 32 kl] in fragment order (FragmentInt4's docstring): offset bit i
    holds the coordinates of basis i, so each lane's A-operand word is one 4-byte ld.shared, a warp's 128 bytes
    contiguous (no bank conflict)."""
    bases = [[0, 0, 1], [0, 0, 2], [0, 0, 4], [0, 1, 0], [0, 2, 0], [0, 4, 0], [0, 8, 0], [0, 0, 8], [0, 0, 16]]
    return gl.SharedLinearLayout(bases + [[1 << i, 0, 0] for i in range(max(0, units - 1).bit_length())])


@gluon.jit
def stream_copy(ring, f_ptr, words, lo, hi, i, RING: gl.constexpr, STAGE_WORDS: gl.constexpr):
    """Start the asynchronous copy of the program's stage i (if it is < hi - lo) into ring slot i % RING, and
    commit it as one group (an empty group past the end, so that wait_group counts stay uniform)."""
    stage = lo + i
    cp.async_copy_global_to_shared(ring.index(i % RING), f_ptr + stage.to(gl.int64) * STAGE_WORDS + words,
                                   mask=(words >= 0) & (stage < hi))
    cp.commit_group()


@gluon.jit
def stage_operands(x_ptrs, s_ptr, z_ptr, stage, hi, n_tile, slot_s, N, stride_sg, stride_zg,
                   PER_TILE: gl.constexpr, W: gl.constexpr, GROUP_BLOCKS: gl.constexpr, SYMMETRIC: gl.constexpr,
                   OFFSET: gl.constexpr, PROBE: gl.constexpr):
    """x^T's four planes (B operands), the scales and -(OFFSET + zero point) of one stage (masked off past hi: the
    prefetch runs ahead of the range). Loaded two stages before use, so that their L2 latency is off the chain."""
    ok = stage < hi
    if PROBE == 2:
        ok = stage < 0  # timing probe: no loads (wrong result)
    t = stage // PER_TILE
    b0 = (stage - t * PER_TILE) * W
    xb = x_ptrs + b0 * 128
    x0 = gl.load(xb, mask=ok, other=0.0)
    x1 = gl.load(xb + 32, mask=ok, other=0.0)
    x2 = gl.load(xb + 64, mask=ok, other=0.0)
    x3 = gl.load(xb + 96, mask=ok, other=0.0)
    n = t * 16 + n_tile
    blk = b0 + slot_s  # [W, 1]
    group = 0 if GROUP_BLOCKS == 0 else blk // GROUP_BLOCKS
    live = ok & gl.expand_dims(n < N, 0)
    sc = gl.load(s_ptr + group * stride_sg + gl.expand_dims(n, 0), mask=live, other=0.0).to(gl.float32)
    if SYMMETRIC:
        negz = gl.full(sc.shape, -(OFFSET + 8.0), gl.float32, sc.type.layout)
    else:
        negz = -(gl.load(z_ptr + group * stride_zg + gl.expand_dims(n, 0), mask=live, other=0).to(gl.float32)
                 + OFFSET)
    return x0, x1, x2, x3, sc, negz


@gluon.jit
def finish_tile(acc, t, c, lo, hi, out_ptr, ws_ptr, cnt_ptr, M, N, stages, grid, stride_om, rows_y, cols_y,
                ws_off, PER_TILE: gl.constexpr, BLOCK_M: gl.constexpr, PROBE: gl.constexpr, mma: gl.constexpr):
    """Sum the warps' partials of tile t; store y (the tile is whole in this program) or run the split-tile
    protocol: store the float32 partial, bump the tile's counter, and if last, add all partials in program order,
    store y and reset the counter."""
    y = gl.sum(acc, axis=0)  # [16, BLOCK_M]
    rows = t * 16 + rows_y
    out_ptrs = out_ptr + gl.expand_dims(cols_y, 0) * stride_om + gl.expand_dims(rows, 1)
    out_mask = gl.expand_dims(rows < N, 1) & gl.expand_dims(cols_y < M, 0)
    if (t * PER_TILE >= lo) & ((t + 1) * PER_TILE <= hi):
        gl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        slot = (t != lo // PER_TILE).to(gl.int32)
        gl.store(ws_ptr + (c * 2 + slot) * (16 * BLOCK_M) + ws_off, y)
        if PROBE != 1:  # PROBE 1, timing only: split tiles stop at their partials (wrong result)
            gl.thread_barrier()  # every thread's partial is stored before the release below
            c_a = ((t * PER_TILE + 1) * grid - 1) // stages
            c_b = (((t + 1) * PER_TILE) * grid - 1) // stages
            arrived = gl.atomic_add(cnt_ptr + t, 1, sem="acq_rel", scope="gpu")
            if arrived == c_b - c_a:  # the last contributor: add the partials in program order
                gl.thread_barrier()
                total = gl.zeros([16, BLOCK_M], gl.float32, gl.SliceLayout(0, mma))
                for cc in range(c_a, c_b + 1):
                    cc_slot = ((cc * stages // grid) // PER_TILE != t).to(gl.int32)
                    total += gl.load(ws_ptr + (cc * 2 + cc_slot) * (16 * BLOCK_M) + ws_off, cache_modifier=".cg")
                gl.store(out_ptrs, total.to(out_ptr.dtype.element_ty), mask=out_mask)
                gl.atomic_xchg(cnt_ptr + t, 0, sem="relaxed", scope="gpu")


@gluon.jit
def int4_stream_kernel(x_ptr, f_ptr, s_ptr, z_ptr, out_ptr, ws_ptr, cnt_ptr, M, N, stages, grid, stride_xm,
                       stride_sg, stride_zg, stride_om, PER_TILE: gl.constexpr, BLOCK_M: gl.constexpr,
                       RING: gl.constexpr, GROUP_BLOCKS: gl.constexpr, SYMMETRIC: gl.constexpr,
                       FP16: gl.constexpr, PDL: gl.constexpr, UNIT_LAYOUT: gl.constexpr, PROBE: gl.constexpr = 0):
    """Grid (programs,): program c streams stages [c S / grid, (c + 1) S / grid) through RING shared-memory slots
    (cp.async, RING - 1 stages in flight), each stage num_warps units of one tile, warp w on unit w: W as the
    m16n8k16 A operand read from the slot (ldmatrix), x^T as B from global memory (L1/L2) two stages ahead with
    the scales. Symmetric weights subtract 8 per weight; asymmetric ones take the zero point per block by
    sum(x) (an mma by ones). A tile ends in finish_tile. PROBE (timing only, wrong results): 1 no split-tile
    protocol, 2 no x / scale loads."""
    W: gl.constexpr = gl.num_warps()
    STAGE_WORDS: gl.constexpr = W * 256
    OFFSET: gl.constexpr = 1024.0 if FP16 else 128.0
    if PDL:
        gdc_launch_dependents()
    c = gl.program_id(0)
    lo = c * stages // grid
    hi = (c + 1) * stages // grid
    copy_layout: gl.constexpr = gl.BlockedLayout([4], [32], [W], [0])
    words = gl.arange(0, STAGE_WORDS, layout=copy_layout)
    ring = gl.allocate_shared_memory(gl.int32, [RING, STAGE_WORDS], gl.SwizzledSharedLayout(1, 1, 1, [0]))
    for j in gl.static_range(RING - 1):  # the weights do not depend on the previous kernel: start before gdc_wait
        stream_copy(ring, f_ptr, words, lo, hi, j, RING, STAGE_WORDS)
    if PDL:
        gdc_wait()  # x, the output, the workspace and the counters only after the previous grid completed

    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[W, 1, 1], instr_shape=[1, 16, 8])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    dtype: gl.constexpr = gl.float16 if FP16 else gl.bfloat16
    wb = gl.arange(0, W, layout=gl.SliceLayout(1, gl.SliceLayout(2, b_layout)))
    kb = gl.arange(0, 32, layout=gl.SliceLayout(0, gl.SliceLayout(2, b_layout)))
    cols_b = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, gl.SliceLayout(1, b_layout)))
    x_ptrs = (x_ptr + gl.expand_dims(gl.expand_dims(wb * 128, 1), 2) + gl.expand_dims(gl.expand_dims(kb, 0), 2)
              + gl.expand_dims(gl.expand_dims(gl.minimum(cols_b, M - 1).to(gl.int64) * stride_xm, 0), 1))
    slot_s = gl.expand_dims(gl.arange(0, W, layout=gl.SliceLayout(1, gl.SliceLayout(2, mma))), 1)  # [W, 1]
    n_tile = gl.arange(0, 16, layout=gl.SliceLayout(0, gl.SliceLayout(2, mma)))
    rows_y = gl.arange(0, 16, layout=gl.SliceLayout(1, gl.SliceLayout(0, mma)))
    cols_y = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, gl.SliceLayout(0, mma)))
    ws_off = gl.expand_dims(rows_y, 1) * BLOCK_M + gl.expand_dims(cols_y, 0)  # [16, BLOCK_M] of one partial
    ones = gl.full([W, 16, 32], 1.0, dtype, a_layout)

    xa0, xa1, xa2, xa3, sa, za = stage_operands(x_ptrs, s_ptr, z_ptr, lo, hi, n_tile, slot_s, N, stride_sg,
                                                stride_zg, PER_TILE, W, GROUP_BLOCKS, SYMMETRIC, OFFSET, 0)
    xb0, xb1, xb2, xb3, sb, zb = stage_operands(x_ptrs, s_ptr, z_ptr, lo + 1, hi, n_tile, slot_s, N, stride_sg,
                                                stride_zg, PER_TILE, W, GROUP_BLOCKS, SYMMETRIC, OFFSET, 0)
    acc = gl.zeros([W, 16, BLOCK_M], gl.float32, mma)
    for i in range(0, hi - lo):
        stage = lo + i
        cp.wait_group(RING - 2)  # this thread's copies of stage i have landed ...
        gl.thread_barrier()  # ... everyone's have, and everyone is done reading slot (i - 1) % RING
        stream_copy(ring, f_ptr, words, lo, hi, i + RING - 1, RING, STAGE_WORDS)
        h = ring.index(i % RING)._reinterpret(gl.int16, [W, 16, 32], UNIT_LAYOUT).load(a_layout)
        xc0, xc1, xc2, xc3, sc, zc = stage_operands(x_ptrs, s_ptr, z_ptr, stage + 2, hi, n_tile, slot_s, N,
                                                    stride_sg, stride_zg, PER_TILE, W, GROUP_BLOCKS, SYMMETRIC,
                                                    OFFSET, PROBE)
        q0, q1, q2, q3 = fragment_planes(h, FP16, SYMMETRIC)
        d = gl.zeros([W, 16, BLOCK_M], gl.float32, mma)
        d = mma_v2(q0, xa0, d)
        d = mma_v2(q1, xa1, d)
        d = mma_v2(q2, xa2, d)
        d = mma_v2(q3, xa3, d)
        if not SYMMETRIC:
            dx = gl.zeros([W, 16, BLOCK_M], gl.float32, mma)
            dx = mma_v2(ones, xa0, dx)
            dx = mma_v2(ones, xa1, dx)
            dx = mma_v2(ones, xa2, dx)
            dx = mma_v2(ones, xa3, dx)
            d = d + gl.expand_dims(za, 2) * dx
        acc = acc + gl.expand_dims(sa, 2) * d
        xa0, xa1, xa2, xa3, sa, za = xb0, xb1, xb2, xb3, sb, zb
        xb0, xb1, xb2, xb3, sb, zb = xc0, xc1, xc2, xc3, sc, zc
        if (stage + 1 == hi) | ((stage + 1) % PER_TILE == 0):
            finish_tile(acc, stage // PER_TILE, c, lo, hi, out_ptr, ws_ptr, cnt_ptr, M, N, stages, grid, stride_om,
                        rows_y, cols_y, ws_off, PER_TILE, BLOCK_M, PROBE, mma)
            acc = gl.zeros([W, 16, BLOCK_M], gl.float32, mma)
    cp.wait_group(0)  # no copy outlives the program (the ring's trailing groups are empty or past hi)


def launch_stream(x: Tensor, w: FragmentInt4, out: Tensor, cfg: dict, group: int, sms: int) -> None:
    """One launch of int4_stream_kernel: plan, float32 workspace for split tiles, the shared counters."""
    m, n, k = x.shape[0], w.out_features, w.in_features
    warps = int(cfg["num_warps"])
    plan = stream_plan(n, k, warps, int(cfg["ctas_per_sm"]), sms)
    block_m = 8
    ws = torch.empty(plan["grid"], 2, 16, block_m, dtype=torch.float32, device=x.device)
    cnt = counters(x.device, plan["tiles"])
    zero = w.zero if w.zero is not None else w.scale
    pdl = bool(cfg["pdl"])
    extra = {"launch_pdl": True} if pdl else {}
    int4_stream_kernel[(plan["grid"],)](
        x, w.frags.view(torch.int32), w.scale, zero, out, ws, cnt, m, n, plan["stages"], plan["grid"], x.stride(0),
        w.scale.stride(0), zero.stride(0), out.stride(0), PER_TILE=plan["stages_per_tile"], BLOCK_M=block_m,
        RING=int(cfg["ring"]), GROUP_BLOCKS=group // BLOCK_K, SYMMETRIC=w.symmetric,
        FP16=x.dtype == torch.float16, PDL=pdl, UNIT_LAYOUT=unit_layout(warps), PROBE=int(cfg.get("probe", 0)),
        num_warps=warps, **extra)
