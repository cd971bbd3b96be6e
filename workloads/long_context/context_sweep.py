"""Context sweep: time to first token, time per output token, peak memory and KV bytes of a small Llama-style
decoder as the prompt grows, until the device runs out of memory.

One call = allocate the KV cache for context + decode_tokens positions, prefill the prompt, then decode
`decode_tokens` tokens one at a time (teacher-forced: the next input token is given, so the float64 reference
sees the same sequence). The harness times the whole call; inside it the call also times the prefill
(`context_sweep.ttft_s`) and the mean decode step (`context_sweep.tpot_s`) with perf_counter around each phase
(synchronizing CUDA first), and reports them, and the cache's bytes, as counted metrics of the one call used for
the peak-memory measurement: one sample each, not a median. A cache or weight allocation that fails raises
MemoryError or torch's OutOfMemoryError, which the harness records as status `oom`.

Weights are random (reference_impls.kernels.tiny_llama, shapes from a Hugging Face config): timings and memory
depend on the shape only. `no_cache` recomputes the whole sequence for every new token, the cost a KV cache
removes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from harness.case import Cost, Param
from harness.metrics import declare
from harness.registry import Check, Workload, implementation, register_workload, rel_l2_error
from reference_impls.hardware.transformer import (
    ModelConfig,
    Precision,
    builtin_configs,
    decode_cost,
    prefill_cost,
)
from reference_impls.kernels.tiny_llama import LlamaShape, TinyLlama, builtin_config, random_tokens

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TORCH_CALLS_PER_LAYER = 50  # torch calls one layer makes per forward (norms, projections, RoPE, cache, MLP): approx.

TTFT = declare("context_sweep.ttft_s", "s", "lower", "time to first token (prefill), one call")
TPOT = declare("context_sweep.tpot_s", "s", "lower", "time per output token (mean decode step), one call")
KV_BYTES = declare("context_sweep.kv_cache_bytes", "B", "lower", "KV cache allocated for the call", True)


@dataclass(frozen=True)
class SweepOutput:
    """Logits at the last prompt position and after each decoded token [decode_tokens + 1, vocab], and timings."""

    logits: torch.Tensor
    ttft_s: float
    tpot_s: float
    kv_cache_bytes: int


def model_config(shape: LlamaShape, name: str) -> ModelConfig:
    """The analytic model's view of the same shape (for FLOPs and bytes)."""
    return ModelConfig(name=name, hidden_size=shape.hidden, num_layers=shape.layers, num_heads=shape.heads,
                       num_kv_heads=shape.kv_heads, head_dim=shape.head_dim, intermediate_size=shape.intermediate,
                       vocab_size=shape.vocab, tie_embeddings=shape.tie_embeddings, attention="gqa",
                       qkv_bias=shape.qkv_bias)


@register_workload
class ContextSweep(Workload):
    name = "context_sweep"
    family = "long_context"
    description = ("Prefill a prompt, then decode a few tokens, on a random-weight Llama-style decoder with a "
                   "preallocated KV cache: TTFT, TPOT, peak memory and KV bytes against context length.")
    sweep_param = "context"
    params = (
        Param("config", str, "tiny", choices=("tiny", *builtin_configs()), doc="model shape (HF config)"),
        Param("context", int, 1024, minimum=1, doc="prompt tokens"),
        Param("decode_tokens", int, 8, minimum=1, doc="tokens decoded after the prompt"),
        Param("dtype", str, "float32", choices=tuple(DTYPES)),
    )
    contract_params = {"context": 96, "decode_tokens": 3}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        model = TinyLlama(builtin_config(params["config"]), DTYPES[params["dtype"]], device, seed)
        tokens = random_tokens(params["context"] + params["decode_tokens"], model.shape.vocab, seed + 1, device)
        return {"model": model, "tokens": tokens}

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        """The same weights in float64, no cache: logits at the last prompt position and each decoded one."""
        reference_model = inputs["model"].to(torch.float64)
        return reference_model.forward(inputs["tokens"], last=params["decode_tokens"] + 1)[0]

    def cost(self, params: dict, impl: str) -> Cost:
        """transformer.py's counts: prefill of the prompt plus one decode step per new token. no_cache executes a
        full prefill over the sequence so far for each new token instead."""
        shape = LlamaShape.from_hf(builtin_config(params["config"]))
        config = model_config(shape, params["config"])
        element = torch.finfo(DTYPES[params["dtype"]]).bits // 8
        precision = Precision(weight_bits=8 * element, kv_bits=8 * element, activation_bytes=element)
        t, d = params["context"], params["decode_tokens"]
        phases = [prefill_cost(config, precision, t)] + [decode_cost(config, precision, t + j + 1) for j in range(d)]
        executed = phases if impl == "kv_cache" else \
            [prefill_cost(config, precision, t)] + [prefill_cost(config, precision, t + j + 1) for j in range(d)]
        kv = shape.kv_bytes_per_token(element) * (t + d) if impl == "kv_cache" else 0
        weights = shape.parameter_count() * element
        return Cost(flops=sum(p.flops for p in phases), bytes={"dram": sum(p.bytes for p in phases)},
                    footprint_bytes=float(weights + kv), dtype=params["dtype"],
                    traffic_bytes={"dram": sum(p.bytes for p in executed)},
                    launches=(d + 1) * shape.layers * TORCH_CALLS_PER_LAYER,
                    executed_flops=sum(p.flops for p in executed))

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        try:
            LlamaShape.from_hf(builtin_config(params["config"]))
        except ValueError as exc:
            return str(exc)
        return None

    def check(self, output: SweepOutput, reference: torch.Tensor, baseline_error: float | None) -> Check:
        return super().check(output.logits, reference, baseline_error)

    def quality(self, output: SweepOutput, reference: torch.Tensor) -> dict[str, float]:
        return {"quality.rel_l2_error": rel_l2_error(output.logits, reference)}

    def counters(self, output: SweepOutput, params: dict) -> dict[str, float]:
        return {TTFT.name: output.ttft_s, TPOT.name: output.tpot_s, KV_BYTES.name: float(output.kv_cache_bytes)}

    def wrong_answers(self, output: SweepOutput) -> list[SweepOutput]:
        return [dataclasses.replace(output, logits=wrong) for wrong in super().wrong_answers(output.logits)]

    def input_bytes(self, inputs: dict) -> int:
        return inputs["tokens"].numel() * 8 + inputs["model"].weight_bytes()


def _synchronizer(device: torch.device) -> object:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


@implementation("context_sweep", "kv_cache", baseline=True)
def kv_cache(inputs: dict, params: dict) -> SweepOutput:
    """Preallocated KV cache: one prefill, then one decode step per token reading the cache."""
    model, tokens = inputs["model"], inputs["tokens"]
    t, d = params["context"], params["decode_tokens"]
    sync = _synchronizer(tokens.device)
    try:
        kv_bytes = model.allocate_cache(t + d)
        sync()
        start = time.perf_counter()
        logits = [model.prefill(tokens[:, :t])]
        sync()
        prefilled = time.perf_counter()
        logits += [model.decode_step(tokens[:, t + j]) for j in range(d)]
        sync()
        done = time.perf_counter()
    finally:
        model.release_cache()  # every call allocates its own cache: the peak-memory overhead includes it
    return SweepOutput(torch.stack(logits, 1)[0], prefilled - start, (done - prefilled) / d, kv_bytes)


@implementation("context_sweep", "no_cache")
def no_cache(inputs: dict, params: dict) -> SweepOutput:
    """No KV cache: every new token reruns the whole sequence so far (quadratic decode)."""
    model, tokens = inputs["model"], inputs["tokens"]
    t, d = params["context"], params["decode_tokens"]
    sync = _synchronizer(tokens.device)
    sync()
    start = time.perf_counter()
    logits = [model.forward(tokens[:, :t], last=1)[:, -1]]
    sync()
    prefilled = time.perf_counter()
    logits += [model.forward(tokens[:, : t + j + 1], last=1)[:, -1] for j in range(d)]
    sync()
    done = time.perf_counter()
    return SweepOutput(torch.stack(logits, 1)[0], prefilled - start, (done - prefilled) / d, 0)
