"""Does a model fit on an edge device? Weights + KV cache + activations + runtime + vector index vs usable memory.

WHY: on phones and boards, capacity — not compute — decides what runs at all. This planner adds up what a
llama.cpp-style runtime keeps resident and compares it with the memory one process can really use (not the
marketed capacity), then finds the largest context that fits and models prefill/decode speed with the
existing hardware model. Every piece is reused: weight bytes per format come from the quantization family's
format registry (measured effective bits of a real quantized sample), bytes per parameter group from
`hardware.transformer`, KV from `hardware.kv_capacity`, speed from `hardware.llm_estimate`.

Memory terms (bytes):
  weights     transformer.weight_bytes at the format's effective bits (embeddings / LM head / norms stay >= 16 bit)
  kv          kv_capacity.kv_cache_bytes(context, batch) at kv_bits
  activations one forward pass over a prompt chunk of min(context, prefill_chunk) tokens per sequence, with a
              fused attention (no T x T score matrix): per token the residual and normed hidden state (2h),
              q, k, v and the attention output ((2·heads + 2·kv_heads)·head_dim), and the FFN's gate, up and
              product (3·intermediate); plus the last position's logits (vocab) per sequence; all at
              `activation_bytes_per_value` (4: llama.cpp computes activations in float32 on CPU)
  runtime     a constant for the process itself (code, graph, thread pools, tokenizer)
  index       an optional agent-memory vector index, resident beside the model
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from reference_impls.hardware import kv_capacity, llm_estimate, transformer
from reference_impls.hardware.devices import Device

# Short names for the formats the edge tables use; any name of the quantization registry is accepted too.
FORMAT_SHORTHANDS = {"int8": "int8-channel-sym", "int4": "int4-g128-sym"}
SAMPLE_ROWS = 16  # rows of the sample weight quantized to measure a format's effective bits
RUNTIME_OVERHEAD_BYTES = 200e6
RUNTIME_OVERHEAD_SOURCE = ("estimate: a llama.cpp-style process beyond its weights, KV and compute buffers "
                           "(binary, ggml contexts, thread pools, tokenizer vocabulary) is ~100-300 MB RSS")
DEFAULT_PREFILL_CHUNK = 512  # llama.cpp's default n_ubatch: the prompt is processed this many tokens at a time
MAX_CONTEXT_SEARCH = 1 << 26  # the largest context the search tries (64 Mi tokens)


@dataclass(frozen=True)
class UsableRule:
    """The share of a device's main memory one process can hold: capacity x fraction - reserve."""

    fraction: float
    reserve_bytes: float
    source: str


# Device-name prefixes -> how much memory one inference process can really use. All estimates.
USABLE_RULES: dict[str, UsableRule] = {
    "raspberry-pi-5": UsableRule(1.0, 0.5e9, "estimate: Raspberry Pi OS (64-bit, desktop) holds ~0.4-0.6 GB after "
                                             "boot; the rest is available to one process"),
    "jetson-orin-nano": UsableRule(1.0, 1.5e9, "estimate: JetPack 6 Ubuntu desktop plus the CUDA context hold "
                                               "~1.2-1.8 GB of the shared LPDDR5"),
    "snapdragon": UsableRule(0.5, 0.0, "estimate: Android keeps the OS, system services and cached apps resident; "
                                       "one foreground app holds about half of RAM before the low-memory killer acts"),
    "apple-m": UsableRule(0.75, 0.0, "estimate: Metal's recommendedMaxWorkingSetSize is ~75% of unified memory "
                                     "(llama.cpp's ggml_metal_init log on 16 GB Macs); GPU buffers beyond it fail"),
}
DEFAULT_RULE = UsableRule(0.9, 0.0, "estimate: placement.place's default usable fraction (0.9 of capacity)")


def usable_rule(device: Device) -> UsableRule:
    """The rule for `device`: the longest matching name prefix, else DEFAULT_RULE."""
    matches = [prefix for prefix in USABLE_RULES if device.name.startswith(prefix)]
    return USABLE_RULES[max(matches, key=len)] if matches else DEFAULT_RULE


def usable_bytes(device: Device) -> float:
    """Main-tier capacity x fraction - reserve (never negative)."""
    rule = usable_rule(device)
    capacity = device.tier(device.main_tier).capacity_bytes.value
    return max(0.0, capacity * rule.fraction - rule.reserve_bytes)


def canonical_format(name: str) -> str:
    """A registry format name from a short one (int4 -> int4-g128-sym); ValueError for unknown names."""
    from reference_impls.kernels.quant.formats import get_format

    return get_format(FORMAT_SHORTHANDS.get(name, name)).name


@functools.lru_cache(maxsize=256)
def effective_weight_bits(fmt: str, in_features: int) -> float:
    """Stored bits per weight of `fmt` on a [SAMPLE_ROWS, in_features] seeded bf16 matrix: codes, scales and zero
    points all counted (QTensor.effective_bits). Per-channel formats depend on in_features, hence the argument."""
    import torch

    from reference_impls.kernels.quant.formats import get_format, quantize

    if in_features < 1:
        raise ValueError(f"in_features must be >= 1, got {in_features}")
    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(SAMPLE_ROWS, in_features, generator=generator) * 0.02).to(torch.bfloat16)
    calibration = None
    if get_format(fmt).needs_calibration:
        calibration = torch.randn(64, in_features, generator=generator).to(torch.bfloat16)
    return quantize(weight, canonical_format(fmt), calibration).effective_bits


def precision_for(config: transformer.ModelConfig, fmt: str, kv_bits: float = 16,
                  activation_bytes_per_value: int = 4) -> transformer.Precision:
    """A transformer.Precision whose weight width is the format's measured effective bits."""
    return transformer.Precision(weight_bits=effective_weight_bits(canonical_format(fmt), config.hidden_size),
                                 kv_bits=kv_bits, activation_bytes=activation_bytes_per_value)


def activation_bytes(config: transformer.ModelConfig, context: int, batch: int,
                     prefill_chunk: int = DEFAULT_PREFILL_CHUNK, bytes_per_value: int = 4) -> float:
    """Peak live activations of one forward pass over a prompt chunk (module docstring)."""
    if min(context, batch, prefill_chunk, bytes_per_value) < 1:
        raise ValueError(f"context, batch, prefill_chunk and bytes_per_value must be >= 1, got {context}, {batch}, "
                         f"{prefill_chunk}, {bytes_per_value}")
    c = config
    per_token = 2 * c.hidden_size + (2 * c.num_heads + 2 * c.num_kv_heads) * c.head_dim + 3 * c.intermediate_size
    tokens = batch * min(context, prefill_chunk)
    return float((tokens * per_token + batch * c.vocab_size) * bytes_per_value)


def vector_index_bytes(vectors: int, dim: int, bytes_per_value: int = 4, overhead_factor: float = 1.0) -> float:
    """An agent memory store's flat vector index: vectors x dim x bytes x overhead (graph links, ids...)."""
    if vectors < 0 or dim < 1 or bytes_per_value < 1 or overhead_factor < 1:
        raise ValueError("vectors >= 0, dim >= 1, bytes_per_value >= 1 and overhead_factor >= 1 are required; got "
                         f"{vectors}, {dim}, {bytes_per_value}, {overhead_factor}")
    return float(vectors * dim * bytes_per_value * overhead_factor)


@dataclass(frozen=True)
class FitPlan:
    """The memory budget of one configuration on one device, and what it implies."""

    model: str
    device: str
    weight_format: str
    weight_bits: float
    context: int
    batch: int
    parameters: int
    usable_bytes: float
    weights_bytes: float
    kv_bytes: float
    activation_bytes: float
    runtime_bytes: float
    index_bytes: float
    max_context: int  # largest context per sequence that fits at this batch (0: not even one token)
    compute_dtype: str
    prefill_tokens_per_s: float  # modeled (roofline per operator class on the device profile)
    decode_tokens_per_s: float  # modeled, at `context` tokens of KV per sequence
    usable_source: str

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.kv_bytes + self.activation_bytes + self.runtime_bytes + self.index_bytes

    @property
    def headroom_bytes(self) -> float:
        """usable - total: negative when it does not fit."""
        return self.usable_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.headroom_bytes >= 0


def compute_dtype(device: Device, weight_bits: float) -> str:
    """The arithmetic a runtime uses: int8 dot products for <= 8-bit weights on a CPU (llama.cpp's quantized
    kernels), else half precision (GPUs and NPUs dequantize to it); the device's fallbacks apply."""
    return "int8" if device.kind == "cpu" and weight_bits <= 9 else "bfloat16"


def _total(config: transformer.ModelConfig, precision: transformer.Precision, context: int, batch: int,
           prefill_chunk: int, fixed: float) -> float:
    return (transformer.weight_bytes(config, precision)["total"]
            + kv_capacity.kv_cache_bytes(config, precision, context, batch)
            + activation_bytes(config, context, batch, prefill_chunk, precision.activation_bytes) + fixed)


def largest_context(config: transformer.ModelConfig, precision: transformer.Precision, budget: float, batch: int,
                    prefill_chunk: int = DEFAULT_PREFILL_CHUNK, fixed_bytes: float = 0.0) -> int:
    """The largest context (tokens per sequence, <= MAX_CONTEXT_SEARCH) whose total fits in `budget`; 0 when even
    one token does not. Binary search: the total never decreases with context."""
    def fits(n: int) -> bool:
        return _total(config, precision, n, batch, prefill_chunk, fixed_bytes) <= budget

    if not fits(1):
        return 0
    low, high = 1, MAX_CONTEXT_SEARCH
    if fits(high):
        return high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def plan(config: transformer.ModelConfig, device: Device, weight_format: str, context: int, batch: int = 1,
         kv_bits: float = 16, index_bytes: float = 0.0, prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
         runtime_bytes: float = RUNTIME_OVERHEAD_BYTES, activation_bytes_per_value: int = 4) -> FitPlan:
    """The FitPlan of `config` in `weight_format` with `batch` sequences of `context` tokens on `device`."""
    if context < 1 or batch < 1:
        raise ValueError(f"context and batch must be >= 1, got context={context}, batch={batch}")
    if index_bytes < 0 or runtime_bytes < 0:
        raise ValueError(f"index_bytes and runtime_bytes must be >= 0, got {index_bytes}, {runtime_bytes}")
    fmt = canonical_format(weight_format)
    precision = precision_for(config, fmt, kv_bits, activation_bytes_per_value)
    budget = usable_bytes(device)
    dtype = compute_dtype(device, precision.weight_bits)
    prefill = llm_estimate.estimate_phase(transformer.prefill_cost(config, precision, context, batch), device, dtype)
    decode = llm_estimate.estimate_phase(transformer.decode_cost(config, precision, context, batch), device, dtype)
    return FitPlan(
        model=config.name, device=device.name, weight_format=fmt, weight_bits=precision.weight_bits,
        context=context, batch=batch, parameters=transformer.parameter_count(config)["total"], usable_bytes=budget,
        weights_bytes=transformer.weight_bytes(config, precision)["total"],
        kv_bytes=kv_capacity.kv_cache_bytes(config, precision, context, batch),
        activation_bytes=activation_bytes(config, context, batch, prefill_chunk, activation_bytes_per_value),
        runtime_bytes=runtime_bytes, index_bytes=index_bytes,
        max_context=largest_context(config, precision, budget, batch, prefill_chunk, runtime_bytes + index_bytes),
        compute_dtype=device.resolve_dtype(dtype),
        prefill_tokens_per_s=context * batch / prefill.latency_s, decode_tokens_per_s=batch / decode.latency_s,
        usable_source=usable_rule(device).source)
