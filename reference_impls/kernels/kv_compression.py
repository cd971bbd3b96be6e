"""KV-cache token selection: which cached tokens each KV head keeps under a budget, and the caches built from it.

Policies (all per layer, per sequence; `keys` is [kv_heads, L, d], `scores` the attention probabilities of the
last W prefill queries over the L keys, [q_heads, W, L] with q_heads = group * kv_heads):
  full           keeps everything (budget ignored): the reference point
  streaming_llm  attention sinks (the first `sink_tokens`) + the most recent budget - sinks tokens (`window` is
                 not used: the budget sets the recent part)
                 (Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks")
  h2o            recent half of the budget + the other half as "heavy hitters": the largest attention
                 accumulated over the given queries, summed over the group's query heads (Zhang et al. 2023;
                 their experiments split the budget equally between heavy and recent). The decode-time,
                 one-eviction-per-step version is reference_impls/kernels/h2o_decode.py.
  snapkv         the observation window (last `window` queries, their keys kept) votes: attention summed over
                 the window and the group's query heads, pooled over neighbouring keys (1-D avg or max pool of
                 `pool_kernel`, stride 1, same length), top budget - window of the prefix (Li et al. 2024)
  tova           the last query's attention, averaged over the group's query heads (Oren et al. 2024, "Transformers
                 are Multi-State RNNs"; the paper averages over all heads of a layer and keeps one set for all)
  knorm          the keys with the LOWEST L2 norm (Devoto et al. 2024, "A Simple and Effective L2 Norm-Based
                 Strategy for KV Cache Compression": low-norm keys draw high attention in trained models)
  duo_attention  retrieval heads (head_mask True) keep all L tokens; streaming heads keep sinks + recent
                 within the budget, as streaming_llm (Xiao et al. 2024, DuoAttention); duo_attention_memory_ratio

Each policy is a *plan*: tokens it always keeps (sinks, a recent or observation window, retrieval heads) plus a
priority over the rest; the mask keeps the forced tokens and then the highest priorities, ties to the earlier
position. The plan is public so a checker can verify a selection up to rounding (near-ties may flip between
float32 and float64 scores). Scores are reduced in float32 (float64 stays float64).

Imports nothing from the benchmark harness.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

POLICIES: tuple[str, ...] = ("full", "streaming_llm", "h2o", "snapkv", "tova", "knorm", "duo_attention")
SCORE_POLICIES: tuple[str, ...] = ("h2o", "snapkv", "tova")  # need attention scores
POSITION_POLICIES: tuple[str, ...] = ("full", "streaming_llm", "duo_attention")  # exact: no scores involved
POOLINGS: tuple[str, ...] = ("avg", "max")
MODES: tuple[str, ...] = ("compact", "masked")


@dataclass(frozen=True)
class SelectionPlan:
    """What a policy decided before the top-k: forced tokens, a priority for the rest, tokens kept per head."""

    forced: Tensor  # [kv_heads, L] bool: kept whatever the priority
    priority: Tensor  # [kv_heads, L] float: higher is kept first (ignored where forced)
    keep: Tensor  # [kv_heads] int64: tokens each head keeps (min(budget, L), or L for retrieval heads)


def _stats(x: Tensor) -> Tensor:
    """Reductions in float32, or float64 when given float64."""
    return x.double() if x.dtype == torch.float64 else x.float()


def _check_inputs(policy: str, keys: Tensor, scores: Tensor | None, budget: int, sink_tokens: int, window: int,
                  pool_kernel: int, pooling: str, head_mask: Tensor | None) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; allowed: {', '.join(POLICIES)}")
    if keys.dim() != 3 or not keys.dtype.is_floating_point:
        raise ValueError(f"keys must be a floating [kv_heads, L, d] tensor, got {keys.dtype} {tuple(keys.shape)}")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ValueError(f"budget must be an int >= 1 (tokens per KV head), got {budget!r}")
    if sink_tokens < 0 or window < 1:
        raise ValueError(f"sink_tokens must be >= 0 and window >= 1, got {sink_tokens} and {window}")
    if pool_kernel < 1 or pool_kernel % 2 == 0:
        raise ValueError(f"pool_kernel must be an odd int >= 1 (same-length pooling), got {pool_kernel}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    kv_heads, length = keys.shape[0], keys.shape[1]
    if policy in SCORE_POLICIES:
        if scores is None:
            raise ValueError(f"policy {policy!r} needs scores [q_heads, W, L]; got None")
        if scores.dim() != 3 or scores.shape[-1] != length or scores.shape[0] % kv_heads or scores.shape[1] < 1:
            raise ValueError(f"scores must be [q_heads, W, L] with L={length} and q_heads a multiple of "
                             f"kv_heads={kv_heads}; got {tuple(scores.shape)}")
    if policy == "duo_attention":
        if head_mask is None or head_mask.dtype != torch.bool or tuple(head_mask.shape) != (kv_heads,):
            got = None if head_mask is None else f"{head_mask.dtype} {tuple(head_mask.shape)}"
            raise ValueError(f"duo_attention needs head_mask, a bool [kv_heads={kv_heads}] tensor; got {got}")


def group_scores(scores: Tensor, kv_heads: int) -> Tensor:
    """[q_heads, W, L] -> [kv_heads, W, L]: the query heads sharing a KV head vote together."""
    q_heads, rows, length = scores.shape
    return _stats(scores).view(kv_heads, q_heads // kv_heads, rows, length).sum(dim=1)


def _positions(keys: Tensor) -> Tensor:
    return torch.arange(keys.shape[1], device=keys.device)  # [L]


def _streaming_plan(keys: Tensor, keep: int, sink_tokens: int) -> tuple[Tensor, Tensor]:
    """Sinks forced; then the most recent tokens (priority = position)."""
    pos = _positions(keys)
    forced = (pos < min(sink_tokens, keep)).expand(keys.shape[0], -1)
    return forced, pos.to(_stats(keys).dtype).expand(keys.shape[0], -1)


def _recent(keys: Tensor, count: int) -> Tensor:
    """[kv_heads, L] bool: the last `count` positions."""
    pos = _positions(keys)
    return (pos >= keys.shape[1] - count).expand(keys.shape[0], -1)


def _h2o_plan(keys: Tensor, scores: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    accumulated = group_scores(scores, keys.shape[0]).sum(dim=1)  # [kv_heads, L]
    return _recent(keys, keep // 2), accumulated


def _snapkv_plan(keys: Tensor, scores: Tensor, keep: int, window: int, pool_kernel: int,
                 pooling: str) -> tuple[Tensor, Tensor]:
    """Vote of the last `window` queries on the prefix before the window, pooled over neighbouring keys."""
    length = keys.shape[1]
    observed = min(window, scores.shape[1], keep, length)
    vote = group_scores(scores[:, -observed:], keys.shape[0]).sum(dim=1)  # [kv_heads, L]
    priority = torch.full_like(vote, float("-inf"))
    prefix = vote[:, : length - observed].unsqueeze(1)  # [kv_heads, 1, L - w]
    if prefix.shape[-1] > 0:
        pool = F.avg_pool1d if pooling == "avg" else F.max_pool1d
        priority[:, : length - observed] = pool(prefix, pool_kernel, stride=1, padding=pool_kernel // 2).squeeze(1)
    return _recent(keys, observed), priority


def _tova_plan(keys: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    last = _stats(scores[:, -1])  # [q_heads, L]
    priority = last.view(keys.shape[0], -1, keys.shape[1]).mean(dim=1)  # [kv_heads, L]
    return torch.zeros_like(priority, dtype=torch.bool), priority


def _knorm_plan(keys: Tensor) -> tuple[Tensor, Tensor]:
    priority = -torch.linalg.vector_norm(_stats(keys), dim=-1)  # [kv_heads, L]: low norm first
    return torch.zeros_like(priority, dtype=torch.bool), priority


def selection_plan(policy: str, keys: Tensor, scores: Tensor | None, budget: int, *, sink_tokens: int = 4,
                   window: int = 64, pool_kernel: int = 5, pooling: str = "avg",
                   head_mask: Tensor | None = None) -> SelectionPlan:
    """The policy's forced tokens and priorities (see the module docstring); select_tokens applies it."""
    _check_inputs(policy, keys, scores, budget, sink_tokens, window, pool_kernel, pooling, head_mask)
    kv_heads, length = keys.shape[0], keys.shape[1]
    keep = min(budget, length)
    keep_per_head = torch.full((kv_heads,), keep, dtype=torch.int64, device=keys.device)
    if policy == "full":
        forced, priority = _recent(keys, length), _stats(keys).new_zeros(kv_heads, length)
        keep_per_head.fill_(length)
    elif policy in ("streaming_llm", "duo_attention"):
        forced, priority = _streaming_plan(keys, keep, sink_tokens)
    elif policy == "h2o":
        forced, priority = _h2o_plan(keys, scores, keep)
    elif policy == "snapkv":
        forced, priority = _snapkv_plan(keys, scores, keep, window, pool_kernel, pooling)
    elif policy == "tova":
        forced, priority = _tova_plan(keys, scores)
    else:
        forced, priority = _knorm_plan(keys)
    if policy == "duo_attention":
        forced = forced | head_mask.to(keys.device)[:, None]
        keep_per_head = torch.where(head_mask.to(keys.device), length, keep_per_head)
    return SelectionPlan(forced.contiguous(), priority.contiguous(), keep_per_head)


def window_attention_scores(window_queries: Tensor, keys: Tensor) -> Tensor:
    """Attention probabilities [q_heads, W, L] of the last W prompt queries [q_heads, W, d] over keys [kv_heads,
    L, d], causal (query i sits at position L - W + i), computed in float32 (float64 for float64 inputs): the
    `scores` the score-based policies read, as a prefill would produce them."""
    q_heads, rows, dim = window_queries.shape
    kv_heads, length, _ = keys.shape
    if q_heads % kv_heads or keys.shape[-1] != dim or rows > length:
        raise ValueError(f"window_queries [q_heads, W, d] must match keys [kv_heads, L >= W, d]: got "
                         f"{tuple(window_queries.shape)} and {tuple(keys.shape)}")
    grouped = _stats(window_queries).view(kv_heads, q_heads // kv_heads * rows, dim)
    logits = (grouped @ _stats(keys).transpose(-2, -1)).view(q_heads, rows, length) / dim**0.5
    query_pos = torch.arange(length - rows, length, device=keys.device)  # [W]
    future = torch.arange(length, device=keys.device)[None, :] > query_pos[:, None]  # [W, L]
    return torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1)


def mask_from_plan(plan: SelectionPlan) -> Tensor:
    """[kv_heads, L] bool: forced tokens, then the highest priorities (NaN lowest, ties to the earlier token)."""
    priority = torch.where(plan.priority.isnan(), float("-inf"), plan.priority)
    rank_key = priority.masked_fill(plan.forced, float("inf"))
    order = rank_key.argsort(dim=-1, descending=True, stable=True)  # [kv_heads, L]
    slots = torch.arange(order.shape[-1], device=order.device)
    return torch.zeros_like(plan.forced).scatter(-1, order, slots[None, :] < plan.keep[:, None])


def selection_violation(plan: SelectionPlan, mask: Tensor, rtol: float = 0.0) -> str | None:
    """Why `mask` is not a selection the plan prescribes, or None: the kept count per head, every forced token
    kept, and no dropped token ranked above a kept free one by more than rtol (relative: scores computed in
    float32 may order near-ties differently from float64)."""
    if mask.dtype != torch.bool or mask.shape != plan.forced.shape:
        return f"mask must be bool {tuple(plan.forced.shape)}, got {mask.dtype} {tuple(mask.shape)}"
    mask = mask.to(plan.forced.device)
    counts = mask.sum(dim=-1)
    if not torch.equal(counts, plan.keep):
        return f"kept {counts.tolist()} tokens per head, the policy keeps {plan.keep.tolist()}"
    if bool((plan.forced & ~mask).any()):
        return "a token the policy always keeps (sink, window or retrieval head) was dropped"
    for head in range(mask.shape[0]):
        chosen = plan.priority[head][mask[head] & ~plan.forced[head]]
        dropped = plan.priority[head][~mask[head]]
        if chosen.numel() and dropped.numel():
            low, high = float(chosen.min()), float(dropped.max())
            if high - low > rtol * max(abs(low), abs(high)):
                return f"head {head} dropped a token ranked {high:.6g} but kept one ranked {low:.6g}"
    return None


def select_tokens(policy: str, keys: Tensor, scores: Tensor | None, budget: int, *, sink_tokens: int = 4,
                  window: int = 64, pool_kernel: int = 5, head_mask: Tensor | None = None,
                  pooling: str = "avg") -> Tensor:
    """keys: [kv_heads, L, d] of one layer (one sequence); scores: attention probabilities of the last W queries
    over the L keys, [q_heads, W, L] (q_heads = group * kv_heads, GQA), or None for policies that do not need
    them (streaming_llm, knorm, duo_attention, full). budget: tokens to keep per KV head. Returns a bool mask
    [kv_heads, L] with exactly min(budget, L) True per head; `full` keeps all L, and DuoAttention keeps all L
    on the retrieval heads given by head_mask. `pooling` ("avg", SnapKV's default, or "max") is SnapKV's."""
    plan = selection_plan(policy, keys, scores, budget, sink_tokens=sink_tokens, window=window,
                          pool_kernel=pool_kernel, pooling=pooling, head_mask=head_mask)
    return mask_from_plan(plan)


def gather_kept(keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Copy the kept tokens into new [..., kv_heads, n, d] tensors, in position order; every head keeps n.

    This is the compaction that actually frees memory once the full cache is dropped."""
    counts = mask.sum(dim=-1)
    if counts.numel() == 0 or not bool((counts == counts.flatten()[0]).all()):
        raise ValueError(f"a compact cache needs the same kept count on every head; got {counts.tolist()}")
    kept = int(counts.flatten()[0])
    index = mask.nonzero()[:, -1].view(*mask.shape[:-1], kept)  # row-major: sorted positions per head
    index = index.unsqueeze(-1).expand(*index.shape, keys.shape[-1])  # [..., kv_heads, n, d]
    return keys.gather(-2, index), values.gather(-2, index)


def _flatten_batch(keys: Tensor, scores: Tensor | None, head_mask: Tensor | None) -> tuple:
    """[B, kv_heads, L, d] -> [B * kv_heads, L, d]; q heads of one sequence stay grouped behind its KV heads."""
    batch = keys.shape[0]
    flat_keys = keys.reshape(-1, *keys.shape[2:])
    flat_scores = None if scores is None else scores.reshape(-1, *scores.shape[2:])
    flat_mask = None if head_mask is None else head_mask.repeat(batch)
    return flat_keys, flat_scores, flat_mask


def compress_cache_layer(keys: Tensor, values: Tensor, scores: Tensor | None, policy: str, budget: int,
                         mode: str = "compact", **select_kwargs) -> tuple[Tensor, ...]:
    """Apply a policy to one layer of a cache. keys, values: [B, kv_heads, L, d] (or [kv_heads, L, d]); scores:
    [B, q_heads, W, L] (or [q_heads, W, L]) or None. Each sequence selects its own tokens.

    mode="compact" returns (keys, values) holding only the kept tokens, [B, kv_heads, budget, d], in position
    order (the memory is saved once the caller drops the originals). mode="masked" returns the original
    (keys, values) and the bool mask [B, kv_heads, L]: nothing is freed, attention must apply the mask.
    DuoAttention keeps different lengths per head, so only mode="masked" can hold it in one tensor."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if keys.shape != values.shape or keys.dim() not in (3, 4):
        raise ValueError(f"keys and values must share a [B, kv_heads, L, d] or [kv_heads, L, d] shape; "
                         f"got {tuple(keys.shape)} and {tuple(values.shape)}")
    if policy == "duo_attention" and mode == "compact":
        raise ValueError("duo_attention keeps all L tokens on retrieval heads and fewer on streaming heads: one "
                         "[B, kv_heads, n, d] tensor cannot hold that; use mode='masked'")
    batched = keys.dim() == 4
    if batched and scores is not None and (scores.dim() != 4 or scores.shape[0] != keys.shape[0]):
        raise ValueError(f"batched scores must be [B={keys.shape[0]}, q_heads, W, L]; got {tuple(scores.shape)}")
    if batched:
        flat_keys, flat_scores, flat_head_mask = _flatten_batch(keys, scores, select_kwargs.pop("head_mask", None))
        select_kwargs["head_mask"] = flat_head_mask
    else:
        flat_keys, flat_scores = keys, scores
    mask = select_tokens(policy, flat_keys, flat_scores, budget, **select_kwargs).view(keys.shape[:-1])
    if mode == "masked":
        return keys, values, mask
    return gather_kept(keys, values, mask)


def duo_attention_memory_ratio(retrieval_head_fraction: float, L: int, sink: int, window: int) -> float:
    """KV memory of full attention over DuoAttention's for a context of L tokens:
    L / (r * L + (1 - r) * min(L, sink + window)).

    Retrieval heads (fraction r) keep all L tokens; streaming heads keep `sink` attention sinks plus the `window`
    most recent. As L grows the ratio approaches 1 / r. Source: DuoAttention (Xiao et al. 2024, arXiv
    2410.10819) and its README (github.com/mit-han-lab/duo-attention): it deploys a 25% retrieval-head ratio on
    Llama-2-7B-32K (MHA) and 50% on Llama-3-8B-1048k (GQA), trained with 128 sinks and 256 recent tokens, and
    reports up to 2.55x (MHA) and 1.67x (GQA) lower decoding memory. Those are whole-process measurements
    (weights and activations included), so they sit below this KV-only ratio (4x and 2x at long context)."""
    if not 0.0 <= retrieval_head_fraction <= 1.0:
        raise ValueError(f"retrieval_head_fraction must be in [0, 1], got {retrieval_head_fraction}")
    if L < 1 or sink < 0 or window < 0:
        raise ValueError(f"need L >= 1, sink >= 0, window >= 0; got {L}, {sink}, {window}")
    streaming = min(L, sink + window)
    duo = retrieval_head_fraction * L + (1.0 - retrieval_head_fraction) * streaming
    if duo == 0:
        raise ValueError("with no retrieval heads the streaming heads need sink + window >= 1 tokens")
    return L / duo
