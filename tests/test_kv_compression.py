"""KV-cache selection policies on hand-built cases, the compressed caches and attention over them, and the
kv_compression workload (needle recall, claimed vs allocated bytes)."""

import math

import pytest
import torch
import torch.nn.functional as F

from harness.registry import REGISTRY
from reference_impls.kernels import kv_compressed_attention as kv_attn
from reference_impls.kernels import kv_compression as kvc
from workloads.long_context import kv_compression as workload_module

REGISTRY.load()
WORKLOAD = REGISTRY.workload("kv_compression")


def _kept(mask: torch.Tensor, head: int = 0) -> list[int]:
    return mask[head].nonzero().flatten().tolist()


def _scores(q_heads: int, rows: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(q_heads, rows, length, generator=g).softmax(dim=-1)  # [Hq, W, L]


def _keys(kv_heads: int, length: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(kv_heads, length, dim, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------------------
# Policies on hand-built cases
# ------------------------------------------------------------------------------------------------------------


def test_streaming_llm_keeps_sinks_and_the_most_recent():
    keys = _keys(2, 20)
    mask = kvc.select_tokens("streaming_llm", keys, None, 8, sink_tokens=4)
    assert _kept(mask, 0) == _kept(mask, 1) == [0, 1, 2, 3, 16, 17, 18, 19]
    assert _kept(kvc.select_tokens("streaming_llm", keys, None, 3, sink_tokens=4)) == [0, 1, 2]
    assert _kept(kvc.select_tokens("streaming_llm", keys, None, 5, sink_tokens=0)) == [15, 16, 17, 18, 19]


def test_h2o_keeps_the_recent_half_and_the_heaviest_hitters():
    length = 20
    scores = torch.full((2, 3, length), 0.01)  # 2 query heads, one KV head, 3 queries
    scores[0, :, 5] = 0.5  # heavy hitter for query head 0 ...
    scores[1, 0, 9] = 0.9  # ... and for query head 1: the group votes together
    scores[:, :, 12] = 0.2
    scores[:, :, 18] = 0.9  # heavy but inside the recent window anyway
    mask = kvc.select_tokens("h2o", _keys(1, length), scores, 6)
    assert _kept(mask) == [5, 9, 12, 17, 18, 19]


def test_h2o_breaks_ties_towards_the_earlier_token():
    scores = torch.full((1, 1, 10), 0.1)
    mask = kvc.select_tokens("h2o", _keys(1, 10), scores, 4)  # recent 8, 9 + two of the tied 0..7
    assert _kept(mask) == [0, 1, 8, 9]


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_snapkv_pools_a_spike_over_its_neighbours_and_keeps_the_window(pooling):
    length, window = 40, 8
    scores = torch.full((1, window, length), 1e-4)
    scores[0, :, 20] = 0.5  # every window query looks at token 20
    mask = kvc.select_tokens("snapkv", _keys(1, length), scores, window + 5, window=window, pool_kernel=5,
                             pooling=pooling)
    assert _kept(mask) == [18, 19, 20, 21, 22, *range(length - window, length)]


def test_snapkv_priority_is_the_pooled_window_vote_summed_over_the_group():
    length, window, kernel = 30, 4, 5
    scores = _scores(4, 6, length)  # 4 query heads over 2 KV heads, 6 rows of which the last 4 observe
    plan = kvc.selection_plan("snapkv", _keys(2, length), scores, 12, window=window, pool_kernel=kernel)
    for head in range(2):
        vote = scores[2 * head: 2 * head + 2, -window:, : length - window].sum(dim=(0, 1))  # [L - w]
        padded = torch.cat([torch.zeros(kernel // 2), vote, torch.zeros(kernel // 2)])
        pooled = torch.stack([padded[i: i + kernel].mean() for i in range(length - window)])
        torch.testing.assert_close(plan.priority[head, : length - window], pooled)
    assert plan.forced[:, length - window:].all() and not plan.forced[:, : length - window].any()


def test_tova_reads_only_the_last_query_averaged_over_the_group():
    length = 12
    scores = torch.full((2, 3, length), 1.0 / length)
    scores[0, :2, 3] = 0.9  # earlier queries: ignored
    scores[0, -1, 7], scores[1, -1, 7] = 0.3, 0.3
    scores[0, -1, 10] = 0.5  # one head only: mean 0.25 + 1/24 < 0.3
    assert _kept(kvc.select_tokens("tova", _keys(1, length), scores, 2)) == [7, 10]


def test_knorm_keeps_the_lowest_norm_keys():
    keys = torch.ones(1, 6, 4)
    keys[0, :, 0] = torch.tensor([5.0, 0.1, 3.0, 0.2, 9.0, 0.3])
    assert _kept(kvc.select_tokens("knorm", keys, None, 3)) == [1, 3, 5]


def test_duo_attention_keeps_everything_on_retrieval_heads_only():
    keys = _keys(3, 30)
    mask = kvc.select_tokens("duo_attention", keys, None, 6, sink_tokens=2,
                             head_mask=torch.tensor([False, True, False]))
    assert mask.sum(dim=-1).tolist() == [6, 30, 6]
    assert _kept(mask, 0) == _kept(mask, 2) == [0, 1, 26, 27, 28, 29]


def test_full_keeps_every_token_whatever_the_budget():
    assert kvc.select_tokens("full", _keys(2, 9), None, 3).all()


@pytest.mark.parametrize("policy", [p for p in kvc.POLICIES if p not in ("full", "duo_attention")])
@pytest.mark.parametrize("length, budget", [(37, 9), (64, 64), (50, 80), (101, 1)])
def test_every_head_keeps_exactly_min_budget_length(policy, length, budget):
    mask = kvc.select_tokens(policy, _keys(3, length), _scores(6, 16 if length >= 16 else length, length), budget,
                             window=8)
    assert mask.dtype == torch.bool and mask.sum(dim=-1).tolist() == [min(budget, length)] * 3


def test_gqa_query_heads_vote_for_their_own_kv_head():
    length = 16
    scores = torch.full((4, 1, length), 0.01)
    scores[0, 0, 3] = scores[1, 0, 3] = 0.8  # query heads 0, 1 -> KV head 0
    scores[2, 0, 11] = scores[3, 0, 11] = 0.8  # query heads 2, 3 -> KV head 1
    mask = kvc.select_tokens("tova", _keys(2, length), scores, 1)
    assert _kept(mask, 0) == [3] and _kept(mask, 1) == [11]


@pytest.mark.parametrize("kwargs, message", [
    ({"policy": "lru"}, "unknown policy"),
    ({"policy": "h2o", "scores": None}, "needs scores"),
    ({"budget": 0}, "budget must be"),
    ({"pool_kernel": 4}, "pool_kernel must be an odd"),
    ({"policy": "duo_attention"}, "head_mask"),
    ({"scores": torch.rand(3, 2, 10)}, "scores must be"),
])
def test_bad_arguments_raise_a_clear_value_error(kwargs, message):
    args = {"policy": "snapkv", "keys": _keys(2, 10), "scores": _scores(4, 2, 10), "budget": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        kvc.select_tokens(**args)


def test_selection_violation_accepts_the_plan_and_rejects_a_swap():
    plan = kvc.selection_plan("tova", _keys(2, 20), _scores(2, 3, 20), 5)
    mask = kvc.mask_from_plan(plan)
    assert kvc.selection_violation(plan, mask) is None
    swapped = mask.clone()
    best = int(plan.priority[0].argmax())
    worst = int(plan.priority[0].masked_fill(mask[0], math.inf).argmin())
    swapped[0, best], swapped[0, worst] = False, True
    assert "dropped a token ranked" in kvc.selection_violation(plan, swapped)
    assert "tokens per head" in kvc.selection_violation(plan, mask & False)


def test_window_attention_scores_are_causal_probabilities():
    g = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(4, 5, 8, generator=g), torch.randn(2, 12, 8, generator=g)
    scores = kvc.window_attention_scores(queries, keys)
    torch.testing.assert_close(scores.sum(-1), torch.ones(4, 5))
    assert bool((scores[:, 0, 8:] == 0).all()) and bool((scores[:, -1] > 0).all())
    logits = torch.einsum("hwd,hld->hwl", queries.double(), keys.double().repeat_interleave(2, 0)) / math.sqrt(8)
    causal = torch.arange(12)[None] > torch.arange(7, 12)[:, None]
    torch.testing.assert_close(scores.double(), logits.masked_fill(causal, -math.inf).softmax(-1), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------------------
# Compressed caches and attention over them
# ------------------------------------------------------------------------------------------------------------


def _attention64(query, keys, values, mask):
    group = query.shape[0] // keys.shape[0]
    k, v = keys.double().repeat_interleave(group, 0), values.double().repeat_interleave(group, 0)
    logits = torch.einsum("hd,hld->hl", query.double(), k) / math.sqrt(query.shape[-1])
    logits = logits.masked_fill(~mask.repeat_interleave(group, 0), -math.inf)
    return torch.einsum("hl,hld->hd", logits.softmax(-1), v)


@pytest.mark.parametrize("kv_heads, group, length, dim", [(2, 1, 37, 16), (2, 4, 100, 32), (1, 3, 257, 8)])
def test_masked_compact_and_duo_attention_agree_with_float64(kv_heads, group, length, dim):
    g = torch.Generator().manual_seed(length)
    query = torch.randn(kv_heads * group, dim, generator=g)
    keys, values = torch.randn(2, kv_heads, length, dim, generator=g)
    mask = kvc.select_tokens("streaming_llm", keys, None, length // 3)
    expected = _attention64(query, keys, values, mask)
    kept_keys, kept_values = kvc.gather_kept(keys, values, mask)
    for out in (kv_attn.masked_decode_attention(query, keys, values, mask),
                kv_attn.compact_decode_attention(query, kept_keys, kept_values)):
        torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=1e-5)
    head_mask = torch.arange(kv_heads) == 0
    duo_mask = kvc.select_tokens("duo_attention", keys, None, length // 3, head_mask=head_mask)
    duo = kv_attn.duo_compact(keys, values, duo_mask, head_mask)
    torch.testing.assert_close(kv_attn.duo_decode_attention(query, duo).double(),
                               _attention64(query, keys, values, duo_mask), atol=1e-6, rtol=1e-5)
    assert duo.nbytes() == 4 * 2 * dim * (length + (kv_heads - 1) * (length // 3))


def test_compress_cache_layer_compacts_each_sequence_in_position_order():
    g = torch.Generator().manual_seed(3)
    keys, values = torch.randn(2, 2, 3, 40, 8, generator=g)  # [B, Hkv, L, d]
    scores = torch.rand(2, 6, 5, 40, generator=g).softmax(-1)  # [B, Hq, W, L]
    small_keys, small_values = kvc.compress_cache_layer(keys, values, scores, "snapkv", 12, window=5)
    assert small_keys.shape == (2, 3, 12, 8)
    for b in range(2):
        mask = kvc.select_tokens("snapkv", keys[b], scores[b], 12, window=5)
        index = mask.nonzero()[:, 1].view(3, 12)
        assert torch.equal(small_keys[b], keys[b].gather(1, index[..., None].expand(-1, -1, 8)))
        assert torch.equal(small_values[b], values[b].gather(1, index[..., None].expand(-1, -1, 8)))
    same_keys, same_values, mask = kvc.compress_cache_layer(keys, values, scores, "snapkv", 12, mode="masked",
                                                           window=5)
    assert same_keys is keys and same_values is values and mask.shape == (2, 3, 40)
    assert mask.sum(-1).eq(12).all()


def test_compress_cache_layer_refuses_a_compact_duo_cache_and_unknown_modes():
    keys = torch.randn(1, 2, 10, 4)
    with pytest.raises(ValueError, match="use mode='masked'"):
        kvc.compress_cache_layer(keys, keys, None, "duo_attention", 4, head_mask=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="mode must be"):
        kvc.compress_cache_layer(keys, keys, None, "streaming_llm", 4, mode="sparse")
    _, _, mask = kvc.compress_cache_layer(keys, keys, None, "duo_attention", 4, mode="masked",
                                          head_mask=torch.tensor([True, False]))
    assert mask.sum(-1).tolist() == [[10, 4]]


def test_duo_attention_memory_ratio_follows_the_head_split():
    assert kvc.duo_attention_memory_ratio(1.0, 10_000, 128, 256) == 1.0
    assert kvc.duo_attention_memory_ratio(0.5, 384, 128, 256) == 1.0  # context no longer than the short cache
    assert kvc.duo_attention_memory_ratio(0.25, 1000, 128, 256) == pytest.approx(1000 / (250 + 0.75 * 384))
    assert 3.9 < kvc.duo_attention_memory_ratio(0.25, 200_000, 128, 256) < 4.0  # MHA setting -> 1 / 0.25
    assert 1.99 < kvc.duo_attention_memory_ratio(0.5, 1_000_000, 128, 256) < 2.0  # GQA setting -> 1 / 0.5
    with pytest.raises(ValueError, match="retrieval_head_fraction"):
        kvc.duo_attention_memory_ratio(1.5, 100, 4, 4)


# ------------------------------------------------------------------------------------------------------------
# The workload
# ------------------------------------------------------------------------------------------------------------

SMALL = {p.name: p.default for p in WORKLOAD.params} | {"kv_len": 1024, "heads": 4, "kv_heads": 2, "head_dim": 32,
                                                         "window": 32, "kivi_residual": 64}


def _run(impl: str, **params):
    params = SMALL | params
    inputs = WORKLOAD.inputs(params, "cpu", 0)
    reference = WORKLOAD.reference(inputs, params)
    output = REGISTRY.impl("kv_compression", impl).fn(inputs, params)
    return params, output, reference


@pytest.mark.parametrize("policy", ["h2o", "snapkv", "tova"])
def test_score_policies_keep_the_planted_needles_at_a_quarter_budget(policy):
    _, output, reference = _run("compacted", policy=policy, budget_fraction=0.25)
    assert WORKLOAD.quality(output, reference)["quality.needle_recall"] == 1.0


def test_streaming_llm_loses_mid_context_needles_and_full_kv_loses_nothing():
    _, output, reference = _run("compacted", policy="streaming_llm", budget_fraction=0.25)
    quality = WORKLOAD.quality(output, reference)
    assert quality["quality.needle_recall"] == 0.0 and quality["quality.attention_rel_error_vs_full"] > 0.5
    _, output, reference = _run("masked", policy="full")
    quality = WORKLOAD.quality(output, reference)
    assert quality["quality.needle_recall"] == 1.0 and quality["quality.attention_rel_error_vs_full"] < 1e-6


@pytest.mark.parametrize("policy", workload_module.WORKLOAD_POLICIES)
def test_masked_holds_the_full_cache_and_compacted_holds_the_budget(policy):
    params, masked, reference = _run("masked", policy=policy, budget_fraction=0.25)
    _, compacted, _ = _run("compacted", policy=policy, budget_fraction=0.25)
    baseline = WORKLOAD.check(masked, reference, None)
    assert baseline.passed and WORKLOAD.check(compacted, reference, baseline.error).passed
    for wrong in WORKLOAD.wrong_answers(compacted):
        assert not WORKLOAD.check(wrong, reference, baseline.error).passed
    element, full = 4, 2 * 2 * 1024 * 32 * 4
    claimed = WORKLOAD.counters(compacted, params)["kv_claimed_bytes"]
    assert masked.held_bytes == workload_module.allocated_bytes_model(params, "masked")
    assert compacted.held_bytes == compacted.read_bytes == workload_module.allocated_bytes_model(params, "compacted")
    assert masked.held_bytes >= full  # the mask over a full cache saves nothing
    expected_claim = {"full": full, "duo_attention": 2 * 32 * element * (1024 + 256), "kivi": full * 2 // 32}
    assert claimed == expected_claim.get(policy, full // 4)
    if policy == "kivi":
        assert claimed < compacted.held_bytes < full  # scales, zero points and the fp window cost extra
    else:
        assert compacted.held_bytes == claimed


def test_kivi_counters_report_true_effective_bits():
    params, output, _ = _run("compacted", policy="kivi", kivi_bits=4, kivi_group=32, kivi_residual=0)
    assert WORKLOAD.counters(output, params)["kv_allocated_bits_per_element"] == 5.0  # 4 + 2 * 16 / 32


def test_unusable_parameters_raise_value_errors():
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        WORKLOAD.inputs(SMALL | {"heads": 3}, "cpu", 0)
    with pytest.raises(ValueError, match="needles"):
        WORKLOAD.inputs(SMALL | {"kv_len": 40, "needles": 30, "window": 8}, "cpu", 0)
    with pytest.raises(ValueError, match="budget_fraction"):
        WORKLOAD.inputs(SMALL | {"budget_fraction": 1.5}, "cpu", 0)


def test_the_check_holds_half_precision_outputs_to_the_compressed_cache():
    _, masked, reference = _run("masked", policy="tova", dtype="bfloat16")
    _, compacted, _ = _run("compacted", policy="tova", dtype="bfloat16")
    baseline = WORKLOAD.check(masked, reference, None)
    assert baseline.passed and 1e-4 < baseline.error < 0.05
    assert WORKLOAD.check(compacted, reference, baseline.error).passed
    assert F.cosine_similarity(compacted.out.double().flatten(), masked.out.double().flatten(), dim=0) > 0.999
