"""H2O at decode time: one eviction per generated token (Zhang et al. 2023, "H2O: Heavy-Hitter Oracle for
Efficient Generative Inference of Large Language Models", Algorithm 1).

The cache holds at most `budget` tokens per KV head. Each step the new token joins the cache, the new query
attends over it, every cached token adds the attention it just received (summed over the group's query heads)
to its accumulated score, and when the cache is over budget the token with the smallest accumulated score is
evicted — never one of the `recent` newest (the paper splits the budget equally: recent = budget // 2). Ties go
to the oldest token. Heads evict independently, so positions differ per head.

Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from reference_impls.kernels.kv_compression import SelectionPlan, gather_kept, group_scores, mask_from_plan


@dataclass
class H2OCache:
    """A compact per-head cache with H2O's accumulated attention; `step` decodes one token."""

    keys: Tensor  # [kv_heads, n, d], tokens in position order
    values: Tensor  # [kv_heads, n, d]
    positions: Tensor  # [kv_heads, n] int64
    accumulated: Tensor  # [kv_heads, n] float32 (float64 for float64 caches)
    budget: int
    recent: int
    next_position: int

    @classmethod
    def from_prefill(cls, keys: Tensor, values: Tensor, scores: Tensor, budget: int,
                     recent: int | None = None) -> H2OCache:
        """Compress a prompt's [kv_heads, L, d] cache: keep the `recent` newest and the heaviest hitters by the
        attention in scores [q_heads, W, L] (pass all L prompt queries for the paper's exact accumulation)."""
        recent = budget // 2 if recent is None else recent
        if budget < 1 or not 0 <= recent <= budget:
            raise ValueError(f"need budget >= 1 and 0 <= recent <= budget; got budget={budget}, recent={recent}")
        if keys.dim() != 3 or keys.shape != values.shape:
            raise ValueError(f"keys, values must share [kv_heads, L, d]; got {tuple(keys.shape)}, "
                             f"{tuple(values.shape)}")
        kv_heads, length, _ = keys.shape
        if scores.dim() != 3 or scores.shape[-1] != length or scores.shape[0] % kv_heads:
            raise ValueError(f"scores must be [q_heads, W, L={length}] with q_heads a multiple of {kv_heads}; "
                             f"got {tuple(scores.shape)}")
        accumulated = group_scores(scores, kv_heads).sum(dim=1)  # [kv_heads, L]
        keep = min(budget, length)
        positions = torch.arange(length, device=keys.device).expand(kv_heads, -1)
        plan = SelectionPlan(positions >= length - min(recent, keep), accumulated,
                             torch.full((kv_heads,), keep, dtype=torch.int64, device=keys.device))
        mask = mask_from_plan(plan)
        kept_keys, kept_values = gather_kept(keys, values, mask)
        kept_positions = positions[mask].view(kv_heads, keep)
        return cls(kept_keys, kept_values, kept_positions, accumulated[mask].view(kv_heads, keep), budget, recent,
                   length)

    def step(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """Append the new token's key/value [kv_heads, d], attend with query [q_heads, d], evict one if over
        budget. Returns the attention output [q_heads, d] (computed before the eviction, over budget + 1)."""
        kv_heads, _, dim = self.keys.shape
        if key.shape != (kv_heads, dim) or value.shape != key.shape or query.dim() != 2 or query.shape[0] % kv_heads:
            raise ValueError(f"need query [q_heads, {dim}] and key, value [{kv_heads}, {dim}]; got "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        self.keys = torch.cat([self.keys, key[:, None]], dim=1)
        self.values = torch.cat([self.values, value[:, None]], dim=1)
        self.positions = torch.cat([self.positions, self.positions.new_full((kv_heads, 1), self.next_position)], 1)
        self.accumulated = torch.cat([self.accumulated, self.accumulated.new_zeros(kv_heads, 1)], dim=1)
        grouped = query.view(kv_heads, -1, dim)  # [kv_heads, g, d]
        scores = (grouped @ self.keys.transpose(-2, -1)).to(self.accumulated.dtype) / math.sqrt(dim)
        probs = torch.softmax(scores, dim=-1)  # [kv_heads, g, n + 1]
        out = probs.to(self.values.dtype) @ self.values  # [kv_heads, g, d]
        self.accumulated += probs.sum(dim=1)
        if self.keys.shape[1] > self.budget:
            self._evict_one()
        self.next_position += 1
        return out.reshape(query.shape)

    def _evict_one(self) -> None:
        kv_heads, n, dim = self.keys.shape
        protected = self.positions > self.next_position - self.recent  # the `recent` newest tokens
        victim = self.accumulated.masked_fill(protected, float("inf")).argmin(dim=-1)  # [kv_heads], oldest on ties
        keep = torch.ones_like(protected).scatter(1, victim[:, None], False)
        self.keys, self.values = gather_kept(self.keys, self.values, keep)
        self.positions = self.positions[keep].view(kv_heads, n - 1)
        self.accumulated = self.accumulated[keep].view(kv_heads, n - 1)
