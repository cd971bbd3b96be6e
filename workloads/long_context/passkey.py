"""Passkey retrieval on a real model (SmolLM2-135M-Instruct, CPU) with a compressed KV cache.

A five-digit key hidden at a chosen depth in filler; the prompt is prefilled, every layer's cache is compressed
by one policy, and the model decodes its answer from what was kept. Accuracy is the measurement: a wrong answer
is a result, not a failed case, so `check` only asks that the run completed and its answer is self-consistent.

  quality   quality.passkey_correct: 1 when the first number in the answer is the key, digit for digit
  counted   prefill and decode latency measured inside the call, and the KV bytes: the full cache after
            prefill, what the compressed cache really holds (allocated) and what the policy claims
  policies  full, streaming_llm, h2o, snapkv, tova, knorm (reference_impls/kernels/kv_compression.py, compacted
            into smaller tensors) and kivi (reference_impls/kernels/kv_quant.py, quantize -> dequantize: it
            claims bits/8 but the model attends on a float32 copy, so it saves memory only on paper)

Not here: duo_attention, whose retrieval heads keep every token while streaming heads keep a window: per-head
lengths do not fit transformers' one-tensor-per-layer cache, and its head mask comes from an optimization this
suite does not run (the synthetic kv_compression workload covers it).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from harness import metrics
from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.hardware import transformer as tf
from reference_impls.models import smollm2
from reference_impls.models.passkey import make_passkey_prompt, passkey_correct
from workloads.long_context.kv_metrics import KV_ALLOCATED, KV_CLAIMED

MAX_CONTEXT = 8192  # SmolLM2's max_position_embeddings
MAX_NEW_TOKENS = 8  # " 12345." is 7 tokens
POLICIES = ("full", "streaming_llm", "h2o", "snapkv", "tova", "knorm", "kivi")
WHOLE_CACHE_POLICIES = ("full", "kivi")  # keep every token: budget must be 1.0
SCORE_POLICIES = ("h2o", "snapkv", "tova")
OPS_PER_LAYER = 25  # torch calls per decoder layer in one forward (norms, projections, RoPE, attention, MLP)

CORRECT = metrics.declare("quality.passkey_correct", "1", "higher", "passkey answered exactly (0/1)",
                          deterministic=True)
PREFILL = metrics.declare("passkey.prefill_s", "s", "lower", "prefill up to the first token, inside the call")
DECODE = metrics.declare("passkey.decode_s_per_token", "s", "lower", "greedy decode step from the compressed cache")
FULL = metrics.declare("passkey.kv_full_bytes", "B", "lower", "KV bytes of the uncompressed cache",
                       deterministic=True)
CLAIMED, ALLOCATED = KV_CLAIMED, KV_ALLOCATED  # the synthetic kv_compression workload's definitions


@dataclasses.dataclass(frozen=True)
class PasskeyAnswer:
    """One run: the decoded answer, whether it is the key, and what the run measured and held."""

    answer: str | None
    correct: bool
    generated_tokens: int
    prompt_tokens: int
    kept_tokens: int  # per layer and KV head after compression
    prefill_s: float
    compress_s: float
    decode_s_per_token: float
    kv_full_bytes: int
    kv_allocated_bytes: int
    kv_claimed_bytes: float


@register_workload
class PasskeyRetrieval(Workload):
    name = "passkey_retrieval"
    family = "long_context"
    description = ("Passkey retrieval with SmolLM2-135M-Instruct on the CPU after compressing every layer's KV "
                   "cache (StreamingLLM, H2O, SnapKV, TOVA, Knorm, KIVI): accuracy, latency, and allocated vs "
                   "claimed KV bytes.")
    sweep_param = "context_tokens"
    primary_metric = CORRECT.name
    params = (
        Param("context_tokens", int, 1024, minimum=128, doc=f"prompt tokens, at most {MAX_CONTEXT}"),
        Param("depth", float, 0.5, minimum=0.0, doc="fraction of the filler before the needle, in [0, 1]"),
        Param("policy", str, "full", choices=POLICIES),
        Param("budget", float, 1.0, choices=(0.125, 0.25, 0.5, 0.75, 1.0), doc="tokens kept / prompt tokens"),
        Param("kivi_bits", int, 2, choices=(2, 4)),
        Param("window", int, 64, minimum=1, doc="observation window: the last W prompt tokens whose attention the "
              "score policies read (64 = SnapKV's default; the question and answer primer are the last 10)"),
        Param("seed", int, 0, minimum=0, doc="draw of key and filler, combined with the run's seed"),
    )
    contract_params = {"context_tokens": 256}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        _validate(params)
        tokenizer = smollm2.load_smollm2().tokenizer
        prompt = make_passkey_prompt(tokenizer, params["context_tokens"], params["depth"],
                                     seed=seed * 1_000_003 + params["seed"])
        return {"prompt_ids": torch.tensor(prompt.token_ids, dtype=torch.long, device=device),
                "passkey": torch.tensor([int(prompt.passkey)], dtype=torch.long, device=device)}

    def reference(self, inputs: dict, params: dict) -> str:
        return str(int(inputs["passkey"][0]))

    def check(self, output: PasskeyAnswer, reference: str, baseline_error: float | None) -> Check:
        """Completed and self-consistent: decoding ran (an empty answer counts), timings and bytes are real, the
        kept cache is no larger than the full one, and `correct` agrees with scoring the answer against the key.
        Whether the key is right is the quality metric, never a failure."""
        problem = _answer_problem(output, reference)
        rule = "run completed: answer decoded, finite timings, positive bytes, correctness flag agrees with the key"
        if problem:
            return Check(False, 1.0, 0.0, f"{rule}; {problem}")
        return Check(True, 0.0, 0.0, rule)

    def quality(self, output: PasskeyAnswer, reference: str) -> dict[str, float]:
        return {CORRECT.name: float(passkey_correct(output.answer, reference))}

    def counters(self, output: PasskeyAnswer, params: dict) -> dict[str, float]:
        return {PREFILL.name: output.prefill_s, DECODE.name: output.decode_s_per_token,
                FULL.name: float(output.kv_full_bytes), ALLOCATED.name: float(output.kv_allocated_bytes),
                CLAIMED.name: float(output.kv_claimed_bytes)}

    def wrong_answers(self, output: PasskeyAnswer) -> list:
        """No answer, a record missing its fields, a flipped correctness flag, and a NaN timing."""
        return [dataclasses.replace(output, answer=None, generated_tokens=0),
                {"answer": output.answer},
                dataclasses.replace(output, correct=not output.correct),
                dataclasses.replace(output, prefill_s=math.nan)]

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        missing = smollm2.missing_reason()
        if missing:
            return f"SmolLM2 is not available: {missing}"
        if params["context_tokens"] > MAX_CONTEXT:
            return f"context_tokens {params['context_tokens']} exceeds SmolLM2's {MAX_CONTEXT}-token context"
        if params["policy"] in WHOLE_CACHE_POLICIES and params["budget"] != 1.0:
            return f"policy {params['policy']!r} keeps every token: budget must be 1.0"
        return None

    def cost(self, params: dict, impl: str) -> Cost:
        """Prefill of the prompt, then MAX_NEW_TOKENS - 1 decode steps over the kept tokens, float32 weights
        and KV (the GGUF is dequantized on load). Compression reads the full cache and writes what it keeps;
        score policies also write and read the window's attention maps. The footprint is weights + full KV
        (+ maps): compression comes after prefill, so the peak holds the whole cache."""
        config = tf.load_config(smollm2.CONFIG_NAME)
        precision = tf.Precision(weight_bits=32, kv_bits=32, activation_bytes=4)
        length = params["context_tokens"]
        kept = _kept_tokens(params)
        per_token = tf.kv_bytes_per_token(config, precision)
        phases = [tf.prefill_cost(config, precision, length)]
        phases += [tf.decode_cost(config, precision, kept + step + 1) for step in range(MAX_NEW_TOKENS - 1)]
        maps = 0.0
        if params["policy"] in SCORE_POLICIES:
            maps = config.num_layers * config.num_heads * min(params["window"], length) * length * 4.0
        compression = length * per_token + kept * per_token * (1 if params["policy"] != "kivi" else 2)
        weights = tf.weight_bytes(config, precision)["total"]
        forwards = len(phases) + (1 if params["policy"] in SCORE_POLICIES else 0)
        return Cost(flops=sum(p.flops for p in phases), bytes={"dram": sum(p.bytes for p in phases)},
                    footprint_bytes=weights + length * per_token + maps, dtype="float32",
                    traffic_bytes={"dram": sum(p.bytes for p in phases) + compression + 2 * maps},
                    launches=forwards * (config.num_layers * OPS_PER_LAYER + 6))


def _validate(params: dict) -> None:
    if not 0.0 <= params["depth"] <= 1.0:
        raise ValueError(f"depth must be in [0, 1] (fraction of the filler before the needle), got {params['depth']}")
    if params["context_tokens"] > MAX_CONTEXT:
        raise ValueError(f"context_tokens must be <= {MAX_CONTEXT} (SmolLM2's context), got {params['context_tokens']}")


def _kept_tokens(params: dict) -> int:
    from reference_impls.models.cache_policies import budget_tokens

    if params["policy"] in WHOLE_CACHE_POLICIES:
        return params["context_tokens"]
    return budget_tokens(params["budget"], params["context_tokens"])


def _answer_problem(output: object, reference: str) -> str | None:
    if not isinstance(output, PasskeyAnswer):
        return f"expected a PasskeyAnswer, got {type(output).__name__}"
    if output.answer is None or not 0 <= output.generated_tokens <= MAX_NEW_TOKENS:
        return "no answer was decoded"  # an empty answer (end-of-text first) is the model's answer, not a failure
    timings = (output.prefill_s, output.compress_s, output.decode_s_per_token)
    if not all(math.isfinite(t) and t >= 0 for t in timings):
        return f"timings must be finite and >= 0, got {timings}"
    if output.kv_full_bytes <= 0 or output.kv_allocated_bytes <= 0 or not output.kv_claimed_bytes > 0:
        return "KV byte counts must be positive"
    if output.kv_allocated_bytes > output.kv_full_bytes:
        return f"compressed cache holds {output.kv_allocated_bytes} B, more than the full {output.kv_full_bytes} B"
    if output.correct != passkey_correct(output.answer, reference):
        return f"correct={output.correct} disagrees with scoring {output.answer!r} against the key"
    return None


@implementation("passkey_retrieval", "smollm2_cpu", devices=("cpu",), baseline=True)
def smollm2_cpu(inputs: dict, params: dict) -> PasskeyAnswer:
    """transformers' LlamaForCausalLM in float32 on the CPU: prefill, compress each layer, greedy decode."""
    from reference_impls.models.cache_policies import make_policy_fn, needs_scores
    from reference_impls.models.kv_generation import generate_with_cache_policy

    loaded = smollm2.load_smollm2()
    policy_fn = make_policy_fn(params["policy"], params["budget"], params["kivi_bits"], params["window"])
    run = generate_with_cache_policy(loaded.model, loaded.tokenizer, inputs["prompt_ids"], policy_fn, MAX_NEW_TOKENS,
                                     needs_scores=needs_scores(params["policy"]), window=params["window"])
    key = str(int(inputs["passkey"][0]))
    return PasskeyAnswer(run.text, passkey_correct(run.text or "", key), len(run.token_ids), run.prompt_tokens,
                         run.kept_tokens, run.prefill_s, run.compress_s, run.decode_s_per_token, run.kv_bytes_full,
                         run.kv_bytes_kept, run.kv_bytes_claimed)
