"""How many sequences, or how long a context, fit in a device's memory next to the weights.

WHY: decode throughput is bought with concurrency, and concurrency is bounded by the KV cache that fits beside the
weights. Formulas only; the device's memory size comes from the caller (this module does not know devices).
All weights are resident (every MoE expert too), and KV is dense: the bound a paged allocator approaches, not one
it beats.
"""

from __future__ import annotations

from .transformer import ModelConfig, Precision, kv_bytes_per_token, weight_bytes


def kv_cache_bytes(config: ModelConfig, precision: Precision, tokens: int, batch: int = 1) -> float:
    """KV-cache bytes of `batch` sequences of `tokens` tokens: kv_bytes_per_token · tokens · batch."""
    if tokens < 0 or batch < 0:
        raise ValueError(f"tokens and batch must be >= 0, got tokens={tokens}, batch={batch}")
    return kv_bytes_per_token(config, precision) * tokens * batch


def free_bytes(config: ModelConfig, precision: Precision, memory_bytes: float, reserve_bytes: float = 0.0) -> float:
    """Memory left for KV: memory − weight_bytes(...)["total"] − reserve (activations, workspace, fragmentation).
    Negative when the weights (plus reserve) do not fit."""
    if memory_bytes < 0 or reserve_bytes < 0:
        raise ValueError(f"memory_bytes and reserve_bytes must be >= 0, got {memory_bytes}, {reserve_bytes}")
    return memory_bytes - weight_bytes(config, precision)["total"] - reserve_bytes


def max_concurrency(config: ModelConfig, precision: Precision, memory_bytes: float, context: int,
                    reserve_bytes: float = 0.0) -> int:
    """Sequences of `context` tokens whose KV fits: floor(free_bytes / (kv_bytes_per_token · context)); 0 when
    the weights do not fit."""
    if context < 1:
        raise ValueError(f"context must be >= 1, got {context}")
    free = free_bytes(config, precision, memory_bytes, reserve_bytes)
    return max(0, int(free // kv_cache_bytes(config, precision, context)))


def max_context(config: ModelConfig, precision: Precision, memory_bytes: float, batch: int = 1,
                reserve_bytes: float = 0.0) -> int:
    """Longest context each of `batch` sequences can hold: floor(free_bytes / (kv_bytes_per_token · batch)); 0 when
    the weights do not fit."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    free = free_bytes(config, precision, memory_bytes, reserve_bytes)
    return max(0, int(free // kv_cache_bytes(config, precision, 1, batch)))
