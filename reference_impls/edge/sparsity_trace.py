"""Seeded activation-sparsity traces: which FFN neurons are active at each token.

WHY: LLM in a flash (P006) loads only the neurons a predictor says will fire, and random weights have no
natural sparsity, so the trace is generated. Each neuron is a two-state Markov chain: active with stationary
probability p = 1 - sparsity and lag-1 autocorrelation rho (the temporal correlation that windowing exploits):
  P(active | active before) = p + rho (1 - p),   P(active | inactive before) = p (1 - rho).
rho = 0 draws every token independently; rho -> 1 repeats the previous token's set.
"""

from __future__ import annotations

import torch


def activation_trace(tokens: int, neurons: int, sparsity: float, correlation: float, seed: int) -> torch.Tensor:
    """A [tokens, neurons] bool mask, seeded; every token has at least one active neuron."""
    if tokens < 1 or neurons < 1:
        raise ValueError(f"tokens and neurons must be >= 1, got {tokens}, {neurons}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1) (the fraction of inactive neurons), got {sparsity}")
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"correlation must be in [0, 1), got {correlation}")
    generator = torch.Generator().manual_seed(seed)
    p = 1.0 - sparsity
    stay, enter = p + correlation * (1.0 - p), p * (1.0 - correlation)
    mask = torch.empty(tokens, neurons, dtype=torch.bool)
    mask[0] = torch.rand(neurons, generator=generator) < p
    for t in range(1, tokens):
        draw = torch.rand(neurons, generator=generator)
        mask[t] = torch.where(mask[t - 1], draw < stay, draw < enter)
    empty = ~mask.any(dim=1)
    if empty.any():  # a token with no active neuron would make a zero output row: give it one
        picks = torch.randint(0, neurons, (int(empty.sum()),), generator=generator)
        mask[empty.nonzero().squeeze(1), picks] = True
    return mask
