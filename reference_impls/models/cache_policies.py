"""KV-compression policies as `policy_fn`s for kv_generation: token selection (compacted) and KIVI.

WHY: kv_generation knows nothing about policies, and kv_compression / kv_quant know nothing about models; this
file is the adapter, and the one place that says what each policy claims to hold. Claimed bytes follow the
synthetic kv_compression workload: kept tokens at the cache's precision, or KIVI's nominal bits per element.

KIVI here is quantize -> dequantize: attention runs on the dequantized float32 cache, so it holds the full
size while claiming bits/8 of it (what a packed-attention kernel would hold, not what this one does).
"""

from __future__ import annotations

import torch

from reference_impls.kernels import kv_compression as kvc
from reference_impls.kernels import kv_quant
from reference_impls.models.kv_generation import OBSERVATION_WINDOW, PolicyFn

TOKEN_POLICIES = ("full", "streaming_llm", "h2o", "snapkv", "tova", "knorm")  # duo_attention: see passkey workload
QUANT_POLICIES = ("kivi",)
POLICIES = TOKEN_POLICIES + QUANT_POLICIES
SINK_TOKENS = 4
POOL_KERNEL = 5  # SnapKV's default
KIVI_GROUP = 32
KIVI_RESIDUAL = 128  # newest tokens KIVI keeps in full precision


def needs_scores(policy: str) -> bool:
    return policy in kvc.SCORE_POLICIES


def budget_tokens(budget_fraction: float, length: int) -> int:
    """Tokens kept per KV head for a budget given as a fraction of the prompt (at least 1, at most all)."""
    if not 0.0 < budget_fraction <= 1.0:
        raise ValueError(f"budget fraction must be in (0, 1], got {budget_fraction!r}")
    return min(length, max(1, round(budget_fraction * length)))


def make_policy_fn(policy: str, budget_fraction: float, kivi_bits: int = 2,
                   window: int = OBSERVATION_WINDOW) -> PolicyFn:
    """A policy_fn for generate_with_cache_policy: keys/values [kv_heads, L, d] in, compressed out."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; allowed: {', '.join(POLICIES)}")
    if policy == "kivi":
        return _kivi_fn(kivi_bits)

    def select(layer: int, keys: torch.Tensor, values: torch.Tensor,
               scores: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, float]:
        if policy == "full":
            return keys, values, float(_nbytes(keys, values))
        budget = budget_tokens(budget_fraction, keys.shape[1])
        kept_keys, kept_values = kvc.compress_cache_layer(keys, values, scores, policy, budget, mode="compact",
                                                          sink_tokens=SINK_TOKENS, window=window,
                                                          pool_kernel=POOL_KERNEL)
        return kept_keys, kept_values, float(_nbytes(kept_keys, kept_values))

    return select


def _kivi_fn(bits: int) -> PolicyFn:
    def quantize(layer: int, keys: torch.Tensor, values: torch.Tensor,
                 scores: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, float]:
        cache = kv_quant.kivi_compress(keys, values, bits=bits, group_size=KIVI_GROUP, residual=KIVI_RESIDUAL)
        dequantized_keys, dequantized_values = cache.dequantize()
        return dequantized_keys, dequantized_values, 2.0 * keys.numel() * bits / 8

    return quantize


def _nbytes(*tensors: torch.Tensor) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors))
