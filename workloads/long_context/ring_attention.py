"""Ring attention: causal prefill with the sequence sharded over ranks — K/V travel the ring instead of living whole.

Distributed: the harness runs one process per rank and every method below sees only this rank's shard.
"""

from __future__ import annotations

import math

import torch

from harness.case import Cost, Param
from harness.metrics import declare
from harness.registry import Check, Workload, implementation, register_workload, rel_l2_error
from reference_impls.kernels import ring_attention as ring

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
ROLES = ("q", "k", "v")
SAMPLE_ROWS = 32  # query rows per rank the float64 reference checks (spread over the rank's chunks)
COMM_BYTES = declare("comm.bytes_sent_per_rank", "B", "lower", "bytes each rank sends over its link per call", True)


def group_rank(params: dict) -> int:
    """This process's rank, checked against the `ranks` param (no process group: rank 0 of a world of 1)."""
    rank, world = ring.rank_and_world()
    if world != params["ranks"]:
        raise ValueError(f"ranks={params['ranks']} but the torch.distributed world size is {world}: a case with "
                         "ranks > 1 runs one process per rank (the harness launches them)")
    return rank


def piece_generator(device: str, seed: int, piece: int, role: int) -> torch.Generator:
    """One generator per (seed, piece of the sequence or cache, tensor role): any rank regenerates any piece."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + piece * 8 + role)


def random_piece(shape: tuple[int, ...], dtype: torch.dtype, device: str, seed: int, piece: int,
                 role: int) -> torch.Tensor:
    g = piece_generator(device, seed, piece, role)
    return torch.randn(shape, generator=g, device=device, dtype=torch.float32).to(dtype)


def dims(params: dict) -> dict:
    """Sizes, checked together; a ValueError names what is allowed."""
    n, s, h, hkv = params["ranks"], params["seq_len"], params["heads"], params["kv_heads"]
    reason = _size_reason(params)
    if reason:
        raise ValueError(reason)
    chunks = ring.chunk_count(n, params["sharding"])
    return {"n": n, "b": params["batch"], "h": h, "hkv": hkv, "d": params["head_dim"], "local": s // n,
            "chunks": chunks, "chunk": s // chunks, "e": torch.finfo(DTYPES[params["dtype"]]).bits // 8}


def _size_reason(params: dict) -> str | None:
    if params["heads"] % params["kv_heads"]:
        return f"kv_heads ({params['kv_heads']}) must divide heads ({params['heads']})"
    chunks = ring.chunk_count(params["ranks"], params["sharding"])
    if params["seq_len"] % chunks:
        return (f"seq_len ({params['seq_len']}) must be a multiple of the {params['sharding']} sharding's "
                f"{chunks} chunks ({'ranks' if params['sharding'] == 'contiguous' else '2 x ranks'})")
    return None


def sample_rows(chunk: int, chunks_held: int) -> torch.Tensor:
    """Local query rows the reference checks: per held chunk, evenly spread rows incl. its first and last."""
    per_chunk = max(2, SAMPLE_ROWS // chunks_held)
    rows = [torch.linspace(0, chunk - 1, min(per_chunk, chunk)).round().long().unique() + i * chunk
            for i in range(chunks_held)]
    return torch.cat(rows)


@register_workload
class RingAttention(Workload):
    name = "ring_attention"
    family = "long_context"
    description = ("Causal attention prefill with the sequence sharded over ranks (context parallelism): each rank "
                   "holds a Q/K/V shard; K/V blocks travel the ring (ring) or are all-gathered (allgather_kv).")
    sweep_param = "seq_len"
    distributed = True
    params = (
        Param("ranks", int, 2, minimum=1, doc="processes (GPUs) the sequence is sharded over"),
        Param("seq_len", int, 8192, minimum=1, doc="tokens in the whole prompt"),
        Param("heads", int, 8, minimum=1),
        Param("kv_heads", int, 8, minimum=1, doc="K/V heads; fewer than heads is GQA"),
        Param("head_dim", int, 128, minimum=1),
        Param("dtype", str, "bfloat16", choices=tuple(DTYPES)),
        Param("batch", int, 1, minimum=1),
        Param("sharding", str, "zigzag", choices=ring.SHARDINGS,
              doc="contiguous: rank r holds the r-th slice (unbalanced); zigzag: chunks r and 2N-1-r (balanced)"),
    )
    contract_params = {"ranks": 1, "seq_len": 96, "heads": 4, "kv_heads": 2, "head_dim": 16, "dtype": "float32"}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        """This rank's shard only: its chunks of q, k, v, each chunk from its own generator."""
        s, rank = dims(params), group_rank(params)
        pieces = ring.rank_chunks(rank, s["n"], params["sharding"])
        shard = {}
        for role, name in enumerate(ROLES):
            heads = s["h"] if name == "q" else s["hkv"]
            shape = (s["b"], heads, s["chunk"], s["d"])  # [B, H, chunk, D]
            parts = [random_piece(shape, DTYPES[params["dtype"]], device, seed, c, role) for c in pieces]
            shard[name] = torch.cat(parts, dim=2)
        return {**shard, "seed": seed, "rank": rank}

    def input_bytes(self, inputs: dict) -> int:
        return int(sum(inputs[n].numel() * inputs[n].element_size() for n in ROLES))

    def reference(self, inputs: dict, params: dict) -> dict:
        """Exact float64 outputs of SAMPLE_ROWS of this rank's query rows against the whole sequence, with K/V
        regenerated chunk by chunk (never the whole float64 K/V): affordable at 512K tokens."""
        s = dims(params)
        held = ring.rank_chunks(inputs["rank"], s["n"], params["sharding"])
        rows = sample_rows(s["chunk"], len(held))
        positions = torch.tensor([held[r // s["chunk"]] * s["chunk"] + r % s["chunk"] for r in rows.tolist()])
        q = inputs["q"][:, :, rows.to(inputs["q"].device)].double()  # [B, H, n, D]
        values = _exact_rows(q, positions.to(q.device), s, params, inputs["seed"])
        return {"rows": rows, "values": values}

    def check(self, output: torch.Tensor, reference: dict, baseline_error: float | None) -> Check:
        return Workload.check(self, _sampled(output, reference), reference["values"], baseline_error)

    def quality(self, output: torch.Tensor, reference: dict) -> dict[str, float]:
        return {"quality.rel_l2_error": rel_l2_error(_sampled(output, reference), reference["values"])}

    def wrong_answers(self, output: torch.Tensor) -> list[torch.Tensor]:
        """Scaled, rows reversed, a NaN in the first row, the last row of the shard zeroed (a merge that forgot
        the final block)."""
        poisoned, truncated = output.clone(), output.clone()
        poisoned[..., 0, 0] = float("nan")
        truncated[..., -1, :] = 0
        return [output * 1.01, output.flip(-2), poisoned, truncated]

    def counters(self, output: torch.Tensor, params: dict) -> dict[str, float]:
        return {COMM_BYTES.name: comm_bytes(params)}

    def cost(self, params: dict, impl: str) -> Cost:
        """Per rank, the busiest one: FLOPs 4·b·H·D per score element it computes (causal; the contiguous
        last rank does N-1 full blocks and the diagonal, every zigzag rank N/2 blocks' worth). dram: q read,
        o written, N K/V shards read by the blocks, and each received shard written and re-read to send on.
        interconnect: (N-1) K/V shards sent. Footprint: q, K/V buffers (ring: own + in hand + in flight;
        allgather_kv: own + N gathered) and the workspace of _workspace."""
        s = dims(params)
        scores = float(s["b"] * s["h"] * busiest_score_elements(s["n"], s["local"], params["sharding"]))
        q_bytes = float(s["b"] * s["h"] * s["local"] * s["d"] * s["e"])
        kv_bytes = 2.0 * s["b"] * s["hkv"] * s["local"] * s["d"] * s["e"]
        sent = comm_bytes(params)
        dram = 2 * q_bytes + s["n"] * kv_bytes + 2 * sent
        buffers = (min(s["n"], 3) if impl == "ring" else 1 + (s["n"] if s["n"] > 1 else 0)) * kv_bytes
        blocks = s["n"]  # the busiest rank attends to (part of) every rank's block
        return Cost(4.0 * scores * s["d"], {"dram": dram, "interconnect": sent}, q_bytes + buffers + _workspace(s),
                    dtype=params["dtype"], launches=2 * blocks + 9 * (blocks - 1), special_ops=scores)

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        reason = _size_reason(params)
        if reason:
            return reason
        if device == "cuda" and params["ranks"] > torch.cuda.device_count():
            return f"ranks={params['ranks']} needs that many GPUs; {torch.cuda.device_count()} visible"
        return None


def _workspace(s: dict) -> float:
    """Beyond q and the K/V buffers, on the CUDA path (measured on 2 x H200 to within 0.3%): the output
    accumulator and one block's partial output in the stats dtype, three lse rows (running, block, merged),
    and a 16-bit output apart from the float32 accumulator (a 16-bit block's raw kernel output has the same
    size and is freed before it is made). float32 with GQA: the efficient kernel's raw [B, S, H, D] output
    lives beside its reshaped copy. On one rank there is no second partial: the only block's output is the
    accumulator. float64 (the exact kernel everywhere): one [query chunk, S_local] score tile
    and its bool mask. On CPU every dtype runs the exact kernel, so 16-bit and float32 add that tile there."""
    stats = max(s["e"], 4)
    out_stats = float(s["b"] * s["h"] * s["local"] * s["d"] * stats)
    output = out_stats * s["e"] / stats if s["e"] < 4 else 0.0
    raw = out_stats if s["e"] == 4 and s["h"] > s["hkv"] else 0.0
    rows = min(ring.EXACT_QUERY_CHUNK, s["local"])
    tile = s["b"] * s["h"] * rows * s["local"] * 8.0 + rows * s["local"] if s["e"] == 8 else 0.0
    partials = 2 if s["n"] > 1 else 1  # one rank, 512K bf16 tokens on an H200: 18.06 GiB measured, 18.1 modeled
    return partials * out_stats + 3.0 * s["b"] * s["h"] * s["local"] * stats + output + raw + tile


def busiest_score_elements(n: int, local: int, sharding: str) -> float:
    """Unmasked score elements per batch·head on the busiest rank (the causal diagonal counts its half)."""
    if sharding == "contiguous":  # rank N-1: N-1 full blocks and one causal block
        return (n - 1) * local * local + local * (local + 1) / 2
    chunk = local // 2  # every rank: its own 2-chunk causal block, then N-1 half blocks (2·chunk x chunk)
    return local * (local + 1) / 2 + (n - 1) * local * chunk


def comm_bytes(params: dict) -> float:
    """K and V bytes each rank sends per call: N-1 shards (ring steps, or a ring all-gather's N-1 hops)."""
    n, b, hkv, d = params["ranks"], params["batch"], params["kv_heads"], params["head_dim"]
    local = params["seq_len"] // n
    return float((n - 1) * 2 * b * hkv * local * d * (torch.finfo(DTYPES[params["dtype"]]).bits // 8))


def _sampled(output: torch.Tensor, reference: dict) -> torch.Tensor:
    return output[:, :, reference["rows"].to(output.device)]


def _exact_rows(q: torch.Tensor, positions: torch.Tensor, s: dict, params: dict, seed: int) -> torch.Tensor:
    """Float64 online softmax of q [B, H, n, D] (at global positions) over K/V chunks 0..last in order: chunk 0
    is visible to every query, so the running max is finite after it. GQA by broadcasting, no repeat."""
    b, h, n, d = q.shape
    hkv, group = s["hkv"], s["h"] // s["hkv"]
    qg = q.view(b, hkv, group, n, d) / math.sqrt(d)
    peak = torch.full((b, hkv, group, n), float("-inf"), dtype=torch.float64, device=q.device)
    total = torch.zeros_like(peak)
    acc = torch.zeros(b, hkv, group, n, d, dtype=torch.float64, device=q.device)
    shape = (b, hkv, s["chunk"], d)
    for c in range(int(positions.max()) // s["chunk"] + 1):
        k, v = (random_piece(shape, DTYPES[params["dtype"]], str(q.device), seed, c, role).double()
                for role in (1, 2))
        scores = qg @ k.unsqueeze(2).transpose(-2, -1)  # [B, Hkv, G, n, chunk]
        key_pos = torch.arange(c * s["chunk"], (c + 1) * s["chunk"], device=q.device)
        scores.masked_fill_(key_pos[None, :] > positions[:, None], float("-inf"))
        new_peak = torch.maximum(peak, scores.amax(dim=-1))
        correction, probs = torch.exp(peak - new_peak), torch.exp(scores - new_peak.unsqueeze(-1))
        total = total * correction + probs.sum(dim=-1)
        acc = acc * correction.unsqueeze(-1) + probs @ v.unsqueeze(2)
        peak = new_peak
    return (acc / total.unsqueeze(-1)).view(b, h, n, d)


@implementation("ring_attention", "ring", baseline=True)
def ring_impl(inputs: dict, params: dict) -> torch.Tensor:
    """K/V blocks passed around the ring (batch_isend_irecv overlapping the block in hand), merged by lse."""
    return ring.ring_attention(inputs["q"], inputs["k"], inputs["v"], params["sharding"])


@implementation("ring_attention", "allgather_kv")
def allgather_kv(inputs: dict, params: dict) -> torch.Tensor:
    """All-gather every K/V shard first, then attend locally: the same bytes sent, N K/V shards resident."""
    return ring.allgather_kv_attention(inputs["q"], inputs["k"], inputs["v"], params["sharding"])
