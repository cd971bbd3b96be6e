"""The full-context vs store crossover: the per-query cost model, the fit limit, the crossing rule, the workload."""

import pytest

from harness.registry import REGISTRY
from reference_impls.hardware.devices import get_device
from reference_impls.hardware.llm_estimate import estimate_phase, precision
from reference_impls.hardware.transformer import (
    decode_cost,
    extend_cost,
    kv_bytes_per_token,
    load_config,
    prefill_cost,
    weight_bytes,
)
from workloads.memory_agents.crossover_model import (
    Measured,
    Serving,
    fit_limit_tokens,
    full_context_query,
    phase,
    store_query,
    weights_fit,
)
from workloads.memory_agents.memory_crossover import LadderPoint, crossing

REGISTRY.load()
LLAMA = load_config("llama-3.1-8b")
H100 = Serving("llama-3.1-8b", "h100-sxm-80gb")
ORIN_INT4 = Serving("llama-3.1-8b", "jetson-orin-nano-8gb-15w", weights="int4")


def test_extend_after_nothing_is_prefill_and_extending_one_token_is_a_decode_step():
    p = precision("bf16")
    for tokens in (1, 37, 4096):
        a, b = extend_cost(LLAMA, p, tokens, 0), prefill_cost(LLAMA, p, tokens)
        assert (a.flops, a.bytes) == (b.flops, b.bytes)
    a, b = extend_cost(LLAMA, p, 1, 999), decode_cost(LLAMA, p, 1000)
    assert (a.flops, a.bytes) == (b.flops, b.bytes)
    # 100 new tokens after 1000 cached attend 100*1000 + 100*101/2 pairs: more than a 100-token prefill's 5050
    assert extend_cost(LLAMA, p, 100, 1000).flops > prefill_cost(LLAMA, p, 100).flops
    with pytest.raises(ValueError, match="cached_tokens"):
        extend_cost(LLAMA, p, 10, -1)


def test_reprefill_query_is_prefill_of_history_plus_question_then_the_answer_steps():
    m = Measured(turns=100, history_tokens=2600.0, question_tokens=10.0, store_tokens=300.0, search_s=0.0,
                 write_s=0.0)
    serving = Serving("llama-3.1-8b", "h100-sxm-80gb", full_context="reprefill", answer_tokens=4)
    device = get_device("h100-sxm-80gb")
    prefill = estimate_phase(prefill_cost(LLAMA, precision("bf16"), 2610), device).latency_s
    step = estimate_phase(decode_cost(LLAMA, precision("bf16"), 2612), device).latency_s  # mid-answer context
    assert full_context_query(serving, m)[0] == pytest.approx(prefill + 4 * step, rel=1e-12)


def test_store_query_adds_measured_search_and_writes_per_query():
    base = Measured(1000, 26000.0, 10.0, 300.0, 0.0, 0.0)
    timed = Measured(1000, 26000.0, 10.0, 300.0, 0.004, 0.003)
    assert store_query(H100, timed)[0] - store_query(H100, base)[0] == pytest.approx(0.004 + 2 * 0.003)
    assert store_query(H100, timed)[1] == store_query(H100, base)[1]  # host work has no modeled device energy


def test_prefix_cache_beats_reprefill_and_grows_with_the_history():
    reprefill = Serving("llama-3.1-8b", "h100-sxm-80gb", full_context="reprefill")
    short, long = Measured(100, 2600.0, 10.0, 300.0, 0, 0), Measured(5000, 130000.0, 10.0, 300.0, 0, 0)
    assert full_context_query(H100, long)[0] < full_context_query(reprefill, long)[0]
    assert full_context_query(H100, short)[0] < full_context_query(H100, long)[0]
    # an extend of the new turns + question after the cache: 2 turns of 26 tokens + 10 question tokens
    assert phase(H100, "extend", 62, 130000)[0] < phase(H100, "extend", 130010, 0)[0]


def test_fit_limit_is_free_memory_over_kv_bytes_per_token():
    p = precision("int4")
    memory = get_device("jetson-orin-nano-8gb-15w").tier(get_device("jetson-orin-nano-8gb-15w").main_tier)
    free = memory.capacity_bytes.value - weight_bytes(LLAMA, p)["total"]
    assert fit_limit_tokens(ORIN_INT4) == pytest.approx(free / kv_bytes_per_token(LLAMA, p))
    assert kv_bytes_per_token(LLAMA, p) == 32 * 2 * 8 * 128 * 2  # layers x (K,V) x kv heads x head_dim x bf16
    assert weights_fit(ORIN_INT4) and not weights_fit(Serving("llama-3.1-8b", "jetson-orin-nano-8gb-15w"))


def point(turns: int, full_s: float, store_s: float) -> LadderPoint:
    return LadderPoint(Measured(turns, 0.0, 0.0, 0.0, 0.0, 0.0), full_s, store_s, full_s, store_s, True)


def test_crossing_interpolates_and_is_capped_where_the_history_stops_fitting():
    points = (point(10, 1.0, 2.0), point(20, 1.5, 2.0), point(50, 3.5, 2.0))
    assert crossing(points, "full_s", "store_s", 1e9) == pytest.approx(20 + 30 * 0.5 / 2.0)
    assert crossing(points[:2], "full_s", "store_s", 1e9) is None
    assert crossing(points[:2], "full_s", "store_s", 15.0) == 15.0  # cheaper, but the KV stops fitting
    assert crossing(points, "full_s", "store_s", 25.0) == 25.0
    assert crossing((point(10, 3.0, 2.0),), "full_s", "store_s", 1e9) == 10.0


def params_of(**overrides) -> dict:
    w = REGISTRY.workload("memory_crossover")
    return {**{p.name: p.default for p in w.params}, **overrides}


def run(impl: str, params: dict):
    w = REGISTRY.workload("memory_crossover")
    inputs = w.inputs(params, "cpu", 0)
    out = REGISTRY.impl("memory_crossover", impl).fn(inputs, params)
    return out, w.check(out, w.reference(inputs, params), None)


def test_workload_full_context_never_crosses_and_a_retriever_crosses_right_after_k_turns_without_a_cache():
    params = params_of(turns=200, questions=20)
    full, check = run("full_context", params)
    assert check.passed and full.crossover_latency is None and [p.turns for p in full.points] == [10, 20, 50, 100, 200]
    bm25, check = run("bm25", {**params, "full_context": "reprefill"})
    assert check.passed and 10 <= bm25.crossover_latency <= 20  # k = 10 hits: the whole history at 10 turns
    assert bm25.points[-1].measured.store_tokens < 0.5 * bm25.points[-1].measured.history_tokens
    wrong = REGISTRY.workload("memory_crossover").wrong_answers(bm25)
    reference = REGISTRY.workload("memory_crossover").reference(None, {**params, "full_context": "reprefill"})
    assert not any(REGISTRY.workload("memory_crossover").check(x, reference, None).passed for x in wrong)


def test_a_model_that_does_not_fit_is_unsupported_with_a_reason():
    w = REGISTRY.workload("memory_crossover")
    reason = w.unsupported("bm25", params_of(device="jetson-orin-nano-8gb-15w"), "cpu")
    assert reason and "does not fit" in reason and "int4" in reason
    assert w.unsupported("bm25", params_of(device="jetson-orin-nano-8gb-15w", weights="int4"), "cpu") is None
