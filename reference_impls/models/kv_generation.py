"""Greedy decoding from a KV cache that a compression policy rewrote after prefill.

WHY: KV-compression policies are judged by what the model still answers once tokens are gone. The recipe:
prefill the prompt; when the policy needs attention scores, run the prompt's last W tokens (the SnapKV
observation window, which holds the question) as a second pass with eager attention so every layer yields
scores [q_heads, W, L]; hand each layer's keys, values and scores to the policy; then decode greedily from what
it kept. Cached keys carry their RoPE rotation, so decoding continues at position L (the original length), not
at the number of kept tokens: position ids are passed explicitly.

Works with transformers' DynamicCache in both layouts: `cache.layers[i].keys/.values` (4.56 and 5.x, verified
on 5.23) and `cache.key_cache[i]/.value_cache[i]` (4.45-4.55).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

OBSERVATION_WINDOW = 64

# policy_fn(layer index, keys [kv_heads, L, d], values [kv_heads, L, d], scores [q_heads, W, L] or None)
#   -> (kept keys [kv_heads, K, d], kept values [kv_heads, K, d], bytes the policy says it holds)
PolicyFn = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor, float]]


@dataclass
class CacheGeneration:
    """What one prompt produced under one policy, with its timings and cache sizes."""

    token_ids: list[int]  # generated, the end-of-sequence token excluded
    text: str | None  # decoded answer when a tokenizer was given
    prompt_tokens: int
    kept_tokens: int  # per layer and head after compression (layer 0)
    prefill_s: float  # prompt forward passes (with the observation window) up to the first token
    compress_s: float  # the policy over every layer
    decode_s: float  # greedy steps after compression
    decode_steps: int
    kv_bytes_full: int  # storage of the cache after prefill
    kv_bytes_kept: int  # storage the cache really holds right after compression
    kv_bytes_claimed: float  # what the policy says it holds (packed bits, kept tokens)
    step_logits: list[torch.Tensor] = field(default_factory=list)  # [vocab] per token, when asked for

    @property
    def decode_s_per_token(self) -> float:
        return self.decode_s / self.decode_steps if self.decode_steps else 0.0


def generate_with_cache_policy(model: Any, tokenizer: Any, prompt_ids: torch.Tensor, policy_fn: PolicyFn,
                               max_new_tokens: int, needs_scores: bool = False,
                               window: int = OBSERVATION_WINDOW, return_logits: bool = False) -> CacheGeneration:
    """Prefill, compress every layer with `policy_fn`, decode up to `max_new_tokens` greedily.

    The first token comes from the prefill's logits (full attention, as in SnapKV's protocol); every later
    token attends only to the compressed cache. Stops early at the tokenizer's end-of-sequence token.
    """
    from transformers import DynamicCache

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    ids = prompt_ids.reshape(1, -1).to(torch.long)  # [1, L]
    length = ids.shape[1]
    base, head = model.base_model, model.get_output_embeddings()
    eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
    cache = DynamicCache()
    with torch.inference_mode():
        t0 = time.perf_counter()
        hidden, scores = _prefill(model, base, ids, cache, needs_scores, window)
        logits = head(hidden[:, -1]).float()[0]  # [vocab]
        t1 = time.perf_counter()
        kv_full = allocated_bytes(_cache_tensors(cache))
        claimed = _compress(cache, scores, policy_fn)
        del scores
        t2 = time.perf_counter()
        kv_kept = allocated_bytes(_cache_tensors(cache))
        kept = layer_kv(cache, 0)[0].shape[-2]
        tokens, all_logits, steps = _decode(base, head, cache, logits, length, kept, max_new_tokens, eos,
                                            return_logits)
        t3 = time.perf_counter()
    text = tokenizer.decode(tokens, skip_special_tokens=True) if tokenizer is not None else None
    return CacheGeneration(tokens, text, length, kept, t1 - t0, t2 - t1, t3 - t2, steps, kv_full, kv_kept,
                           claimed, all_logits)


def _prefill(model: Any, base: Any, ids: torch.Tensor, cache: Any, needs_scores: bool,
             window: int) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """Hidden states of the prompt's last position; with scores, per layer [q_heads, W, L] of the last W
    queries over all L keys, from a second (eager) pass over the observation window."""
    length = ids.shape[1]
    if not needs_scores:
        return _forward(base, ids, cache, 0).last_hidden_state, None
    split = max(0, length - window)
    if split:
        _forward(base, ids[:, :split], cache, 0)
    with eager_attention(model):
        out = _forward(base, ids[:, split:], cache, split, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise RuntimeError("the model returned no attention weights; eager attention could not be switched on")
    return out.last_hidden_state, [a[0].float() for a in out.attentions]  # each [q_heads, W, L]


def _forward(base: Any, ids: torch.Tensor, cache: Any, position: int, **kwargs: Any) -> Any:
    """One forward of the decoder stack; positions start at `position` (the original token index)."""
    positions = torch.arange(position, position + ids.shape[1]).unsqueeze(0)  # [1, T]
    return base(input_ids=ids, past_key_values=cache, use_cache=True, position_ids=positions, **kwargs)


def _compress(cache: Any, scores: list[torch.Tensor] | None, policy_fn: PolicyFn) -> float:
    """Run the policy on every layer (batch 1) and put what it kept back into the cache."""
    claimed = 0.0
    for layer in range(num_layers(cache)):
        keys, values = layer_kv(cache, layer)  # [1, kv_heads, L, d]
        kept_k, kept_v, layer_claimed = policy_fn(layer, keys[0], values[0], None if scores is None else scores[layer])
        if kept_k.shape != kept_v.shape or kept_k.shape[0] != keys.shape[1] or kept_k.shape[-1] != keys.shape[-1]:
            raise ValueError(f"policy returned keys {tuple(kept_k.shape)} and values {tuple(kept_v.shape)} for a "
                             f"layer of shape {tuple(keys.shape[1:])}: expected [kv_heads, kept, head_dim] for both")
        set_layer_kv(cache, layer, kept_k.unsqueeze(0), kept_v.unsqueeze(0))
        claimed += float(layer_claimed)
    return claimed


def _decode(base: Any, head: Any, cache: Any, logits: torch.Tensor, length: int, kept: int, max_new_tokens: int,
            eos: int | None, return_logits: bool) -> tuple[list[int], list[torch.Tensor], int]:
    """Greedy steps: token t sits at position length + t (RoPE) and at slot kept + t of the compressed cache."""
    accepts_cache_position = "cache_position" in inspect.signature(base.forward).parameters
    tokens: list[int] = []
    all_logits = [logits] if return_logits else []
    steps = 0
    while True:
        token = int(logits.argmax())
        if token == eos:
            break
        tokens.append(token)
        if len(tokens) == max_new_tokens:
            break
        extra = {"cache_position": torch.tensor([kept + steps])} if accepts_cache_position else {}
        hidden = _forward(base, torch.tensor([[token]]), cache, length + steps, **extra).last_hidden_state
        logits = head(hidden[:, -1]).float()[0]
        steps += 1
        if return_logits:
            all_logits.append(logits)
    return tokens, all_logits, steps


@contextmanager
def eager_attention(model: Any):
    """Switch the model to eager attention (the only kind that returns weights) and back.

    transformers >= 4.48 picks the attention function per call from the config (set_attn_implementation where
    it exists); 4.45-4.47's SDPA classes fall back to eager by themselves when weights are requested.
    """
    config = model.config
    before = getattr(config, "_attn_implementation", None)
    if before in (None, "eager"):
        yield
        return
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")
    else:
        config._attn_implementation = "eager"
    try:
        yield
    finally:
        if setter is not None:
            setter(before)
        else:
            config._attn_implementation = before


def num_layers(cache: Any) -> int:
    layers = getattr(cache, "layers", None)
    return len(layers) if layers is not None else len(cache.key_cache)


def layer_kv(cache: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values [batch, kv_heads, L, d] of one layer, in either DynamicCache layout."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return layers[layer].keys, layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


def set_layer_kv(cache: Any, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    layers = getattr(cache, "layers", None)
    if layers is not None:
        layers[layer].keys, layers[layer].values = keys, values
    else:
        cache.key_cache[layer], cache.value_cache[layer] = keys, values


def _cache_tensors(cache: Any) -> list[torch.Tensor]:
    return [t for layer in range(num_layers(cache)) for t in layer_kv(cache, layer)]


def allocated_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors`: a sliced view still holds its whole parent."""
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return int(sum(storages.values()))
