"""Attention decode in plain PyTorch: one query token per sequence against a KV cache of length L.

Decode is memory-bound: each step rereads the whole cache to produce one token, so what matters is how many
bytes an implementation moves, not its FLOPs. Shapes (one dtype, one device throughout):

  q              [B, Hq, D]         the new token's queries
  k, v           [B, Hkv, L, D]     a contiguous cache; Hq = group * Hkv (group 1 is MHA, > 1 is GQA)
  k_pages, v_pages [N, P, Hkv, D]   a paged cache: N pages of P tokens, scattered in a pool
  block_table    [B, ceil(L / P)]   int32: sequence b's i-th page lives at pool row block_table[b, i]

Each function returns [B, Hq, D] in the input dtype, except `decode_reference` (float64). Scale 1/sqrt(D).
What each materializes beyond inputs and output:
  gqa_decode          the [B, Hkv, group, L] scores (K/V never repeated: the query is regrouped instead)
  repeat_kv_decode    K and V repeated to Hq heads (the naive way to run GQA on an MHA kernel)
  paged_gather_decode a contiguous copy of the gathered pages, then gqa_decode's scores
  split_kv_decode     per split: its scores, a normalized partial output and a log-sum-exp (flash-decoding)
MLA (DeepSeek-V2/V3's latent cache) lives in reference_impls/kernels/mla_decode.py.

Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check_cache(q: Tensor, k: Tensor, v: Tensor) -> int:
    """Validate [B, Hq, D] against [B, Hkv, L, D] and return the group size Hq / Hkv."""
    if k.dim() != 4 or k.shape != v.shape:
        raise ValueError(f"k, v must share one [B, Hkv, L, D] shape; got {tuple(k.shape)}, {tuple(v.shape)}")
    return _group_size(q, k.shape[0], k.shape[1], k.shape[3], k.dtype, v.dtype)


def _group_size(q: Tensor, batch: int, kv_heads: int, dim: int, k_dtype: torch.dtype, v_dtype: torch.dtype) -> int:
    if q.dim() != 3 or q.shape[0] != batch or q.shape[2] != dim:
        raise ValueError(f"q must be [B, Hq, D] = [{batch}, Hq, {dim}] to match the cache; got {tuple(q.shape)}")
    if q.shape[1] % kv_heads:
        raise ValueError(f"query heads ({q.shape[1]}) must be a multiple of kv heads ({kv_heads})")
    if not (q.dtype == k_dtype == v_dtype) or not q.dtype.is_floating_point:
        raise ValueError(f"q, k, v must share one floating dtype; got {q.dtype}, {k_dtype}, {v_dtype}")
    return q.shape[1] // kv_heads


def _grouped_attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q kᵀ / √D) v with q [..., G, D] and k, v [..., L, D] (same leading dims): the G query heads
    that share one KV head ride in the matmul's M dimension, so K and V are read once and never repeated.
    The softmax reads the input-dtype scores and accumulates in float32 (as torch's kernels do)."""
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # [..., G, L]
    return torch.softmax(scores, dim=-1) @ v  # [..., G, D]


def decode_reference(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The golden answer in float64, one sequence at a time (peak: one sequence's cache in float64), with
    K and V repeated per query head the obvious way. Shares no code with the fast variants."""
    group = _check_cache(q, k, v)
    out = torch.empty(q.shape, dtype=torch.float64, device=q.device)  # [B, Hq, D]
    for b in range(q.shape[0]):
        kb = k[b].double().repeat_interleave(group, dim=0)  # [Hq, L, D]
        vb = v[b].double().repeat_interleave(group, dim=0)
        scores = torch.einsum("hd,hld->hl", q[b].double(), kb) / math.sqrt(q.shape[-1])  # [Hq, L]
        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        out[b] = torch.einsum("hl,hld->hd", weights / weights.sum(dim=-1, keepdim=True), vb)
    return out


def dense_decode(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Multi-head attention decode (Hq == Hkv): two batched matrix-vector products and a softmax."""
    if _check_cache(q, k, v) != 1:
        raise ValueError(f"dense_decode needs as many kv heads as query heads; got {k.shape[1]} and {q.shape[1]}")
    return _grouped_attend(q.unsqueeze(2), k, v).squeeze(2)  # [B, H, 1, D] -> [B, H, D]


def gqa_decode(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Grouped-query decode (any group, 1 included): the query is reshaped to [B, Hkv, group, D] so each KV
    head's cache is read once for all of its query heads — no repeated K/V."""
    group = _check_cache(q, k, v)
    batch, heads, dim = q.shape
    grouped = q.view(batch, k.shape[1], group, dim)  # [B, Hkv, G, D]
    return _grouped_attend(grouped, k, v).reshape(batch, heads, dim)


def repeat_kv_decode(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """GQA the naive way: repeat K and V up to Hq heads (repeat_interleave), then run MHA decode. Writes and
    rereads group x the cache: what gqa_decode avoids."""
    group = _check_cache(q, k, v)
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # [B, Hq, L, D]
    return _grouped_attend(q.unsqueeze(2), k, v).squeeze(2)


def sdpa_decode(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """torch's scaled_dot_product_attention with a one-token query; GQA through enable_gqa (torch >= 2.5)."""
    group = _check_cache(q, k, v)
    out = torch.nn.functional.scaled_dot_product_attention(q.unsqueeze(2), k, v, enable_gqa=group > 1)
    return out.squeeze(2)  # [B, Hq, D]


# ---------------------------------------------------------------------------------------------------------
# Paged cache
# ---------------------------------------------------------------------------------------------------------


def _check_paged(q: Tensor, k_pages: Tensor, v_pages: Tensor, block_table: Tensor, kv_len: int) -> int:
    """Validate a paged cache against q and return the group size."""
    if k_pages.dim() != 4 or k_pages.shape != v_pages.shape:
        raise ValueError(f"k_pages, v_pages must share one [N, P, Hkv, D] shape; got {tuple(k_pages.shape)}, "
                         f"{tuple(v_pages.shape)}")
    if block_table.dim() != 2 or block_table.shape[0] != q.shape[0] or block_table.dtype not in (torch.int32,
                                                                                                  torch.int64):
        raise ValueError(f"block_table must be int32/int64 [B, pages]; got {block_table.dtype} "
                         f"{tuple(block_table.shape)} for batch {q.shape[0]}")
    page_size = k_pages.shape[1]
    if not 1 <= kv_len <= block_table.shape[1] * page_size:
        raise ValueError(f"kv_len must be in 1..{block_table.shape[1] * page_size} (pages x page size), got {kv_len}")
    return _group_size(q, q.shape[0], k_pages.shape[2], k_pages.shape[3], k_pages.dtype, v_pages.dtype)


def gather_pages(pages: Tensor, block_table: Tensor, kv_len: int) -> Tensor:
    """Pool [N, P, Hkv, D] -> a contiguous copy, head-major: [Hkv, B, L, D] (a view of [Hkv, B, pages·P, D]).

    One index_select over a head-major view of the pool: the copy is written once, in the order the
    attention matmul reads it (batch dims Hkv, B merge, so the matmul needs no second copy)."""
    batch, n_pages = block_table.shape
    heads_first = pages.permute(2, 0, 1, 3)  # [Hkv, N, P, D] view
    gathered = heads_first.index_select(1, block_table.reshape(-1))  # [Hkv, B·pages, P, D] contiguous
    return gathered.view(pages.shape[2], batch, n_pages * pages.shape[1], pages.shape[3])[:, :, :kv_len]


def paged_gather_decode(q: Tensor, k_pages: Tensor, v_pages: Tensor, block_table: Tensor, kv_len: int) -> Tensor:
    """Paged decode the plain-torch way: gather each sequence's pages into contiguous K and V, then attend.
    Moves the cache three times (read the pool, write the copy, read the copy)."""
    group = _check_paged(q, k_pages, v_pages, block_table, kv_len)
    batch, heads, dim = q.shape
    k = gather_pages(k_pages, block_table, kv_len)  # [Hkv, B, L, D]
    v = gather_pages(v_pages, block_table, kv_len)
    grouped = q.view(batch, k.shape[0], group, dim).transpose(0, 1)  # [Hkv, B, G, D]
    return _grouped_attend(grouped, k, v).transpose(0, 1).reshape(batch, heads, dim)


def paged_to_contiguous(k_pages: Tensor, block_table: Tensor, kv_len: int) -> Tensor:
    """The paged cache as [B, Hkv, L, D] (for tests and references)."""
    return gather_pages(k_pages, block_table, kv_len).transpose(0, 1).contiguous()


# ---------------------------------------------------------------------------------------------------------
# Split-KV (flash-decoding) in torch
# ---------------------------------------------------------------------------------------------------------


def split_bounds(kv_len: int, splits: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, stop) of each non-empty split: chunks of ceil(L / splits) tokens rounded up to `align`."""
    if splits < 1 or align < 1:
        raise ValueError(f"splits and align must be >= 1, got {splits} and {align}")
    per_split = math.ceil(kv_len / splits)
    chunk = math.ceil(per_split / align) * align
    return [(start, min(start + chunk, kv_len)) for start in range(0, kv_len, chunk)]


def merge_partials(outputs: Tensor, lse: Tensor) -> Tensor:
    """Combine S normalized partial outputs [S, ..., D] (float32) by their log-sum-exps [S, ...]:
    out = Σ_s exp(lse_s − logsumexp_s(lse)) · o_s. A split with lse = −inf contributes exactly 0."""
    weights = torch.softmax(lse, dim=0)  # [S, ...]
    return (weights.unsqueeze(-1) * outputs).sum(dim=0)


def split_kv_decode(q: Tensor, k: Tensor, v: Tensor, splits: int) -> Tensor:
    """Flash-decoding in torch: L is cut into `splits` chunks; each yields a normalized partial output and
    its log-sum-exp (float32), merged by merge_partials. On a GPU the chunks would run in parallel; here
    they run one after another, so this shows the arithmetic, not the speed-up."""
    group = _check_cache(q, k, v)
    batch, heads, dim = q.shape
    grouped = q.view(batch, k.shape[1], group, dim) * (1.0 / math.sqrt(dim))  # [B, Hkv, G, D]
    outputs, lses = [], []
    for start, stop in split_bounds(k.shape[2], splits):
        scores = (grouped @ k[:, :, start:stop].transpose(-2, -1)).float()  # [B, Hkv, G, chunk]
        lse = torch.logsumexp(scores, dim=-1, keepdim=True)  # [B, Hkv, G, 1]
        probs = torch.exp(scores - lse).to(v.dtype)
        outputs.append((probs @ v[:, :, start:stop]).float())  # [B, Hkv, G, D], already normalized
        lses.append(lse.squeeze(-1))
    merged = merge_partials(torch.stack(outputs), torch.stack(lses))  # [B, Hkv, G, D]
    return merged.to(q.dtype).reshape(batch, heads, dim)
