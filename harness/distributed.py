"""Run a multi-rank case: one process per rank with torchrun's environment, their records folded into one.

The launcher is the parent of every rank: it kills them all on the case's timeout, and as soon as one rank
reports a failure (the others would wait in a collective until the group's own timeout). NVLink multicast
stays off in every rank's environment: NCCL's NVLS, torch's symmetric-memory multicast and NVSHMEM's NVLS
(the machines this runs on lend GPUs whose multicast objects are not ours to create).
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from typing import Any

from harness import worker
from harness.case import Record, metric
from harness.prediction import DeviceModels, floor_violation
from harness.registry import REGISTRY
from harness.stats import summarize
from harness.worker import CaseSpec

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
STATUS_SEVERITY = ("failed", "oom", "timeout", "skipped", "ok")  # the folded status is the most severe rank's
FAILURE_GRACE_S = 3.0  # after one rank fails, how long the others may take to report before they are killed
# Errors a rank gets only because another rank failed first: its own check vote (rank_worker), or the transport
# breaking under it when the failed rank's process left the group. The folded record names the first cause.
SECONDARY = ("another rank failed", "DistBackendError", "DistNetworkError", "Connection closed by peer",
             "Connection reset by peer", "NCCL communicator was aborted")


def rank_env(rank: int, world_size: int, port: int, addr: str = "127.0.0.1") -> dict[str, str]:
    """torchrun's variables for one rank on this host, multicast off, and OpenMP threads that sleep when idle:
    spinning OpenMP workers of one rank starved the other rank's gloo progress thread on a 2-core machine
    (ring attention, 2 ranks: 255-380 ms with the default policy, 20-24 ms passive)."""
    return {"MASTER_ADDR": addr, "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world_size), "OMP_WAIT_POLICY": "PASSIVE",
            **NO_MULTICAST}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(spec: CaseSpec, world_size: int) -> Record:
    """Start `world_size` rank processes, collect their records (or how each died), fold them."""
    from harness.isolation import _context
    from harness.rank_worker import run_rank

    ctx, port = _context(), free_port()
    procs, pipes = [], []
    for rank in range(world_size):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_rank_main, args=(run_rank, spec, rank_env(rank, world_size, port), send),
                           daemon=True)
        proc.start()
        send.close()
        procs.append(proc)
        pipes.append(receive)
    grace = min(10.0, 2.0 + 0.25 * spec.settings.timeout_s)
    deadline = time.monotonic() + spec.settings.timeout_s + grace
    results: dict[int, dict] = {}
    try:
        while len(results) < world_size:
            pending = [r for r in range(world_size) if r not in results]
            ready = multiprocessing.connection.wait([pipes[r] for r in pending],
                                                    timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                if results:  # a rank failed and the others did not report within the grace: fold what we have
                    break
                return Record.for_case(spec.run, spec.case, "timeout", error=(
                    f"killed after timeout_s={spec.settings.timeout_s} (+{grace:.1f} s grace); "
                    f"ranks {pending} had not finished"))
            for rank in pending:
                if pipes[rank] in ready:
                    results[rank] = _receive(spec, pipes[rank], procs[rank])
                    if results[rank]["status"] not in ("ok", "skipped"):
                        # the others are likely blocked on this rank: let them report for a moment, then stop them
                        deadline = min(deadline, time.monotonic() + FAILURE_GRACE_S)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=10)
        for pipe in pipes:
            pipe.close()
    return fold_ranks(spec, results, world_size)


def _receive(spec: CaseSpec, pipe: Any, proc: Any) -> dict:
    """A rank's record, or one saying how the rank died before it could send one."""
    from harness.isolation import _death

    try:
        return pipe.recv()
    except EOFError:
        proc.join(timeout=10)
        status, reason = _death(proc.exitcode)
        return Record.for_case(spec.run, spec.case, status, error=reason).to_json()


def _rank_main(fn: Any, spec: CaseSpec, env: dict[str, str], conn: Any) -> None:
    try:
        conn.send(fn(spec, env))
    finally:
        conn.close()


def fold_ranks(spec: CaseSpec, results: dict[int, dict], world_size: int) -> Record:
    """One record for the case: the step time is the slowest rank's, memory is reported per rank.

    A rank that failed makes the case fail with its reason: the most severe status, and among equals the
    rank that reported first (the others usually failed because it did: a closed connection, a check
    another rank failed). For an ok case: latency samples are the per-call maximum over ranks (every call started
    at a barrier), peak memory is the largest rank's with each rank's beside it, and every other metric is
    rank 0's with the other ranks' values kept where they differ.
    """
    ranks, arrival = sorted(results), list(results)  # `results` in the order the ranks reported
    worst = min(ranks, key=lambda r: (STATUS_SEVERITY.index(results[r]["status"]),
                                      _secondary(results[r].get("error")), arrival.index(r)))
    if results[worst]["status"] != "ok":
        record = Record(**results[worst])
        if record.status != "skipped":
            missing = [r for r in range(world_size) if r not in results]
            record.error = f"rank {worst}: {record.error}" + (f" (ranks {missing} stopped)" if missing else "")
        record.ranks = [_rank_summary(r, results[r]) for r in ranks]
        return record
    record = Record(**{**results[ranks[0]], "ranks": [_rank_summary(r, results[r]) for r in ranks]})
    per_rank = [results[r]["metrics"] for r in ranks]
    record.metrics = {name: _fold_metric(name, [m.get(name) for m in per_rank]) for name in per_rank[0]}
    latency = record.metrics["latency_s"]["value"]
    workload = REGISTRY.load(spec.plugins).workload(spec.case.workload)
    cost = workload.cost(spec.case.param_dict(), spec.case.impl)
    record.model = worker.model_fields(cost, latency, DeviceModels.for_profile(spec.calibration))
    reasons = [f"rank {r}: {why}" for r in ranks for why in results[r]["validity"].get("reasons", [])]
    record.validity = {**record.validity, "ok": all(results[r]["validity"].get("ok", True) for r in ranks),
                       "reasons": reasons}
    below_floor = floor_violation(record.model, latency)
    if below_floor:
        record.validity = {**record.validity, "ok": False, "reasons": [*record.validity["reasons"], below_floor]}
    record.wall_s = max(results[r].get("wall_s", 0.0) for r in ranks)
    return record


def _secondary(error: str | None) -> bool:
    return any(marker in (error or "") for marker in SECONDARY)


def _fold_metric(name: str, values: list[dict | None]) -> dict:
    present = [v for v in values if v is not None]
    base = dict(present[0])
    if name == "latency_s":
        all_samples = base.pop("all_ranks_samples", None) or [v["samples"] for v in present]
        steps = [max(call) for call in zip(*all_samples, strict=True)]
        stats = summarize(steps)
        detail = {k: v for k, v in base.items() if k not in ("value", "unit", "source", "samples", "iqr", "n", "min",
                                                             "mean", "note")}
        return metric(stats["median"], "s", base["source"], samples=steps, iqr=stats["iqr"], n=len(steps),
                      min=stats["min"], mean=stats["mean"], **detail,
                      per_rank_median_s=[summarize(s)["median"] for s in all_samples],
                      note=f"slowest of {len(all_samples)} ranks per lockstep call (each started at a barrier)")
    if name.startswith("peak_memory") or name.startswith("quality."):
        base["value"] = max(v["value"] for v in present)
        base["per_rank"] = [v["value"] for v in present]
        return base
    values_seen = [v["value"] for v in present]
    if len(set(values_seen)) > 1:
        base["per_rank"] = values_seen
    return base


def _rank_summary(rank: int, data: dict) -> dict:
    metrics = data.get("metrics", {})
    summary = {"rank": rank, "status": data["status"], **{k: v for k, v in (data.get("ranks") or [{}])[0].items()
                                                          if k == "host"}}
    if "latency_s" in metrics:
        summary["latency_s"] = metrics["latency_s"]["value"]
    if "peak_memory_bytes" in metrics:
        summary["peak_memory_bytes"] = metrics["peak_memory_bytes"]["value"]
    if data.get("error"):
        summary["error"] = data["error"]
    return summary
