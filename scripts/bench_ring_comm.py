"""Where ring attention's time goes on N GPUs: the whole ring, its compute alone, its communication alone.

    python scripts/bench_ring_comm.py --ranks 2 --seq 131072 262144 524288 --out ring_comm.json

Per sequence length and rank, each timed from a barrier to the rank's own completion (median of --repeats):
- ring: `ring_attention` (zigzag), transfers overlapped with the block attention of the block in hand;
- compute: the same block attentions and merges on the rank's own K/V shard (same shapes, no transfers);
- comm: the same N-1 batched send/receive steps of the K/V shards, nothing computed.
Communication share = comm / ring; exposed communication = ring - compute (how much of the transfer the
overlap did not hide). Link rate = bytes each rank sends / comm. NVLink multicast stays off (harness.distributed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from harness.distributed import free_port, rank_env
from reference_impls.kernels import ring_attention as ring


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first call warms up
        dist.barrier()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def _compute_only(q, k, v, rank: int, world: int, sharding: str) -> torch.Tensor:
    state = None
    for step in range(world):
        state = ring._fold(state, ring._step_partial(q, k, v, rank, (rank - step) % world, sharding))
    return state[0]


def _comm_only(k, v, rank: int, world: int) -> None:
    k_cur, v_cur = k.contiguous(), v.contiguous()
    for _ in range(world - 1):
        k_next, v_next = torch.empty_like(k_cur), torch.empty_like(v_cur)
        ops = [dist.P2POp(dist.isend, k_cur, (rank + 1) % world, tag=0),
               dist.P2POp(dist.isend, v_cur, (rank + 1) % world, tag=1),
               dist.P2POp(dist.irecv, k_next, (rank - 1) % world, tag=0),
               dist.P2POp(dist.irecv, v_next, (rank - 1) % world, tag=1)]
        for request in dist.batch_isend_irecv(ops):
            request.wait()
        k_cur, v_cur = k_next, v_next


def _rank_main(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(rank_env(rank, world, port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", device_id=torch.device("cuda", rank))
    rows = []
    for seq in args.seq:
        local = seq // world
        g = torch.Generator(device="cuda").manual_seed(1000 * rank + seq % 997)
        shape_q, shape_kv = (1, args.heads, local, args.head_dim), (1, args.kv_heads, local, args.head_dim)
        q, k, v = (torch.randn(s, generator=g, device="cuda", dtype=torch.bfloat16)
                   for s in (shape_q, shape_kv, shape_kv))
        sent = (world - 1) * 2 * k.numel() * k.element_size()
        full = _timed(lambda: ring.ring_attention(q, k, v, "zigzag"), args.repeats)  # noqa: B023
        compute = _timed(lambda: _compute_only(q, k, v, rank, world, "zigzag"), args.repeats)  # noqa: B023
        comm = _timed(lambda: _comm_only(k, v, rank, world), args.repeats)  # noqa: B023
        rows.append({"seq_len": seq, "rank": rank, "ring_s": full, "compute_s": compute, "comm_s": comm,
                     "bytes_sent": sent, "link_bytes_per_s": sent / comm if comm > 0 else None})
        torch.cuda.empty_cache()
    gathered = [None] * world
    dist.all_gather_object(gathered, rows)
    if rank == 0:
        Path(out).write_text(json.dumps([r for part in gathered for r in part], indent=1))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--seq", type=int, nargs="+", default=[131072, 262144, 524288])
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="ring_comm.json")
    args = parser.parse_args()
    if torch.cuda.device_count() < args.ranks:
        raise SystemExit(f"--ranks {args.ranks} needs that many GPUs; this machine has {torch.cuda.device_count()}")
    mp.spawn(_rank_main, args=(args.ranks, free_port(), args, args.out), nprocs=args.ranks, join=True)
    rows = json.loads(Path(args.out).read_text())
    print(f"{'seq':>8} {'rank':>4} {'ring ms':>9} {'compute ms':>11} {'comm ms':>8} {'comm share':>10} "
          f"{'exposed ms':>10} {'link GB/s':>9}")
    for r in rows:
        print(f"{r['seq_len']:>8} {r['rank']:>4} {1e3 * r['ring_s']:>9.2f} {1e3 * r['compute_s']:>11.2f} "
              f"{1e3 * r['comm_s']:>8.2f} {r['comm_s'] / r['ring_s']:>10.1%} "
              f"{1e3 * (r['ring_s'] - r['compute_s']):>10.2f} {(r['link_bytes_per_s'] or 0) / 1e9:>9.1f}")


if __name__ == "__main__":
    main()
