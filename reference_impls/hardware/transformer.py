"""Analytic decoder-only transformer: parameters, weight and KV-cache bytes, and the FLOPs and bytes of one
prefill or decode forward pass, per operator class.

WHY: a measured inference case is only interpretable beside what the model must compute and move. This module
produces FLOPs and bytes only; turning them into time is the roofline's job. It imports nothing from the harness.

Conventions every cost below follows:
  * A linear map of shape (in, out) applied to T tokens costs 2·T·in·out FLOPs, reads its weights once per forward
    pass (shared by every token and every sequence of the batch), and reads its T·in input and writes its T·out
    output activations once each (no recompute, no fusion credit). Elementwise work (norms, RoPE, SwiGLU's gate,
    softmax) is not counted, nor are norm weights and biases (< 0.01 % of the bytes).
  * Attention reads each sequence's KV cache once per layer (an ideal fused kernel) and writes the new tokens' KV.
  * The input embedding is a gather: it reads one table row per token and costs no FLOPs. The LM head runs on the
    last position of each sequence only, as serving engines do for prefill.
  * Quantization (`Precision`) applies to the attention and FFN/expert matrices. Embeddings, LM head, norms, biases
    and the MoE router stay at `Precision.unquantized_bits` = max(weight_bits, 16), as in GPTQ/AWQ/FP8 checkpoints.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).with_name("configs")
_Shape = tuple[int, int]  # (in_features, out_features) of one linear map


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a decoder-only transformer, as far as FLOPs and bytes depend on it.

    `head_dim` is the query/key head width (for MLA: qk_nope_head_dim + qk_rope_head_dim). `first_dense_layers`
    MoE models start with that many dense-FFN layers (DeepSeek's first_k_dense_replace). `qkv_bias` adds biases to
    q/k/v (Qwen2); it only changes parameter counts.
    """

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool
    attention: str  # "gqa" (MHA is gqa with num_kv_heads == num_heads) or "mla"
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    q_lora_rank: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0
    moe_intermediate_size: int = 0
    first_dense_layers: int = 0
    qkv_bias: bool = False

    def __post_init__(self) -> None:
        sizes = (self.hidden_size, self.num_layers, self.num_heads, self.num_kv_heads, self.head_dim, self.vocab_size)
        if min(sizes) < 1:
            raise ValueError(f"{self.name}: sizes must be >= 1: {self}")
        if self.attention not in ("gqa", "mla"):
            raise ValueError(f"{self.name}: attention must be 'gqa' or 'mla', got {self.attention!r}")
        if self.attention == "gqa" and self.num_heads % self.num_kv_heads:
            raise ValueError(f"{self.name}: {self.num_heads} heads do not split into {self.num_kv_heads} KV groups")
        if self.num_experts and not 0 < self.experts_per_token <= self.num_experts:
            raise ValueError(f"{self.name}: experts_per_token must be in 1..{self.num_experts}")

    @property
    def gqa_group(self) -> int:
        """Query heads sharing one KV head (1 for MHA); decode attention's FLOP/byte in 16-bit KV."""
        return self.num_heads // self.num_kv_heads

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.first_dense_layers if self.num_experts else 0


def builtin_configs() -> tuple[str, ...]:
    """Names `load_config` accepts without a path: the file stems in configs/."""
    return tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))


def load_config(name_or_path: str | os.PathLike[str]) -> ModelConfig:
    """Read a Hugging Face config.json (a file, a directory holding one, or a built-in name, case-insensitive)."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        builtins = {stem.lower(): CONFIG_DIR / f"{stem}.json" for stem in builtin_configs()}
        if str(name_or_path).lower() not in builtins:
            raise ValueError(f"unknown model config {str(name_or_path)!r}: not a file, and not one of the "
                             f"built-ins: {', '.join(builtin_configs())}")
        path = builtins[str(name_or_path).lower()]
    raw = json.loads(path.read_text())
    name = (raw.get("_name_or_path") or path.parent.name) if path.name == "config.json" else path.stem
    return _from_hf(raw, path, name)


def _from_hf(raw: dict[str, Any], path: Path, name: str) -> ModelConfig:
    """Map HF field names. head_dim: the explicit field when present (Qwen3, Gemma), else hidden / heads."""

    def get(key: str, default: Any = None, required: bool = False) -> Any:
        if raw.get(key) is None and required:
            raise ValueError(f"{path}: model config is missing required field {key!r}")
        return default if raw.get(key) is None else raw[key]

    hidden, heads = get("hidden_size", required=True), get("num_attention_heads", required=True)
    common = dict(name=name, hidden_size=hidden, num_layers=get("num_hidden_layers", required=True),
                  num_heads=heads, num_kv_heads=get("num_key_value_heads", heads),
                  intermediate_size=get("intermediate_size", required=True),
                  vocab_size=get("vocab_size", required=True), tie_embeddings=bool(get("tie_word_embeddings", False)),
                  qkv_bias=bool(get("attention_bias", raw.get("model_type") in ("qwen2", "qwen2_moe"))))
    if raw.get("kv_lora_rank") is not None:
        mla = {key: get(key, required=True) for key in ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim",
                                                         "v_head_dim")}
        common |= mla | dict(attention="mla", q_lora_rank=get("q_lora_rank", 0),
                             head_dim=mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"])
    else:
        common |= dict(attention="gqa", head_dim=get("head_dim", hidden // heads))
    experts = get("n_routed_experts", get("num_local_experts", 0))
    if experts:
        common |= dict(num_experts=experts, experts_per_token=get("num_experts_per_tok", required=True),
                       shared_experts=get("n_shared_experts", 0), first_dense_layers=get("first_k_dense_replace", 0),
                       moe_intermediate_size=get("moe_intermediate_size", common["intermediate_size"]))
    return ModelConfig(**common)


@dataclass(frozen=True)
class Precision:
    """Storage widths. Grouped quantization stores one `scale_bits` scale per `group_size` weights, so the effective
    width is weight_bits + scale_bits / group_size (int4, g128, fp16 scales: 4 + 16/128 = 4.125 bits)."""

    weight_bits: float = 16
    group_size: int | None = None
    scale_bits: int = 16
    kv_bits: float = 16
    activation_bytes: int = 2

    def __post_init__(self) -> None:
        if min(self.weight_bits, self.kv_bits, self.activation_bytes) <= 0 or (self.group_size or 1) < 1:
            raise ValueError(f"precision widths must be positive: {self}")

    @property
    def effective_weight_bits(self) -> float:
        return self.weight_bits + (self.scale_bits / self.group_size if self.group_size else 0.0)

    @property
    def unquantized_bits(self) -> float:
        """Width of embeddings, LM head, norms, biases and router: never below 16 bits."""
        return max(self.weight_bits, 16)


def kv_bytes_per_token(config: ModelConfig, precision: Precision) -> float:
    """KV-cache bytes one token adds across all layers.

    GQA: 2 (K and V) · layers · kv_heads · head_dim · kv_bits/8. MLA: layers · (kv_lora_rank + qk_rope_head_dim)
    · kv_bits/8 — the compressed latent plus the decoupled RoPE key, shared by all heads (the point of MLA).
    """
    c = config
    width = c.kv_lora_rank + c.qk_rope_head_dim if c.attention == "mla" else 2 * c.num_kv_heads * c.head_dim
    return c.num_layers * width * precision.kv_bits / 8


def _attention_shapes(c: ModelConfig) -> list[_Shape]:
    """The attention projections of one layer. MLA: q down/up (or one q map without q_lora_rank), kv down to the
    latent + RoPE key, kv up (K_nope and V for all heads), output. MLA's absorbed decode applies kv up's halves to
    the query (W_UK) and the attention output (W_UV) instead: same weights and 2·T·in·out FLOPs per new token."""
    h, n = c.hidden_size, c.num_heads
    if c.attention == "gqa":
        return [(h, n * c.head_dim), (h, c.num_kv_heads * c.head_dim), (h, c.num_kv_heads * c.head_dim),
                (n * c.head_dim, h)]
    q = [(h, c.q_lora_rank), (c.q_lora_rank, n * c.head_dim)] if c.q_lora_rank else [(h, n * c.head_dim)]
    return q + [(h, c.kv_lora_rank + c.qk_rope_head_dim),
                (c.kv_lora_rank, n * (c.qk_nope_head_dim + c.v_head_dim)), (n * c.v_head_dim, h)]


def _param_groups(c: ModelConfig, routed_per_layer: int) -> dict[str, int]:
    """Parameter counts by storage class, with `routed_per_layer` routed experts counted in each MoE layer."""
    h, layers = c.hidden_size, c.num_layers
    expert = 3 * h * c.moe_intermediate_size  # SwiGLU: gate, up (h -> m) and down (m -> h)
    norms = 2 * h + (c.q_lora_rank + c.kv_lora_rank if c.attention == "mla" else 0)
    biases = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim if c.qkv_bias else 0
    quantized = layers * sum(i * o for i, o in _attention_shapes(c)) \
        + (layers - c.moe_layers) * 3 * h * c.intermediate_size \
        + c.moe_layers * (routed_per_layer + c.shared_experts) * expert
    return {"embedding": c.vocab_size * h, "lm_head": 0 if c.tie_embeddings else c.vocab_size * h,
            "quantized": quantized, "other": layers * (norms + biases) + h + c.moe_layers * c.num_experts * h}


def parameter_count(config: ModelConfig) -> dict[str, int]:
    """{"total", "active", "embedding"}. Active = parameters one token uses: MoE counts experts_per_token routed
    plus the shared experts; embeddings count (as in Mixtral's 12.9B and DeepSeek-V3's 37B), once when tied.
    "embedding" is the input table, which is gathered rather than multiplied (no FLOPs)."""
    total, active = _param_groups(config, config.num_experts), _param_groups(config, config.experts_per_token)
    return {"total": sum(total.values()), "active": sum(active.values()), "embedding": total["embedding"]}


def weight_bytes(config: ModelConfig, precision: Precision) -> dict[str, float]:
    """{"total", "active_per_token"}: parameters × bits / 8, quantized matrices at effective_weight_bits and the
    rest at unquantized_bits (module docstring). Active counts parameters as `parameter_count` does."""

    def size(groups: dict[str, int]) -> float:
        rest = groups["embedding"] + groups["lm_head"] + groups["other"]
        return (groups["quantized"] * precision.effective_weight_bits + rest * precision.unquantized_bits) / 8

    return {"total": size(_param_groups(config, config.num_experts)),
            "active_per_token": size(_param_groups(config, config.experts_per_token))}


@dataclass(frozen=True)
class LayerCost:
    """One operator class summed over the `repeats` identical layers that contain it."""

    name: str
    flops: float
    weight_bytes: float
    kv_read_bytes: float
    kv_write_bytes: float
    activation_bytes: float
    repeats: int = 1

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.kv_read_bytes + self.kv_write_bytes + self.activation_bytes


@dataclass(frozen=True)
class PhaseCost:
    """One forward pass: `tokens` new tokens over the whole batch; flops and bytes sum `layers`."""

    phase: str
    flops: float
    bytes: float
    layers: tuple[LayerCost, ...]
    tokens: int

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / self.bytes

    def layer(self, name: str) -> LayerCost:
        return next(cost for cost in self.layers if cost.name == name)


def _scaled(name: str, repeats: int, flops: float = 0, weights: float = 0, kv_read: float = 0, kv_write: float = 0,
            act: float = 0) -> LayerCost:
    """One layer's figures times `repeats`."""
    return LayerCost(name, repeats * flops, repeats * weights, repeats * kv_read, repeats * kv_write,
                     repeats * act, repeats)


def _linears(name: str, shapes: list[_Shape], tokens: float, bits: float, act_bytes: int, repeats: int) -> LayerCost:
    """Linear maps over `tokens` tokens: 2·T·in·out FLOPs, in·out·bits/8 weight bytes, T·(in+out) activations."""
    return _scaled(name, repeats, flops=sum(2 * tokens * i * o for i, o in shapes),
                   weights=sum(i * o for i, o in shapes) * bits / 8,
                   act=sum(tokens * (i + o) for i, o in shapes) * act_bytes)


def _attention_core(c: ModelConfig, p: Precision, batch: int, new: int, keys: int, pairs: float,
                    absorbed: bool) -> LayerCost:
    """QK^T and PV: per query-key pair and head, GQA does 2·head_dim (QK) + 2·head_dim (PV) FLOPs.

    MLA absorbed (decode): W_UK is folded into the query and W_UV applied after attention, so each head attends
    the cached latent directly: 2·(kv_lora_rank + rope) + 2·kv_lora_rank FLOPs per pair, all heads reading the one
    latent (MQA-like, hence high FLOP/byte). MLA decompressed (prefill): kv_b up-projects K_nope and V per token
    and attention is plain MHA: 2·(nope + rope) + 2·v_head_dim per pair. Decompress-then-attend in decode would
    instead re-project all `keys` cached latents every step (2·keys·kv_lora_rank·heads·(nope + v) FLOPs).
    Bytes: each sequence's `keys` cached tokens read, `new` tokens written; queries read, outputs written.
    """
    kv_layer = kv_bytes_per_token(c, p) / c.num_layers
    if c.attention == "gqa":
        per_pair, q_width, out_width = 4 * c.head_dim, c.head_dim, c.head_dim
    elif absorbed:
        per_pair = 2 * (2 * c.kv_lora_rank + c.qk_rope_head_dim)
        q_width, out_width = c.kv_lora_rank + c.qk_rope_head_dim, c.kv_lora_rank
    else:
        per_pair, q_width, out_width = 2 * (c.head_dim + c.v_head_dim), c.head_dim, c.v_head_dim
    return _scaled("attn_core", c.num_layers, flops=batch * pairs * c.num_heads * per_pair,
                   kv_read=batch * keys * kv_layer, kv_write=batch * new * kv_layer,
                   act=batch * new * c.num_heads * (q_width + out_width) * p.activation_bytes)


def experts_touched(config: ModelConfig, tokens: float) -> float:
    """Expected distinct routed experts one MoE layer reads for `tokens` tokens, assuming uniform independent
    routing: E·(1 − (1 − k/E)^tokens). Equals k at one token, tends to E; skewed routing touches fewer."""
    e, k = config.num_experts, config.experts_per_token
    return e * (1 - (1 - k / e) ** tokens) if e else 0.0


def _ffn(c: ModelConfig, p: Precision, tokens: int) -> list[LayerCost]:
    """Dense SwiGLU (3 matrices) per dense layer; per MoE layer the router (h -> E) and the experts: each token
    runs experts_per_token routed + shared experts (6·h·m FLOPs each), weights of the experts touched are read."""
    h, bits, act = c.hidden_size, p.effective_weight_bits, p.activation_bytes
    dense = c.num_layers - c.moe_layers
    costs = [_linears("ffn", [(h, c.intermediate_size)] * 2 + [(c.intermediate_size, h)], tokens, bits, act, dense)]
    if c.moe_layers:
        m, runs = c.moe_intermediate_size, tokens * (c.experts_per_token + c.shared_experts)
        costs.append(_linears("moe_router", [(h, c.num_experts)], tokens, p.unquantized_bits, act, c.moe_layers))
        costs.append(_scaled("moe_experts", c.moe_layers, flops=runs * 6 * h * m,
                             weights=(experts_touched(c, tokens) + c.shared_experts) * 3 * h * m * bits / 8,
                             act=runs * 3 * (h + m) * act))
    return [cost for cost in costs if cost.repeats]


def _forward(c: ModelConfig, p: Precision, phase: str, batch: int, new: int, keys: int, pairs: float) -> PhaseCost:
    """Embedding gather, attention projections, attention core, FFN, LM head (last position per sequence)."""
    tokens, h, act = batch * new, c.hidden_size, p.activation_bytes
    rows = min(tokens, c.vocab_size)
    layers = (_scaled("embedding", 1, weights=rows * h * p.unquantized_bits / 8, act=tokens * h * act),
              _linears("attn_proj", _attention_shapes(c), tokens, p.effective_weight_bits, act, c.num_layers),
              _attention_core(c, p, batch, new, keys, pairs, absorbed=phase == "decode"),
              *_ffn(c, p, tokens),
              _linears("lm_head", [(h, c.vocab_size)], batch, p.unquantized_bits, act, 1))
    return PhaseCost(phase, sum(x.flops for x in layers), sum(x.bytes for x in layers), layers, tokens)


def _check_positive(**values: int) -> None:
    if bad := {key: value for key, value in values.items() if value < 1}:
        raise ValueError(f"must be >= 1: {bad}")


def prefill_cost(config: ModelConfig, precision: Precision, prompt_tokens: int, batch: int = 1) -> PhaseCost:
    """Process `prompt_tokens` per sequence from an empty cache. Causal attention: query i attends keys 0..i, so
    T·(T+1)/2 query-key pairs per head (about half of T²); the prompt's KV is written and read back once."""
    _check_positive(prompt_tokens=prompt_tokens, batch=batch)
    pairs = prompt_tokens * (prompt_tokens + 1) / 2
    return _forward(config, precision, "prefill", batch, prompt_tokens, prompt_tokens, pairs)


def decode_cost(config: ModelConfig, precision: Precision, context: int, batch: int = 1) -> PhaseCost:
    """One new token per sequence attending `context` keys (the cache including the new token's own KV, which is
    written then read). Weights are read once per step for the whole batch; KV is read per sequence."""
    _check_positive(context=context, batch=batch)
    return _forward(config, precision, "decode", batch, 1, context, context)


def extend_cost(config: ModelConfig, precision: Precision, new_tokens: int, cached_tokens: int,
                batch: int = 1) -> PhaseCost:
    """Process `new_tokens` after `cached_tokens` already in the KV cache (chunked prefill, or a chat turn
    appended to a prefix-cached conversation): new query i attends the cache and new keys 0..i, so
    new·cached + new·(new+1)/2 query-key pairs per head; the whole cache is read once, the new KV written.
    extend_cost(c, p, T, 0) == prefill_cost(c, p, T)."""
    _check_positive(new_tokens=new_tokens, batch=batch)
    if cached_tokens < 0:
        raise ValueError(f"cached_tokens must be >= 0, got {cached_tokens}")
    pairs = new_tokens * cached_tokens + new_tokens * (new_tokens + 1) / 2
    return _forward(config, precision, "prefill", batch, new_tokens, cached_tokens + new_tokens, pairs)


def attention_decode_intensity(config: ModelConfig, precision: Precision, context: int) -> float:
    """FLOP/byte of the attention core alone in one decode step (independent of batch: each sequence reads its
    own cache). GQA with 16-bit KV: 4·g·head_dim FLOPs per 4·head_dim bytes per KV head and key = g (the group
    size), slightly less for the query/output bytes. MLA (absorbed) ≈ 2·heads·(2·r + rope)/(r + rope)/kv_bytes."""
    _check_positive(context=context)
    core = _attention_core(config, precision, 1, 1, context, context, absorbed=True)
    return core.flops / core.bytes


def ffn_intensity(config: ModelConfig, precision: Precision, batch: int = 1) -> float:
    """FLOPs / weight bytes of the FFN in one decode step of `batch` tokens: the MoE layers (router + experts)
    when the model has experts, else the dense FFN. 16-bit dense: = batch; 16-bit MoE at batch 1: = 1, then grows
    as tokens share experts (batch·(k+s) / (experts_touched + s))."""
    _check_positive(batch=batch)
    costs = [x for x in _ffn(config, precision, batch) if x.name.startswith("moe_") or not config.num_experts]
    return sum(x.flops for x in costs) / sum(x.weight_bytes for x in costs)
