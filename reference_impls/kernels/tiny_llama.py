"""A small Llama-style decoder with random weights and a KV cache it owns: the subject of context-length sweeps.

WHY: time to first token, time per output token and memory all move with context length, and the causes
(quadratic prefill attention, a KV cache read per step, a cache that must fit) show up in any decoder of the
right shape; trained weights are not needed to measure them. The shape comes from a Hugging Face config dict:
GQA attention with RoPE (rotate-half, as transformers' Llama), RMSNorm, a SwiGLU MLP, optional q/k/v biases
(Qwen2), tied or separate LM head. Llama 3's RoPE frequency scaling is not applied (it changes no cost).

The KV cache is preallocated, [layers, batch, kv_heads, max_tokens, head_dim] for K and for V; `prefill`
fills positions 0..T-1 and `decode_step` appends one. A cache that cannot be allocated raises MemoryError (or
torch.cuda.OutOfMemoryError), so a sweep that runs out of memory says so. `forward` is the no-cache path.
Weights are flat tensors in a dict, gpt-fast style; built from a seed, in float32 and then cast, so one seed
gives the same model in every dtype (up to rounding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# A built-in shape small enough for CPU sweeps to 4K tokens in about a second per prefill (2 cores).
TINY_CONFIG = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096, "rms_norm_eps": 1e-5,
               "rope_theta": 10000.0, "tie_word_embeddings": True, "initializer_range": 0.02}
LLAMA_STYLE = ("llama", "qwen2", "mistral")


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    rms_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    qkv_bias: bool = False
    init_std: float = 0.02

    @classmethod
    def from_hf(cls, config: dict) -> LlamaShape:
        """Read the fields a Llama-style config.json has; refuse MoE and MLA configs by name."""
        kind = config.get("model_type", "llama")
        if kind not in LLAMA_STYLE or config.get("kv_lora_rank") or config.get("num_local_experts") \
                or config.get("n_routed_experts"):
            raise ValueError(f"not a Llama-style dense config (model_type {kind!r}); "
                             f"supported: {', '.join(LLAMA_STYLE)}")
        missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                               "vocab_size") if k not in config]
        if missing:
            raise ValueError(f"config is missing {', '.join(missing)}")
        heads = config["num_attention_heads"]
        shape = cls(config["hidden_size"], config["num_hidden_layers"], heads, config.get("num_key_value_heads", heads),
                    config.get("head_dim") or config["hidden_size"] // heads, config["intermediate_size"],
                    config["vocab_size"], config.get("rms_norm_eps", 1e-5), config.get("rope_theta", 10000.0),
                    bool(config.get("tie_word_embeddings", False)),
                    bool(config.get("attention_bias", kind == "qwen2")), config.get("initializer_range", 0.02))
        if shape.heads % shape.kv_heads:
            raise ValueError(f"{shape.heads} query heads do not split into {shape.kv_heads} KV heads")
        return shape

    def parameter_count(self) -> int:
        """Every weight _random_weights makes (tied embeddings once)."""
        h, qd, kvd = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = 2 * h + h * qd + 2 * h * kvd + qd * h + 3 * h * self.intermediate
        per_layer += (qd + 2 * kvd) if self.qkv_bias else 0
        return self.vocab * h * (1 if self.tie_embeddings else 2) + h + self.layers * per_layer

    def kv_bytes_per_token(self, element_bytes: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * element_bytes


def builtin_config(name: str) -> dict:
    """"tiny", or a config.json shipped in reference_impls/hardware/configs (by stem, e.g. "smollm2-135m")."""
    from reference_impls.hardware.transformer import CONFIG_DIR, builtin_configs

    if name == "tiny":
        return dict(TINY_CONFIG)
    if name not in builtin_configs():
        raise ValueError(f"unknown model config {name!r}; known: tiny, {', '.join(builtin_configs())}")
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


def _random_weights(s: LlamaShape, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g) * s.init_std

    def norm_weight() -> Tensor:
        return 1.0 + 0.1 * torch.randn(s.hidden, generator=g)  # not all ones: a wrong norm must show

    w = {"embed": normal(s.vocab, s.hidden), "final_norm": norm_weight()}
    for i in range(s.layers):
        w |= {f"{i}.attn_norm": norm_weight(), f"{i}.mlp_norm": norm_weight(),
              f"{i}.wq": normal(s.heads * s.head_dim, s.hidden), f"{i}.wk": normal(s.kv_heads * s.head_dim, s.hidden),
              f"{i}.wv": normal(s.kv_heads * s.head_dim, s.hidden), f"{i}.wo": normal(s.hidden, s.heads * s.head_dim),
              f"{i}.w_gate": normal(s.intermediate, s.hidden), f"{i}.w_up": normal(s.intermediate, s.hidden),
              f"{i}.w_down": normal(s.hidden, s.intermediate)}
        if s.qkv_bias:
            w |= {f"{i}.bq": normal(s.heads * s.head_dim), f"{i}.bk": normal(s.kv_heads * s.head_dim),
                  f"{i}.bv": normal(s.kv_heads * s.head_dim)}
    w["lm_head"] = w["embed"] if s.tie_embeddings else normal(s.vocab, s.hidden)
    return w


def _allocate(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """torch.empty, with the CPU allocator's failure turned into MemoryError (CUDA raises OutOfMemoryError)."""
    try:
        return torch.empty(shape, dtype=dtype, device=device)
    except RuntimeError as exc:
        if _is_allocation_failure(exc):
            raise MemoryError(f"cannot allocate a {list(shape)} {dtype} tensor: {exc}") from exc
        raise


def random_tokens(count: int, vocab: int, seed: int, device: str = "cpu") -> Tensor:
    """[1, count] token ids in 1..vocab-1 (never 0), seeded; MemoryError when they cannot be allocated."""
    if count < 1 or vocab < 2:
        raise ValueError(f"need count >= 1 and vocab >= 2, got {count}, {vocab}")
    try:
        return torch.randint(1, vocab, (1, count), generator=torch.Generator().manual_seed(seed)).to(device)
    except RuntimeError as exc:
        if _is_allocation_failure(exc):
            raise MemoryError(f"cannot allocate {count} prompt tokens: {exc}") from exc
        raise


def _is_allocation_failure(exc: RuntimeError) -> bool:
    """torch's CPU allocator reports failure as a RuntimeError ("DefaultCPUAllocator: can't allocate memory")."""
    return "can't allocate memory" in str(exc) or "not enough memory" in str(exc)


class TinyLlama:
    """Random-weight Llama-style decoder: `forward` (no cache), or `allocate_cache`, `prefill`, `decode_step`."""

    def __init__(self, config: dict | LlamaShape, dtype: torch.dtype = torch.float32, device: str = "cpu",
                 seed: int = 0, weights: dict[str, Tensor] | None = None) -> None:
        self.shape = config if isinstance(config, LlamaShape) else LlamaShape.from_hf(config)
        self.dtype, self.device, self.seed = dtype, device, seed
        try:
            master = weights if weights is not None else _random_weights(self.shape, seed)
        except RuntimeError as exc:
            raise (MemoryError(f"random weights do not fit: {exc}") if _is_allocation_failure(exc) else exc) from exc
        cast: dict[int, Tensor] = {}  # tied embeddings stay one tensor
        for v in master.values():
            if id(v) not in cast:
                cast[id(v)] = v.to(device=device, dtype=dtype)
        self.w = {k: cast[id(v)] for k, v in master.items()}
        self.k_cache: Tensor | None = None
        self.v_cache: Tensor | None = None
        self.length = 0
        self.last_logits: Tensor | None = None

    def to(self, dtype: torch.dtype) -> TinyLlama:
        """The same model (these weights, rounding included) in another dtype: e.g. float64 for the reference."""
        return TinyLlama(self.shape, dtype, self.device, self.seed, weights=self.w)

    def weight_bytes(self) -> int:
        unique = {v.data_ptr(): v for v in self.w.values()}
        return sum(v.numel() * v.element_size() for v in unique.values())

    # --- building blocks -------------------------------------------------------------------------------------

    def _rms_norm(self, x: Tensor, weight: Tensor) -> Tensor:
        """Normalized in float32 (float64 stays float64), then cast back and scaled, as transformers does."""
        xf = x if x.dtype == torch.float64 else x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.shape.rms_eps)).to(x.dtype) * weight

    def _rope_tables(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos and sin [T, D] at absolute positions, angles in float64 so every dtype rotates by the same angle."""
        d = self.shape.head_dim
        inv_freq = 1.0 / self.shape.rope_theta ** (torch.arange(0, d, 2, device=positions.device,
                                                                dtype=torch.float64) / d)
        angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # [T, D/2]
        angles = torch.cat([angles, angles], -1)
        return angles.cos().to(self.dtype), angles.sin().to(self.dtype)

    @staticmethod
    def _rope(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        """Rotate-half RoPE on [B, heads, T, D]."""
        cos, sin = rope
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    def _qkv(self, i: int, h: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        s, w = self.shape, self.w
        b, t, _ = h.shape
        q, k, v = (F.linear(h, w[f"{i}.w{n}"], w.get(f"{i}.b{n}")) for n in ("q", "k", "v"))
        q = q.view(b, t, s.heads, s.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = k.view(b, t, s.kv_heads, s.head_dim).transpose(1, 2)  # [B, KVH, T, D]
        v = v.view(b, t, s.kv_heads, s.head_dim).transpose(1, 2)
        return self._rope(q, rope), self._rope(k, rope), v

    def _mlp(self, i: int, x: Tensor) -> Tensor:
        w = self.w
        return F.linear(F.silu(F.linear(x, w[f"{i}.w_gate"])) * F.linear(x, w[f"{i}.w_up"]), w[f"{i}.w_down"])

    def _attend(self, i: int, q: Tensor, k: Tensor, v: Tensor, cache_at: int | None) -> Tensor:
        """cache_at None: the T new tokens attend each other causally (no cache). Else K, V are written at
        positions cache_at.. and attention reads the cache: a prompt (cache_at 0) or one decoded token."""
        if cache_at is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        b, t = q.shape[0], q.shape[2]
        self.k_cache[i, :b, :, cache_at:cache_at + t] = k
        self.v_cache[i, :b, :, cache_at:cache_at + t] = v
        keys, values = self.k_cache[i, :b, :, : cache_at + t], self.v_cache[i, :b, :, : cache_at + t]
        # a fresh prompt attends itself causally; one new token attends every cached key
        return F.scaled_dot_product_attention(q, keys, values, is_causal=t > 1, enable_gqa=True)

    def _layer(self, i: int, x: Tensor, rope: tuple[Tensor, Tensor], cache_at: int | None) -> Tensor:
        b, t, _ = x.shape
        q, k, v = self._qkv(i, self._rms_norm(x, self.w[f"{i}.attn_norm"]), rope)
        out = self._attend(i, q, k, v, cache_at)  # [B, H, T, D]
        x = x + F.linear(out.transpose(1, 2).reshape(b, t, -1), self.w[f"{i}.wo"])
        return x + self._mlp(i, self._rms_norm(x, self.w[f"{i}.mlp_norm"]))

    def _logits(self, x: Tensor) -> Tensor:
        return F.linear(self._rms_norm(x, self.w["final_norm"]), self.w["lm_head"])

    # --- public paths ------------------------------------------------------------------------------------------

    def release_cache(self) -> None:
        self.k_cache, self.v_cache, self.length, self.last_logits = None, None, 0, None

    def _check_tokens(self, tokens: Tensor) -> None:
        if tokens.dim() != 2 or tokens.numel() == 0 or tokens.dtype != torch.int64:
            raise ValueError(f"tokens must be a non-empty [batch, seq] int64 tensor, got {tuple(tokens.shape)} "
                             f"{tokens.dtype}")
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.shape.vocab:
            raise ValueError(f"token ids must be in 0..{self.shape.vocab - 1}")

    def forward(self, tokens: Tensor, last: int | None = None) -> Tensor:
        """No-cache forward over [B, T] tokens: logits [B, T, vocab], or of the last `last` positions only."""
        self._check_tokens(tokens)
        rope = self._rope_tables(torch.arange(tokens.shape[1], device=tokens.device))
        x = F.embedding(tokens, self.w["embed"])
        for i in range(self.shape.layers):
            x = self._layer(i, x, rope, None)
        return self._logits(x if last is None else x[:, -last:])

    def allocate_cache(self, max_tokens: int, batch: int = 1) -> int:
        """Preallocate K and V for `max_tokens` positions; returns the cache's bytes."""
        if max_tokens < 1 or batch < 1:
            raise ValueError(f"max_tokens and batch must be >= 1, got {max_tokens}, {batch}")
        s = self.shape
        shape = (s.layers, batch, s.kv_heads, max_tokens, s.head_dim)
        self.k_cache, self.v_cache = None, None  # free an old cache before allocating the new one
        self.k_cache = _allocate(shape, self.dtype, self.device)
        self.v_cache = _allocate(shape, self.dtype, self.device)
        self.length = 0
        return 2 * self.k_cache.numel() * self.k_cache.element_size()

    def prefill(self, tokens: Tensor) -> Tensor:
        """Run the prompt [B, T] into an empty cache; logits of its last position [B, vocab]."""
        self._check_tokens(tokens)
        if self.k_cache is None or tokens.shape[1] > self.k_cache.shape[3] or tokens.shape[0] > self.k_cache.shape[1]:
            raise ValueError("allocate_cache(max_tokens >= prompt length, batch >= prompt batch) before prefill")
        rope = self._rope_tables(torch.arange(tokens.shape[1], device=tokens.device))
        x = F.embedding(tokens, self.w["embed"])
        for i in range(self.shape.layers):
            x = self._layer(i, x, rope, 0)
        self.length = tokens.shape[1]
        self.last_logits = self._logits(x[:, -1])
        return self.last_logits

    def decode_step(self, token: Tensor | None = None) -> Tensor:
        """Append one token per sequence ([B]; default: the greedy pick from the last logits); its logits [B, vocab]."""
        if self.last_logits is None or self.k_cache is None:
            raise ValueError("prefill a prompt before decode_step")
        if self.length >= self.k_cache.shape[3]:
            raise ValueError(f"the cache holds {self.k_cache.shape[3]} positions and all are used")
        token = self.last_logits.argmax(-1) if token is None else token
        self._check_tokens(token[:, None])
        rope = self._rope_tables(torch.tensor([self.length], device=token.device))
        x = F.embedding(token[:, None], self.w["embed"])
        for i in range(self.shape.layers):
            x = self._layer(i, x, rope, self.length)
        self.length += 1
        self.last_logits = self._logits(x[:, -1])
        return self.last_logits
