"""Attention decode (MHA/GQA, paged, split-KV, MLA): every implementation against float64 at several sizes,
the Triton kernels in Triton's interpreter (or on a GPU), and the analytic costs against hand counts."""

from __future__ import annotations

import math
import os

import pytest
import torch

import workloads.long_context.attention_decode as attention_decode
import workloads.long_context.mla_decode as mla_decode
from harness.registry import REGISTRY
from reference_impls.kernels import decode
from reference_impls.kernels import mla_decode as mla
from reference_impls.kernels import triton_decode as tdecode

# (batch, heads, kv_heads, kv_len, head_dim, page_size): groups 1, 4 and 8; kv_len ragged against the page
# size and the splits (100 = 6·16 + 4, 257 = 16·16 + 1, 33 < one 64-token tile).
SIZES = [(2, 8, 2, 100, 32, 16), (1, 4, 4, 257, 64, 16), (3, 8, 1, 33, 16, 8), (2, 16, 2, 190, 32, 32)]
IDS = [f"b{b}-hq{hq}-hkv{hkv}-L{L}-d{d}-p{p}" for b, hq, hkv, L, d, p in SIZES]


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()


def _cache(size: tuple, dtype: torch.dtype, seed: int = 0, poison: bool = True) -> dict:
    """q, contiguous k/v and the same cache paged (shuffled pages); slots past kv_len hold NaN when
    `poison`, so an implementation that reads them fails."""
    batch, heads, kv_heads, kv_len, dim, page = size
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g).to(dtype)

    q, k, v = randn(batch, heads, dim), randn(batch, kv_heads, kv_len, dim), randn(batch, kv_heads, kv_len, dim)
    pages = math.ceil(kv_len / page)
    table = torch.randperm(batch * pages, generator=g).to(torch.int32).view(batch, pages)
    pools = []
    for cache in (k, v):
        tail = torch.full((batch, pages * page - kv_len, kv_heads, dim), float("nan") if poison else 1.0)
        tokens = torch.cat([cache.transpose(1, 2), tail.to(dtype)], dim=1)  # [B, pages·P, Hkv, D]
        pool = torch.empty(batch * pages, page, kv_heads, dim, dtype=dtype)
        pool[table.reshape(-1).long()] = tokens.reshape(pool.shape)
        pools.append(pool)
    return {"q": q, "k": k, "v": v, "k_pages": pools[0], "v_pages": pools[1], "block_table": table,
            "kv_len": kv_len, "ref": decode.decode_reference(q, k, v)}


TORCH_IMPLS = {
    "gqa": lambda c: decode.gqa_decode(c["q"], c["k"], c["v"]),
    "repeat_kv": lambda c: decode.repeat_kv_decode(c["q"], c["k"], c["v"]),
    "sdpa": lambda c: decode.sdpa_decode(c["q"], c["k"], c["v"]),
    "paged_gather": lambda c: decode.paged_gather_decode(c["q"], c["k_pages"], c["v_pages"], c["block_table"],
                                                         c["kv_len"]),
    "split_kv_3": lambda c: decode.split_kv_decode(c["q"], c["k"], c["v"], 3),
    "split_kv_7": lambda c: decode.split_kv_decode(c["q"], c["k"], c["v"], 7),
}


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("impl", list(TORCH_IMPLS))
def test_torch_float32_matches_reference(impl: str, size: tuple) -> None:
    cache = _cache(size, torch.float32)
    out = TORCH_IMPLS[impl](cache)
    assert out.shape == cache["q"].shape and out.dtype == torch.float32
    assert _rel(out, cache["ref"]) < 1e-5


@pytest.mark.parametrize("impl", list(TORCH_IMPLS))
def test_torch_bfloat16_no_worse_than_twice_the_baseline(impl: str) -> None:
    cache = _cache(SIZES[0], torch.bfloat16, seed=1)
    baseline = _rel(decode.gqa_decode(cache["q"], cache["k"], cache["v"]), cache["ref"])
    assert 1e-4 < baseline < 2e-2  # bf16 rounding shows, and nothing worse
    assert _rel(TORCH_IMPLS[impl](cache), cache["ref"]) <= 2 * baseline + 1e-3


def test_dense_decode_is_mha_only() -> None:
    cache = _cache(SIZES[1], torch.float32)
    assert _rel(decode.dense_decode(cache["q"], cache["k"], cache["v"]), cache["ref"]) < 1e-5
    grouped = _cache(SIZES[0], torch.float32)
    with pytest.raises(ValueError, match="as many kv heads"):
        decode.dense_decode(grouped["q"], grouped["k"], grouped["v"])


def test_bad_shapes_raise_readable_errors() -> None:
    q, k = torch.randn(2, 6, 32), torch.randn(2, 4, 10, 32)
    with pytest.raises(ValueError, match=r"query heads \(6\) must be a multiple of kv heads \(4\)"):
        decode.gqa_decode(q, k, k)
    with pytest.raises(ValueError, match="q must be"):
        decode.gqa_decode(torch.randn(2, 8, 16), k, k)
    cache = _cache(SIZES[0], torch.float32)
    with pytest.raises(ValueError, match="kv_len must be in 1..112"):
        decode.paged_gather_decode(cache["q"], cache["k_pages"], cache["v_pages"], cache["block_table"], 113)
    with pytest.raises(ValueError, match="splits and align must be >= 1"):
        decode.split_bounds(10, 0)


def test_paged_pool_round_trips_to_the_contiguous_cache() -> None:
    cache = _cache(SIZES[3], torch.float32, poison=False)
    assert torch.equal(decode.paged_to_contiguous(cache["k_pages"], cache["block_table"], cache["kv_len"]),
                       cache["k"])


def test_split_bounds_cover_the_sequence_once() -> None:
    assert decode.split_bounds(100, 3) == [(0, 34), (34, 68), (68, 100)]
    assert decode.split_bounds(100, 3, align=64) == [(0, 64), (64, 100)]  # an empty third split is dropped
    assert decode.split_bounds(5, 8) == [(i, i + 1) for i in range(5)]


def test_merge_ignores_empty_splits() -> None:
    outputs = torch.randn(3, 2, 4)
    lse = torch.tensor([[0.5, -1.0], [float("-inf"), float("-inf")], [1.5, 0.0]])
    merged = decode.merge_partials(outputs, lse)
    w0, w2 = torch.softmax(torch.stack([lse[0], lse[2]]), dim=0)
    torch.testing.assert_close(merged, w0[:, None] * outputs[0] + w2[:, None] * outputs[2])


# ---------------------------------------------------------------------------------------------------------
# MLA
# ---------------------------------------------------------------------------------------------------------

MLA_SIZES = [(2, 4, 100, 64, 16, 32, 24), (1, 8, 257, 32, 8, 16, 16), (3, 2, 33, 48, 16, 32, 32)]


def _mla_inputs(size: tuple, dtype: torch.dtype, seed: int = 0) -> tuple:
    batch, heads, kv_len, rank, rope, nope, v_dim = size
    g = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, nope), (batch, heads, rope), (batch, kv_len, rank), (batch, kv_len, rope),
              (heads, nope, rank), (heads, v_dim, rank)]
    scales = [1.0, 1.0, 1.0, 1.0, rank**-0.5, rank**-0.5]
    return tuple((torch.randn(s, generator=g) * c).to(dtype) for s, c in zip(shapes, scales, strict=True))


@pytest.mark.parametrize("size", MLA_SIZES)
def test_mla_absorbed_equals_decompress_and_reference(size: tuple) -> None:
    args = _mla_inputs(size, torch.float32)
    ref = mla.mla_reference(*args, chunk=40)  # several reference chunks, the last ragged
    decompressed, absorbed = mla.mla_decompress(*args), mla.mla_absorbed(*args)
    assert _rel(decompressed, ref) < 1e-5 and _rel(absorbed, ref) < 1e-5
    torch.testing.assert_close(absorbed, decompressed, rtol=1e-5, atol=1e-5)
    args64 = tuple(a.double() for a in args)  # in float64 the two algorithms agree to rounding
    torch.testing.assert_close(mla.mla_absorbed(*args64), mla.mla_decompress(*args64), rtol=1e-12, atol=1e-12)


def test_mla_bfloat16_within_twice_decompress() -> None:
    args = _mla_inputs(MLA_SIZES[0], torch.bfloat16, seed=2)
    ref = mla.mla_reference(*args)
    baseline = _rel(mla.mla_decompress(*args), ref)
    assert 1e-4 < baseline < 2e-2
    assert _rel(mla.mla_absorbed(*args), ref) <= 2 * baseline + 1e-3


def test_mla_shape_mismatch_names_the_tensor() -> None:
    args = list(_mla_inputs(MLA_SIZES[0], torch.float32))
    args[4] = args[4][:, :, :10]
    with pytest.raises(ValueError, match=r"w_uk must be \(4, 32, 64\)"):
        mla.mla_absorbed(*args)


# ---------------------------------------------------------------------------------------------------------
# Triton kernels: the interpreter on a CPU machine (conftest sets TRITON_INTERPRET=1), the GPU where there is one
# ---------------------------------------------------------------------------------------------------------


def _triton_device() -> str:
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "cpu"
    pytest.skip("no GPU and Triton's interpreter is off")


def _on(cache: dict, device: str) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in cache.items()}


@pytest.mark.parametrize("splits", [1, 3, 0])
@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_triton_kernels_float32_match_reference(size: tuple, splits: int) -> None:
    device = _triton_device()
    cache = _on(_cache(size, torch.float32), device)
    contiguous = tdecode.triton_split_decode(cache["q"], cache["k"], cache["v"], splits=splits)
    paged = tdecode.triton_paged_decode(cache["q"], cache["k_pages"], cache["v_pages"], cache["block_table"],
                                        cache["kv_len"], splits=splits)
    assert contiguous.shape == paged.shape == cache["q"].shape
    assert _rel(contiguous, cache["ref"].to(device)) < 1e-5  # NaN pool tails would make this inf
    assert _rel(paged, cache["ref"].to(device)) < 1e-5


def test_triton_bfloat16_within_twice_the_torch_baseline() -> None:
    """In the interpreter bf16 casts truncate (a GPU rounds to nearest), so the margin is wider there."""
    device = _triton_device()
    cache = _on(_cache(SIZES[0], torch.bfloat16, seed=3), device)
    ref = cache["ref"].to(device)
    baseline = _rel(decode.gqa_decode(cache["q"], cache["k"], cache["v"]), ref)
    for splits in (1, 4):
        paged = tdecode.triton_paged_decode(cache["q"], cache["k_pages"], cache["v_pages"], cache["block_table"],
                                            cache["kv_len"], splits=splits)
        assert paged.dtype == torch.bfloat16 and _rel(paged, ref) <= 2 * baseline + 1e-3


def test_triton_ragged_batch_lengths_and_empty_splits() -> None:
    """Per-sequence lengths: each sequence must match the reference over its own prefix; with 6 splits of a
    64-token-aligned chunk the short sequence leaves whole splits empty (lse = -inf)."""
    device = _triton_device()
    cache = _on(_cache((3, 8, 2, 300, 32, 16), torch.float32, poison=False), device)
    lens = torch.tensor([300, 37, 129], dtype=torch.int32)
    paged = tdecode.triton_paged_decode(cache["q"], cache["k_pages"], cache["v_pages"], cache["block_table"], lens,
                                        splits=6)
    contiguous = tdecode.triton_split_decode(cache["q"], cache["k"], cache["v"], splits=6, kv_lens=lens)
    for b, length in enumerate(lens.tolist()):
        ref = decode.decode_reference(cache["q"][b:b + 1], cache["k"][b:b + 1, :, :length],
                                      cache["v"][b:b + 1, :, :length])[0].to(device)
        assert _rel(paged[b], ref) < 1e-5 and _rel(contiguous[b], ref) < 1e-5


@pytest.mark.parametrize("config", [{"prefetch_table": False}, {"heads_first": False}, {"block_n": 32}])
def test_triton_config_variants_agree(config: dict) -> None:
    """The tuning knobs change scheduling, never the answer: paged and contiguous, split and unsplit."""
    device = _triton_device()
    cache = _on(_cache(SIZES[3], torch.float32), device)
    ref = cache["ref"].to(device)
    for splits in (1, 3):
        paged = tdecode.triton_paged_decode(cache["q"], cache["k_pages"], cache["v_pages"], cache["block_table"],
                                            cache["kv_len"], splits=splits, **config)
        contiguous = tdecode.triton_split_decode(cache["q"], cache["k"], cache["v"], splits=splits, **config)
        assert _rel(paged, ref) < 1e-5 and _rel(contiguous, ref) < 1e-5


def test_triton_rejects_bad_arguments() -> None:
    pytest.importorskip("triton")
    cache = _cache(SIZES[0], torch.float32)
    with pytest.raises(ValueError, match="exceeds the block table"):
        tdecode.triton_paged_decode(cache["q"], cache["k_pages"], cache["v_pages"], cache["block_table"], 200)
    with pytest.raises(ValueError, match=r"query heads \(8\) must be a multiple of kv heads \(3\)"):
        k = torch.randn(2, 3, 10, 32)
        tdecode.triton_split_decode(cache["q"], k, k)
    with pytest.raises(ValueError, match="unknown kernel config"):
        tdecode.triton_split_decode(cache["q"], cache["k"], cache["v"], block_m=16)
    with pytest.raises(ValueError, match="block_table must be int32"):
        tdecode.triton_paged_decode(cache["q"], cache["k_pages"], cache["v_pages"], cache["block_table"].long(), 100)


def test_auto_splits_fill_whole_waves_without_tiny_splits() -> None:
    """132 slots: one sequence with 4 KV heads gets 29 splits (116 programs, 88% of one wave, the first
    count within 85% of the best fill); 32 heads get 4 (128 programs); a batch of 8 x 32 heads already
    fills two waves at 97% (1 split); a short cache is capped at 256 tokens per split; 35 x 4 = 140
    programs would be 1.06 waves, so 4 splits (560 programs, 4.24 waves, 85%)."""
    assert tdecode.auto_splits(1, 4, 131072, 132) == 29
    assert tdecode.auto_splits(1, 32, 131072, 132) == 4 and tdecode.auto_splits(1, 32, 131072, 264) == 8
    assert tdecode.auto_splits(8, 32, 8192, 132) == 1
    assert tdecode.auto_splits(1, 4, 1000, 132) == 1000 // tdecode.MIN_TOKENS_PER_SPLIT
    assert tdecode.auto_splits(35, 4, 4096, 132) == 4
    assert tdecode.device_slots(torch.device("cpu"), "paged") == 2 * tdecode.H100_SMS
    with pytest.raises(ValueError, match="must be >= 1"):
        tdecode.auto_splits(0, 4, 100)


# ---------------------------------------------------------------------------------------------------------
# The workloads: registered implementations, counters and costs against hand counts
# ---------------------------------------------------------------------------------------------------------


def _params(workload_name: str, **overrides: object) -> dict:
    workload = REGISTRY.workload(workload_name)
    params = {p.name: p.default for p in workload.params} | workload.contract_params
    return params | overrides


@pytest.mark.parametrize("impl", ["triton_split", "triton_paged"])
def test_registered_triton_implementations_pass_the_check(impl: str) -> None:
    device = _triton_device()
    workload = REGISTRY.workload("attention_decode")
    params = _params("attention_decode", splits=3)
    inputs = workload.inputs(params, device, 0)
    reference = workload.reference(inputs, params)
    baseline_error = workload.check(attention_decode.torch_gqa(inputs, params), reference, None).error
    assert workload.check(REGISTRY.impl("attention_decode", impl).fn(inputs, params), reference,
                          baseline_error).passed


def test_workload_pool_holds_the_contiguous_cache() -> None:
    workload = REGISTRY.workload("attention_decode")
    params = _params("attention_decode")
    inputs = workload.inputs(params, "cpu", 0)
    for name in ("k", "v"):
        assert torch.equal(decode.paged_to_contiguous(inputs[f"{name}_pages"], inputs["block_table"], 100),
                           inputs[name])
    assert workload.input_bytes(inputs) == 4 * (2 * 8 * 32 + 2 * 2 * 2 * 100 * 32)


def test_float32_check_floor_and_half_precision_rule() -> None:
    """float32: 2 x baseline + 32 eps (a correct 1.2e-6 beside a 4.5e-7 baseline passes; 1e-4 fails);
    bf16 keeps the harness's 2 x baseline + eps; NaN never passes."""
    workload = REGISTRY.workload("attention_decode")
    ref = torch.randn(2, 8, 32, dtype=torch.float64)
    noise = torch.randn(2, 8, 32, dtype=torch.float64)
    noise *= ref.norm() / noise.norm()

    def with_error(err: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (ref + err * noise).to(dtype)

    assert workload.check(with_error(1.2e-6), ref, 4.5e-7).passed
    assert not workload.check(with_error(1e-4), ref, 4.5e-7).passed
    assert workload.check(with_error(1.2e-6), ref, 4.5e-7).rule == "error <= 2 x baseline error + 32 eps"
    assert workload.check(with_error(1e-2, torch.bfloat16), ref, 5e-3).rule == "error <= 2 x baseline error + eps"
    poisoned = with_error(0.0)
    poisoned[0, 0, 0] = float("nan")
    assert not workload.check(poisoned, ref, 1e-3).passed


def test_invalid_head_counts_raise() -> None:
    with pytest.raises(ValueError, match=r"heads \(8\) must be a multiple of kv_heads \(3\)"):
        REGISTRY.workload("attention_decode").cost(_params("attention_decode", kv_heads=3), "torch_gqa")


def test_attention_decode_cost_by_hand() -> None:
    """b=2, Hq=8, Hkv=2, L=100, D=32, float32, 16-token pages (7 per sequence, 112 slots)."""
    workload = REGISTRY.workload("attention_decode")
    params = _params("attention_decode")
    kv, q_o, table = 2 * 2 * 2 * 100 * 32 * 4, 2 * 2 * 8 * 32 * 4, 4 * 2 * 7  # 102400, 4096, 56
    gqa = workload.cost(params, "torch_gqa")
    assert gqa.flops == 4 * 2 * 8 * 100 * 32 == 204800
    assert gqa.bytes == {"dram": kv + q_o} and gqa.special_ops == 2 * 8 * 100
    scores, q_scaled = 4 * 4 * 2 * 8 * 100, 2 * 2 * 8 * 32 * 4
    assert gqa.traffic_bytes == {"dram": kv + q_o + scores + q_scaled} and gqa.launches == 4
    repeated = workload.cost(params, "repeat_kv")  # group 4: K and V written 4x over, then read
    assert repeated.traffic_bytes == {"dram": kv + q_o + 2 * 4 * kv + scores + q_scaled}
    gather = workload.cost(params, "paged_gather")
    padded = kv * 112 / 100
    assert gather.bytes == {"dram": kv + q_o + table}
    assert gather.traffic_bytes == {"dram": kv + q_o + table + 2 * padded + scores + q_scaled}
    paged = workload.cost(params, "triton_paged")  # auto splits: 1 for so short a cache, so no partials
    assert paged.traffic_bytes == paged.bytes == {"dram": kv + q_o + table} and paged.launches == 1
    split = workload.cost(params | {"splits": 4}, "triton_split")
    assert split.traffic_bytes == {"dram": kv + q_o + 2 * 2 * 8 * 4 * 33 * 4} and split.launches == 2
    counted = workload.counters(torch.zeros(1), params)
    assert counted == {"kv_bytes_read_per_step": kv}


def test_mla_cost_by_hand() -> None:
    """b=2, H=4, L=100, R=64, Dr=16, Dn=32, Dv=24, float32."""
    workload = REGISTRY.workload("mla_decode")
    params = _params("mla_decode")
    cache, weights, q_o = 2 * 100 * 80 * 4, 4 * 64 * 56 * 4, 2 * 4 * 72 * 4  # 64000, 57344, 2304
    absorbed, decompressed = workload.cost(params, "absorbed"), workload.cost(params, "decompress")
    assert absorbed.bytes == decompressed.bytes == {"dram": cache + weights + q_o}
    assert absorbed.flops == decompressed.flops == 2 * 2 * 4 * (32 * 64 + 100 * 80 + 100 * 64 + 64 * 24)
    assert absorbed.expected_flops == 287744
    assert decompressed.expected_flops == 2 * 2 * 100 * 4 * (64 * 56 + 32 + 16 + 24) == 5849600
    latent_twice_rope, score_passes = 2 * 100 * (128 + 16) * 4, 6 * 2 * 4 * 100 * 4
    assert absorbed.traffic_bytes == {"dram": weights + q_o + latent_twice_rope + score_passes}
    materialized, weights_again = 2 * 2 * 4 * 100 * 56 * 4, 4 * 64 * 56 * 4
    assert decompressed.traffic_bytes == {
        "dram": weights + q_o + latent_twice_rope + score_passes + materialized + weights_again}
    assert workload.counters(torch.zeros(1), params) == {"kv_bytes_read_per_step": cache}
    assert mla_decode.dims(params)["r"] == 64
