"""KV-cache compression on planted needles: what a policy keeps, what attention loses, what memory is really freed.

A synthetic layer: random keys and values for L tokens, a few "needle" tokens (mid-context) whose keys align
with the question, the last W prompt queries (the question, which attends to the needles) and the final decode
query. A case compresses the cache with one policy and answers the final query from the compressed cache.

  correctness (check)  the output against float64 attention over the *same* compressed cache — the kept set
                       (verified against the policy's float64 plan, up to rounding near ties) or KIVI's
                       dequantized cache (verified against its error bound) — so it tests the implementation,
                       not the policy's lossiness
  quality              attention error against the full cache in float64, and needle recall
  counted bytes        claimed (what the method says: budget tokens, or bits/8 for KIVI), allocated (what the
                       implementation's tensors hold) and read per decode step

Two implementations make the claimed/allocated gap visible: `masked` keeps the full cache and masks dropped
tokens (for KIVI: quantize-dequantize into a full-precision tensor, "fake quant") and saves memory only on
paper; `compacted` gathers the kept tokens into smaller tensors (KIVI: packed uint8 codes + fp16 scales/zero
points + the full-precision window).

What the synthetic layer cannot show: needle keys have the norm of any key, so Knorm (which relies on trained
models' low-norm, high-attention keys) has no signal here; and all heads retrieve alike, so DuoAttention keeps a
needle only on its retrieval heads (or when the streaming window reaches back to it). The passkey workload on a
real model is where those policies get their fair test.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from harness import metrics
from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload, rel_l2_error
from reference_impls.kernels import kv_compressed_attention as kv_attn
from reference_impls.kernels import kv_compression as kvc
from reference_impls.kernels import kv_quant
from workloads.long_context.kv_metrics import KV_ALLOCATED, KV_BYTES_READ, KV_CLAIMED

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
WORKLOAD_POLICIES = (*kvc.POLICIES, "kivi")
NEEDLE_ALIGNMENT = 0.9  # needle key = 0.9 * sqrt(d) along the question's direction + noise: the norm of any key
NEEDLE_LOGIT = 8.0  # the final query's scaled logit on a needle; haystack logits ~ N(0, 1.2^2) at d=64, so four
#                     needles draw about half of the attention at L=4096
QUERY_NOISE = 0.5
POOL_KERNEL = 5  # SnapKV's default
RANK_RTOL = 1e-4  # a kept/dropped pair may be out of order by this much (float32 scores vs float64)

ATTENTION_ERROR = metrics.declare("quality.attention_rel_error_vs_full", "1", "lower",
                                  "attention error vs the full KV cache (float64)")
NEEDLE_RECALL = metrics.declare("quality.needle_recall", "1", "higher", "needle tokens kept (per KV head)",
                                deterministic=True)
CLAIMED, ALLOCATED, READ = KV_CLAIMED, KV_ALLOCATED, KV_BYTES_READ
BITS = metrics.declare("kv_allocated_bits_per_element", "bit", "lower", "bits held per cached K/V element",
                       deterministic=True)


@dataclasses.dataclass(frozen=True)
class CompressedAttention:
    """One case's answer: the final query's attention and the compressed cache it came from."""

    out: torch.Tensor  # [heads, d], input dtype
    kept: torch.Tensor  # [kv_heads, L] bool (all True for KIVI)
    priority: torch.Tensor | None  # [kv_heads, L]: the implementation's ranking (None for KIVI)
    dequantized: tuple[torch.Tensor, torch.Tensor] | None  # KIVI: the [kv_heads, L, d] K, V attention used
    held_bytes: int  # bytes of the cache tensors the implementation keeps
    read_bytes: int  # bytes of cache one decode step reads


@register_workload
class KVCompression(Workload):
    name = "kv_compression"
    family = "long_context"
    description = ("KV-cache compression (StreamingLLM, H2O, SnapKV, TOVA, Knorm, DuoAttention, KIVI) on a "
                   "synthetic layer with planted needles: needle recall, attention error vs full KV, and "
                   "claimed vs allocated vs read bytes for a masked and a compacted cache.")
    sweep_param = "budget_fraction"
    params = (
        Param("policy", str, "snapkv", choices=WORKLOAD_POLICIES),
        Param("budget_fraction", float, 0.25, minimum=0.0, doc="tokens kept per KV head / kv_len (token policies)"),
        Param("kv_len", int, 4096, minimum=2),
        Param("heads", int, 8, minimum=1),
        Param("kv_heads", int, 2, minimum=1),
        Param("head_dim", int, 64, minimum=1),
        Param("dtype", str, "float32", choices=tuple(DTYPES)),
        Param("window", int, 64, minimum=1, doc="observation window: the last W prompt queries"),
        Param("needles", int, 4, minimum=1),
        Param("sink_tokens", int, 4, minimum=0),
        Param("duo_retrieval_fraction", float, 0.5, minimum=0.0, doc="DuoAttention: share of retrieval heads"),
        Param("kivi_bits", int, 2, choices=(2, 4)),
        Param("kivi_group", int, 32, minimum=1),
        Param("kivi_residual", int, 128, minimum=0, doc="KIVI: newest tokens kept in full precision"),
    )
    contract_params = {"kv_len": 300, "heads": 4, "kv_heads": 2, "head_dim": 32, "window": 16, "kivi_residual": 32}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        _validate(params)
        g = torch.Generator(device=device).manual_seed(seed)
        heads, kv_heads, length, dim, rows = (params[k] for k in ("heads", "kv_heads", "kv_len", "head_dim", "window"))

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=g, device=device)

        keys, values = randn(kv_heads, length, dim), randn(kv_heads, length, dim)  # [Hkv, L, d]
        direction = F.normalize(randn(kv_heads, dim), dim=-1)  # [Hkv, d]: what the question asks about
        needles = _needle_positions(params, g, device)
        noise = randn(kv_heads, len(needles), dim) * math.sqrt(1.0 - NEEDLE_ALIGNMENT**2)
        keys[:, list(needles)] = NEEDLE_ALIGNMENT * math.sqrt(dim) * direction[:, None] + noise
        asked = (NEEDLE_LOGIT / NEEDLE_ALIGNMENT) * direction.repeat_interleave(heads // kv_heads, 0)  # [H, d]
        query = asked + QUERY_NOISE * randn(heads, dim)
        strength = 0.5 + 0.5 * torch.rand(heads, rows, 1, generator=g, device=device)
        window_queries = strength * asked[:, None] + QUERY_NOISE * randn(heads, rows, dim)  # [H, W, d]
        dtype = DTYPES[params["dtype"]]
        return {"keys": keys.to(dtype), "values": values.to(dtype), "window_queries": window_queries.to(dtype),
                "query": query.to(dtype), "needles": needles}

    def reference(self, inputs: dict, params: dict) -> dict:
        """float64 copies, the full-cache answer, and the policy's float64 plan (KIVI: its per-element error bound)."""
        keys, values, query = (inputs[k].double() for k in ("keys", "values", "query"))
        ref = {"query": query, "keys": keys, "values": values, "needles": inputs["needles"],
               "full_out": _attention64(query, keys, values, None), "policy": params["policy"], "plan": None,
               "kivi_bound": None}
        if params["policy"] == "kivi":
            ref["kivi_bound"] = kv_quant.kivi_error_bound(keys, values, params["kivi_bits"], params["kivi_group"],
                                                          params["kivi_residual"], inputs["keys"].dtype)
        else:
            scores = None
            if params["policy"] in kvc.SCORE_POLICIES:
                scores = kvc.window_attention_scores(inputs["window_queries"].double(), keys)
            ref["plan"] = kvc.selection_plan(params["policy"], keys, scores, _budget(params), **_select_kwargs(params))
        return ref

    def check(self, output: CompressedAttention, reference: dict, baseline_error: float | None) -> Check:
        """The kept set (or KIVI cache) must be valid; then the output is held to DESIGN's rule against float64
        attention over that same compressed cache."""
        eps = torch.finfo(output.out.dtype).eps
        if baseline_error is None:
            tolerance, rule = eps**0.5, "error <= sqrt(eps) (baseline sanity bound)"
        else:
            tolerance, rule = 2.0 * baseline_error + eps, "error <= 2 x baseline error + eps"
        problem = _cache_problem(output, reference)
        if problem:
            return Check(False, math.inf, tolerance, f"{rule}; invalid compressed cache: {problem}")
        keys, values = reference["keys"], reference["values"]
        if output.dequantized is not None:
            keys, values = (t.double() for t in output.dequantized)
        target = _attention64(reference["query"], keys, values, output.kept)
        error = rel_l2_error(output.out, target)
        return Check(error <= tolerance, error, tolerance, rule)

    def quality(self, output: CompressedAttention, reference: dict) -> dict[str, float]:
        needles = list(reference["needles"])
        return {ATTENTION_ERROR.name: rel_l2_error(output.out, reference["full_out"]),
                NEEDLE_RECALL.name: float(output.kept[:, needles].double().mean())}

    def counters(self, output: CompressedAttention, params: dict) -> dict[str, float]:
        elements = 2 * params["kv_heads"] * params["kv_len"] * params["head_dim"]
        return {CLAIMED.name: float(claimed_bytes(params)), ALLOCATED.name: float(output.held_bytes),
                READ.name: float(output.read_bytes), BITS.name: 8.0 * output.held_bytes / elements}

    def wrong_answers(self, output: CompressedAttention) -> list[CompressedAttention]:
        """Output scaled by 1.01, a NaN, and a corrupted cache: the best-ranked kept token swapped for the
        worst-ranked dropped one (a token dropped when none was), or KIVI's dequantized keys scaled by 1.5."""
        poisoned = output.out.clone()
        poisoned.view(-1)[0] = float("nan")
        wrong = [dataclasses.replace(output, out=output.out * 1.01), dataclasses.replace(output, out=poisoned)]
        if output.dequantized is not None:
            keys, values = output.dequantized
            return [*wrong, dataclasses.replace(output, dequantized=(keys * 1.5, values))]
        return [*wrong, dataclasses.replace(output, kept=_swap_best_kept_for_worst_dropped(output))]

    def cost(self, params: dict, impl: str) -> Cost:
        """One call = score (score policies), select, build the compressed cache, one decode step over it.

        Minimum bytes: read K, V and the queries once, write the output. Expected traffic adds the compressed
        cache written (masked: the mask), the decode step's read of it, and the float32 window scores."""
        heads, kv_heads, length, dim, rows = (params[k] for k in ("heads", "kv_heads", "kv_len", "head_dim", "window"))
        element = torch.finfo(DTYPES[params["dtype"]]).bits // 8
        kv_bytes = 2 * kv_heads * length * dim * element
        io = kv_bytes + heads * (rows + 1) * dim * element + heads * dim * element
        scoring = params["policy"] in kvc.SCORE_POLICIES
        score_flops = 2.0 * heads * rows * length * dim if scoring else 0.0
        if params["policy"] == "knorm":
            score_flops = 2.0 * kv_heads * length * dim
        score_bytes = 3.0 * heads * rows * length * 4 if scoring else 0.0  # logits, probabilities, reduction
        attended = kv_heads * length if (impl == "masked" or params["policy"] == "kivi") else kept_tokens(params)
        attention_flops = 4.0 * (heads // kv_heads) * kept_tokens(params) * dim
        held = allocated_bytes_model(params, impl)
        built = kv_heads * length if (impl == "masked" and params["policy"] != "kivi") else held  # mask or cache
        return Cost(score_flops + attention_flops, {"dram": float(io)}, footprint_bytes=float(io + held + score_bytes),
                    dtype=params["dtype"], traffic_bytes={"dram": float(io + built + held + score_bytes)},
                    executed_flops=score_flops + 4.0 * (heads // kv_heads) * attended * dim,
                    special_ops=float(heads * (attended // kv_heads) + (heads * rows * length if scoring else 0)))


def _nbytes(*tensors: torch.Tensor) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors))


def _token_selection(inputs: dict, params: dict) -> tuple[kvc.SelectionPlan, torch.Tensor]:
    """The policy's plan and kept mask; score policies first compute the window's attention (float32)."""
    keys, scores = inputs["keys"], None
    if params["policy"] in kvc.SCORE_POLICIES:
        scores = kvc.window_attention_scores(inputs["window_queries"], keys)
    plan = kvc.selection_plan(params["policy"], keys, scores, _budget(params), **_select_kwargs(params, keys.device))
    return plan, kvc.mask_from_plan(plan)


def _kivi(inputs: dict, params: dict) -> kv_quant.KiviCache:
    return kv_quant.kivi_compress(inputs["keys"], inputs["values"], params["kivi_bits"], params["kivi_group"],
                                  params["kivi_residual"])


def _all_kept(keys: torch.Tensor) -> torch.Tensor:
    return torch.ones(keys.shape[:2], dtype=torch.bool, device=keys.device)


@implementation("kv_compression", "masked", baseline=True)
def masked(inputs: dict, params: dict) -> CompressedAttention:
    """Keeps the full cache and masks dropped tokens; KIVI: quantize-dequantize into full precision (fake quant)."""
    query, keys, values = inputs["query"], inputs["keys"], inputs["values"]
    if params["policy"] == "kivi":
        keys, values = _kivi(inputs, params).dequantize()
        held = _nbytes(keys, values)
        out = kv_attn.compact_decode_attention(query, keys, values)
        return CompressedAttention(out, _all_kept(keys), None, (keys, values), held, held)
    plan, mask = _token_selection(inputs, params)
    held = _nbytes(keys, values, mask)
    out = kv_attn.masked_decode_attention(query, keys, values, mask)
    return CompressedAttention(out, mask, plan.priority, None, held, held)


@implementation("kv_compression", "compacted")
def compacted(inputs: dict, params: dict) -> CompressedAttention:
    """Gathers the kept tokens into smaller tensors (DuoAttention: a full and a short cache); KIVI: packed
    uint8 codes + fp16 scales and zero points + the full-precision window, dequantized for the attention."""
    query, keys, values = inputs["query"], inputs["keys"], inputs["values"]
    if params["policy"] == "kivi":
        cache = _kivi(inputs, params)
        full_keys, full_values = cache.dequantize()  # the transient copy a plain-torch attention needs
        out = kv_attn.compact_decode_attention(query, full_keys, full_values)
        return CompressedAttention(out, _all_kept(keys), None, (full_keys, full_values), cache.nbytes(),
                                   cache.nbytes())
    plan, mask = _token_selection(inputs, params)
    if params["policy"] == "duo_attention":
        duo = kv_attn.duo_compact(keys, values, mask, _head_mask(params, keys.device))
        out, held = kv_attn.duo_decode_attention(query, duo), duo.nbytes()
    else:
        kept_keys, kept_values = kvc.gather_kept(keys, values, mask)
        out, held = kv_attn.compact_decode_attention(query, kept_keys, kept_values), _nbytes(kept_keys, kept_values)
    return CompressedAttention(out, mask, plan.priority, None, held, held)


def _validate(params: dict) -> None:
    heads, kv_heads, length = params["heads"], params["kv_heads"], params["kv_len"]
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads}) (GQA groups)")
    if not 0.0 < params["budget_fraction"] <= 1.0:
        raise ValueError(f"budget_fraction must be in (0, 1], got {params['budget_fraction']}")
    if not 0.0 <= params["duo_retrieval_fraction"] <= 1.0:
        raise ValueError(f"duo_retrieval_fraction must be in [0, 1], got {params['duo_retrieval_fraction']}")
    if params["window"] > length:
        raise ValueError(f"window ({params['window']}) must be <= kv_len ({length})")
    low, high = _needle_range(params)
    if high - low < params["needles"]:
        raise ValueError(f"kv_len {length} leaves {max(high - low, 0)} mid-context positions "
                         f"([max(sink_tokens, L/10), L/2)) for {params['needles']} needles; raise kv_len")


def _needle_range(params: dict) -> tuple[int, int]:
    """Needles sit mid-context: after the sinks and the first tenth, before the second half."""
    return max(params["sink_tokens"], params["kv_len"] // 10), params["kv_len"] // 2


def _needle_positions(params: dict, g: torch.Generator, device: str) -> tuple[int, ...]:
    low, high = _needle_range(params)
    picks = torch.randperm(high - low, generator=g, device=device)[: params["needles"]] + low
    return tuple(sorted(int(p) for p in picks))


def _budget(params: dict) -> int:
    return max(1, round(params["budget_fraction"] * params["kv_len"]))


def _head_mask(params: dict, device: str | torch.device = "cpu") -> torch.Tensor:
    """DuoAttention's retrieval heads: the first round(fraction * kv_heads) (the synthetic heads are alike)."""
    retrieval = round(params["duo_retrieval_fraction"] * params["kv_heads"])
    return torch.arange(params["kv_heads"], device=device) < retrieval


def _select_kwargs(params: dict, device: str | torch.device = "cpu") -> dict:
    return {"sink_tokens": params["sink_tokens"], "window": params["window"], "pool_kernel": POOL_KERNEL,
            "head_mask": _head_mask(params, device) if params["policy"] == "duo_attention" else None}


def kept_tokens(params: dict) -> int:
    """Tokens kept over all KV heads (KIVI and full: all of them)."""
    kv_heads, length = params["kv_heads"], params["kv_len"]
    policy, keep = params["policy"], min(_budget(params), length)
    if policy in ("full", "kivi"):
        return kv_heads * length
    if policy == "duo_attention":
        retrieval = int(_head_mask(params).sum())
        return retrieval * length + (kv_heads - retrieval) * keep
    return kv_heads * keep


def claimed_bytes(params: dict) -> int:
    """What the method says the cache costs: kept tokens at full precision, or KIVI's nominal bits / 8."""
    element = torch.finfo(DTYPES[params["dtype"]]).bits // 8
    if params["policy"] == "kivi":
        return 2 * params["kv_heads"] * params["kv_len"] * params["head_dim"] * params["kivi_bits"] // 8
    return 2 * kept_tokens(params) * params["head_dim"] * element


def allocated_bytes_model(params: dict, impl: str) -> int:
    """What each implementation's tensors hold, counted from its code (the counters measure the real tensors)."""
    kv_heads, length, dim = params["kv_heads"], params["kv_len"], params["head_dim"]
    element = torch.finfo(DTYPES[params["dtype"]]).bits // 8
    full = 2 * kv_heads * length * dim * element
    if impl == "masked":
        return full + (0 if params["policy"] == "kivi" else kv_heads * length)  # + the bool mask
    if params["policy"] != "kivi":
        return 2 * kept_tokens(params) * dim * element
    bits, group, residual = params["kivi_bits"], params["kivi_group"], params["kivi_residual"]
    quantized = max(length - residual, 0)
    if quantized == 0:
        return full
    codes = 2 * math.ceil(kv_heads * quantized * dim * bits / 8)
    groups = kv_heads * dim * math.ceil(quantized / group) + kv_heads * quantized * math.ceil(dim / group)
    scales = 2 * groups * torch.finfo(kv_quant.SCALE_DTYPE).bits // 8  # a scale and a zero point per group
    return codes + scales + 2 * kv_heads * (length - quantized) * dim * element


def _attention64(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                 kept: torch.Tensor | None) -> torch.Tensor:
    """Plain float64 softmax(q k^T / sqrt(d)) v for one query per head, K/V repeated to the query heads."""
    group = query.shape[0] // keys.shape[0]
    keys, values = keys.repeat_interleave(group, 0), values.repeat_interleave(group, 0)  # [H, L, d]
    logits = torch.einsum("hd,hld->hl", query, keys) / math.sqrt(query.shape[-1])
    if kept is not None:
        logits = logits.masked_fill(~kept.repeat_interleave(group, 0), float("-inf"))
    return torch.einsum("hl,hld->hd", torch.softmax(logits, dim=-1), values)


def _cache_problem(output: CompressedAttention, reference: dict) -> str | None:
    """Why the compressed cache is not what the policy prescribes (KIVI: not within its error bound), or None."""
    if reference["plan"] is not None:
        rtol = 0.0 if reference["policy"] in kvc.POSITION_POLICIES else RANK_RTOL
        return kvc.selection_violation(reference["plan"], output.kept, rtol)
    keys, values = reference["keys"], reference["values"]
    if output.kept.shape != keys.shape[:2] or not bool(output.kept.all()):
        return "KIVI keeps every token"
    if output.dequantized is None or any(d.shape != keys.shape for d in output.dequantized):
        return f"KIVI output must carry its dequantized {tuple(keys.shape)} keys and values"
    for name, approx, exact, bound in zip(("keys", "values"), output.dequantized, (keys, values),
                                          reference["kivi_bound"], strict=True):
        if not bool(((approx.double().to(exact.device) - exact).abs() <= bound).all()):
            return f"{name}: a dequantized element lies outside KIVI's error bound"
    return None


def _swap_best_kept_for_worst_dropped(output: CompressedAttention) -> torch.Tensor:
    kept = output.kept.clone()
    for head in range(kept.shape[0]):
        if bool(kept[head].all()):
            continue
        rank = output.priority[head].double().nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
        best = int(rank.masked_fill(~kept[head], -math.inf).masked_fill(rank.isinf(), -math.inf).argmax())
        worst = int(rank.masked_fill(kept[head], math.inf).argmin())
        kept[head, best], kept[head, worst] = False, True
        return kept
    kept.view(-1)[0] = False  # nothing was dropped: drop one token
    return kept
