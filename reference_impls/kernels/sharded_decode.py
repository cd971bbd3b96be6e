"""Sequence-sharded KV decode: one new token's attention over a KV cache split along the context across ranks.

Each rank holds its slice of the cache, k, v [B, Hkv, L_r, D] (slices may differ in length, even be empty),
and the replicated query q [B, H, 1, D] (Hkv | H: GQA). Each rank computes its partial output, normalized over
its own keys, and that partial's log-sum-exp; the ranks then merge partials by the log-sum-exp rule:

    out = Σ_r e^(lse_r − m) · out_r / Σ_r e^(lse_r − m),   m = max_r lse_r

Merge by ONE all_gather of the packed (out_r, lse_r) rows, not by all_reduce MAX of lse followed by all_reduce
SUM of rescaled numerators and denominators: a decode step is latency-bound and the payload is tiny
(B·H·(D+1) floats per rank), so one collective's round trip beats two dependent ones; and every rank then
merges the same gathered rows in the same order, so all ranks return bit-identical outputs (an all_reduce's
summation order is the library's choice).

Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

from reference_impls.kernels.ring_attention import CommLog, rank_and_world, stats_dtype


def check_decode_shard(q: Tensor, k: Tensor, v: Tensor) -> int:
    """Validate q [B, H, 1, D] against k, v [B, Hkv, L_r, D]; return the group size H / Hkv."""
    if q.dim() != 4 or q.shape[2] != 1 or k.dim() != 4 or k.shape != v.shape:
        raise ValueError(f"q must be [B, H, 1, D] and k, v one [B, Hkv, L, D] shape; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape[0] != q.shape[0] or k.shape[3] != q.shape[3]:
        raise ValueError(f"k, v {tuple(k.shape)} must match q {tuple(q.shape)} in batch and head_dim")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads ({q.shape[1]}) must be a multiple of kv heads ({k.shape[1]})")
    if not (q.dtype == k.dtype == v.dtype) or not q.dtype.is_floating_point:
        raise ValueError(f"q, k, v must share one floating dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    return q.shape[1] // k.shape[1]


def decode_partial(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(out [B, H, D], lse [B, H]) in the stats dtype over this slice's keys. The G query heads of a KV head
    ride in the matmul's M dimension (K and V read once, never repeated); the score matmul runs in the input
    dtype and the softmax in the stats dtype. An empty slice gives out 0 and lse −inf (weight 0 in the merge)."""
    group = check_decode_shard(q, k, v)
    b, h, _, d = q.shape
    hkv, length = k.shape[1], k.shape[2]
    acc = stats_dtype(q.dtype)
    if length == 0:
        return (torch.zeros(b, h, d, dtype=acc, device=q.device),
                torch.full((b, h), float("-inf"), dtype=acc, device=q.device))
    qg = q.reshape(b, hkv, group, d) * (1.0 / math.sqrt(d))  # [B, Hkv, G, D]
    scores = (qg @ k.transpose(-2, -1)).to(acc)  # [B, Hkv, G, L_r]
    peak = scores.amax(dim=-1, keepdim=True)  # [B, Hkv, G, 1]; in place below: one score tile lives
    probs = scores.sub_(peak).exp_()
    total = probs.sum(dim=-1, keepdim=True)
    out = (probs.div_(total).to(v.dtype) @ v).to(acc)  # [B, Hkv, G, D]
    return out.reshape(b, h, d), (peak + total.log()).reshape(b, h)


def merge_partials(outs: Tensor, lses: Tensor) -> Tensor:
    """outs [N, B, H, D], lses [N, B, H] → the merged [B, H, D] (see the module docstring)."""
    weights = torch.exp(lses - lses.amax(dim=0, keepdim=True))  # [N, B, H]
    return (weights.unsqueeze(-1) * outs).sum(dim=0) / weights.sum(dim=0).unsqueeze(-1)


def sharded_decode_attention(q: Tensor, k: Tensor, v: Tensor, group: dist.ProcessGroup | None = None,
                             comm: CommLog | None = None) -> Tensor:
    """The decode output [B, H, 1, D] in the input dtype, the same on every rank: local partial, one all_gather
    of the packed [B, H, D+1] (out, lse) rows, local merge."""
    out, lse = decode_partial(q, k, v)
    _, world = rank_and_world(group)
    packed = torch.cat([out, lse.unsqueeze(-1)], dim=-1).contiguous()  # [B, H, D+1]
    gathered = [packed]
    if world > 1:
        gathered = [torch.empty_like(packed) for _ in range(world)]
        dist.all_gather(gathered, packed, group=group)
        if comm is not None:
            comm.add(packed, copies=world - 1)
    rows = torch.stack(gathered)  # [N, B, H, D+1]
    merged = merge_partials(rows[..., :-1], rows[..., -1])
    return merged.unsqueeze(2).to(q.dtype)
