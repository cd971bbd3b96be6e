"""Context-parallel causal attention prefill: the sequence is sharded over the ranks of a torch.distributed group.

Each rank holds its shard of Q, K and V, [B, H, S_local, D] (K and V may have fewer heads, Hkv | H: GQA).
`ring_attention` passes K/V blocks around the ring (the transfer of the next block overlaps the attention on the
current one) and merges the partial outputs by the log-sum-exp rule, so no rank ever holds more than three K/V
shards. `allgather_kv_attention` is the memory-hungry contrast: all-gather every K/V shard, then attend locally.

Shardings of a sequence of S tokens over N ranks:
  contiguous  rank r holds tokens [r·S/N, (r+1)·S/N); causality makes the work unbalanced (rank N-1 attends
              N blocks, rank 0 one)
  zigzag      S is cut into 2N chunks and rank r holds chunks r and 2N-1-r (in that order): every rank does
              the same work; block pairs that are fully masked are skipped, only the diagonal is causal
Causal masks are top-left aligned within a block of equal query and key length (token i sees keys 0..i).

With world size 1 (or no process group) every variant is plain causal attention. Imports nothing from the
benchmark harness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

SHARDINGS = ("contiguous", "zigzag")
EXACT_QUERY_CHUNK = 512  # query rows per score block of the plain-torch block kernel
FLASH_DTYPES = (torch.float16, torch.bfloat16)  # CUDA flash kernel; float32 goes to the efficient kernel
EFFICIENT_LSE_ALIGN = 32  # the efficient kernel pads its log-sum-exp rows to a multiple of this


@dataclass
class CommLog:
    """Bytes and messages this rank handed to point-to-point sends or collectives (what it puts on its link)."""

    bytes_sent: int = 0
    messages: int = 0

    def add(self, *tensors: Tensor, copies: int = 1) -> None:
        for t in tensors:
            self.bytes_sent += copies * t.numel() * t.element_size()
            self.messages += copies


def rank_and_world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """(rank, world size) of the group, or (0, 1) when no process group is initialized."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def check_sharding(sharding: str) -> None:
    if sharding not in SHARDINGS:
        raise ValueError(f"unknown sharding {sharding!r}; allowed: {', '.join(SHARDINGS)}")


def chunk_count(world: int, sharding: str) -> int:
    """Equal chunks the global sequence is cut into: N (contiguous) or 2N (zigzag)."""
    check_sharding(sharding)
    return world if sharding == "contiguous" else 2 * world


def rank_chunks(rank: int, world: int, sharding: str) -> list[int]:
    """Global chunk indices rank `rank` holds, in its local order."""
    check_sharding(sharding)
    return [rank] if sharding == "contiguous" else [rank, 2 * world - 1 - rank]


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulators and log-sum-exps: float32 for 16-bit inputs, else the input dtype."""
    return torch.float32 if torch.finfo(dtype).bits < 32 else dtype


def check_shard(q: Tensor, k: Tensor, v: Tensor) -> int:
    """Validate q [B, H, S, D] against k, v [B, Hkv, S, D]; return the group size H / Hkv."""
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4:
        raise ValueError(f"q must be [B, H, S, D] and k, v one [B, Hkv, S, D] shape; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    b, h, s, d = q.shape
    if k.shape[0] != b or k.shape[2] != s or k.shape[3] != d:
        raise ValueError(f"k, v {tuple(k.shape)} must match q {tuple(q.shape)} in batch, seq and head_dim")
    if h % k.shape[1]:
        raise ValueError(f"query heads ({h}) must be a multiple of kv heads ({k.shape[1]})")
    if not (q.dtype == k.dtype == v.dtype) or not q.dtype.is_floating_point:
        raise ValueError(f"q, k, v must share one floating dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    return h // k.shape[1]


# ---------------------------------------------------------------------------------------------------------
# Block attention: (normalized output, log-sum-exp) of q against one block of keys
# ---------------------------------------------------------------------------------------------------------


def block_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
    """(out [B, H, Sq, D], lse [B, H, Sq]), both in the stats dtype: the fused kernel on CUDA for 16-bit and
    float32 inputs, the exact plain-torch one elsewhere (CPU, float64)."""
    if q.is_cuda and q.dtype in (*FLASH_DTYPES, torch.float32):
        out, lse = fused_block_attention(q, k, v, causal)
        return out.to(stats_dtype(q.dtype)), lse.contiguous()
    return exact_block_attention(q, k, v, causal)


def exact_block_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool,
                          query_chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """Explicit scores in the stats dtype, `query_chunk` (default EXACT_QUERY_CHUNK) query rows at a time, so
    memory stays bounded. The G query heads sharing a KV head ride in the matmul's M dimension: K and V are
    never repeated."""
    query_chunk = query_chunk or EXACT_QUERY_CHUNK
    b, h, sq, d = q.shape
    hkv, sk = k.shape[1], k.shape[2]
    if causal and sq != sk:
        raise ValueError(f"a causal block needs equal query and key lengths, got {sq} and {sk}")
    acc = stats_dtype(q.dtype)
    k_s, v_s = k.to(acc), v.to(acc)  # no copy unless 16-bit
    q5 = q.view(b, hkv, h // hkv, sq, d) if q.is_contiguous() else q.reshape(b, hkv, h // hkv, sq, d)
    out = torch.empty(b, hkv, h // hkv, sq, d, dtype=acc, device=q.device)
    lse = torch.empty(b, hkv, h // hkv, sq, dtype=acc, device=q.device)
    for start in range(0, sq, query_chunk):
        stop = min(start + query_chunk, sq)
        rows = (h // hkv) * (stop - start)
        qc = (q5[:, :, :, start:stop].to(acc) * (1.0 / math.sqrt(d))).reshape(b, hkv, rows, d)
        scores = (qc @ k_s.transpose(-2, -1)).view(b, hkv, h // hkv, stop - start, sk)  # [B, Hkv, G, n, Sk]
        if causal:
            query_pos = torch.arange(start, stop, device=q.device)
            key_pos = torch.arange(sk, device=q.device)
            scores.masked_fill_(key_pos[None, :] > query_pos[:, None], float("-inf"))
        peak = scores.amax(dim=-1, keepdim=True)  # [B, Hkv, G, n, 1]; in place below: one tile lives
        probs = scores.sub_(peak).exp_()
        total = probs.sum(dim=-1, keepdim=True)
        probs = probs.div_(total).view(b, hkv, rows, sk)
        out[:, :, :, start:stop] = (probs @ v_s).view(b, hkv, h // hkv, stop - start, d)
        lse[:, :, :, start:stop] = (peak + total.log()).squeeze(-1)
        del scores, probs  # free this tile before the next one is made
    return out.view(b, h, sq, d), lse.view(b, h, sq)


def fused_block_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
    """torch's fused attention kernels that return the log-sum-exp (output in the input dtype, lse float32).

    Non-causal blocks fold the G query heads of a KV head into the query length ([B, Hkv, G·Sq, D]: a view), so
    no kernel needs GQA support and K/V are never repeated. A causal (diagonal) block cannot fold: the CUDA
    flash kernel handles Hkv < H natively; the efficient kernel (float32) and the CPU flash kernel (used only to
    test this logic without a GPU) get K/V repeated for that one block.
    """
    b, h, sq, d = q.shape
    hkv = k.shape[1]
    group = h // hkv
    if group > 1 and not causal:
        folded = q.reshape(b, hkv, group * sq, d)
        out, lse = _fused_kernel(folded, k, v, False)  # the kernels write [B, S, H, D] memory: reshape copies
        return out.reshape(b, h, sq, d), lse.reshape(b, h, sq)
    if group > 1 and not (q.is_cuda and q.dtype in FLASH_DTYPES):
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return _fused_kernel(q, k, v, causal)


def _fused_kernel(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
    """One fused call; lse comes back as [B, H, Sq] (the efficient kernel's row padding cut off)."""
    ops = torch.ops.aten
    if not q.is_cuda:
        out, lse = ops._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal)
    elif q.dtype in FLASH_DTYPES:
        out, lse = ops._scaled_dot_product_flash_attention(q, k, v, 0.0, causal)[:2]
    else:
        out, lse = ops._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, causal)[:2]
    return out, lse_rows(lse, q.shape[-2])


def lse_rows(lse: Tensor, seq_q: int) -> Tensor:
    """A fused kernel's log-sum-exp as [B, H, Sq]: flash returns exactly that (natural log, float32); the
    efficient kernel pads the last dim to a multiple of EFFICIENT_LSE_ALIGN, which is cut here."""
    if lse.shape[-1] < seq_q:
        raise ValueError(f"log-sum-exp has {lse.shape[-1]} rows, fewer than the {seq_q} queries")
    return lse[..., :seq_q]


def merge_partial(out: Tensor, lse: Tensor, blk_out: Tensor, blk_lse: Tensor) -> None:
    """Fold a block's (normalized output, lse) into the running (out, lse), in place (views are fine):
    out ← out·e^(lse−new) + blk·e^(blk_lse−new), new = log(e^lse + e^blk_lse). blk_out is scaled in place
    (it is a temporary) so the merge allocates nothing of the output's size."""
    new = torch.logaddexp(lse, blk_lse)
    out.mul_(torch.exp(lse - new).unsqueeze(-1)).add_(blk_out.mul_(torch.exp(blk_lse - new).unsqueeze(-1)))
    lse.copy_(new)


# ---------------------------------------------------------------------------------------------------------
# The two distributed strategies
# ---------------------------------------------------------------------------------------------------------


def _step_partial(q: Tensor, k: Tensor, v: Tensor, rank: int, src: int,
                  sharding: str) -> tuple[slice, Tensor, Tensor] | None:
    """Rank `rank`'s queries against the K/V shard of rank `src`: (query rows, out, lse), or None if fully
    masked. Zigzag: an earlier rank's shard is seen only through its first chunk (by all local queries); a later
    rank's shard is seen whole, only by the local second chunk."""
    if src == rank:
        return slice(None), *block_attention(q, k, v, causal=True)
    if sharding == "contiguous":
        return (slice(None), *block_attention(q, k, v, causal=False)) if src < rank else None
    half = q.shape[-2] // 2
    if src < rank:
        return slice(None), *block_attention(q, k[:, :, :half], v[:, :, :half], causal=False)
    return slice(half, None), *block_attention(q[:, :, half:], k, v, causal=False)


def _fold(state: list[Tensor] | None, part: tuple[slice, Tensor, Tensor] | None) -> list[Tensor] | None:
    if part is None:
        return state
    rows, blk_out, blk_lse = part
    if state is None:  # the first block is always the rank's own diagonal: every row
        return [blk_out, blk_lse]
    merge_partial(state[0][:, :, rows], state[1][:, :, rows], blk_out, blk_lse)
    return state


def _prepare(q: Tensor, k: Tensor, v: Tensor, sharding: str, group: dist.ProcessGroup | None) -> tuple[int, int]:
    check_shard(q, k, v)
    check_sharding(sharding)
    if sharding == "zigzag" and q.shape[-2] % 2:
        raise ValueError(f"a zigzag shard holds two equal chunks; its length {q.shape[-2]} is odd")
    return rank_and_world(group)


def ring_attention(q: Tensor, k: Tensor, v: Tensor, sharding: str = "contiguous",
                   group: dist.ProcessGroup | None = None, comm: CommLog | None = None) -> Tensor:
    """Causal attention of this rank's query shard over the whole sequence; returns [B, H, S_local, D] in the
    input dtype. N-1 steps: send the K/V block in hand to rank+1 and receive the next from rank-1
    (batch_isend_irecv) while attending to the block in hand. Resident: own K/V, the block in hand, the
    block in flight (three K/V shards), an accumulator and the lse."""
    rank, world = _prepare(q, k, v, sharding, group)
    send_to, recv_from = (rank + 1) % world, (rank - 1) % world
    k_cur, v_cur, state = k.contiguous(), v.contiguous(), None
    for step in range(world):
        requests = []
        if step + 1 < world:
            k_next, v_next = torch.empty_like(k_cur), torch.empty_like(v_cur)
            ops = [dist.P2POp(dist.isend, k_cur, send_to, group, tag=0),
                   dist.P2POp(dist.isend, v_cur, send_to, group, tag=1),
                   dist.P2POp(dist.irecv, k_next, recv_from, group, tag=0),
                   dist.P2POp(dist.irecv, v_next, recv_from, group, tag=1)]
            requests = dist.batch_isend_irecv(ops)
            if comm is not None:
                comm.add(k_cur, v_cur)
        state = _fold(state, _step_partial(q, k_cur, v_cur, rank, (rank - step) % world, sharding))
        for request in requests:
            request.wait()
        if requests:
            k_cur, v_cur = k_next, v_next
    return state[0].to(q.dtype)


def allgather_kv_attention(q: Tensor, k: Tensor, v: Tensor, sharding: str = "contiguous",
                           group: dist.ProcessGroup | None = None, comm: CommLog | None = None) -> Tensor:
    """All-gather every rank's K/V first (N shards resident at once, no overlap of transfer and compute),
    then attend to each gathered shard with the same block rules as the ring. In a ring all-gather each rank
    puts its shard on its link N-1 times, so the bytes sent equal the ring's; the memory does not."""
    rank, world = _prepare(q, k, v, sharding, group)
    k, v = k.contiguous(), v.contiguous()
    keys, values = [k], [v]
    if world > 1:
        keys, values = [torch.empty_like(k) for _ in range(world)], [torch.empty_like(v) for _ in range(world)]
        dist.all_gather(keys, k, group=group)
        dist.all_gather(values, v, group=group)
        if comm is not None:
            comm.add(k, v, copies=world - 1)
    state = None
    for step in range(world):  # own shard first: the diagonal sets every row's first partial
        src = (rank - step) % world
        state = _fold(state, _step_partial(q, keys[src], values[src], rank, src, sharding))
    return state[0].to(q.dtype)
