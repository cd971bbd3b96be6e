"""Sharded decode: one token's attention over a KV cache split along the context across ranks, merged by lse.

Distributed: the harness runs one process per rank; each holds its cache slice and the replicated query.
"""

from __future__ import annotations

import math

import torch

from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload, rel_l2_error
from reference_impls.kernels import sharded_decode as sd
from workloads.long_context.ring_attention import COMM_BYTES, DTYPES, group_rank, random_piece

QUERY_PIECE = -1  # generator piece index of the replicated query (cache rows use rank * ROW_STRIDE + row)
ROW_STRIDE = 1 << 20  # batch rows per rank's generator range: each batch row of a slice has its own generator


def dims(params: dict) -> dict:
    if params["heads"] % params["kv_heads"]:
        raise ValueError(f"kv_heads ({params['kv_heads']}) must divide heads ({params['heads']})")
    n, ctx = params["ranks"], params["context_tokens"]
    return {"n": n, "b": params["batch"], "h": params["heads"], "hkv": params["kv_heads"],
            "d": params["head_dim"], "busiest": -(-ctx // n), "e": torch.finfo(DTYPES[params["dtype"]]).bits // 8}


def slice_bounds(context_tokens: int, ranks: int, rank: int) -> tuple[int, int]:
    """Token range [start, stop) of rank's cache slice: the first context % ranks ranks hold one token more."""
    base, extra = divmod(context_tokens, ranks)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _cache_slice(params: dict, device: str, seed: int, rank: int,
                 rows: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank's K and V slices [len(rows), Hkv, L_r, D] (all batch rows by default), filled one batch row at a time
    from that row's own generator: a slice of 80 GiB is never held twice, and the reference can rebuild any
    single row of any rank's slice."""
    start, stop = slice_bounds(params["context_tokens"], params["ranks"], rank)
    rows = list(range(params["batch"])) if rows is None else rows
    shape = (params["kv_heads"], stop - start, params["head_dim"])
    out = []
    for role in (1, 2):
        cache = torch.empty((len(rows), *shape), dtype=DTYPES[params["dtype"]], device=device)
        for i, row in enumerate(rows):
            cache[i] = random_piece(shape, DTYPES[params["dtype"]], device, seed, rank * ROW_STRIDE + row, role)
        out.append(cache)
    return out[0], out[1]


def checked_rows(batch: int) -> list[int]:
    """Batch rows the float64 reference covers: all of a small batch, else the first, middle and last."""
    return list(range(batch)) if batch <= 4 else sorted({0, batch // 2, batch - 1})


@register_workload
class ShardedDecode(Workload):
    name = "sharded_decode"
    family = "long_context"
    description = ("One decode step against a KV cache sharded along the context over ranks: each rank attends to "
                   "its slice, then the partial outputs merge by log-sum-exp in one all_gather.")
    sweep_param = "context_tokens"
    distributed = True
    params = (
        Param("ranks", int, 2, minimum=1, doc="processes (GPUs) the cache is sharded over"),
        Param("context_tokens", int, 131072, minimum=1, doc="cached tokens in all (need not divide by ranks)"),
        Param("batch", int, 1, minimum=1),
        Param("heads", int, 32, minimum=1),
        Param("kv_heads", int, 8, minimum=1, doc="K/V heads; fewer than heads is GQA"),
        Param("head_dim", int, 128, minimum=1),
        Param("dtype", str, "bfloat16", choices=tuple(DTYPES)),
    )
    contract_params = {"ranks": 1, "context_tokens": 300, "heads": 4, "kv_heads": 2, "head_dim": 16,
                       "dtype": "float32"}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        """The replicated query (one generator, the same on every rank) and this rank's cache slice."""
        s, rank = dims(params), group_rank(params)
        q = random_piece((s["b"], s["h"], 1, s["d"]), DTYPES[params["dtype"]], device, seed, QUERY_PIECE, 0)
        k, v = _cache_slice(params, device, seed, rank)
        return {"q": q, "k": k, "v": v, "seed": seed}

    def input_bytes(self, inputs: dict) -> int:
        return int(sum(inputs[n].numel() * inputs[n].element_size() for n in ("q", "k", "v")))

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        """The output of `checked_rows` in float64 over every rank's slice, regenerated one slice at a time (a
        float64 online softmax over slices; GQA by broadcasting, no repeat): affordable at 40 x 1M tokens."""
        s, rows = dims(params), checked_rows(params["batch"])
        q = inputs["q"][rows].double()
        device = str(q.device)
        qg = q.view(len(rows), s["hkv"], s["h"] // s["hkv"], s["d"]) / math.sqrt(s["d"])  # [b, Hkv, G, D]
        peak = torch.full(qg.shape[:-1], float("-inf"), dtype=torch.float64, device=q.device)
        total, acc = torch.zeros_like(peak), torch.zeros_like(qg)
        for rank in range(s["n"]):
            k, v = (t.double() for t in _cache_slice(params, device, inputs["seed"], rank, rows))
            if k.shape[2] == 0:
                continue
            scores = qg @ k.transpose(-2, -1)  # [B, Hkv, G, L_r]
            new_peak = torch.maximum(peak, scores.amax(dim=-1))
            correction, probs = torch.exp(peak - new_peak), torch.exp(scores - new_peak.unsqueeze(-1))
            total = total * correction + probs.sum(dim=-1)
            acc = acc * correction.unsqueeze(-1) + probs @ v
            peak = new_peak
        return (acc / total.unsqueeze(-1)).view(len(rows), s["h"], 1, s["d"])

    def check(self, output: torch.Tensor, reference: torch.Tensor, baseline_error: float | None) -> Check:
        return Workload.check(self, output[checked_rows(output.shape[0])], reference, baseline_error)

    def quality(self, output: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        return {"quality.rel_l2_error": rel_l2_error(output[checked_rows(output.shape[0])], reference)}

    def wrong_answers(self, output: torch.Tensor) -> list[torch.Tensor]:
        """Scaled, head_dim reversed, one NaN, and one rank's partial dropped (the first half of the heads
        replaced by the second: a merge that picked the wrong row)."""
        poisoned, mixed = output.clone(), output.clone()
        poisoned.view(-1)[0] = float("nan")
        half = output.shape[1] // 2
        mixed[:, :half or 1] = output[:, -(half or 1):].flip(-1)
        return [output * 1.01, output.flip(-1), poisoned, mixed]

    def counters(self, output: torch.Tensor, params: dict) -> dict[str, float]:
        return {COMM_BYTES.name: comm_bytes(params)}

    def cost(self, params: dict, impl: str) -> Cost:
        """Per rank, the busiest (ceil(context / ranks) tokens): FLOPs 4·b·H·L_r·D; dram: its cache slice
        read once, q read and o written; interconnect: its packed (out, lse) rows to N-1 peers. Footprint:
        slice, q, o, the packed partial, the N gathered rows, and one score tile over the slice (turned into
        probabilities in place; 16-bit inputs add the probabilities cast back for the PV matmul)."""
        s = dims(params)
        scores = float(s["b"] * s["h"] * s["busiest"])
        kv = 2.0 * s["b"] * s["hkv"] * s["busiest"] * s["d"] * s["e"]
        q_o = 2.0 * s["b"] * s["h"] * s["d"] * s["e"]
        stats = max(s["e"], 4)
        packed = float(s["b"] * s["h"] * (s["d"] + 1) * stats)
        per_score = stats + s["e"] if s["e"] < 4 else s["e"]  # one score tile (+ its 16-bit cast for PV)
        return Cost(4.0 * scores * s["d"], {"dram": kv + q_o, "interconnect": comm_bytes(params)},
                    kv + q_o + packed * (1 + s["n"]) + scores * per_score, dtype=params["dtype"], launches=12,
                    special_ops=scores)

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        if params["heads"] % params["kv_heads"]:
            return f"kv_heads ({params['kv_heads']}) must divide heads ({params['heads']})"
        if device == "cuda" and params["ranks"] > torch.cuda.device_count():
            return f"ranks={params['ranks']} needs that many GPUs; {torch.cuda.device_count()} visible"
        return None


def comm_bytes(params: dict) -> float:
    """Bytes each rank sends per call: its [B, H, D+1] packed partial (stats dtype) to N-1 peers."""
    element = max(torch.finfo(DTYPES[params["dtype"]]).bits // 8, 4)
    packed = params["batch"] * params["heads"] * (params["head_dim"] + 1) * element
    return float((params["ranks"] - 1) * packed)


@implementation("sharded_decode", "lse_allgather", baseline=True)
def lse_allgather(inputs: dict, params: dict) -> torch.Tensor:
    """Local partial (out, lse) per rank, one all_gather of the packed rows, the same merge on every rank."""
    return sd.sharded_decode_attention(inputs["q"], inputs["k"], inputs["v"])
