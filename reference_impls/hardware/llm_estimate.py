"""Time to first token and time per output token of a transformer on a device.

Each operator class of the transformer cost model (projections, attention core, FFN, LM head) goes through
the roofline on its own and the times add up: operators run one after another, each bound by compute or by
memory, so a whole-pass roofline would hide a memory-bound decode attention behind compute-bound GEMMs.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_impls.hardware import kv_capacity, transformer
from reference_impls.hardware.devices import Device
from reference_impls.hardware.roofline import roofline


@dataclass(frozen=True)
class PhaseEstimate:
    phase: str
    latency_s: float
    flops: float
    bytes: float
    bound: str  # the bound of the operator class that takes the most time
    by_operator: tuple[tuple[str, float, str], ...]  # (operator, seconds, bound)

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / self.bytes


@dataclass(frozen=True)
class ServingEstimate:
    device: str
    context: int
    batch: int
    ttft: PhaseEstimate  # prefill of `context` prompt tokens per sequence
    tpot: PhaseEstimate  # one decode step with `context` tokens of KV per sequence
    kv_bytes_per_token: float
    weight_bytes: float
    max_concurrency: int  # sequences of `context` tokens that fit beside the weights in main memory
    max_context: int  # tokens of one sequence that fit beside the weights
    attention_decode_intensity: float
    ffn_intensity: float


def estimate_phase(cost: transformer.PhaseCost, device: Device, dtype: str = "bfloat16") -> PhaseEstimate:
    """Sum over operator classes of the roofline time (one launch per operator per layer)."""
    parts = []
    for op in cost.layers:
        r = roofline(device, op.flops, {"dram": op.bytes}, dtype, launches=op.repeats)
        parts.append((op.name, r.latency_s, r.bound))
    slowest = max(parts, key=lambda p: p[1])
    return PhaseEstimate(cost.phase, sum(p[1] for p in parts), cost.flops, cost.bytes, slowest[2], tuple(parts))


def estimate_serving(config: transformer.ModelConfig, precision: transformer.Precision, device: Device,
                     context: int, batch: int = 1, dtype: str = "bfloat16") -> ServingEstimate:
    memory = device.tier(device.main_tier).capacity_bytes.value
    return ServingEstimate(
        device=device.name, context=context, batch=batch,
        ttft=estimate_phase(transformer.prefill_cost(config, precision, context, batch), device, dtype),
        tpot=estimate_phase(transformer.decode_cost(config, precision, context, batch), device, dtype),
        kv_bytes_per_token=transformer.kv_bytes_per_token(config, precision),
        weight_bytes=transformer.weight_bytes(config, precision)["total"],
        max_concurrency=kv_capacity.max_concurrency(config, precision, memory, context),
        max_context=kv_capacity.max_context(config, precision, memory, batch),
        attention_decode_intensity=transformer.attention_decode_intensity(config, precision, context),
        ffn_intensity=transformer.ffn_intensity(config, precision, batch),
    )


PRECISIONS = {  # names the CLI accepts for weights and KV
    "bf16": dict(weight_bits=16), "fp16": dict(weight_bits=16), "fp8": dict(weight_bits=8), "int8": dict(weight_bits=8),
    "int4": dict(weight_bits=4), "int4-g128": dict(weight_bits=4, group_size=128),
}
KV_BITS = {"bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int4": 4}


def precision(weights: str = "bf16", kv: str = "bf16") -> transformer.Precision:
    """A Precision from CLI names; unknown names raise ValueError listing the allowed ones."""
    if weights not in PRECISIONS:
        raise ValueError(f"weight format {weights!r} not known; allowed: {', '.join(PRECISIONS)}")
    if kv not in KV_BITS:
        raise ValueError(f"KV format {kv!r} not known; allowed: {', '.join(KV_BITS)}")
    return transformer.Precision(**PRECISIONS[weights], kv_bits=KV_BITS[kv])
