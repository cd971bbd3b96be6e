"""Test-only distributed workload: ranks sum their shards with one all-reduce, with deliberately broken ranks.

Each rank's shard comes from its own generator seeded by (seed, rank), so any rank can rebuild the others'
shards for the float64 reference. The broken implementations misbehave on the last rank only, which is the
hard case for a launcher: the other ranks sit in a collective waiting for it.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from harness.case import Cost, Param
from harness.registry import Workload, implementation, register_workload


def shard(n: int, device: str, seed: int, rank: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(1_000_003 * seed + rank)
    return torch.randn(n, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


@register_workload
class ShardedSum(Workload):
    name = "sharded_sum"
    family = "testing"
    description = "Element-wise sum of every rank's random shard (one all-reduce): the launcher's test case."
    distributed = True
    params = (Param("ranks", int, 2, minimum=1), Param("n", int, 4096, minimum=1),
              Param("dtype", str, "float64", choices=("float32", "float64")))

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        dtype = getattr(torch, params["dtype"])
        return {"x": shard(params["n"], device, seed, dist.get_rank(), dtype), "seed": seed}

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        return sum(shard(params["n"], "cpu", inputs["seed"], r, torch.float64) for r in range(params["ranks"]))

    def cost(self, params: dict, impl: str) -> Cost:
        element = 4 if params["dtype"] == "float32" else 8
        nbytes = 2.0 * params["n"] * element
        return Cost(float(params["n"] * (params["ranks"] - 1)), {"dram": nbytes}, nbytes, dtype=params["dtype"])


def _summed(inputs: dict) -> torch.Tensor:
    out = inputs["x"].clone()
    dist.all_reduce(out)
    return out


def _last_rank() -> bool:
    return dist.get_rank() == dist.get_world_size() - 1


@implementation("sharded_sum", "all_reduce", baseline=True)
def all_reduce(inputs: dict, params: dict) -> torch.Tensor:
    return _summed(inputs)


@implementation("sharded_sum", "slow_last_rank")
def slow_last_rank(inputs: dict, params: dict) -> torch.Tensor:
    """The last rank works 30 ms longer after the collective: the case's time is the slowest rank's."""
    out = _summed(inputs)
    if _last_rank():
        time.sleep(0.03)
    return out


@implementation("sharded_sum", "raises_on_last_rank")
def raises_on_last_rank(inputs: dict, params: dict) -> torch.Tensor:
    if _last_rank():
        raise RuntimeError("deliberate failure on the last rank")
    return _summed(inputs)


@implementation("sharded_sum", "hangs_on_last_rank")
def hangs_on_last_rank(inputs: dict, params: dict) -> torch.Tensor:
    if _last_rank():
        time.sleep(3600)
    return _summed(inputs)


@implementation("sharded_sum", "wrong_on_last_rank")
def wrong_on_last_rank(inputs: dict, params: dict) -> torch.Tensor:
    out = _summed(inputs)
    return out * 1.01 if _last_rank() else out
