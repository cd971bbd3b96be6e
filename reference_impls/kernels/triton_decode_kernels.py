"""The Triton kernels behind triton_decode.py (import that module, not this one).

Kept apart so that importing triton_decode needs no triton: this module is imported on the first kernel
launch, and Triton reads TRITON_INTERPRET when these functions are decorated, i.e. then.
"""

import triton
import triton.language as tl


@triton.jit
def mma_operand(x, INTERPRETED: tl.constexpr):
    """Compiled: x as is. Interpreted: x in float32 (exact for fp16/bf16 products), because Triton 3.6's
    interpreter multiplies bf16 dot operands as their raw 16-bit integers."""
    if INTERPRETED:
        x = x.to(tl.float32)
    return x


@triton.jit
def tile_rows(table_ptr, tile, stop, batch, stride_tb, BLOCK_N: tl.constexpr, PAGE_SIZE: tl.constexpr,
              PAGED: tl.constexpr):
    """Pool row of each token in [tile, tile + BLOCK_N): table[batch, t // PAGE_SIZE] when paged, else the
    batch index (a contiguous cache is one 'page' per sequence). int64 [BLOCK_N]."""
    t = tile + tl.arange(0, BLOCK_N)
    if PAGED:
        page = tl.load(table_ptr + batch.to(tl.int64) * stride_tb + t // PAGE_SIZE, mask=t < stop, other=0)
        return page.to(tl.int64)
    else:
        return tl.zeros([BLOCK_N], tl.int64) + batch.to(tl.int64)


@triton.jit
def fold_tile(acc, m, denom, q, k_ptr, v_ptr, row, tile, stop, kv_head, scale_log2,
              stride_kp, stride_kt, stride_kh, stride_vp, stride_vt, stride_vh,
              BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr,
              PAGED: tl.constexpr, PRECISION: tl.constexpr, INTERPRETED: tl.constexpr):
    """Fold tokens [tile, tile + BLOCK_N) ∩ [.., stop) into the running (acc, m, denom), base-2 softmax.

    Token t sits in pool row row[t - tile] at slot t % PAGE_SIZE (paged) or t (contiguous); either way a
    row of D elements is contiguous."""
    t = tile + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_D)
    valid = t < stop
    if PAGED:
        slot = (t % PAGE_SIZE).to(tl.int64)
    else:
        slot = t.to(tl.int64)
    kv_mask = valid[:, None] & (cols[None, :] < HEAD_DIM)
    k_off = row * stride_kp + slot * stride_kt + kv_head * stride_kh  # [BLOCK_N]
    k = tl.load(k_ptr + k_off[:, None] + cols[None, :], mask=kv_mask, other=0.0)  # [BLOCK_N, BLOCK_D]
    s = tl.dot(mma_operand(q, INTERPRETED), mma_operand(tl.trans(k), INTERPRETED), input_precision=PRECISION)
    s = tl.where(valid[None, :], s * scale_log2, float("-inf"))  # [BLOCK_G, BLOCK_N], log2 units
    m_new = tl.maximum(m, tl.max(s, axis=1))
    alpha = tl.exp2(m - m_new)  # 0 on the first tile (m = -inf)
    p = tl.exp2(s - m_new[:, None])
    denom = denom * alpha + tl.sum(p, axis=1)
    v_off = row * stride_vp + slot * stride_vt + kv_head * stride_vh
    v = tl.load(v_ptr + v_off[:, None] + cols[None, :], mask=kv_mask, other=0.0)
    acc = tl.dot(mma_operand(p.to(v.dtype), INTERPRETED), mma_operand(v, INTERPRETED), acc * alpha[:, None],
                 input_precision=PRECISION)
    return acc, m_new, denom


@triton.jit
def split_kv_kernel(q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, out_ptr, lse_ptr, kv_len, num_splits, scale_log2,
                    stride_qb, stride_qh, stride_kp, stride_kt, stride_kh, stride_vp, stride_vt, stride_vh,
                    stride_tb, stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
                    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_N: tl.constexpr, PAGE_SIZE: tl.constexpr, PAGED: tl.constexpr, VARLEN: tl.constexpr,
                    SPLIT: tl.constexpr, PRECISION: tl.constexpr, INTERPRETED: tl.constexpr,
                    PREFETCH_TABLE: tl.constexpr, HEADS_FIRST: tl.constexpr):
    """Grid (batch, kv_head, split): the GROUP query heads of one KV head over one split of the sequence.

    SPLIT: write a normalized float32 partial and its base-2 log-sum-exp per head; else the output itself.
    VARLEN: the sequence length comes from lens_ptr[batch]; else every sequence has kv_len tokens.
    HEADS_FIRST: the grid is (kv_head, batch, split) instead."""
    if HEADS_FIRST:  # neighbouring programs: the KV heads of one (batch, split), i.e. one page's bytes
        kv_head, batch = tl.program_id(0), tl.program_id(1)
    else:
        batch, kv_head = tl.program_id(0), tl.program_id(1)
    split = tl.program_id(2)
    if VARLEN:
        seq_len = tl.load(lens_ptr + batch)
    else:
        seq_len = kv_len
    chunk = tl.cdiv(tl.cdiv(seq_len, num_splits), BLOCK_N) * BLOCK_N
    start = split * chunk
    stop = tl.minimum(start + chunk, seq_len)
    rows, cols = tl.arange(0, BLOCK_G), tl.arange(0, BLOCK_D)
    heads = kv_head * GROUP + rows
    o_mask = (rows < GROUP)[:, None] & (cols < HEAD_DIM)[None, :]
    q = tl.load(q_ptr + batch.to(tl.int64) * stride_qb + heads[:, None] * stride_qh + cols[None, :],
                mask=o_mask, other=0.0)  # [BLOCK_G, BLOCK_D]
    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    denom = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    # PREFETCH_TABLE: the block-table entries of the next tile are loaded while this tile is folded, so a
    # K/V load never waits on the table load that gives its address
    row = tile_rows(table_ptr, start, stop, batch, stride_tb, BLOCK_N, PAGE_SIZE, PAGED)
    if INTERPRETED:  # Triton 3.6's interpreter cannot take a run-time `range` bound under NumPy >= 2.4
        tile = start
        while tile < stop:
            if not PREFETCH_TABLE:
                row = tile_rows(table_ptr, tile, stop, batch, stride_tb, BLOCK_N, PAGE_SIZE, PAGED)
            next_row = tile_rows(table_ptr, tile + BLOCK_N, stop, batch, stride_tb, BLOCK_N, PAGE_SIZE, PAGED)
            acc, m, denom = fold_tile(acc, m, denom, q, k_ptr, v_ptr, row, tile, stop, kv_head, scale_log2,
                                      stride_kp, stride_kt, stride_kh, stride_vp, stride_vt, stride_vh, BLOCK_N,
                                      BLOCK_D, HEAD_DIM, PAGE_SIZE, PAGED, PRECISION, INTERPRETED)
            row = next_row
            tile += BLOCK_N
    else:  # a range loop, which Triton software-pipelines (num_stages)
        for tile in range(start, stop, BLOCK_N):
            if not PREFETCH_TABLE:
                row = tile_rows(table_ptr, tile, stop, batch, stride_tb, BLOCK_N, PAGE_SIZE, PAGED)
            next_row = tile_rows(table_ptr, tile + BLOCK_N, stop, batch, stride_tb, BLOCK_N, PAGE_SIZE, PAGED)
            acc, m, denom = fold_tile(acc, m, denom, q, k_ptr, v_ptr, row, tile, stop, kv_head, scale_log2,
                                      stride_kp, stride_kt, stride_kh, stride_vp, stride_vt, stride_vh, BLOCK_N,
                                      BLOCK_D, HEAD_DIM, PAGE_SIZE, PAGED, PRECISION, INTERPRETED)
            row = next_row
    seen = denom > 0.0  # False only for a split wholly past the sequence end
    o = acc / tl.where(seen, denom, 1.0)[:, None]
    o_ptrs = out_ptr + batch.to(tl.int64) * stride_ob + heads[:, None] * stride_oh + cols[None, :]
    if SPLIT:
        tl.store(o_ptrs + split * stride_os, o, mask=o_mask)
        lse = tl.where(seen, m + tl.log2(tl.where(seen, denom, 1.0)), float("-inf"))
        tl.store(lse_ptr + batch * stride_lb + heads * stride_lh + split, lse, mask=rows < GROUP)
    else:
        tl.store(o_ptrs, o.to(out_ptr.dtype.element_ty), mask=o_mask)


@triton.jit
def merge_kernel(part_ptr, lse_ptr, out_ptr, num_splits, stride_pb, stride_ph, stride_ps, stride_lb, stride_lh,
                 stride_ob, stride_oh, BLOCK_S: tl.constexpr, CHUNK: tl.constexpr, HEAD_DIM: tl.constexpr,
                 BLOCK_D: tl.constexpr):
    """Grid (batch, head): out = Σ_s 2^(lse_s − max) · o_s / Σ_s 2^(lse_s − max), CHUNK splits at a time.
    An empty split (lse = −inf) weighs exactly 0; split 0 is never empty, so the sum is positive."""
    batch, head = tl.program_id(0), tl.program_id(1)
    lse_row = lse_ptr + batch * stride_lb + head * stride_lh
    all_splits = tl.arange(0, BLOCK_S)
    top = tl.max(tl.load(lse_row + all_splits, mask=all_splits < num_splits, other=float("-inf")), axis=0)
    cols = tl.arange(0, BLOCK_D)
    part_row = part_ptr + batch.to(tl.int64) * stride_pb + head * stride_ph
    acc = tl.zeros([BLOCK_D], tl.float32)
    total = tl.zeros([CHUNK], tl.float32)
    for first in tl.static_range(0, BLOCK_S, CHUNK):
        s = first + tl.arange(0, CHUNK)
        weight = tl.exp2(tl.load(lse_row + s, mask=s < num_splits, other=float("-inf")) - top)  # [CHUNK]
        part = tl.load(part_row + s[:, None] * stride_ps + cols[None, :],
                       mask=(s[:, None] < num_splits) & (cols[None, :] < HEAD_DIM), other=0.0)
        acc += tl.sum(weight[:, None] * part, axis=0)
        total += weight
    out = acc / tl.sum(total, axis=0)
    tl.store(out_ptr + batch.to(tl.int64) * stride_ob + head * stride_oh + cols, out.to(out_ptr.dtype.element_ty),
             mask=cols < HEAD_DIM)
