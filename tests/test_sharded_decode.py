"""Sharded decode: 2 gloo ranks in float64 equal single-process decode attention, uneven and empty slices too."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
from dist_helpers import run_ranks

from harness.registry import REGISTRY
from reference_impls.kernels import sharded_decode as sd
from reference_impls.kernels.ring_attention import CommLog
from workloads.long_context import sharded_decode as wl

WORKLOAD = REGISTRY.workload("sharded_decode")  # registered by importing its module
CASES = [  # (context_tokens, batch, heads, kv_heads, head_dim)
    (64, 1, 4, 4, 8),  # even split, MHA
    (37, 2, 6, 2, 5),  # uneven split (19 + 18), GQA
    (1, 1, 4, 1, 16),  # one token: rank 1's slice is empty
]


def _params(case: tuple, ranks: int) -> dict:
    ctx, batch, heads, kv_heads, head_dim = case
    return {"ranks": ranks, "context_tokens": ctx, "batch": batch, "heads": heads, "kv_heads": kv_heads,
            "head_dim": head_dim, "dtype": "float64"}


def _worker(rank: int, world: int, cases: list[tuple]) -> list[dict]:
    results = []
    gather, sent = dist.all_gather, [0]

    def counted_gather(outputs, tensor, group=None, async_op=False):
        sent[0] += (len(outputs) - 1) * tensor.numel() * tensor.element_size()
        return gather(outputs, tensor, group=group, async_op=async_op)

    for case in cases:
        params = _params(case, world)
        inputs = WORKLOAD.inputs(params, "cpu", 11)
        sent[0], log = 0, CommLog()
        dist.all_gather = counted_gather
        try:
            out = sd.sharded_decode_attention(inputs["q"], inputs["k"], inputs["v"], comm=log)
        finally:
            dist.all_gather = gather
        reference = WORKLOAD.reference(inputs, params)
        check = WORKLOAD.check(out, reference, None)
        wrong = [WORKLOAD.check(w, reference, check.error).passed for w in WORKLOAD.wrong_answers(out)]
        results.append({"out": out, "slice": inputs["k"].shape[2], "sent": sent[0], "logged": log.bytes_sent,
                        "check": check.passed, "error": check.error, "wrong_passed": any(wrong)})
    return results


def _full_decode(params: dict, seed: int) -> torch.Tensor:
    """Single-process decode over the whole cache, rebuilt from the per-rank slices' generators."""
    q = wl.random_piece((params["batch"], params["heads"], 1, params["head_dim"]), torch.float64, "cpu", seed,
                        wl.QUERY_PIECE, 0)
    slices = [wl._cache_slice(params, "cpu", seed, r) for r in range(params["ranks"])]
    k, v = (torch.cat([s[i] for s in slices], dim=2) for i in (0, 1))
    group = params["heads"] // params["kv_heads"]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(params["head_dim"]), dim=-1) @ v


@pytest.fixture(scope="module")
def two_ranks() -> list[list[dict]]:
    return run_ranks(_worker, 2, CASES)


def test_two_ranks_float64_equal_single_process_decode(two_ranks):
    for i, case in enumerate(CASES):
        params = _params(case, 2)
        expected = _full_decode(params, 11)
        assert [r[i]["slice"] for r in two_ranks] == [-(-case[0] // 2), case[0] // 2]
        for per_rank in two_ranks:
            row = per_rank[i]
            assert (row["out"] - expected).abs().max().item() < 1e-13, case
            assert row["check"] and row["error"] < 1e-13 and not row["wrong_passed"]
            assert row["sent"] == row["logged"] == wl.comm_bytes(params) == WORKLOAD.cost(
                params, "lse_allgather").bytes["interconnect"] > 0
        assert torch.equal(two_ranks[0][i]["out"], two_ranks[1][i]["out"])  # every rank merges identically


def test_world_size_one_and_uneven_slices_merge_like_one_softmax():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 6, 1, 8, generator=g, dtype=torch.float64)
    k, v = (torch.randn(2, 3, 41, 8, generator=g, dtype=torch.float64) for _ in range(2))
    expected = torch.softmax(q @ k.repeat_interleave(2, 1).transpose(-2, -1) / math.sqrt(8), -1) @ v.repeat_interleave(
        2, 1)
    assert (sd.sharded_decode_attention(q, k, v) - expected).abs().max().item() < 1e-14
    parts = [sd.decode_partial(q, k[:, :, a:b], v[:, :, a:b]) for a, b in [(0, 5), (5, 5), (5, 41)]]
    merged = sd.merge_partials(torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts]))
    assert (merged.unsqueeze(2) - expected).abs().max().item() < 1e-14


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 2e-2)])
def test_low_precision_decode_within_dtype_tolerance(dtype, tol):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 8, 1, 16, generator=g)
    k, v = (torch.randn(1, 2, 300, 16, generator=g) for _ in range(2))
    expected = torch.softmax(q.double() @ k.double().repeat_interleave(4, 1).transpose(-2, -1) / 4, -1) @ (
        v.double().repeat_interleave(4, 1))
    out = sd.sharded_decode_attention(q.to(dtype), k.to(dtype), v.to(dtype))
    assert out.dtype == dtype and ((out.double() - expected).norm() / expected.norm()).item() < tol


def test_slice_bounds_cover_the_context_once():
    for ctx, ranks in [(10, 3), (2, 4), (4096, 8)]:
        bounds = [wl.slice_bounds(ctx, ranks, r) for r in range(ranks)]
        assert bounds[0][0] == 0 and bounds[-1][1] == ctx
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_bad_params_raise_value_errors_naming_what_is_allowed():
    params = _params(CASES[0], 1)
    with pytest.raises(ValueError, match="kv_heads .3. must divide heads .4."):
        WORKLOAD.inputs({**params, "kv_heads": 3}, "cpu", 0)
    with pytest.raises(ValueError, match="torch.distributed world size is 1"):
        WORKLOAD.inputs({**params, "ranks": 2}, "cpu", 0)
    with pytest.raises(ValueError, match=r"\[B, H, 1, D\]"):
        sd.sharded_decode_attention(torch.randn(1, 4, 2, 8), torch.randn(1, 4, 5, 8), torch.randn(1, 4, 5, 8))
    assert "must divide heads" in WORKLOAD.unsupported("lse_allgather", {**params, "kv_heads": 3}, "cpu")
    if torch.cuda.device_count() < 64:
        assert "needs that many GPUs" in WORKLOAD.unsupported("lse_allgather", {**params, "ranks": 64}, "cuda")


def test_cost_is_per_busiest_rank():
    params = {**_params((4097, 1, 32, 8, 128), 8), "dtype": "bfloat16"}
    cost = WORKLOAD.cost(params, "lse_allgather")
    assert cost.flops == 4.0 * 32 * 513 * 128  # ceil(4097 / 8) tokens
    assert cost.bytes["dram"] == 2 * 8 * 513 * 128 * 2 + 2 * 32 * 128 * 2
    assert cost.bytes["interconnect"] == 7 * 32 * 129 * 4
    assert WORKLOAD.counters(None, params) == {"comm.bytes_sent_per_rank": 7 * 32 * 129 * 4}


def test_large_batches_check_first_middle_last_rows_against_full_float64():
    """At batch > 4 the reference covers rows 0, B/2 and B-1 only (40 x 1M tokens stays affordable), and those
    rows equal a full float64 decode of the same cache."""
    from workloads.long_context.sharded_decode import ShardedDecode, checked_rows

    params = {"ranks": 1, "context_tokens": 97, "batch": 6, "heads": 4, "kv_heads": 2, "head_dim": 8,
              "dtype": "float64"}
    workload = ShardedDecode()
    inputs = workload.inputs(params, "cpu", seed=3)
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    kr, vr = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    full = torch.softmax(q @ kr.transpose(-2, -1) / 8**0.5, dim=-1) @ vr  # [6, 4, 1, 8]
    reference = workload.reference(inputs, params)
    assert checked_rows(6) == [0, 3, 5] and reference.shape == (3, 4, 1, 8)
    assert torch.allclose(reference, full[[0, 3, 5]], rtol=1e-12, atol=1e-13)
    assert workload.check(full, reference, None).passed
    wrong = full.clone()
    wrong[5] *= 1.01  # the last row is checked
    assert not workload.check(wrong, reference, None).passed
