"""Attention prefill in plain PyTorch: one golden reference, three memory strategies, and torch's sdpa.

Every function takes q, k, v of shape [B, H, S, D] (one dtype, one device, queries and keys of the same
length S), uses scale = 1/sqrt(D) and, with `causal=True`, lets query i attend keys 0..i (top-left
aligned). Each returns [B, H, S, D] in the input dtype, except `attention_reference` (float64).

What each strategy materializes, beyond the inputs and the output:
  naive_attention           the full [B, H, S, S] score matrix and its softmax (O(S^2))
  chunked_attention         one [B, H, query_chunk, key_chunk] score tile plus per-chunk summaries
                            (Rabe & Staats 2021, "Self-attention does not need O(n^2) memory")
  online_softmax_attention  one [B, H, block_q, block_k] score tile plus a running max / denominator /
                            output accumulator per query row (FlashAttention's online softmax)
The `*_workspace_bytes` functions count those temporaries exactly as the code below allocates them.

Runs on CPU and CUDA; imports nothing from the benchmark harness.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

REFERENCE_QUERY_BLOCK = 1024  # query rows per float64 score block in attention_reference
CHUNKED_QUERY_CHUNK = 1024  # Rabe & Staats' query_chunk_size
CHUNKED_KEY_CHUNK = 4096  # Rabe & Staats' key_chunk_size
ONLINE_BLOCK_Q = 256  # query rows per tile in online_softmax_attention
ONLINE_BLOCK_K = 512  # keys per tile in online_softmax_attention

SDPA_BACKENDS = ("math", "efficient", "flash", "cudnn")
_SDPA_ENUM_NAMES = {
    "math": "MATH",
    "efficient": "EFFICIENT_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
}


# ---------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    """Fail early and readably instead of deep inside a matmul."""
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share one [B, H, S, D] shape; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must share dtype and device; got {q.dtype}/{q.device}, "
                         f"{k.dtype}/{k.device}, {v.dtype}/{v.device}")
    if not q.dtype.is_floating_point:
        raise ValueError(f"attention needs floating-point inputs, got {q.dtype}")


def _check_blocks(**sizes: int) -> None:
    for name, size in sizes.items():
        if size < 1:
            raise ValueError(f"{name} must be >= 1, got {size}")


def _scale(q: Tensor) -> float:
    return 1.0 / math.sqrt(q.shape[-1])


def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """Running max / sums / accumulators: float32 for 16-bit inputs (as fused kernels do), else the input
    dtype."""
    return torch.float32 if torch.finfo(dtype).bits < 32 else dtype


def _needs_mask(causal: bool, q_start: int, k_start: int, k_stop: int) -> bool:
    """A tile needs the causal mask iff its last key lies after its first query."""
    return causal and k_stop - 1 > q_start


def _num_key_blocks(q_stop: int, seq: int, block: int, causal: bool) -> int:
    """Key blocks a query block visits: all of them, or with causal only those starting before q_stop
    (blocks entirely above the diagonal are skipped)."""
    return -(-(q_stop if causal else seq) // block)


def _scores_tile(q_blk: Tensor, k_blk: Tensor, q_start: int, k_start: int, causal: bool) -> Tensor:
    """Scaled, causally masked scores of one tile, in the statistics dtype.

    The matmul runs in the input dtype; a 16-bit result is then upcast (both live for a moment). The
    [rows, keys] bool mask exists only inside this function."""
    scores = (q_blk @ k_blk.transpose(-2, -1)).to(_stats_dtype(q_blk.dtype))  # [B, H, bq, bk]
    scores.mul_(_scale(q_blk))
    rows, keys = q_blk.shape[-2], k_blk.shape[-2]
    if _needs_mask(causal, q_start, k_start, k_start + keys):
        # True where key position k_start + j > query position q_start + i, i.e. j - i > q_start - k_start
        mask = torch.ones(rows, keys, dtype=torch.bool, device=q_blk.device).triu_(q_start - k_start + 1)
        scores.masked_fill_(mask, float("-inf"))
    return scores


# ---------------------------------------------------------------------------------------------------------
# 1. The golden answer
# ---------------------------------------------------------------------------------------------------------


def attention_reference(q: Tensor, k: Tensor, v: Tensor, causal: bool,
                        query_block: int = REFERENCE_QUERY_BLOCK) -> Tensor:
    """softmax(q k^T / sqrt(D)) v in float64, written as plainly as possible: the answer others are checked
    against. Shares no code with the fast variants. The float64 score block is [B, H, query_block, S], so
    it checks sequences whose full S x S float64 matrix would not fit. Returns float64."""
    check_qkv(q, k, v)
    _check_blocks(query_block=query_block)
    seq, scale = q.shape[-2], 1.0 / math.sqrt(q.shape[-1])
    q64, k64, v64 = q.double(), k.double(), v.double()  # [B, H, S, D]
    out = torch.empty_like(q64)
    key_pos = torch.arange(seq, device=q.device)  # [S]
    for start in range(0, seq, query_block):
        stop = min(start + query_block, seq)
        scores = (q64[:, :, start:stop] @ k64.transpose(-2, -1)) * scale  # [B, H, bq, S]
        if causal:
            query_pos = torch.arange(start, stop, device=q.device)  # [bq]
            scores = scores.masked_fill(key_pos[None, :] > query_pos[:, None], float("-inf"))
        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))  # [B, H, bq, S]
        out[:, :, start:stop] = (weights / weights.sum(dim=-1, keepdim=True)) @ v64
    return out


# ---------------------------------------------------------------------------------------------------------
# 2. Naive: the whole score matrix
# ---------------------------------------------------------------------------------------------------------


def naive_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """The textbook formula with the full [B, H, S, S] score matrix: the baseline every other implementation
    is judged against. Scale and mask are in place, so the peak workspace is exactly the score matrix, its
    softmax, and (causal) one [S, S] bool mask — see naive_workspace_bytes."""
    check_qkv(q, k, v)
    seq = q.shape[-2]
    scores = q @ k.transpose(-2, -1)  # [B, H, S, S]
    scores.mul_(_scale(q))
    if causal:
        mask = torch.ones(seq, seq, dtype=torch.bool, device=q.device).triu_(1)  # [S, S], True above diagonal
        scores.masked_fill_(mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # [B, H, S, S]
    return probs @ v  # [B, H, S, D]


# ---------------------------------------------------------------------------------------------------------
# 3. Chunked: Rabe & Staats (2021)
# ---------------------------------------------------------------------------------------------------------


def _summarize_chunk(q_blk: Tensor, k_blk: Tensor, v_blk: Tensor, q_start: int, k_start: int,
                     causal: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The paper's `summarize_chunk`: exp-weighted value sum, exp sum and max of one key chunk.

    A row with no visible key in this chunk keeps max = -inf (so the combine rescales it by exactly 0), but
    is exponentiated against a finite stand-in, so no -inf - -inf = NaN appears."""
    scores = _scores_tile(q_blk, k_blk, q_start, k_start, causal)  # [B, H, bq, bk]
    chunk_max = scores.amax(dim=-1, keepdim=True)  # [B, H, bq, 1], -inf on rows fully masked here
    stand_in = chunk_max.nan_to_num(neginf=0.0)  # [B, H, bq, 1], finite
    weights = scores.sub_(stand_in).exp_()  # [B, H, bq, bk], in place
    exp_sum = weights.sum(dim=-1)  # [B, H, bq]
    values = (weights.to(v_blk.dtype) @ v_blk).to(weights.dtype)  # [B, H, bq, D], matmul in input dtype
    return values, exp_sum, chunk_max.squeeze(-1)


def _chunked_query_block(q_blk: Tensor, k: Tensor, v: Tensor, q_start: int, causal: bool,
                         key_chunk: int) -> Tensor:
    """The paper's `query_chunk_attention`: summarize every key chunk into stacked buffers (what
    jax.lax.map returns there), then combine them with the global max. Returns [B, H, bq, D] in the
    statistics dtype."""
    batch, heads, rows, dim = q_blk.shape
    seq, stats = k.shape[-2], _stats_dtype(q_blk.dtype)
    n_chunks = _num_key_blocks(q_start + rows, seq, key_chunk, causal)
    values = q_blk.new_empty((n_chunks, batch, heads, rows, dim), dtype=stats)  # [C, B, H, bq, D]
    exp_sums = q_blk.new_empty((n_chunks, batch, heads, rows), dtype=stats)  # [C, B, H, bq]
    maxes = q_blk.new_empty((n_chunks, batch, heads, rows), dtype=stats)  # [C, B, H, bq]
    for c in range(n_chunks):
        kv = slice(c * key_chunk, min((c + 1) * key_chunk, seq))
        values[c], exp_sums[c], maxes[c] = _summarize_chunk(
            q_blk, k[:, :, kv], v[:, :, kv], q_start, c * key_chunk, causal)
    global_max = maxes.amax(dim=0)  # [B, H, bq], finite: key 0 is visible to every query
    rescale = maxes.sub_(global_max).exp_()  # [C, B, H, bq], exactly 0 where a chunk had max -inf
    values.mul_(rescale.unsqueeze(-1))
    exp_sums.mul_(rescale)
    return values.sum(dim=0).div_(exp_sums.sum(dim=0).unsqueeze(-1))  # [B, H, bq, D]


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, query_chunk: int = CHUNKED_QUERY_CHUNK,
                      key_chunk: int = CHUNKED_KEY_CHUNK) -> Tensor:
    """Rabe & Staats, "Self-attention does not need O(n^2) memory" (2021): query chunks x key chunks, each
    key chunk reduced to a summary, summaries combined by log-sum-exp rescaling. Workspace is one score
    tile plus O(S / key_chunk) summaries per query chunk — see chunked_workspace_bytes. With causal, key
    chunks entirely above the diagonal are skipped and only chunks crossing it are masked."""
    check_qkv(q, k, v)
    _check_blocks(query_chunk=query_chunk, key_chunk=key_chunk)
    seq = q.shape[-2]
    out = torch.empty_like(q)  # [B, H, S, D]
    for start in range(0, seq, query_chunk):
        stop = min(start + query_chunk, seq)
        out[:, :, start:stop] = _chunked_query_block(q[:, :, start:stop], k, v, start, causal, key_chunk)
    return out


# ---------------------------------------------------------------------------------------------------------
# 4. Online softmax: FlashAttention's tiling in plain torch
# ---------------------------------------------------------------------------------------------------------


def _online_step(q_blk: Tensor, k_blk: Tensor, v_blk: Tensor, q_start: int, k_start: int, causal: bool,
                 m: Tensor, denom: Tensor, acc: Tensor) -> Tensor:
    """Fold one key block into the running statistics: denom (FlashAttention's l) and acc are updated
    in place, the new running max is returned. Old statistics are rescaled by exp(m_old - m_new)."""
    scores = _scores_tile(q_blk, k_blk, q_start, k_start, causal)  # [B, H, bq, bk]
    m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))  # [B, H, bq, 1]
    stand_in = m_new.nan_to_num(neginf=0.0)  # finite while a row has seen no visible key
    alpha = (m - stand_in).exp_()  # [B, H, bq, 1], 0 on the first visible block
    probs = scores.sub_(stand_in).exp_()  # [B, H, bq, bk], in place
    denom.mul_(alpha).add_(probs.sum(dim=-1, keepdim=True))
    acc.mul_(alpha).add_((probs.to(v_blk.dtype) @ v_blk).to(acc.dtype))  # matmul in input dtype
    return m_new


def _online_query_block(q_blk: Tensor, k: Tensor, v: Tensor, q_start: int, causal: bool,
                        block_k: int) -> Tensor:
    """One query block against its key blocks with a running max m, denominator (l) and output
    accumulator; returns acc / denom as [B, H, bq, D] in the statistics dtype."""
    batch, heads, rows, dim = q_blk.shape
    seq, stats = k.shape[-2], _stats_dtype(q_blk.dtype)
    m = q_blk.new_full((batch, heads, rows, 1), float("-inf"), dtype=stats)  # [B, H, bq, 1]
    denom = q_blk.new_zeros((batch, heads, rows, 1), dtype=stats)  # [B, H, bq, 1]
    acc = q_blk.new_zeros((batch, heads, rows, dim), dtype=stats)  # [B, H, bq, D]
    for b in range(_num_key_blocks(q_start + rows, seq, block_k, causal)):
        kv = slice(b * block_k, min((b + 1) * block_k, seq))
        m = _online_step(q_blk, k[:, :, kv], v[:, :, kv], q_start, b * block_k, causal, m, denom, acc)
    return acc.div_(denom)


def online_softmax_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, block_q: int = ONLINE_BLOCK_Q,
                             block_k: int = ONLINE_BLOCK_K) -> Tensor:
    """FlashAttention-style tiling with the online softmax (running max, rescaled accumulator), as plain
    torch ops. Workspace is one [B, H, block_q, block_k] score tile plus O(block_q * D) running statistics
    — no term grows with S (see online_softmax_workspace_bytes). Causal skipping/masking as in chunked."""
    check_qkv(q, k, v)
    _check_blocks(block_q=block_q, block_k=block_k)
    seq = q.shape[-2]
    out = torch.empty_like(q)  # [B, H, S, D]
    for start in range(0, seq, block_q):
        stop = min(start + block_q, seq)
        out[:, :, start:stop] = _online_query_block(q[:, :, start:stop], k, v, start, causal, block_k)
    return out


# ---------------------------------------------------------------------------------------------------------
# 5. torch's scaled_dot_product_attention
# ---------------------------------------------------------------------------------------------------------


def _sdpa_backend_enum(backend: str) -> SDPBackend:
    if backend not in _SDPA_ENUM_NAMES:
        raise ValueError(f"unknown sdpa backend {backend!r}; allowed: None (torch's own dispatch) or one of "
                         f"{', '.join(repr(b) for b in SDPA_BACKENDS)}")
    member = getattr(SDPBackend, _SDPA_ENUM_NAMES[backend], None)
    if member is None:
        raise ValueError(f"torch {torch.__version__} has no SDPBackend.{_SDPA_ENUM_NAMES[backend]}")
    return member


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, backend: str | None = None) -> Tensor:
    """torch.nn.functional.scaled_dot_product_attention, either with torch's own backend choice (None) or
    forced onto one of SDPA_BACKENDS; a forced backend that cannot run the inputs raises RuntimeError."""
    check_qkv(q, k, v)
    if backend is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    with sdpa_kernel(_sdpa_backend_enum(backend)):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _sdpa_static_reason(backend: str, device_type: str, dtype: torch.dtype, head_dim: int) -> str | None:
    """Documented limits, cheap to check and with a readable reason; the probe settles the rest."""
    if not dtype.is_floating_point:
        return f"sdpa needs a floating-point dtype, got {dtype}"
    if head_dim < 1:
        return f"head_dim must be >= 1, got {head_dim}"
    if backend == "math":
        return None
    if device_type == "cpu":
        if backend == "flash":
            return None
        return f"sdpa {backend} is CUDA-only (the CPU dispatcher has only math and flash)"
    if device_type != "cuda":
        return None
    if not torch.cuda.is_available():
        return "CUDA is not available"
    if backend in ("flash", "cudnn") and dtype not in (torch.float16, torch.bfloat16):
        return f"sdpa {backend} on CUDA needs float16 or bfloat16, got {dtype}"
    if backend == "efficient" and dtype == torch.float64:
        return "sdpa efficient on CUDA supports float16, bfloat16 and float32, not float64"
    if backend == "flash":
        if getattr(torch.backends.cuda, "is_flash_attention_available", lambda: True)() is False:
            return "this torch build has no CUDA flash attention"
        if head_dim > 256:
            return f"sdpa flash needs head_dim <= 256, got {head_dim}"
    if backend == "cudnn" and not torch.backends.cudnn.is_available():
        return "cuDNN is not available in this torch build"
    return None


@functools.cache
def _sdpa_probe(backend: str, device_type: str, dtype: torch.dtype, head_dim: int) -> str | None:
    """Run a tiny causal sdpa under the forced backend; if torch refuses, its own warning is the reason."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            x = torch.zeros(1, 1, 16, head_dim, dtype=dtype, device=device_type)  # [B, H, S, D]
            with sdpa_kernel(_sdpa_backend_enum(backend)):
                F.scaled_dot_product_attention(x, x, x, is_causal=True)
        except RuntimeError as err:
            hints = [str(w.message).splitlines()[0] for w in caught
                     if "not used because" not in str(w.message) and "disabled" not in str(w.message)]
            detail = hints[0] if hints else str(err).splitlines()[0]
            return f"sdpa {backend} refused {device_type}/{dtype}/head_dim={head_dim}: {detail}"
    return None


def sdpa_backend_available(backend: str, device_type: str, dtype: torch.dtype, head_dim: int) -> str | None:
    """None when sdpa_attention(..., backend=backend) can run that combination, else a one-line reason.

    Documented limits first (flash and cudnn on CUDA need float16/bfloat16, efficient and cudnn are
    CUDA-only, CPU runs math and flash for every float dtype); then a cached probe runs a tiny call on the
    device so hardware and build limits (compute capability, missing kernels) come back as torch states
    them. The *_sdp_enabled flags are not consulted: sdpa_kernel() overrides them for the forced backend.
    Raises ValueError for a backend outside SDPA_BACKENDS."""
    _sdpa_backend_enum(backend)
    device_type = torch.device(device_type).type
    reason = _sdpa_static_reason(backend, device_type, dtype, head_dim)
    if reason is None:
        reason = _sdpa_probe(backend, device_type, dtype, head_dim)
    return reason


# ---------------------------------------------------------------------------------------------------------
# 6. Analytic workspace: bytes of temporaries beyond inputs and output, at peak, per call
# ---------------------------------------------------------------------------------------------------------


def naive_workspace_bytes(batch: int, heads: int, seq: int, head_dim: int, element_bytes: int,
                          causal: bool) -> int:
    """naive_attention: at `probs @ v` the score matrix [B, H, S, S] and its softmax [B, H, S, S] are both
    alive (mul_ and masked_fill_ work in place), plus with causal the [S, S] bool mask (1 byte each):
        2 * B * H * S^2 * element_bytes  (+ S^2 if causal)."""
    return 2 * batch * heads * seq * seq * element_bytes + (seq * seq if causal else 0)


def _tile_bytes(bh: int, rows: int, keys: int, head_dim: int, element_bytes: int, masked: bool) -> int:
    """Peak of one tile (_scores_tile, then _summarize_chunk or _online_step), rows*keys scores each.

    With M = B*H*rows query rows, e = element_bytes and a = stats bytes (4 for 16-bit inputs, else e):
      scores                      M*keys*a   (16-bit: the M*keys*e matmul result lives while upcast)
      mask phase                  + rows*keys bytes of bool mask, freed before the statistics
      three [M] vectors           + 3*M*a    (chunk max, stand-in, exp sum | m_new, stand-in, alpha)
      value matmul, a == e        + M*D*a
      value matmul, 16-bit        + M*D*e + max(M*keys*e, M*D*a)   (probs cast to e for the matmul,
                                  then its M*D*e result upcast to a; the cast probs die in between)."""
    stats_bytes = max(element_bytes, 4)
    m_rows = bh * rows
    scores = m_rows * keys * stats_bytes
    mask_phase = scores + (rows * keys if masked else 0)
    if element_bytes == stats_bytes:
        value_phase = scores + 3 * m_rows * stats_bytes + m_rows * head_dim * stats_bytes
    else:
        value_phase = (scores + 3 * m_rows * stats_bytes + m_rows * head_dim * element_bytes
                       + max(m_rows * keys * element_bytes, m_rows * head_dim * stats_bytes))
    return max(mask_phase, value_phase)


def _query_block_plan(seq: int, block_q: int, block_k: int, causal: bool) -> list[tuple[int, int, list]]:
    """Per query block: (rows, key blocks visited, the (keys, masked) tiles that can be its largest).

    Tile bytes grow with keys and with the mask; key blocks are full-size except the last, and the masked
    ones are a suffix starting at (q_start + 1) // block_k, so block 0 and that first masked block bound
    every tile — O(S / block_q) work instead of O((S / block)^2)."""
    plan = []
    for q_start in range(0, seq, block_q):
        rows = min(block_q, seq - q_start)
        n_blocks = _num_key_blocks(q_start + rows, seq, block_k, causal)
        tiles = []
        for b in {0, min((q_start + 1) // block_k, n_blocks - 1)}:
            keys = min(block_k, seq - b * block_k)
            tiles.append((keys, _needs_mask(causal, q_start, b * block_k, b * block_k + keys)))
        plan.append((rows, n_blocks, tiles))
    return plan


def chunked_workspace_bytes(batch: int, heads: int, seq: int, head_dim: int, element_bytes: int, causal: bool,
                            query_chunk: int = CHUNKED_QUERY_CHUNK,
                            key_chunk: int = CHUNKED_KEY_CHUNK) -> int:
    """chunked_attention, per query chunk of `rows` rows (M = B*H*rows) visiting C key chunks:
      stacked summaries    C * M * (D + 2) * a   (values [C,B,H,bq,D], exp sums and maxes [C,B,H,bq])
      + while summarizing  the largest tile, see _tile_bytes
      + while combining    M * (D + 2) * a       (global max, value sum, exp sum; rescale is in place)
    The output block is copied (and cast) straight into the output. Maximum over query chunks; the
    summaries are the only term that grows with S (as S / key_chunk)."""
    bh, stats_bytes = batch * heads, max(element_bytes, 4)
    peak = 0
    for rows, n_chunks, tiles in _query_block_plan(seq, query_chunk, key_chunk, causal):
        summary = bh * rows * (head_dim + 2) * stats_bytes  # one key chunk's summary; also the combine
        tile = max(_tile_bytes(bh, rows, keys, head_dim, element_bytes, masked) for keys, masked in tiles)
        peak = max(peak, n_chunks * summary + max(tile, summary))
    return peak


def online_softmax_workspace_bytes(batch: int, heads: int, seq: int, head_dim: int, element_bytes: int,
                                   causal: bool, block_q: int = ONLINE_BLOCK_Q,
                                   block_k: int = ONLINE_BLOCK_K) -> int:
    """online_softmax_attention, per query block of `rows` rows (M = B*H*rows):
      running statistics   M * (D + 2) * a   (m, denom: [B,H,bq,1]; acc: [B,H,bq,D]; the new m is one of
                                              the tile's three vectors)
      + the largest tile   see _tile_bytes
    acc / denom is computed in place and copied (and cast) into the output. Maximum over query blocks;
    independent of S once S >= block_q and S >= block_k."""
    bh, stats_bytes = batch * heads, max(element_bytes, 4)
    peak = 0
    for rows, _, tiles in _query_block_plan(seq, block_q, block_k, causal):
        tile = max(_tile_bytes(bh, rows, keys, head_dim, element_bytes, masked) for keys, masked in tiles)
        peak = max(peak, bh * rows * (head_dim + 2) * stats_bytes + tile)
    return peak
