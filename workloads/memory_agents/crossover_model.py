"""What one query costs on a device, answered from the whole history (full context) or from a store's hits.

The transformer cost model (hardware/transformer.py) and the per-operator roofline (llm_estimate.estimate_phase;
energy_model for joules) give each phase. Per query, with H history tokens, q question tokens, S hit tokens, A
answer tokens and u = turns_per_query x H / turns new history tokens since the last query:

  full context, prefix_cache   extend(u + q after H cached) + A decode steps at context H + u + q + A/2
  full context, reprefill      prefill(H + q)               + A decode steps at context H + q + A/2
  store                        prefill(S + q) + A decode steps at context S + q + A/2
                               + search p50 + turns_per_query x write p50   (both measured on this CPU)

WHY prefix_cache is the default: a serving engine keeps a growing chat's KV cache, so full context pays for the
new turns and for attention over the cache, not for re-reading the history; the store's prompt changes with
every query and is prefilled afresh. Without the cache (reprefill) full context loses as soon as the history is
longer than the hits, which says only that k hits are fewer tokens than the history.
Decode is summed as A steps at the mid-answer context (exact: a step's cost is linear in its context).
Full context must also fit: weights + KV of the whole history within the device's main memory
(kv_capacity.free_bytes); the history length where it stops fitting bounds the crossover.
Energy covers the modeled device phases only (the host's search and write energy are not modeled).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from reference_impls.hardware.devices import get_device
from reference_impls.hardware.energy_model import predict_energy
from reference_impls.hardware.kv_capacity import free_bytes
from reference_impls.hardware.llm_estimate import estimate_phase, precision
from reference_impls.hardware.transformer import decode_cost, extend_cost, kv_bytes_per_token, load_config

DTYPE = "bfloat16"
FULL_CONTEXT_MODES = ("prefix_cache", "reprefill")


@dataclass(frozen=True)
class Serving:
    """How the model answers: config and device profile by name, weight format, and the query shape."""

    config: str
    device: str
    weights: str = "bf16"
    full_context: str = "prefix_cache"
    answer_tokens: int = 32
    turns_per_query: float = 2.0


@dataclass(frozen=True)
class Measured:
    """What the store did at one history length (tokens by the workload's tokenizer, times on this CPU)."""

    turns: int
    history_tokens: float
    question_tokens: float
    store_tokens: float
    search_s: float
    write_s: float


@cache
def phase(serving: Serving, kind: str, new_tokens: int, cached_tokens: int) -> tuple[float, float]:
    """(modeled seconds, modeled joules) of one phase: kind 'extend' (prefill after a cache) or 'decode'."""
    dev = get_device(serving.device)
    config, prec = load_config(serving.config), precision(serving.weights)
    if kind == "extend":
        cost = extend_cost(config, prec, max(1, new_tokens), max(0, cached_tokens))
    else:
        cost = decode_cost(config, prec, max(1, cached_tokens))
    latency = estimate_phase(cost, dev, DTYPE).latency_s
    energy = predict_energy(dev, cost.flops, {"dram": cost.bytes}, DTYPE, latency)
    return latency, energy.total_j if energy is not None else float("nan")


def answer(serving: Serving, prompt_tokens: float) -> tuple[float, float]:
    """A decode steps after a prompt of `prompt_tokens` (each at the mid-answer context)."""
    steps = serving.answer_tokens
    if steps == 0:
        return 0.0, 0.0
    s, j = phase(serving, "decode", 0, round(prompt_tokens + steps / 2))
    return steps * s, steps * j


def full_context_query(serving: Serving, m: Measured) -> tuple[float, float]:
    """(seconds, joules) of one query answered from the whole history."""
    if serving.full_context == "reprefill":
        prompt = m.history_tokens + m.question_tokens
        s, j = phase(serving, "extend", round(prompt), 0)
    else:
        new = serving.turns_per_query * m.history_tokens / m.turns + m.question_tokens
        prompt = m.history_tokens + m.question_tokens
        s, j = phase(serving, "extend", round(new), round(m.history_tokens))
    a_s, a_j = answer(serving, prompt)
    return s + a_s, j + a_j


def store_query(serving: Serving, m: Measured) -> tuple[float, float]:
    """(seconds, joules) of one query answered from the store's hits; seconds include host search and writes."""
    prompt = m.store_tokens + m.question_tokens
    s, j = phase(serving, "extend", round(prompt), 0)
    a_s, a_j = answer(serving, prompt)
    return s + a_s + m.search_s + serving.turns_per_query * m.write_s, j + a_j


def fit_limit_tokens(serving: Serving) -> float:
    """Context tokens whose KV fits beside the weights in main memory (0 when the weights alone do not fit)."""
    dev = get_device(serving.device)
    config, prec = load_config(serving.config), precision(serving.weights)
    free = free_bytes(config, prec, dev.tier(dev.main_tier).capacity_bytes.value)
    return max(0.0, free / kv_bytes_per_token(config, prec))


def weights_fit(serving: Serving) -> bool:
    return fit_limit_tokens(serving) > 0
