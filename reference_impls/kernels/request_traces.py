"""Seeded synthetic serving traces: when requests arrive, how long their prompts are, how many tokens they generate.

WHY: KV-cache allocators differ in how much memory they waste, and waste depends on the length distribution:
a max-length reservation wastes little when every request is long and most of it when lengths are skewed. No
data is downloaded; traces are drawn from named length models with a seed.

Length models (`LENGTH_MODELS`), each a lognormal per side, clipped to [1, max_total_tokens]:
  sharegpt   prompt mean 161.31, output mean 337.99 tokens: the means Kwon et al. report for ShareGPT in the vLLM
             paper (SOSP 2023, Fig. 11). The spread (sigma = 1.0 in log space) is this benchmark's assumption,
             chosen to give the long right tail chat traces have; it is not from the paper.
  alpaca     prompt mean 19.31, output mean 58.45 tokens: the paper's Alpaca means (same figure); sigma 0.8 assumed.
  long_rag   prompt mean 2048, output mean 256, sigma 0.6 / 0.8: a made-up retrieval-augmented mix with long
             prompts and short answers, for the long-context end. No source; change it freely.
A lognormal with mean m and log-space sigma s has mu = ln(m) - s^2 / 2.

Arrivals are a Poisson process of `rate` requests per decode step (exponential gaps), so times are continuous
and > 0; the simulator lets a request in at the first step at or after its arrival. A fraction of requests can
start with one of a few shared system prompts (`SharedPrefix`): their prompt is the system prompt's tokens
followed by their own; paged allocators with copy-on-write can store the common prefix once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LengthModel:
    """Lognormal prompt and output lengths, given by their means and log-space spreads."""

    prompt_mean: float
    prompt_sigma: float
    output_mean: float
    output_sigma: float
    source: str


LENGTH_MODELS = {
    "sharegpt": LengthModel(161.31, 1.0, 337.99, 1.0, "vLLM paper (Kwon et al. 2023) Fig. 11 means; sigma assumed"),
    "alpaca": LengthModel(19.31, 0.8, 58.45, 0.8, "vLLM paper (Kwon et al. 2023) Fig. 11 means; sigma assumed"),
    "long_rag": LengthModel(2048.0, 0.6, 256.0, 0.8, "synthetic: long prompts, short answers (no source)"),
}


@dataclass(frozen=True)
class SharedPrefix:
    """`fraction` of requests begin with one of `prompts` system prompts of `tokens` tokens each (uniform pick)."""

    fraction: float = 0.0
    prompts: int = 4
    tokens: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"shared prefix fraction must be in [0, 1], got {self.fraction}")
        if self.prompts < 1 or self.tokens < 1:
            raise ValueError(f"shared prefix needs prompts >= 1 and tokens >= 1, got {self.prompts}, {self.tokens}")


@dataclass(frozen=True)
class RequestTrace:
    """Requests in arrival order. prompt_tokens include the shared prefix, when the request has one."""

    arrival: Tensor  # [R] float64: arrival time in decode steps, > 0, non-decreasing
    prompt_tokens: Tensor  # [R] int64 >= 1
    output_tokens: Tensor  # [R] int64 >= 1: decode steps until the request completes
    prefix_group: Tensor  # [R] int64: index into prefix_tokens, or -1 for no shared prefix
    prefix_tokens: Tensor  # [G] int64: the shared prefix length of each group

    def __post_init__(self) -> None:
        n = self.arrival.numel()
        if not all(t.dim() == 1 and t.numel() == n for t in (self.prompt_tokens, self.output_tokens,
                                                                self.prefix_group)):
            raise ValueError("arrival, prompt_tokens, output_tokens and prefix_group must be 1-D of one length")
        if n and (bool((self.prompt_tokens < 1).any()) or bool((self.output_tokens < 1).any())):
            raise ValueError("every request needs prompt_tokens >= 1 and output_tokens >= 1")
        if n and (bool((self.arrival <= 0).any()) or bool((self.arrival.diff() < 0).any())):
            raise ValueError("arrival times must be > 0 and non-decreasing")
        groups = self.prefix_tokens.numel()
        if n and bool(((self.prefix_group < -1) | (self.prefix_group >= groups)).any()):
            raise ValueError(f"prefix_group must be -1 or in 0..{groups - 1}")
        shared = torch.where(self.prefix_group >= 0, self.prefix_tokens[self.prefix_group.clamp(min=0)], 0) \
            if groups else torch.zeros_like(self.prompt_tokens)
        if bool((shared > self.prompt_tokens).any()):
            raise ValueError("a request's shared prefix cannot be longer than its prompt")

    def __len__(self) -> int:
        return self.arrival.numel()

    @property
    def total_tokens(self) -> Tensor:
        """Prompt + output: the KV a request holds when it completes."""
        return self.prompt_tokens + self.output_tokens

    def shared_tokens(self, request: int) -> int:
        """Length of the request's shared prefix (0 without one)."""
        group = int(self.prefix_group[request])
        return int(self.prefix_tokens[group]) if group >= 0 else 0


def lognormal_lengths(count: int, mean: float, sigma: float, low: int, high: int,
                      generator: torch.Generator) -> Tensor:
    """Integer lengths from a lognormal with the given mean and log-space sigma, rounded, clipped to [low, high]."""
    if mean <= 0 or sigma < 0 or not 1 <= low <= high:
        raise ValueError(f"need mean > 0, sigma >= 0, 1 <= low <= high; got {mean}, {sigma}, {low}, {high}")
    mu = math.log(mean) - sigma * sigma / 2
    normal = torch.randn(count, generator=generator, dtype=torch.float64)
    return torch.exp(mu + sigma * normal).round().clamp(low, high).to(torch.int64)


def poisson_arrivals(count: int, rate: float, generator: torch.Generator) -> Tensor:
    """Arrival times (in steps) of a Poisson process with `rate` requests per step: cumulative exponential gaps."""
    if rate <= 0:
        raise ValueError(f"arrival rate must be > 0 requests per step, got {rate}")
    uniform = torch.rand(count, generator=generator, dtype=torch.float64)
    gaps = -torch.log1p(-uniform) / rate
    return torch.cumsum(gaps, 0).clamp(min=1e-9)


def synthetic_trace(requests: int, seed: int, model: str | LengthModel = "sharegpt", rate: float = 1.0,
                    max_total_tokens: int = 2048, prefix: SharedPrefix = SharedPrefix()) -> RequestTrace:
    """A seeded trace: Poisson arrivals, lognormal lengths, optional shared system prompts.

    Lengths are clipped so prefix + prompt + output <= max_total_tokens (the static allocator's reservation):
    the user prompt to at most half of what the prefix leaves, the output to the rest.
    """
    if isinstance(model, str):
        if model not in LENGTH_MODELS:
            raise ValueError(f"unknown length model {model!r}; known: {', '.join(LENGTH_MODELS)}")
        model = LENGTH_MODELS[model]
    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    if max_total_tokens < prefix.tokens + 2 or max_total_tokens < 2:
        raise ValueError(f"max_total_tokens={max_total_tokens} leaves no room for a prompt and an output "
                         f"after the {prefix.tokens}-token shared prefix")
    g = torch.Generator().manual_seed(seed)
    arrival = poisson_arrivals(requests, rate, g)
    shared = torch.rand(requests, generator=g, dtype=torch.float64) < prefix.fraction
    group = torch.where(shared, torch.randint(0, prefix.prompts, (requests,), generator=g), -1)
    prefix_len = torch.where(shared, prefix.tokens, 0)
    user_room = (max_total_tokens - prefix_len) // 2
    user = lognormal_lengths(requests, model.prompt_mean, model.prompt_sigma, 1, max_total_tokens, g)
    prompt = prefix_len + torch.minimum(user, user_room)
    output = lognormal_lengths(requests, model.output_mean, model.output_sigma, 1, max_total_tokens, g)
    output = torch.minimum(output, max_total_tokens - prompt)
    prefix_tokens = torch.full((prefix.prompts,), prefix.tokens, dtype=torch.int64)
    return RequestTrace(arrival, prompt, output, group.to(torch.int64), prefix_tokens)


def explicit_trace(arrival: list[float], prompt: list[int], output: list[int], prefix_group: list[int] | None = None,
                   prefix_tokens: list[int] | None = None) -> RequestTrace:
    """A hand-written trace (for tests and worked examples)."""
    groups = prefix_group if prefix_group is not None else [-1] * len(arrival)
    return RequestTrace(torch.tensor(arrival, dtype=torch.float64), torch.tensor(prompt, dtype=torch.int64),
                        torch.tensor(output, dtype=torch.int64), torch.tensor(groups, dtype=torch.int64),
                        torch.tensor(prefix_tokens or [], dtype=torch.int64))
