"""fits_on_device: does a model in a weight format, at a context and batch, fit in an edge device's usable memory?

The answer is the planner's budget (reference_impls.edge.fit_planner): weights (measured effective bits of the
quantization family's format), KV cache, activations, runtime and an optional agent-memory vector index against
the memory one process can use on that device, the largest context that fits, and modeled prefill/decode speed
(hardware model). Everything is modeled — no model is run — and the counters say so in their labels. `check`
holds the plan to an independent recount from the config's shapes in closed form (parameter counts per matrix,
max context solved piecewise rather than searched).
"""

from __future__ import annotations

import dataclasses
import math

from harness.case import Cost, Param
from harness.metrics import declare
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.edge import fit_planner
from reference_impls.hardware.devices import get_device, load_devices
from reference_impls.hardware.transformer import ModelConfig, builtin_configs, load_config

EDGE_DEVICES = tuple(name for name, d in load_devices().items() if d.kind in ("cpu", "soc", "mcu"))
FORMATS = ("bf16", "fp16", "int8", "int4", "int8-g32-sym", "int4-g32-sym", "int4-g128-asym", "nf4", "mxfp4",
           "nvfp4", "int3-g128-sym", "int2-g128-sym")

_M = "modeled by the fit planner"
METRICS = {name: declare(name, unit, direction, f"{label} ({_M})", True) for name, unit, direction, label in (
    ("edge_fit.fits", "1", "higher", "fits in usable memory (1) or not (0)"),
    ("edge_fit.headroom_bytes", "B", "higher", "usable memory left over"),
    ("edge_fit.total_bytes", "B", "lower", "resident bytes"),
    ("edge_fit.usable_bytes", "B", "higher", "usable memory of the device"),
    ("edge_fit.weights_bytes", "B", "lower", "weight bytes"),
    ("edge_fit.kv_bytes", "B", "lower", "KV-cache bytes"),
    ("edge_fit.activation_bytes", "B", "lower", "activation bytes"),
    ("edge_fit.weight_bits", "bit", "lower", "stored bits per quantized weight"),
    ("edge_fit.parameters", "params", "higher", "parameters"),
    ("edge_fit.max_context_tokens", "tokens", "higher", "largest context that fits"),
    ("edge_fit.prefill_tokens_per_s", "tokens/s", "higher", "prefill speed"),
    ("edge_fit.decode_tokens_per_s", "tokens/s", "higher", "decode speed"),
)}


@dataclasses.dataclass(frozen=True)
class Recount:
    """The closed-form figures a plan must reproduce."""

    weights_bytes: float
    kv_bytes: float
    activation_bytes: float
    usable_bytes: float
    max_context: int


def recount(config: ModelConfig, weight_bits: float, usable: float, context: int, batch: int, fixed: float,
            prefill_chunk: int = fit_planner.DEFAULT_PREFILL_CHUNK, act_bytes: int = 4) -> Recount:
    """Independent of hardware.transformer: parameters per matrix of a dense GQA decoder, then bytes; the largest
    context from the two linear pieces of total(n) (activations grow with n up to the prefill chunk, then stop)."""
    c = config
    if c.attention != "gqa" or c.num_experts:
        raise ValueError(f"recount covers dense GQA models only, not {c.name}")
    h, hd = c.hidden_size, c.head_dim
    matrices = c.num_layers * (h * c.num_heads * hd * 2 + h * c.num_kv_heads * hd * 2 + 3 * h * c.intermediate_size)
    biases = (c.num_heads + 2 * c.num_kv_heads) * hd if c.qkv_bias else 0
    rest = c.vocab_size * h * (1 if c.tie_embeddings else 2) + c.num_layers * (2 * h + biases) + h
    weights = (matrices * weight_bits + rest * max(weight_bits, 16)) / 8
    kv_token = 2 * c.num_layers * c.num_kv_heads * hd * 2  # bf16 K and V
    per_token_act = (2 * h + (2 * c.num_heads + 2 * c.num_kv_heads) * hd + 3 * c.intermediate_size) * act_bytes
    logits = batch * c.vocab_size * act_bytes
    base = weights + fixed + logits
    # n <= chunk: base + n·batch·(kv + act) ; n > chunk: base + chunk·batch·act + n·batch·kv
    small = math.floor((usable - base) / (batch * (kv_token + per_token_act)))
    large = math.floor((usable - base - prefill_chunk * batch * per_token_act) / (batch * kv_token))
    best = large if large > prefill_chunk else min(small, prefill_chunk)
    best = max(0, min(best, fit_planner.MAX_CONTEXT_SEARCH))
    return Recount(weights, kv_token * context * batch, batch * min(context, prefill_chunk) * per_token_act + logits,
                   usable, best)


@register_workload
class FitsOnDevice(Workload):
    name = "fits_on_device"
    family = "edge"
    description = ("Fits-on-device planner: weights (quantization-registry effective bits) + KV + activations + "
                   "runtime + vector index vs an edge device's usable memory; headroom, largest context, modeled "
                   "prefill/decode tokens/s. Modeled, not run.")
    sweep_param = "context"
    primary_metric = "edge_fit.max_context_tokens"
    params = (
        Param("model", str, "llama-3.2-1b", choices=builtin_configs(), doc="built-in config (hardware/configs)"),
        Param("format", str, "int4", choices=FORMATS, doc="weight format: a quantization-registry name or int8/int4"),
        Param("device", str, "raspberry-pi-5-8gb", choices=EDGE_DEVICES, doc="device profile"),
        Param("context", int, 4096, minimum=1, doc="tokens per sequence"),
        Param("batch", int, 1, minimum=1, doc="sequences"),
        Param("index_mb", float, 0.0, minimum=0.0, doc="agent-memory vector index held beside the model (MB)"),
    )
    contract_params = {"model": "qwen2.5-0.5b", "context": 2048}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        """The config and device profile: a plan has no random inputs (the seed changes nothing)."""
        return {"config": load_config(params["model"]), "device": get_device(params["device"])}

    def reference(self, inputs: dict, params: dict) -> Recount:
        config, device = inputs["config"], inputs["device"]
        bits = fit_planner.effective_weight_bits(fit_planner.canonical_format(params["format"]), config.hidden_size)
        fixed = fit_planner.RUNTIME_OVERHEAD_BYTES + params["index_mb"] * 1e6
        return recount(config, bits, fit_planner.usable_bytes(device), params["context"], params["batch"], fixed)

    def cost(self, params: dict, impl: str) -> Cost:
        """The planner's own arithmetic (a ~26-step search of a ~100-operation sum), not the model's."""
        steps = math.log2(fit_planner.MAX_CONTEXT_SEARCH)
        return Cost(flops=100 * steps, bytes={"dram": 8 * 100 * steps}, dtype="float64", hardware_bound=False)

    def check(self, output: fit_planner.FitPlan, reference: Recount, baseline_error: float | None) -> Check:
        """Byte terms within 1e-9 relative of the recount, the largest context exact, modeled speeds positive."""
        pairs = [(output.weights_bytes, reference.weights_bytes), (output.kv_bytes, reference.kv_bytes),
                 (output.activation_bytes, reference.activation_bytes), (output.usable_bytes, reference.usable_bytes)]
        error = max(abs(a - b) / max(abs(b), 1.0) for a, b in pairs)
        error += abs(output.max_context - reference.max_context)
        speeds = output.prefill_tokens_per_s > 0 and output.decode_tokens_per_s > 0
        return Check(error <= 1e-9 and speeds, error, 1e-9,
                     "byte terms equal the closed-form recount (rel 1e-9); max context exact; speeds > 0")

    def quality(self, output: fit_planner.FitPlan, reference: Recount) -> dict[str, float]:
        return {}

    def counters(self, output: fit_planner.FitPlan, params: dict) -> dict[str, float]:
        p = output
        return {"edge_fit.fits": float(p.fits), "edge_fit.headroom_bytes": p.headroom_bytes,
                "edge_fit.total_bytes": p.total_bytes, "edge_fit.usable_bytes": p.usable_bytes,
                "edge_fit.weights_bytes": p.weights_bytes, "edge_fit.kv_bytes": p.kv_bytes,
                "edge_fit.activation_bytes": p.activation_bytes, "edge_fit.weight_bits": p.weight_bits,
                "edge_fit.parameters": float(p.parameters), "edge_fit.max_context_tokens": float(p.max_context),
                "edge_fit.prefill_tokens_per_s": p.prefill_tokens_per_s,
                "edge_fit.decode_tokens_per_s": p.decode_tokens_per_s}

    def wrong_answers(self, output: fit_planner.FitPlan) -> list[fit_planner.FitPlan]:
        return [dataclasses.replace(output, weights_bytes=output.weights_bytes * 1.01),
                dataclasses.replace(output, max_context=output.max_context + 1),
                dataclasses.replace(output, kv_bytes=output.kv_bytes * 2 + 1)]

    def input_bytes(self, inputs: dict) -> int:
        return 0


@implementation("fits_on_device", "planner", devices=("cpu",), baseline=True)
def planner(inputs: dict, params: dict) -> fit_planner.FitPlan:
    """fit_planner.plan: budget, headroom, binary-searched largest context, roofline tokens/s."""
    return fit_planner.plan(inputs["config"], inputs["device"], params["format"], params["context"], params["batch"],
                            index_bytes=params["index_mb"] * 1e6)
