"""What a model does on the fidelity texts: sentence embeddings and retrieval for an encoder, next-token
log-probabilities and perplexity for a language model.

Definitions (the quant_fidelity workload reports these):
  perplexity  windows of T consecutive tokens, each evaluated on its own (no context carried between
              windows); in each window the tokens at positions 1..T-1 are scored given the tokens before them
              (position 0 has no context and is not scored). Perplexity = exp(mean NLL over the W·(T-1) scored
              tokens), NLL = -log p(token | its window's earlier tokens) in nats.
  KL          mean over the scored tokens of KL(p_ref || p) = Σ_v p_ref(v) (log p_ref(v) − log p(v)), nats.
  cosine      embeddings are L2-normalized, so the cosine of two is their dot product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from reference_impls.models import text_corpus


@dataclass(frozen=True)
class EncoderEvaluation:
    embeddings: torch.Tensor  # [texts, dim] L2-normalized: sentences, then queries, then documents
    recall_at_10: float


@dataclass(frozen=True)
class LanguageModelEvaluation:
    log_probs: torch.Tensor  # [windows, T-1, vocab] float32: log p(next | window so far) at positions 0..T-2
    nll: torch.Tensor  # [windows, T-1] float64: -log p of the token that follows
    perplexity: float


def split_counts(counts: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """Row slices of sentences, queries and documents in an embedding matrix."""
    sentences, queries, documents = counts
    return (slice(0, sentences), slice(sentences, sentences + queries),
            slice(sentences + queries, sentences + queries + documents))


def evaluate_encoder(encoder: Any, model: Any, token_lists: list[list[int]], counts: tuple[int, int, int],
                     relevant: tuple[tuple[int, ...], ...], k: int = 10) -> EncoderEvaluation:
    """Embed every text with `model` (the encoder's tokenizer and pooling), then recall@k of queries on
    documents."""
    from reference_impls.models import minilm

    embeddings = minilm.embed(encoder, token_lists, model=model)
    return EncoderEvaluation(embeddings, recall_at(embeddings, counts, relevant, k))


def recall_at(embeddings: torch.Tensor, counts: tuple[int, int, int], relevant: tuple[tuple[int, ...], ...],
              k: int = 10) -> float:
    _, queries, documents = split_counts(counts)
    return text_corpus.recall_at_k(embeddings[queries], embeddings[documents], relevant, k)


def evaluate_language_model(model: Any, windows: torch.Tensor) -> LanguageModelEvaluation:
    """Next-token log-probabilities of each window [W, T] evaluated independently (one batch)."""
    if windows.dim() != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be [W, T] with T >= 2, got {tuple(windows.shape)}")
    with torch.inference_mode():
        logits = model(input_ids=windows).logits[:, :-1]  # [W, T-1, V]: predictions for positions 1..T-1
        log_probs = torch.log_softmax(logits.float(), dim=-1)
    nll = token_nll(log_probs, windows)
    return LanguageModelEvaluation(log_probs, nll, perplexity(nll))


def token_nll(log_probs: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """-log p of each scored token [W, T-1] (float64)."""
    return -log_probs.gather(-1, windows[:, 1:, None]).squeeze(-1).double()


def perplexity(nll: torch.Tensor) -> float:
    return float(torch.exp(nll.double().mean()))


def mean_kl(reference_log_probs: torch.Tensor, log_probs: torch.Tensor, chunk: int = 128) -> float:
    """Mean over tokens of KL(p_ref || p) in nats, in row chunks so no float64 copy of [tokens, V] is made."""
    ref = reference_log_probs.reshape(-1, reference_log_probs.shape[-1])
    other = log_probs.reshape(-1, log_probs.shape[-1])
    if ref.shape != other.shape:
        raise ValueError(f"log-prob shapes differ: {tuple(reference_log_probs.shape)} vs {tuple(log_probs.shape)}")
    total = 0.0
    for start in range(0, ref.shape[0], chunk):
        p_log, q_log = ref[start:start + chunk].double(), other[start:start + chunk].double()
        total += float((p_log.exp() * (p_log - q_log)).sum())
    return total / ref.shape[0]
