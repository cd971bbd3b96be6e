"""Multi-rank cases: one process per rank (gloo here), lockstep timing, one folded record, failures contained."""

import pytest

from harness.distributed import NO_MULTICAST, fold_ranks, rank_env
from harness.rank_worker import agreed_repeats
from harness.registry import REGISTRY
from harness.runner import open_store, run_suite
from harness.store import flatten, read_records
from harness.suite import load_suite

SUITE = """
name: dist
settings: {{warmup_s: 0.0, min_repeats: 5, min_time_s: 0.0, timeout_s: {timeout}}}
plugins: [membench_dist_plugins]
cases:
  - workload: sharded_sum
    impls: [{impls}]
    grid: {{ranks: [{ranks}], n: [4096]}}
"""


def _run(write_suite, tmp_path, impls, ranks="2", timeout=60.0):
    suite = load_suite(str(write_suite(SUITE.format(impls=", ".join(impls), ranks=ranks, timeout=timeout))),
                       REGISTRY)
    store = open_store(suite, tmp_path / "run", resume=False)
    run_suite(suite, store)
    return {(r["impl"], r["params"]["ranks"]): r for r in read_records(tmp_path / "run")}


def test_ranks_fold_into_one_record_with_the_slowest_rank_time(write_suite, tmp_path):
    records = _run(write_suite, tmp_path, ["all_reduce", "slow_last_rank"], ranks="1, 2")
    assert {k: r["status"] for k, r in records.items()} == {(i, n): "ok" for i in ("all_reduce", "slow_last_rank")
                                                             for n in (1, 2)}
    fast, slow = records[("all_reduce", 2)], records[("slow_last_rank", 2)]
    assert [r["rank"] for r in fast["ranks"]] == [0, 1] and len(records[("all_reduce", 1)]["ranks"]) == 1
    assert fast["metrics"]["quality.rel_l2_error"]["value"] < 1e-15  # float64 sum of two shards
    latency = slow["metrics"]["latency_s"]
    assert latency["value"] >= 0.03 and min(latency["samples"]) >= 0.03  # every call waits for the last rank
    per_rank = latency["per_rank_median_s"]
    assert per_rank[1] >= 0.03 > per_rank[0]  # rank 0 returns as soon as its all-reduce is done
    assert len(latency["samples"]) >= 5 and "slowest of 2 ranks" in latency["note"]
    peak = fast["metrics"]["peak_memory_bytes"]
    assert peak["value"] == max(peak["per_rank"]) and len(peak["per_rank"]) == 2
    assert fast["model"]["flops"] == 4096.0 and "energy_j" in fast["unmeasured"]
    summary = flatten(slow)["ranks_summary"]  # the leaderboard's hover text
    assert summary.startswith("rank 0: ") and "; rank 1: 0.03" in summary and "GiB" in summary
    assert flatten(records[("all_reduce", 1)])["ranks_summary"] is None


def test_a_failing_rank_fails_the_case_and_the_others_are_stopped(write_suite, tmp_path):
    records = _run(write_suite, tmp_path, ["raises_on_last_rank", "wrong_on_last_rank", "hangs_on_last_rank"],
                   timeout=8.0)
    raised = records[("raises_on_last_rank", 2)]
    assert raised["status"] == "failed" and raised["error"].startswith("rank 1: RuntimeError: deliberate")
    wrong = records[("wrong_on_last_rank", 2)]
    assert wrong["status"] == "failed" and "correctness check failed: error 0.01" in wrong["error"]
    assert "latency_s" not in wrong["metrics"]
    hung = records[("hangs_on_last_rank", 2)]
    assert hung["status"] == "timeout" and "timeout_s=8.0" in hung["error"]
    assert raised["wall_s"] < 30  # rank 0 was killed, not left to its collective's own timeout


def test_rank_environment_is_torchruns_with_multicast_off():
    env = rank_env(1, 2, 29500)
    assert env["RANK"] == "1" and env["WORLD_SIZE"] == "2" and env["LOCAL_RANK"] == "1"
    assert env["MASTER_ADDR"] == "127.0.0.1" and env["MASTER_PORT"] == "29500"
    assert {k: env[k] for k in NO_MULTICAST} == {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                                                 "NVSHMEM_DISABLE_NVLS": "1"}


@pytest.mark.parametrize(("call_s", "left_s", "expected"), [
    (0.001, 100.0, 200),  # min_time 0.2 s of 1 ms calls
    (1.0, 100.0, 5),  # min_repeats wins
    (1.0, 8.0, 4),  # half the time left affords 4
    (10.0, 5.0, 3),  # never fewer than 3
])
def test_agreed_repeats(call_s, left_s, expected):
    assert agreed_repeats(call_s, min_repeats=5, max_repeats=1000, min_time_s=0.2, left_s=left_s) == expected


def test_fold_keeps_the_worst_status_and_says_which_rank():
    from harness.case import Case
    from harness.suite import Settings
    from harness.worker import CaseSpec

    REGISTRY.load(["membench_dist_plugins"])
    case = Case("testing", "sharded_sum", "all_reduce", (("ranks", 2), ("n", 8), ("dtype", "float64")), "cpu")
    spec = CaseSpec("run", case, Settings())
    ok = {"run": "run", "case": case.id, "family": "testing", "workload": "sharded_sum", "impl": "all_reduce",
          "params": case.param_dict(), "device": "cpu", "seed": 0, "status": "ok", "metrics": {}}
    oom = {**ok, "status": "oom", "error": "CUDA out of memory"}
    folded = fold_ranks(spec, {0: ok, 1: oom}, 2)
    assert folded.status == "oom" and folded.error == "rank 1: CUDA out of memory"
    assert [r["status"] for r in folded.ranks] == ["ok", "oom"]
    missing = fold_ranks(spec, {1: {**ok, "status": "failed", "error": "boom"}}, 2)
    assert missing.error == "rank 1: boom (ranks [0] stopped)"
