"""reference_impls/hardware/transformer.py and kv_capacity.py against hand-computed figures for the shipped
configs: KV bytes per token, parameter counts, the FLOPs and bytes of prefill and decode, the decode intensities
behind the Duplex and MLA claims, and KV capacity."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from reference_impls.hardware import kv_capacity as kvc
from reference_impls.hardware import transformer as tm

BF16 = tm.Precision()
INT4_G128 = tm.Precision(weight_bits=4, group_size=128)


@pytest.fixture(scope="module")
def cfg():
    return {name: tm.load_config(name) for name in tm.builtin_configs()}


def _write_config(tmp_path, **fields):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(fields))
    return path


GEMMA_LIKE = dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=16,
                  head_dim=256, intermediate_size=24576, vocab_size=256000, tie_word_embeddings=True)


# --- loading --------------------------------------------------------------------------------------------------


def test_builtins_shipped():
    assert set(tm.builtin_configs()) == {"deepseek-v3", "llama-3.1-70b", "llama-3.1-8b", "llama-3.2-1b",
                                         "qwen2.5-0.5b", "qwen2.5-1.5b", "smollm2-135m"}


def test_builtin_names_are_case_insensitive():
    c = tm.load_config("Llama-3.1-8B")
    assert (c.name, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads) == ("llama-3.1-8b", 4096, 32, 32, 8)
    assert (c.head_dim, c.intermediate_size, c.vocab_size, c.tie_embeddings, c.attention) == \
        (128, 14336, 128256, False, "gqa")


def test_shipped_fields(cfg):
    q, s, d = cfg["qwen2.5-0.5b"], cfg["smollm2-135m"], cfg["deepseek-v3"]
    assert (q.num_heads, q.num_kv_heads, q.head_dim, q.tie_embeddings, q.qkv_bias) == (14, 2, 64, True, True)
    assert (s.num_heads, s.num_kv_heads, s.head_dim, s.tie_embeddings) == (9, 3, 64, True)
    assert (d.attention, d.kv_lora_rank, d.qk_rope_head_dim, d.qk_nope_head_dim, d.v_head_dim, d.q_lora_rank) == \
        ("mla", 512, 64, 128, 128, 1536)
    assert (d.num_experts, d.experts_per_token, d.shared_experts, d.moe_intermediate_size, d.first_dense_layers,
            d.intermediate_size) == (256, 8, 1, 2048, 3, 18432)


def test_shipped_configs_cite_their_source():
    for path in tm.CONFIG_DIR.glob("*.json"):
        assert "config.json" in json.loads(path.read_text())["_source"]


def test_unknown_builtin_lists_the_builtins():
    with pytest.raises(ValueError, match="unknown model config") as err:
        tm.load_config("llama-9")
    assert all(name in str(err.value) for name in tm.builtin_configs())


def test_missing_field_names_file_and_field(tmp_path):
    fields = dict(GEMMA_LIKE)
    del fields["vocab_size"]
    path = _write_config(tmp_path, **fields)
    with pytest.raises(ValueError, match="vocab_size") as err:
        tm.load_config(path)
    assert str(path) in str(err.value)


def test_explicit_head_dim_wins_over_hidden_over_heads(tmp_path):
    c = tm.load_config(_write_config(tmp_path, **GEMMA_LIKE))  # 3072 / 16 = 192, but head_dim says 256
    assert c.head_dim == 256
    assert tm.kv_bytes_per_token(c, BF16) == 2 * 28 * 16 * 256 * 2
    assert tm.load_config(tmp_path).head_dim == 256  # a directory holding config.json works too


def test_mixtral_style_moe_detected(tmp_path):
    c = tm.load_config(_write_config(tmp_path, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                                     num_key_value_heads=8, intermediate_size=14336, vocab_size=32000,
                                     num_local_experts=8, num_experts_per_tok=2))
    assert (c.num_experts, c.experts_per_token, c.moe_intermediate_size, c.first_dense_layers) == (8, 2, 14336, 0)
    counts = tm.parameter_count(c)
    assert counts["total"] == pytest.approx(46.7e9, rel=0.01)  # Mixtral-8x7B's published 46.7B / 12.9B
    assert counts["active"] == pytest.approx(12.9e9, rel=0.01)


# --- KV bytes per token ---------------------------------------------------------------------------------------


def test_kv_bytes_per_token(cfg):
    assert tm.kv_bytes_per_token(cfg["llama-3.1-8b"], BF16) == 131_072 == 2 * 32 * 8 * 128 * 2
    assert tm.kv_bytes_per_token(cfg["llama-3.1-70b"], BF16) == 327_680 == 2 * 80 * 8 * 128 * 2
    assert tm.kv_bytes_per_token(cfg["qwen2.5-0.5b"], BF16) == 12_288 == 2 * 24 * 2 * 64 * 2
    assert tm.kv_bytes_per_token(cfg["smollm2-135m"], BF16) == 23_040 == 2 * 30 * 3 * 64 * 2
    assert tm.kv_bytes_per_token(cfg["deepseek-v3"], BF16) == 70_272 == 61 * (512 + 64) * 2  # latent + RoPE key
    assert tm.kv_bytes_per_token(cfg["llama-3.1-8b"], tm.Precision(kv_bits=8)) == 65_536


def test_llama_70b_million_token_kv_state(cfg):
    # "1M tokens" here is 10^6 tokens: 327.68e9 B ~ 328 GB. With 2^20 tokens it would be 343.6e9 B.
    c = cfg["llama-3.1-70b"]
    assert kvc.kv_cache_bytes(c, BF16, 1_000_000) == 327.68e9
    assert round(kvc.kv_cache_bytes(c, BF16, 1_000_000) / 1e9) == 328
    assert kvc.kv_cache_bytes(c, BF16, 2**20) == pytest.approx(343.6e9, rel=1e-4)
    assert kvc.kv_cache_bytes(c, BF16, 1000, batch=4) == 4 * 1000 * 327_680


# --- parameters and weight bytes ------------------------------------------------------------------------------


def test_parameter_counts(cfg):
    # Exact totals published for the checkpoints (Qwen2's q/k/v biases included).
    assert tm.parameter_count(cfg["llama-3.1-8b"])["total"] == 8_030_261_248
    assert tm.parameter_count(cfg["llama-3.1-70b"])["total"] == 70_553_706_496
    assert tm.parameter_count(cfg["qwen2.5-0.5b"])["total"] == 494_032_768
    assert tm.parameter_count(cfg["smollm2-135m"])["total"] == 134_515_008
    assert tm.parameter_count(cfg["llama-3.1-8b"])["total"] == pytest.approx(8.03e9, rel=0.02)
    assert tm.parameter_count(cfg["llama-3.1-70b"])["total"] == pytest.approx(70.55e9, rel=0.02)
    for name in ("llama-3.1-8b", "qwen2.5-0.5b"):
        counts = tm.parameter_count(cfg[name])
        assert counts["active"] == counts["total"]  # dense


def test_deepseek_v3_total_and_active(cfg):
    counts = tm.parameter_count(cfg["deepseek-v3"])
    assert counts["total"] == pytest.approx(671e9, rel=0.03)
    assert counts["active"] == pytest.approx(37e9, rel=0.10)
    assert counts["embedding"] == 129_280 * 7168


def test_bf16_weight_bytes_are_two_per_parameter(cfg):
    for c in cfg.values():
        counts, size = tm.parameter_count(c), tm.weight_bytes(c, BF16)
        assert size == {"total": 2 * counts["total"], "active_per_token": 2 * counts["active"]}


def test_int4_g128_weight_bytes(cfg):
    assert INT4_G128.effective_weight_bits == 4.125
    assert tm.Precision(weight_bits=8).effective_weight_bits == 8
    # Llama-3.1-8B: the attention and FFN matrices are quantized; embeddings, LM head and norms stay 16-bit.
    linear = 32 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336)
    rest = 2 * 128256 * 4096 + 32 * 2 * 4096 + 4096
    assert linear + rest == 8_030_261_248
    assert tm.weight_bytes(cfg["llama-3.1-8b"], INT4_G128)["total"] == pytest.approx(linear * 4.125 / 8 + rest * 2)


# --- prefill and decode ---------------------------------------------------------------------------------------


def test_prefill_one_token_is_two_flops_per_multiplied_parameter(cfg):
    c = cfg["llama-3.1-8b"]
    counts, flops = tm.parameter_count(c), tm.prefill_cost(c, BF16, 1).flops
    # The input embedding is a gather (6.5% of the 8B's parameters, no FLOPs), so 2 x (active - embedding) ...
    assert flops == pytest.approx(2 * (counts["active"] - counts["embedding"]), rel=1e-4)
    # ... and 2 x active holds within 5% where the table is a small share (70B: 1.5%).
    c70 = cfg["llama-3.1-70b"]
    assert tm.prefill_cost(c70, BF16, 1).flops == pytest.approx(2 * tm.parameter_count(c70)["active"], rel=0.05)


def test_prefill_attention_is_causal(cfg):
    c, t = cfg["llama-3.1-8b"], 4096
    core = tm.prefill_cost(c, BF16, t, batch=2).layer("attn_core")
    assert core.flops == 2 * 32 * 4 * 32 * 128 * t * (t + 1) / 2
    assert core.kv_write_bytes == core.kv_read_bytes == 2 * t * 131_072


def test_decode_bytes_at_small_context_are_the_weights(cfg):
    for name in ("llama-3.1-8b", "llama-3.1-70b", "qwen2.5-0.5b", "deepseek-v3"):
        c = cfg[name]
        counts, size = tm.parameter_count(c), tm.weight_bytes(c, BF16)["active_per_token"]
        gathered = 0 if c.tie_embeddings else 2 * counts["embedding"]  # untied: the table is not read in decode
        assert tm.decode_cost(c, BF16, context=16).bytes == pytest.approx(size - gathered, rel=0.01)
    c70 = cfg["llama-3.1-70b"]
    assert tm.decode_cost(c70, BF16, 16).bytes == pytest.approx(tm.weight_bytes(c70, BF16)["total"], rel=0.05)


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen2.5-0.5b", "deepseek-v3"])
def test_decode_bytes_grow_by_kv_bytes_per_token(cfg, name):
    c = cfg[name]
    base = tm.decode_cost(c, BF16, 1000)
    for extra in (1, 1000, 100_000):
        grown = tm.decode_cost(c, BF16, 1000 + extra)
        assert grown.bytes - base.bytes == extra * tm.kv_bytes_per_token(c, BF16)
    assert tm.decode_cost(c, BF16, 1000, batch=8).layer("attn_core").kv_read_bytes == \
        8 * 1000 * tm.kv_bytes_per_token(c, BF16)


def test_decode_weights_are_shared_across_the_batch(cfg):
    c = cfg["llama-3.1-8b"]
    one, eight = tm.decode_cost(c, BF16, 512), tm.decode_cost(c, BF16, 512, batch=8)
    assert eight.layer("ffn").weight_bytes == one.layer("ffn").weight_bytes
    assert eight.flops == pytest.approx(8 * one.flops)
    assert (eight.tokens, tm.prefill_cost(c, BF16, 100, batch=3).tokens) == (8, 300)


def test_costs_add_up(cfg):
    cost = tm.decode_cost(cfg["deepseek-v3"], INT4_G128, 4096, batch=4)
    assert [x.name for x in cost.layers] == ["embedding", "attn_proj", "attn_core", "ffn", "moe_router",
                                             "moe_experts", "lm_head"]
    assert cost.flops == sum(x.flops for x in cost.layers)
    assert cost.bytes == sum(x.bytes for x in cost.layers)
    assert cost.arithmetic_intensity == cost.flops / cost.bytes
    with pytest.raises(ValueError, match="context"):
        tm.decode_cost(cfg["deepseek-v3"], BF16, 0)


# --- Duplex / MLA intensity claims ----------------------------------------------------------------------------


def test_gqa_decode_attention_intensity_is_group_size(cfg):
    # Per KV head and key: K+V = 2*head_dim*2 B; FLOPs = g heads * 2 (QK, PV) * 2*head_dim => g FLOP/B in bf16.
    # The query read and output write shave a little off at finite context.
    assert tm.attention_decode_intensity(cfg["llama-3.1-8b"], BF16, 32768) == pytest.approx(4.0, rel=1e-3)
    assert tm.attention_decode_intensity(cfg["llama-3.1-70b"], BF16, 32768) == pytest.approx(8.0, rel=1e-3)
    mha = replace(cfg["llama-3.1-8b"], name="llama-mha", num_kv_heads=32)
    assert mha.gqa_group == 1
    assert tm.attention_decode_intensity(mha, BF16, 32768) == pytest.approx(1.0, rel=1e-3)
    # fp8 KV halves the bytes, doubling the intensity.
    assert tm.attention_decode_intensity(cfg["llama-3.1-8b"], tm.Precision(kv_bits=8), 32768) == \
        pytest.approx(8.0, rel=2e-3)


def test_mla_absorbed_decode_moves_toward_compute_bound(cfg):
    d = cfg["deepseek-v3"]
    expected = 2 * 128 * (2 * 512 + 64) / ((512 + 64) * 2)  # ~241.8 FLOP/B: all heads share one latent
    got = tm.attention_decode_intensity(d, BF16, 32768)
    assert got == pytest.approx(expected, rel=1e-2)
    assert got > 50


def test_ffn_intensity(cfg):
    d = cfg["deepseek-v3"]
    assert tm.ffn_intensity(d, BF16, 1) == pytest.approx(1.0)  # 2 FLOPs per 2-byte weight
    assert tm.ffn_intensity(d, BF16, 64) > tm.ffn_intensity(d, BF16, 8) > 1.0  # tokens start sharing experts
    assert tm.ffn_intensity(cfg["llama-3.1-8b"], BF16, 16) == pytest.approx(16.0)
    assert tm.experts_touched(d, 1) == pytest.approx(8)
    assert tm.experts_touched(d, 10_000) == pytest.approx(256)


# --- KV capacity ----------------------------------------------------------------------------------------------


def test_max_concurrency_llama_8b_in_80gb(cfg):
    c = cfg["llama-3.1-8b"]
    weights = 8_030_261_248 * 2  # 16.06e9 B
    per_sequence = 131_072 * 8192  # 1 GiB of KV per 8K-token sequence
    expected = math.floor((80e9 - weights) / per_sequence)
    assert expected == 59
    assert kvc.max_concurrency(c, BF16, 80e9, 8192) == expected
    assert kvc.max_concurrency(c, BF16, 80e9, 8192, reserve_bytes=4e9) == math.floor((76e9 - weights) / per_sequence)
    assert kvc.max_concurrency(c, BF16, 10e9, 8192) == 0  # weights alone do not fit


def test_max_context(cfg):
    c = cfg["llama-3.1-8b"]
    free = 80e9 - 8_030_261_248 * 2
    assert kvc.max_context(c, BF16, 80e9) == math.floor(free / 131_072)
    assert kvc.max_context(c, BF16, 80e9, batch=4) == math.floor(free / (4 * 131_072))
    assert kvc.max_context(cfg["llama-3.1-70b"], BF16, 80e9) == 0
