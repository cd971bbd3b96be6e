"""Ring attention: 2 and 3 gloo ranks in float64 equal single-process causal attention, bytes sent equal the cost."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from dist_helpers import run_ranks

from harness.registry import REGISTRY
from reference_impls.kernels import attention as attn
from reference_impls.kernels import ring_attention as ring
from workloads.long_context import ring_attention as wl

WORKLOAD = REGISTRY.workload("ring_attention")  # registered by importing its module (spawned ranks load no more)
BASE = {"ranks": 2, "batch": 1, "dtype": "float64", "sharding": "zigzag"}
CASES = [  # (seq_len, heads, kv_heads, head_dim, batch, exact-kernel query chunk)
    (12, 2, 2, 8, 1, 512),  # MHA, zigzag chunks of 3 rows
    (20, 6, 2, 5, 2, 3),  # GQA, odd chunks of 5 rows split into query chunks of 3
    (36, 4, 1, 16, 1, 4),  # MQA, local shards of 18 rows = 4 query chunks and a ragged one
]


def _params(case: tuple, ranks: int = 2, sharding: str = "zigzag") -> dict:
    seq, heads, kv_heads, head_dim, batch, _ = case
    return {**BASE, "ranks": ranks, "seq_len": seq, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
            "batch": batch, "sharding": sharding}


def _counting_comm(sent: list[int]) -> tuple:
    """Wrap batch_isend_irecv and all_gather to count the bytes of every tensor actually handed to a send."""
    batch, gather = dist.batch_isend_irecv, dist.all_gather

    def counted_batch(ops):
        sent[0] += sum(op.tensor.numel() * op.tensor.element_size() for op in ops if op.op is dist.isend)
        return batch(ops)

    def counted_gather(outputs, tensor, group=None, async_op=False):
        sent[0] += (len(outputs) - 1) * tensor.numel() * tensor.element_size()
        return gather(outputs, tensor, group=group, async_op=async_op)

    return counted_batch, counted_gather, (batch, gather)


def _worker(rank: int, world: int, cases: list[tuple]) -> list[dict]:
    """On each rank: every case x sharding x implementation, with the bytes sent counted two ways, and the
    workload's own sampled-row check and wrong answers."""
    results = []
    for case in cases:
        ring.EXACT_QUERY_CHUNK = case[-1]
        for sharding in ring.SHARDINGS:
            params = _params(case, world, sharding)
            inputs = WORKLOAD.inputs(params, "cpu", 7)
            reference = WORKLOAD.reference(inputs, params)
            for impl in ("ring", "allgather_kv"):
                sent, log = [0], ring.CommLog()
                counted_batch, counted_gather, originals = _counting_comm(sent)
                dist.batch_isend_irecv, dist.all_gather = counted_batch, counted_gather
                try:
                    fn = ring.ring_attention if impl == "ring" else ring.allgather_kv_attention
                    out = fn(inputs["q"], inputs["k"], inputs["v"], sharding, comm=log)
                finally:
                    dist.batch_isend_irecv, dist.all_gather = originals
                check = WORKLOAD.check(out, reference, None)
                wrong = [WORKLOAD.check(w, reference, check.error).passed for w in WORKLOAD.wrong_answers(out)]
                results.append({"case": case, "sharding": sharding, "impl": impl, "out": out, "sent": sent[0],
                                "logged": log.bytes_sent, "check": check.passed, "error": check.error,
                                "wrong_passed": any(wrong)})
    return results


def _full_inputs(params: dict, seed: int) -> tuple[torch.Tensor, ...]:
    """The whole sequence's q, k, v in one process, from the same per-chunk generators."""
    s = wl.dims(params)
    tensors = []
    for role, heads in enumerate((s["h"], s["hkv"], s["hkv"])):
        shape = (s["b"], heads, s["chunk"], s["d"])
        tensors.append(torch.cat([wl.random_piece(shape, torch.float64, "cpu", seed, c, role)
                                  for c in range(s["chunks"])], dim=2))
    return tuple(tensors)


def _causal_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    group = q.shape[1] // k.shape[1]
    return attn.attention_reference(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), True)


def _assemble(shards: list[torch.Tensor], params: dict) -> torch.Tensor:
    """Put each rank's output rows back at their global positions."""
    s = wl.dims(params)
    full = torch.empty(s["b"], s["h"], params["seq_len"], s["d"], dtype=shards[0].dtype)
    for rank, shard in enumerate(shards):
        for i, c in enumerate(ring.rank_chunks(rank, s["n"], params["sharding"])):
            full[:, :, c * s["chunk"]:(c + 1) * s["chunk"]] = shard[:, :, i * s["chunk"]:(i + 1) * s["chunk"]]
    return full


@pytest.fixture(scope="module")
def two_ranks() -> list[list[dict]]:
    return run_ranks(_worker, 2, CASES)


@pytest.fixture(scope="module")
def three_ranks() -> list[list[dict]]:
    return run_ranks(_worker, 3, [(30, 4, 2, 8, 1, 4)])


def _verify(per_rank: list[list[dict]], world: int) -> int:
    checked = 0
    for i, first in enumerate(per_rank[0]):
        params = _params(first["case"], world, first["sharding"])
        expected = _causal_reference(*_full_inputs(params, 7))
        got = _assemble([per_rank[r][i]["out"] for r in range(world)], params)
        assert (got - expected).abs().max().item() < 1e-12, (first["case"], first["sharding"], first["impl"])
        for r in range(world):
            row = per_rank[r][i]
            assert row["check"] and row["error"] < 1e-13 and not row["wrong_passed"]
            assert row["sent"] == row["logged"] == wl.comm_bytes(params)
            assert WORKLOAD.cost(params, row["impl"]).bytes["interconnect"] == row["sent"] > 0
        checked += 1
    return checked


def test_two_ranks_float64_equal_single_process_causal_attention(two_ranks):
    assert _verify(two_ranks, 2) == len(CASES) * 2 * 2  # sizes x shardings x implementations


def test_three_ranks_forward_blocks_around_a_real_ring(three_ranks):
    assert _verify(three_ranks, 3) == 4


def test_world_size_one_is_plain_causal_attention():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 6, 14, 8, generator=g, dtype=torch.float64)
    k, v = (torch.randn(2, 3, 14, 8, generator=g, dtype=torch.float64) for _ in range(2))
    expected = _causal_reference(q, k, v)
    for sharding in ring.SHARDINGS:
        for fn in (ring.ring_attention, ring.allgather_kv_attention):
            log = ring.CommLog()
            assert (fn(q, k, v, sharding, comm=log) - expected).abs().max().item() < 1e-13
            assert log.bytes_sent == 0


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-6), (torch.bfloat16, 2e-2)])
def test_low_precision_world_one_within_dtype_tolerance(dtype, tol):
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 4, 40, 16, generator=g).to(dtype) for _ in range(3))
    expected = _causal_reference(q.double(), k.double(), v.double())
    out = ring.ring_attention(q, k, v, "zigzag")
    assert out.dtype == dtype
    assert ((out.double() - expected).norm() / expected.norm()).item() < tol


@pytest.mark.parametrize("causal, heads, kv_heads, seq_q", [(True, 4, 4, 37), (True, 6, 2, 37), (False, 6, 2, 19),
                                                             (False, 4, 1, 33)])
def test_fused_block_logic_matches_exact_block(causal, heads, kv_heads, seq_q):
    """The CUDA path's GQA folding and lse handling, run on CPU through torch's CPU flash kernel."""
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, heads, seq_q, 16, generator=g)
    k, v = (torch.randn(2, kv_heads, 37 if causal else 23, 16, generator=g) for _ in range(2))
    if causal:
        q = q[:, :, :37]
    fused_out, fused_lse = ring.fused_block_attention(q, k, v, causal)
    exact_out, exact_lse = ring.exact_block_attention(q.double(), k.double(), v.double(), causal, query_chunk=5)
    assert fused_lse.shape == (2, heads, q.shape[2])
    assert (fused_out.double() - exact_out).abs().max().item() < 1e-5
    assert (fused_lse.double() - exact_lse).abs().max().item() < 1e-5


def test_lse_rows_cuts_the_efficient_kernels_padding():
    padded = torch.arange(2 * 3 * 64, dtype=torch.float32).view(2, 3, 64)
    assert torch.equal(ring.lse_rows(padded, 37), padded[..., :37])
    assert ring.lse_rows(padded[..., :37], 37).shape == (2, 3, 37)
    with pytest.raises(ValueError, match="fewer than the 40 queries"):
        ring.lse_rows(padded[..., :37], 40)


def test_merge_partial_of_two_key_halves_is_attention_over_both():
    g = torch.Generator().manual_seed(6)
    q = torch.randn(1, 2, 5, 4, generator=g, dtype=torch.float64)
    k, v = (torch.randn(1, 2, 9, 4, generator=g, dtype=torch.float64) for _ in range(2))
    out, lse = ring.exact_block_attention(q, k[:, :, :4], v[:, :, :4], False)
    merge_out, merge_lse = ring.exact_block_attention(q, k[:, :, 4:], v[:, :, 4:], False)
    ring.merge_partial(out, lse, merge_out, merge_lse)
    whole_out, whole_lse = ring.exact_block_attention(q, k, v, False)
    assert torch.allclose(out, whole_out, atol=1e-14) and torch.allclose(lse, whole_lse, atol=1e-14)


def test_bad_params_raise_value_errors_naming_what_is_allowed():
    q = k = v = torch.randn(1, 2, 6, 4)
    with pytest.raises(ValueError, match="allowed: contiguous, zigzag"):
        ring.ring_attention(q, k, v, "spiral")
    with pytest.raises(ValueError, match="multiple of kv heads"):
        ring.ring_attention(q, torch.randn(1, 3, 6, 4), torch.randn(1, 3, 6, 4))
    with pytest.raises(ValueError, match="odd"):
        ring.ring_attention(q[:, :, :5], k[:, :, :5], v[:, :, :5], "zigzag")
    params = _params(CASES[0], ranks=1)
    with pytest.raises(ValueError, match="multiple of the zigzag sharding's 2 chunks"):
        wl.dims({**params, "seq_len": 13})
    with pytest.raises(ValueError, match="kv_heads .3. must divide heads .2."):
        WORKLOAD.inputs({**params, "kv_heads": 3}, "cpu", 0)
    with pytest.raises(ValueError, match="torch.distributed world size is 1"):
        WORKLOAD.inputs({**params, "ranks": 2}, "cpu", 0)
    assert "multiple of the contiguous sharding's 4 chunks" in WORKLOAD.unsupported(
        "ring", {**params, "ranks": 4, "seq_len": 30, "sharding": "contiguous"}, "cpu")
    if torch.cuda.device_count() < 64:
        assert "needs that many GPUs" in WORKLOAD.unsupported("ring", {**params, "ranks": 64, "seq_len": 1280}, "cuda")


def test_cost_work_adds_up_and_contiguous_is_unbalanced():
    """Zigzag ranks each do 1/N of the causal work (their sum is S(S+1)/2); the contiguous busiest rank does
    (N - 1/2)/N of a full S/N x S block row, about twice zigzag's share at 8 ranks."""
    for n, seq in [(2, 16), (4, 64), (8, 256)]:
        local = seq // n
        assert wl.busiest_score_elements(n, local, "zigzag") * n == seq * (seq + 1) / 2
        assert wl.busiest_score_elements(n, local, "contiguous") == (n - 1) * local**2 + local * (local + 1) / 2
    params = {**BASE, "ranks": 8, "seq_len": 4096, "heads": 8, "kv_heads": 2, "head_dim": 64}
    ratio = (WORKLOAD.cost({**params, "sharding": "contiguous"}, "ring").flops
             / WORKLOAD.cost(params, "ring").flops)
    assert 1.8 < ratio < 2.0
    ring_cost, gather_cost = WORKLOAD.cost(params, "ring"), WORKLOAD.cost(params, "allgather_kv")
    kv_shard = 2 * 1 * 2 * 512 * 64 * 8
    assert ring_cost.bytes["interconnect"] == gather_cost.bytes["interconnect"] == 7 * kv_shard
    assert gather_cost.footprint_bytes - ring_cost.footprint_bytes == (1 + 8 - 3) * kv_shard
    assert WORKLOAD.counters(None, params) == {"comm.bytes_sent_per_rank": 7 * kv_shard}


def test_ring_and_sharded_decode_run_through_the_harness_on_two_gloo_ranks(write_suite, tmp_path):
    """The real workloads under the harness's own launcher: one folded record per case, checked in float64."""
    from harness.registry import REGISTRY
    from harness.runner import open_store, run_suite
    from harness.store import read_records
    from harness.suite import load_suite

    text = """
name: ranks
settings: {warmup_s: 0.0, min_repeats: 3, min_time_s: 0.0, timeout_s: 60, threads: 1}
cases:
  - workload: ring_attention
    grid: {ranks: [2], seq_len: [96], heads: [4], kv_heads: [2], head_dim: [8], dtype: [float64],
           sharding: [zigzag]}
  - workload: sharded_decode
    grid: {ranks: [2], context_tokens: [101], batch: [6], heads: [4], kv_heads: [2], head_dim: [8], dtype: [float64]}
"""
    suite = load_suite(str(write_suite(text)), REGISTRY)
    run_suite(suite, open_store(suite, tmp_path / "run", resume=False))
    records = {r["workload"] + "/" + r["impl"]: r for r in read_records(tmp_path / "run")}
    assert sorted(records) == ["ring_attention/allgather_kv", "ring_attention/ring", "sharded_decode/lse_allgather"]
    for record in records.values():
        assert record["status"] == "ok", record["error"]
        assert [r["rank"] for r in record["ranks"]] == [0, 1]
        assert record["metrics"]["quality.rel_l2_error"]["value"] < 1e-12
        assert record["metrics"]["comm.bytes_sent_per_rank"]["value"] > 0
        assert len(record["metrics"]["latency_s"]["per_rank_median_s"]) == 2
    # one ring step sends this rank's K and V: 2 tensors x 2 KV heads x 48 local tokens x 8 dims x 8 bytes
    assert records["ring_attention/ring"]["metrics"]["comm.bytes_sent_per_rank"]["value"] == 2 * 2 * 48 * 8 * 8
