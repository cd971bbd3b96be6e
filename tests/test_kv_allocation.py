"""KV allocators under the serving simulator: hand-counted tiny traces, the recount, determinism, the paper claims."""

import dataclasses

import pytest
import torch

from harness.registry import REGISTRY
from reference_impls.kernels.kv_allocator import ALLOCATORS, KVMemory, PagedAllocator, make_allocator
from reference_impls.kernels.kv_recount import recount
from reference_impls.kernels.kv_simulator import SimulationSpec, llama31_8b_on, max_concurrency, simulate
from reference_impls.kernels.request_traces import SharedPrefix, explicit_trace, synthetic_trace

REGISTRY.load()


def _spec(memory_tokens: int, max_seq_len: int = 8, block_size: int = 2, page_bytes: int = 4, bpt: int = 64,
          kv_buffers: int = 64) -> SimulationSpec:
    """bytes_per_token 64 over 64 buffers: one byte per token per buffer, so a page of N bytes holds N tokens."""
    return SimulationSpec(KVMemory(memory_tokens * bpt, bpt, max_seq_len), block_size, page_bytes, kv_buffers)


def _slots(tally, field: str, bpt: int = 64) -> int:
    value = getattr(tally, field)
    assert value % bpt == 0
    return value // bpt


def test_one_request_hand_counted_for_every_allocator():
    """prompt 3, output 2, max_seq_len 8. Busy steps: after prefill (3 tokens) and after one decode (4 tokens);
    the second decode reaches 5 tokens and completes."""
    trace = explicit_trace([0.5], [3], [2])
    spec = _spec(memory_tokens=64)
    static, paged, virtual = (simulate(trace, name, spec) for name in ("static", "paged", "virtual"))
    # static: 8 slots held for 2 steps; used 3 + 4; reserved (5-3) + (5-4); never used 3 + 3
    assert [_slots(static, f) for f in ("allocated_byte_steps", "used_byte_steps", "reserved_byte_steps",
                                        "internal_byte_steps")] == [16, 7, 3, 6]
    assert static.waste_pct == pytest.approx(100 * 9 / 16) and static.alloc_ops == 1
    # paged, 2-token blocks: 2 blocks (4 slots) for both steps; the 3rd block comes with the 5th token
    assert [_slots(paged, f) for f in ("allocated_byte_steps", "used_byte_steps", "reserved_byte_steps",
                                       "internal_byte_steps")] == [8, 7, 1, 0]
    assert paged.alloc_ops == 3 and paged.waste_pct == pytest.approx(100 / 8)
    # virtual, 4-token pages in each of 64 buffers: the same bytes as 4-token blocks, 64 map calls per page
    assert [_slots(virtual, f) for f in ("allocated_byte_steps", "used_byte_steps", "reserved_byte_steps")] == [8, 7, 1]
    assert virtual.alloc_ops == 2 * 64
    for tally in (static, paged, virtual):
        assert (tally.steps, tally.completed, tally.max_concurrent, tally.preemptions) == (2, 1, 1, 0)


def test_preemption_by_recompute_hand_counted():
    """4 one-token blocks; A (prompt 1, output 3) and B (prompt 1, output 2) arrive together. At step 3 A needs a
    block, B (the newest) is preempted; B comes back at step 4 with its generated token (2 tokens) and ends at 5."""
    trace = explicit_trace([0.5, 0.5], [1, 1], [3, 2])
    tally = simulate(trace, "paged", _spec(memory_tokens=4, block_size=1, bpt=1, kv_buffers=1))
    assert (tally.preemptions, tally.completed, tally.max_concurrent, tally.steps) == (1, 2, 2, 4)
    assert tally.alloc_ops == 2 + 2 + 1 + 1 + 2 + 1  # ... and B's third token at step 5 needs a block
    assert tally.used_byte_steps == 2 + 4 + 3 + 2 and tally.request_steps == 2 + 2 + 1 + 1
    assert tally == recount(trace, "paged", _spec(memory_tokens=4, block_size=1, bpt=1, kv_buffers=1))


def test_shared_prefix_blocks_are_stored_once():
    """Two requests share an 8-token system prompt (two 4-token blocks); each has 2 own prompt tokens."""
    trace = explicit_trace([0.5, 0.5], [10, 10], [1, 1], prefix_group=[0, 0], prefix_tokens=[8])
    spec = _spec(memory_tokens=64, max_seq_len=16, block_size=4, bpt=1, kv_buffers=1)
    shared, plain = simulate(trace, "paged_shared", spec), simulate(trace, "paged", spec)
    assert shared.steps == plain.steps == 1
    assert (shared.allocated_byte_steps, shared.used_byte_steps, shared.reserved_byte_steps) == (16, 12, 2)
    assert (plain.allocated_byte_steps, plain.used_byte_steps, plain.reserved_byte_steps) == (24, 20, 2)
    assert shared.alloc_ops == 2 + 1 + 1 and plain.alloc_ops == 3 + 3  # the 11th token fits the 3rd block
    assert shared.internal_byte_steps == plain.internal_byte_steps == 2


def test_shared_blocks_are_freed_with_the_last_user():
    memory = KVMemory(64, 1, 32)
    kv = make_allocator("paged_shared", memory, block_size=4)
    assert kv.admit(0, 10, 0, 8) and kv.admit(1, 9, 0, 8)
    assert kv.allocated_bytes == 4 * (2 + 1 + 1) and kv.duplicate_tokens() == 8
    kv.release(0)
    assert kv.allocated_bytes == 4 * 3
    kv.release(1)
    assert kv.allocated_bytes == 0 and len(kv.free_blocks) == 16


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_simulator_books_equal_the_independent_recount_under_pressure(allocator):
    trace = synthetic_trace(120, 3, "sharegpt", rate=4.0, max_total_tokens=512, prefix=SharedPrefix(0.5, 2, 40))
    spec = _spec(memory_tokens=3000, max_seq_len=512, block_size=16, page_bytes=32)
    tally = simulate(trace, allocator, spec)
    assert tally == recount(trace, allocator, spec)
    assert tally.completed == 120
    if allocator != "static":
        assert tally.preemptions > 0  # the pool is tight: the preemption path is exercised


def test_traces_are_deterministic_by_seed_and_respect_limits():
    a, b, c = (synthetic_trace(500, seed, "sharegpt", 2.0, 1024, SharedPrefix(0.3, 4, 100)) for seed in (7, 7, 8))
    for field in ("arrival", "prompt_tokens", "output_tokens", "prefix_group"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.prompt_tokens, c.prompt_tokens)
    assert int(a.total_tokens.max()) <= 1024 and int(a.output_tokens.min()) >= 1
    assert bool((a.arrival > 0).all()) and bool((a.arrival.diff() >= 0).all())
    shared = a.prefix_group >= 0
    assert 0.2 < float(shared.double().mean()) < 0.4 and bool((a.prompt_tokens[shared] > 100).all())
    spec = _spec(memory_tokens=20_000, max_seq_len=1024, block_size=16, page_bytes=64)
    assert simulate(a, "paged", spec) == simulate(b, "paged", spec)


def test_sharegpt_lengths_have_the_documented_means():
    trace = synthetic_trace(20_000, 0, "sharegpt", 1.0, 1 << 20)
    assert float(trace.prompt_tokens.double().mean()) == pytest.approx(161.31, rel=0.05)
    assert float(trace.output_tokens.double().mean()) == pytest.approx(337.99, rel=0.05)


@pytest.mark.parametrize("block_size", [8, 32, 128])
def test_paged_waste_is_below_one_block_per_running_request(block_size):
    trace = synthetic_trace(150, 1, "sharegpt", 3.0, 1024)
    spec = _spec(memory_tokens=40_000, max_seq_len=1024, block_size=block_size)
    tally = simulate(trace, "paged", spec)
    waste = tally.reserved_byte_steps + tally.internal_byte_steps
    assert 0 < waste < block_size * 64 * tally.request_steps
    assert tally.peak_waste_bytes < block_size * 64 * tally.max_concurrent


def test_static_reservation_wastes_most_memory_on_skewed_lengths():
    trace = synthetic_trace(200, 2, "sharegpt", 1.0, 2048)
    spec = _spec(memory_tokens=16384, max_seq_len=2048, block_size=16, page_bytes=64)  # 64-token pages
    tallies = {name: simulate(trace, name, spec) for name in ("static", "paged", "virtual")}
    assert tallies["static"].waste_pct > 50 and tallies["paged"].waste_pct < 4 and tallies["virtual"].waste_pct < 10
    assert tallies["static"].max_concurrent == 8 < tallies["paged"].max_concurrent


def test_max_concurrency_for_llama_8b_on_80_gb():
    shape = llama31_8b_on(80 * 10**9)
    assert (shape.weight_bytes, shape.bytes_per_token, shape.kv_buffers) == (16_060_522_496, 131072, 64)
    trace = synthetic_trace(300, 0, "alpaca", rate=1000.0, max_total_tokens=2048)
    found = max_concurrency(trace, shape, max_seq_len=2048)
    assert found["static"] == (80 * 10**9 - 16_060_522_496) // (2048 * 131072) == 238
    assert found["paged"] == found["paged_shared"] == found["virtual"] == 300  # all of them fit at once
    big_pages = max_concurrency(trace, shape, 2048, page_bytes=2 << 20, allocators=("virtual",))
    assert big_pages["virtual"] == 300  # 300 x 128 MiB minimum per request still fits in 63.9 GB


@pytest.mark.parametrize("call, message", [
    (lambda: make_allocator("buddy", KVMemory(10, 1, 4)), "unknown allocator 'buddy'"),
    (lambda: PagedAllocator(KVMemory(10, 1, 4), block_size=0), "block_size must be >= 1"),
    (lambda: make_allocator("virtual", KVMemory(640, 65, 4), kv_buffers=64), "must split evenly"),
    (lambda: make_allocator("virtual", KVMemory(640, 128, 4), page_bytes=1), "smaller than one token"),
    (lambda: simulate(explicit_trace([1.0], [5], [5]), "paged", _spec(memory_tokens=8)), "cannot fit"),
    (lambda: explicit_trace([1.0], [0], [5]), "prompt_tokens >= 1"),
    (lambda: explicit_trace([2.0, 1.0], [1, 1], [1, 1]), "non-decreasing"),
    (lambda: explicit_trace([1.0], [3], [1], [0], [8]), "cannot be longer than its prompt"),
    (lambda: synthetic_trace(10, 0, "sharegtp"), "unknown length model"),
    (lambda: synthetic_trace(10, 0, rate=0.0), "arrival rate must be > 0"),
    (lambda: SharedPrefix(fraction=1.5), "fraction must be in"),
    (lambda: KVMemory(0, 1, 1), "must be >= 1"),
])
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_workload_counters_and_exact_check():
    workload = REGISTRY.workload("kv_allocation")
    params = {p.name: p.default for p in workload.params} | {"requests": 60, "memory_gib": 0.5}
    inputs = workload.inputs(params, "cpu", 0)
    reference = workload.reference(inputs, params)
    output = REGISTRY.impl("kv_allocation", "paged_shared").fn(inputs, params)
    check = workload.check(output, reference, None)
    assert check.passed and check.error == 0
    counters = workload.counters(output, params)
    assert counters["kv_alloc.completed"] == 60
    assert counters["kv_alloc.waste_pct"] == pytest.approx(
        counters["kv_alloc.internal_frag_pct"] + counters["kv_alloc.reserved_unused_pct"])
    bad = dataclasses.replace(output, used_byte_steps=output.used_byte_steps + 1, steps=output.steps + 1)
    assert workload.check(bad, reference, None).error == 2
