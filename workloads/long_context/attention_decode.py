"""Attention decode: one new query token per sequence against a KV cache of kv_len tokens (MHA and GQA).

Decode rereads the whole cache every step to produce one token, so it is bound by memory bandwidth: the
figure of merit is KV bytes read per step ÷ latency (the record's `achieved_bytes_per_s`).

Why MHA and GQA share this workload and MLA has its own (`mla_decode`): MHA is GQA with group 1 — same
inputs, same reference, same implementations, differing only in heads / kv_heads — so one workload sweeps
the group size. MLA's cache is a different object (a latent plus a shared rope key, with per-head
up-projection weights), its params (kv_lora_rank, rope_dim, ...) mean nothing to MHA/GQA, its
implementations do different FLOPs, and none of the GQA implementations could run it: folding it in would
leave half the params meaningless in every case and most implementations skipped.

The inputs hold the same cache twice: contiguous k, v [B, Hkv, L, D] for the contiguous implementations and
a paged pool k_pages, v_pages [N, page_size, Hkv, D] with a shuffled block table for the paged ones (the
pool's slots past kv_len hold unrelated random values, like a page's stale tail). Each implementation reads
one of them; `input_bytes` counts one, so input rotation is sized by what one call reads.

The Triton implementations (CUDA only; tests run them in Triton's interpreter) read each KV byte once, so
their latency should sit on the copy bandwidth: scripts/bench_decode.py measured 0.97-1.01x of an H100's
copy for caches >= 1 GiB. The harness times eagerly, one synchronized call per sample, so for caches of a
few hundred MB its figure also carries Triton's host launch path (tens of microseconds).
"""

from __future__ import annotations

import math

import torch

from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.kernels import decode
from reference_impls.kernels import triton_decode as tdecode
from workloads.long_context.kv_metrics import KV_BYTES_READ

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
FLOOR_EPS = 32  # float32/64 checks: 2 x baseline error + 32 eps (see decode_check)
TORCH_SPLITS = 8  # split_kv (torch) with splits=0: its chunks run one after another, so a few suffice
PAGED_IMPLS = ("paged_gather", "triton_paged")
_CPU = torch.device("cpu")


def decode_check(workload: Workload, output: torch.Tensor, reference: torch.Tensor,
                 baseline_error: float | None) -> Check:
    """DESIGN's rule with a float32 floor of FLOOR_EPS·eps instead of eps: a softmax-weighted sum over
    thousands of keys carries ~√L·eps of rounding, and two equally good BLAS paths (a [G, D] x [D, L]
    matmul against G matvecs) differ by several eps, so an eps floor fails correct code when the baseline
    happens to round well. 16-bit outputs keep the harness's rule (their eps already exceeds that spread)."""
    verdict = Workload.check(workload, output, reference, baseline_error)
    if baseline_error is None or torch.finfo(output.dtype).bits < 32:
        return verdict
    tolerance = 2.0 * baseline_error + FLOOR_EPS * torch.finfo(output.dtype).eps
    return Check(verdict.error <= tolerance, verdict.error, tolerance,
                 f"error <= 2 x baseline error + {FLOOR_EPS} eps")


def dims(params: dict) -> dict:
    """Sizes, checked together: heads must be a multiple of kv_heads."""
    if params["heads"] % params["kv_heads"]:
        raise ValueError(f"heads ({params['heads']}) must be a multiple of kv_heads ({params['kv_heads']}); "
                         f"allowed kv_heads: divisors of {params['heads']}")
    element = torch.finfo(DTYPES[params["dtype"]]).bits // 8
    pages = math.ceil(params["kv_len"] / params["page_size"])
    return {"b": params["batch"], "hq": params["heads"], "hkv": params["kv_heads"], "L": params["kv_len"],
            "d": params["head_dim"], "e": element, "group": params["heads"] // params["kv_heads"],
            "pages": pages, "padded": pages * params["page_size"]}


@register_workload
class AttentionDecode(Workload):
    name = "attention_decode"
    family = "long_context"
    description = ("One query token per sequence against a KV cache (MHA when kv_heads == heads, GQA otherwise), "
                   "contiguous or paged. Memory-bound: the cache is reread every step.")
    sweep_param = "kv_len"
    params = (
        Param("kv_len", int, 4096, minimum=1, doc="tokens in the KV cache"),
        Param("batch", int, 1, minimum=1, doc="sequences decoded together"),
        Param("heads", int, 32, minimum=1, doc="query heads"),
        Param("kv_heads", int, 8, minimum=1, doc="KV heads; heads / kv_heads is the GQA group (1 = MHA)"),
        Param("head_dim", int, 128, minimum=1),
        Param("dtype", str, "float32", choices=tuple(DTYPES)),
        Param("page_size", int, 16, minimum=1, doc="tokens per page of the paged cache"),
        Param("splits", int, 0, minimum=0, doc="KV splits (flash-decoding); 0 = the implementation's default"),
    )
    contract_params = {"kv_len": 100, "batch": 2, "heads": 8, "kv_heads": 2, "head_dim": 32, "page_size": 16}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        s = dims(params)
        g = torch.Generator(device=device).manual_seed(seed)
        dtype = DTYPES[params["dtype"]]

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=g, device=device, dtype=torch.float32).to(dtype)

        q = randn(s["b"], s["hq"], s["d"])  # [B, Hq, D]
        k, v = randn(s["b"], s["hkv"], s["L"], s["d"]), randn(s["b"], s["hkv"], s["L"], s["d"])  # [B, Hkv, L, D]
        n_pages = s["b"] * s["pages"]
        table = torch.randperm(n_pages, generator=g, device=device).to(torch.int32).view(s["b"], s["pages"])
        stale = s["padded"] - s["L"]  # slots of the last page past kv_len: random, like a reused page's tail
        k_pages, v_pages = (self._paged(cache, randn(s["b"], stale, s["hkv"], s["d"]), table, params["page_size"])
                            for cache in (k, v))
        return {"q": q, "k": k, "v": v, "k_pages": k_pages, "v_pages": v_pages, "block_table": table}

    @staticmethod
    def _paged(cache: torch.Tensor, stale: torch.Tensor, table: torch.Tensor, page_size: int) -> torch.Tensor:
        """[B, Hkv, L, D] -> a pool [N, P, Hkv, D] where page i of sequence b sits at row table[b, i]."""
        tokens = torch.cat([cache.transpose(1, 2), stale], dim=1)  # [B, pages·P, Hkv, D]
        pool = torch.empty((table.numel(), page_size, *tokens.shape[2:]), dtype=cache.dtype, device=cache.device)
        pool[table.reshape(-1).long()] = tokens.reshape(pool.shape)
        return pool

    def input_bytes(self, inputs: dict) -> int:
        """What one call reads (q and one copy of the cache), for sizing input rotation against the L2."""
        return int(sum(inputs[n].numel() * inputs[n].element_size() for n in ("q", "k", "v")))

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        return decode.decode_reference(inputs["q"], inputs["k"], inputs["v"])

    def check(self, output: torch.Tensor, reference: torch.Tensor, baseline_error: float | None) -> Check:
        return decode_check(self, output, reference, baseline_error)

    def counters(self, output: torch.Tensor, params: dict) -> dict[str, float]:
        s = dims(params)
        return {KV_BYTES_READ.name: 2.0 * s["b"] * s["hkv"] * s["L"] * s["d"] * s["e"]}

    def cost(self, params: dict, impl: str) -> Cost:
        """FLOPs 4·b·Hq·L·D (QKᵀ and PV); minimum bytes: the cache once (2·b·Hkv·L·D), q and o once, and for
        paged implementations the block table. Traffic adds what each implementation materializes."""
        s = dims(params)
        kv = 2.0 * s["b"] * s["hkv"] * s["L"] * s["d"] * s["e"]
        q_o = 2.0 * s["b"] * s["hq"] * s["d"] * s["e"]
        table = 4.0 * s["b"] * s["pages"] if impl in PAGED_IMPLS else 0.0
        traffic, launches, workspace = _traffic(impl, params, s, kv, q_o + table)
        resident = kv * s["padded"] / s["L"] if impl in PAGED_IMPLS else kv  # the pool holds whole pages
        scores = float(s["b"] * s["hq"] * s["L"])
        return Cost(4.0 * scores * s["d"], {"dram": kv + q_o + table}, resident + q_o + table + workspace,
                    dtype=params["dtype"], traffic_bytes={"dram": traffic}, launches=launches, special_ops=scores)

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        if impl == "sdpa" and params["heads"] != params["kv_heads"] and not _sdpa_has_gqa():
            return f"torch {torch.__version__} sdpa has no enable_gqa (needs torch >= 2.5)"
        return None


def _traffic(impl: str, params: dict, s: dict, kv: float, io: float) -> tuple[float, int, float]:
    """(expected main-memory bytes, launches, workspace bytes) of one call, counted from the code.

    Torch score passes (per score element, input dtype): matmul writes, softmax reads and writes, PV reads.
    Fused Triton kernels move the cache once plus, with splits > 1, float32 partial outputs and log-sum-exps
    written and read back once. sdpa is charged as a fused kernel (what its flash/efficient backends move).
    """
    b, hq, length, d, e = s["b"], s["hq"], s["L"], s["d"], s["e"]
    score_elements = b * hq * length
    torch_scores = 4.0 * e * score_elements  # matmul write, softmax read + write, PV read
    q_scaled = 2.0 * b * hq * d * e  # q * scale, read and written
    if impl == "torch_gqa":
        return io + kv + torch_scores + q_scaled, 4, 2.0 * score_elements * e
    if impl == "repeat_kv":
        repeated = kv * s["group"] if s["group"] > 1 else 0.0
        return io + kv + 2.0 * repeated + torch_scores + q_scaled, 4 + (2 if repeated else 0), repeated
    if impl == "sdpa":
        return io + kv, 1, 0.0
    if impl == "paged_gather":
        padded = kv * s["padded"] / length  # whole pages are read from the pool and copied
        return io + 2.0 * padded + kv + torch_scores + q_scaled, 6, padded + 2.0 * score_elements * e
    if impl == "split_kv":
        splits = params["splits"] or TORCH_SPLITS
        per_score = 4.0 * e + 20.0  # matmul w; float r+w; logsumexp r; exp r+w (f32); cast r+w; PV r
        partials = splits * b * hq * d * (2.0 * e + 32.0)  # PV w + cast r, then 4 float32 passes (w+r) to merge
        return io + kv + per_score * score_elements + partials + q_scaled, 8 * splits + 7, partials / 2
    if impl in ("triton_split", "triton_paged"):
        layout = "paged" if impl == "triton_paged" else "contiguous"  # splits as on an H100 (132 SMs)
        splits = params["splits"] or tdecode.auto_splits(b, s["hkv"], length, tdecode.device_slots(_CPU, layout))
        partials = 0.0 if splits == 1 else 2.0 * b * hq * splits * (d + 1) * 4.0
        return io + kv + partials, 1 if splits == 1 else 2, partials / 2
    raise ValueError(f"no cost model for implementation {impl!r} of attention_decode")


def _sdpa_has_gqa() -> bool:
    return "enable_gqa" in (torch.nn.functional.scaled_dot_product_attention.__doc__ or "")


@implementation("attention_decode", "torch_gqa", baseline=True)
def torch_gqa(inputs: dict, params: dict) -> torch.Tensor:
    """Plain torch: the query regrouped to [B, Hkv, G, D], two batched matmuls and a softmax; K/V not repeated."""
    return decode.gqa_decode(inputs["q"], inputs["k"], inputs["v"])


@implementation("attention_decode", "repeat_kv")
def repeat_kv(inputs: dict, params: dict) -> torch.Tensor:
    """The naive way to run GQA on an MHA kernel: K and V repeat_interleave'd to every query head."""
    return decode.repeat_kv_decode(inputs["q"], inputs["k"], inputs["v"])


@implementation("attention_decode", "sdpa")
def sdpa(inputs: dict, params: dict) -> torch.Tensor:
    """torch's scaled_dot_product_attention with a one-token query (enable_gqa for GQA), torch's backend choice."""
    return decode.sdpa_decode(inputs["q"], inputs["k"], inputs["v"])


@implementation("attention_decode", "paged_gather")
def paged_gather(inputs: dict, params: dict) -> torch.Tensor:
    """Paged cache, plain torch: gather the pages into a contiguous copy (index_select), then attend."""
    return decode.paged_gather_decode(inputs["q"], inputs["k_pages"], inputs["v_pages"], inputs["block_table"],
                                      params["kv_len"])


@implementation("attention_decode", "split_kv")
def split_kv(inputs: dict, params: dict) -> torch.Tensor:
    """Flash-decoding's arithmetic in torch: per-chunk partial outputs merged by log-sum-exp (chunks in series)."""
    return decode.split_kv_decode(inputs["q"], inputs["k"], inputs["v"], params["splits"] or TORCH_SPLITS)


@implementation("attention_decode", "triton_split", devices=("cuda",))
def triton_split(inputs: dict, params: dict) -> torch.Tensor:
    """Triton flash-decoding over the contiguous cache: grid (batch, kv head, split), a group's heads per program."""
    return tdecode.triton_split_decode(inputs["q"], inputs["k"], inputs["v"], splits=params["splits"])


@implementation("attention_decode", "triton_paged", devices=("cuda",))
def triton_paged(inputs: dict, params: dict) -> torch.Tensor:
    """Triton flash-decoding reading pages through the block table (no gather), split-KV, GQA-grouped."""
    return tdecode.triton_paged_decode(inputs["q"], inputs["k_pages"], inputs["v_pages"], inputs["block_table"],
                                       params["kv_len"], splits=params["splits"])
