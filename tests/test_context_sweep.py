"""The tiny Llama: cache path = no-cache path = float64 = transformers' Llama; the sweep's timings, costs and OOM."""

import pytest
import torch

from harness.registry import REGISTRY
from harness.runner import open_store, run_suite
from harness.store import read_records
from harness.suite import load_suite
from reference_impls.hardware.transformer import load_config, prefill_cost
from reference_impls.kernels.tiny_llama import TINY_CONFIG, LlamaShape, TinyLlama, builtin_config, random_tokens
from workloads.long_context.context_sweep import model_config

REGISTRY.load()
SMALL = dict(TINY_CONFIG, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=512)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a.double() - b.double()) / torch.linalg.vector_norm(b.double()))


def _cached_logits(model: TinyLlama, tokens: torch.Tensor, prompt: int) -> torch.Tensor:
    model.allocate_cache(tokens.shape[1])
    logits = [model.prefill(tokens[:, :prompt])]
    logits += [model.decode_step(tokens[:, j]) for j in range(prompt, tokens.shape[1])]
    return torch.stack(logits, 1)  # [B, decoded + 1, vocab]


@pytest.mark.parametrize("prompt, decoded", [(1, 3), (37, 5), (200, 2)])
def test_cache_path_equals_no_cache_forward_and_float64(prompt, decoded):
    model = TinyLlama(SMALL, seed=prompt)
    tokens = random_tokens(prompt + decoded, 512, seed=prompt)
    cached = _cached_logits(model, tokens, prompt)
    full = model.forward(tokens, last=decoded + 1)
    exact = model.to(torch.float64).forward(tokens, last=decoded + 1)
    assert cached.shape == (1, decoded + 1, 512)
    assert _rel(cached, full) < 1e-5 and _rel(cached, exact) < 1e-5 and _rel(full, exact) < 1e-5
    assert float(exact.std()) > 0.05  # the logits carry signal: a comparison of near-constants would prove nothing


@pytest.mark.parametrize("dtype, bound", [(torch.bfloat16, 0.08), (torch.float16, 0.01)])
def test_low_precision_models_stay_close_to_float64(dtype, bound):
    model = TinyLlama(SMALL, dtype=dtype, seed=1)
    tokens = random_tokens(70, 512, seed=2)
    cached = _cached_logits(model, tokens, 64)
    assert cached.dtype == dtype and _rel(cached, model.to(torch.float64).forward(tokens, last=7)) < bound


def test_greedy_decode_feeds_back_the_argmax():
    model = TinyLlama(SMALL, seed=3)
    tokens = random_tokens(20, 512, seed=3)
    model.allocate_cache(22)
    first = model.prefill(tokens)
    second = model.decode_step()
    sequence = torch.cat([tokens, first.argmax(-1)[:, None]], 1)
    assert _rel(second, model.forward(sequence, last=1)[:, -1]) < 1e-5 and model.length == 21


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_matches_transformers_with_the_same_weights(model_type):
    transformers = pytest.importorskip("transformers")
    config = dict(SMALL, model_type=model_type, tie_word_embeddings=model_type == "qwen2", max_position_embeddings=256)
    ours = TinyLlama(config, dtype=torch.float64, seed=4)
    if model_type == "llama":
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config, attention_bias=False))
    else:
        hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**config))
    hf = hf.to(torch.float64).eval()
    w, state = ours.w, {"model.embed_tokens.weight": ours.w["embed"], "model.norm.weight": ours.w["final_norm"],
                        "lm_head.weight": ours.w["lm_head"]}
    names = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm", "wq": "self_attn.q_proj",
             "wk": "self_attn.k_proj", "wv": "self_attn.v_proj", "wo": "self_attn.o_proj", "w_gate": "mlp.gate_proj",
             "w_up": "mlp.up_proj", "w_down": "mlp.down_proj", "bq": "self_attn.q_proj", "bk": "self_attn.k_proj",
             "bv": "self_attn.v_proj"}
    for key, tensor in w.items():
        layer, _, name = key.partition(".")
        if name:
            suffix = "bias" if name.startswith("b") else "weight"
            state[f"model.layers.{layer}.{names[name]}.{suffix}"] = tensor
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing)
    tokens = random_tokens(48, 512, seed=5)
    with torch.no_grad():
        theirs = hf(tokens).logits
    assert _rel(ours.forward(tokens), theirs) < 1e-5  # transformers computes RoPE angles in float32


def test_shapes_from_the_shipped_configs():
    smol = LlamaShape.from_hf(builtin_config("smollm2-135m"))
    assert (smol.layers, smol.heads, smol.kv_heads, smol.head_dim, smol.tie_embeddings) == (30, 9, 3, 64, True)
    assert smol.parameter_count() == 134_515_008 and smol.kv_bytes_per_token(2) == 2 * 30 * 3 * 64 * 2
    qwen = LlamaShape.from_hf(builtin_config("qwen2.5-0.5b"))
    assert qwen.qkv_bias and qwen.parameter_count() == 494_032_768
    with pytest.raises(ValueError, match="not a Llama-style dense config"):
        LlamaShape.from_hf(builtin_config("deepseek-v3"))
    with pytest.raises(ValueError, match="unknown model config 'gpt-5'"):
        builtin_config("gpt-5")
    assert REGISTRY.workload("context_sweep").unsupported("kv_cache", {"config": "deepseek-v3"}, "cpu")


def test_analytic_model_agrees_with_the_built_model():
    shape = LlamaShape.from_hf(builtin_config("qwen2.5-0.5b"))
    reference = load_config("qwen2.5-0.5b")
    assert model_config(shape, "qwen2.5-0.5b") == reference
    tiny = TinyLlama(TINY_CONFIG)
    assert tiny.weight_bytes() == 4 * tiny.shape.parameter_count()


@pytest.mark.parametrize("bad, message", [
    (lambda m: m.prefill(torch.tensor([[1, 2]])), "allocate_cache"),
    (lambda m: m.decode_step(), "prefill a prompt"),
    (lambda m: m.forward(torch.tensor([[1, 600]])), "token ids must be in 0..511"),
    (lambda m: m.forward(torch.ones(3, dtype=torch.int64)), r"\[batch, seq\] int64"),
    (lambda m: m.allocate_cache(0), "max_tokens and batch must be >= 1"),
    (lambda m: TinyLlama(dict(SMALL, num_key_value_heads=3)), "do not split"),
    (lambda m: TinyLlama({"model_type": "llama", "hidden_size": 8}), "missing"),
])
def test_bad_use_is_a_clear_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        bad(TinyLlama(SMALL))


def test_a_cache_too_big_for_memory_raises_memory_error():
    workload, kv_cache = REGISTRY.workload("context_sweep"), REGISTRY.impl("context_sweep", "kv_cache").fn
    params = {"config": "tiny", "context": 16, "decode_tokens": 2, "dtype": "float32"}
    inputs = workload.inputs(params, "cpu", 0)
    with pytest.raises(MemoryError, match="cannot allocate"):
        kv_cache(inputs, params | {"context": 1 << 42})  # 2^42 tokens x 4 KiB of KV
    assert inputs["model"].k_cache is None  # nothing left behind
    with pytest.raises(MemoryError):
        random_tokens(1 << 40, 100, 0)


def test_sweep_records_ttft_tpot_and_kv_bytes_and_oom(write_suite, tmp_path):
    suite = load_suite(str(write_suite("""
name: sweep
settings: {warmup_s: 0.0, min_repeats: 2, min_time_s: 0.0, timeout_s: 60, isolation: inline}
cases:
  - {workload: context_sweep, impls: [kv_cache, no_cache], grid: {context: [64], decode_tokens: [4]}}
  - {workload: context_sweep, impls: [kv_cache], grid: {context: [16777216], decode_tokens: [1]}}
""")), REGISTRY)
    run_suite(suite, open_store(suite, tmp_path / "run", resume=False))
    records = {(r["impl"], r["params"]["context"]): r for r in read_records(tmp_path / "run")}
    cached, uncached = records[("kv_cache", 64)], records[("no_cache", 64)]
    assert cached["status"] == uncached["status"] == "ok"
    assert cached["metrics"]["context_sweep.kv_cache_bytes"]["value"] == 2 * 4 * 2 * 64 * 4 * (64 + 4)  # tiny, fp32
    for record in (cached, uncached):
        m = record["metrics"]
        assert 0 < m["context_sweep.ttft_s"]["value"] < m["latency_s"]["value"] * 10
        assert m["context_sweep.tpot_s"]["source"] == "counted" and m["quality.rel_l2_error"]["value"] < 1e-5
    oom = records[("kv_cache", 1 << 24)]  # 16M tokens x 4 KiB: a 64 GiB cache on a 23 GB machine
    assert oom["status"] == "oom" and "MemoryError" in oom["error"]
    flops = prefill_cost(model_config(LlamaShape.from_hf(TINY_CONFIG), "tiny"), _fp32(), 64).flops
    assert cached["model"]["flops"] > flops and uncached["model"]["executed_flops"] > 4 * flops


def _fp32():
    from reference_impls.hardware.transformer import Precision

    return Precision(weight_bits=32, kv_bits=32, activation_bytes=4)
