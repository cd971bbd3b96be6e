"""One decode step of attention over a compressed KV cache, held three ways.

  masked_decode_attention   the full cache stays allocated; dropped tokens are masked to -inf. Saves nothing:
                            memory and bytes read per step are those of the full cache (plus the mask).
  compact_decode_attention  the kept tokens were gathered into smaller tensors (kv_compression.gather_kept):
                            memory and reads shrink to the budget.
  duo_decode_attention      DuoAttention's split: retrieval heads hold all L tokens, streaming heads a short
                            cache, as two tensors (one tensor cannot hold two lengths).

Shapes: query [q_heads, d] (q_heads = group * kv_heads), caches [kv_heads, n, d]. Scale 1/sqrt(d). The QK and
PV matmuls run in the input dtype; scores and softmax in float32 for 16-bit inputs. Returns [q_heads, d] in the
input dtype. Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from reference_impls.kernels.kv_compression import gather_kept


def _group(query: Tensor, kv_heads: int) -> Tensor:
    """[q_heads, d] -> [kv_heads, group, d]: the query heads sharing one KV head, without repeating K or V."""
    if query.dim() != 2 or query.shape[0] % kv_heads:
        raise ValueError(f"query must be [q_heads, d] with q_heads a multiple of kv_heads={kv_heads}; "
                         f"got {tuple(query.shape)}")
    return query.view(kv_heads, query.shape[0] // kv_heads, query.shape[1])


def _check_cache(query: Tensor, keys: Tensor, values: Tensor) -> None:
    if keys.dim() != 3 or keys.shape != values.shape or keys.shape[-1] != query.shape[-1]:
        raise ValueError(f"keys and values must share a [kv_heads, n, d={query.shape[-1]}] shape; got "
                         f"{tuple(keys.shape)} and {tuple(values.shape)}")


def _attend(grouped: Tensor, keys: Tensor, values: Tensor, drop: Tensor | None) -> Tensor:
    """grouped [kv_heads, g, d] against [kv_heads, n, d]; drop [kv_heads, n] True = masked out."""
    stats = torch.float32 if torch.finfo(keys.dtype).bits < 32 else keys.dtype
    scores = (grouped @ keys.transpose(-2, -1)).to(stats)  # [kv_heads, g, n]
    scores.mul_(1.0 / math.sqrt(keys.shape[-1]))
    if drop is not None:
        scores.masked_fill_(drop[:, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(values.dtype)
    return probs @ values  # [kv_heads, g, d]


def masked_decode_attention(query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> Tensor:
    """Attention over the full [kv_heads, L, d] cache with mask [kv_heads, L] (True = kept)."""
    _check_cache(query, keys, values)
    if mask.shape != keys.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool {tuple(keys.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")
    if not bool(mask.any(dim=-1).all()):
        raise ValueError("every KV head must keep at least one token")
    out = _attend(_group(query, keys.shape[0]), keys, values, ~mask)
    return out.reshape(query.shape)


def compact_decode_attention(query: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """Attention over a compacted [kv_heads, n, d] cache: every kept token, nothing masked."""
    _check_cache(query, keys, values)
    return _attend(_group(query, keys.shape[0]), keys, values, None).reshape(query.shape)


@dataclass(frozen=True)
class DuoCompactCache:
    """DuoAttention's two caches: full-length for retrieval heads, sinks + recent for streaming heads."""

    head_mask: Tensor  # [kv_heads] bool, True = retrieval head
    retrieval_keys: Tensor  # [n_retrieval, L, d]
    retrieval_values: Tensor
    streaming_keys: Tensor  # [n_streaming, budget, d]
    streaming_values: Tensor

    def nbytes(self) -> int:
        parts = (self.retrieval_keys, self.retrieval_values, self.streaming_keys, self.streaming_values)
        return int(sum(t.numel() * t.element_size() for t in parts))


def duo_compact(keys: Tensor, values: Tensor, mask: Tensor, head_mask: Tensor) -> DuoCompactCache:
    """Split [kv_heads, L, d] by head_mask; streaming heads keep only their masked-in tokens (gathered)."""
    streaming = ~head_mask
    if not bool(mask[head_mask].all()):
        raise ValueError("retrieval heads must keep every token")
    if bool(streaming.any()):
        streaming_keys, streaming_values = gather_kept(keys[streaming], values[streaming], mask[streaming])
    else:
        streaming_keys = streaming_values = keys.new_empty(0, 0, keys.shape[-1])
    return DuoCompactCache(head_mask, keys[head_mask].clone(), values[head_mask].clone(), streaming_keys,
                           streaming_values)


def duo_decode_attention(query: Tensor, cache: DuoCompactCache) -> Tensor:
    """Each head attends over its own cache; outputs return to their head order."""
    kv_heads = cache.head_mask.shape[0]
    grouped = _group(query, kv_heads)  # [kv_heads, g, d]
    out = torch.empty_like(grouped)
    if bool(cache.head_mask.any()):
        out[cache.head_mask] = _attend(grouped[cache.head_mask], cache.retrieval_keys, cache.retrieval_values, None)
    if bool((~cache.head_mask).any()):
        out[~cache.head_mask] = _attend(grouped[~cache.head_mask], cache.streaming_keys, cache.streaming_values,
                                        None)
    return out.reshape(query.shape)
