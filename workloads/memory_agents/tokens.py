"""Tokens a memory puts in front of the model: one counting rule for every memory workload.

The default is the documented word rule the LoCoMo loader uses (each run of word characters and each other
non-space character is one token; see `locomo.count_tokens`): deterministic, dependency-free and the same on
every machine, so tokens-per-query figures compare across runs. "smollm2" counts with the SmolLM2 tokenizer
(reference_impls/models/smollm2.py) where its weights are installed — a real BPE count, for a cross-check.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from workloads.memory_agents.locomo import count_tokens as count_words

TOKENIZERS = ("words", "smollm2")


def tokenizer_missing(name: str) -> str | None:
    """Why `name` cannot count here (None when it can)."""
    if name not in TOKENIZERS:
        return f"unknown tokenizer {name!r}; allowed: {', '.join(TOKENIZERS)}"
    if name == "smollm2":
        from reference_impls.models.smollm2 import missing_reason

        return missing_reason()
    return None


@cache
def token_counter(name: str = "words") -> Callable[[str], int]:
    """A text -> token count function for `name` (ValueError naming the allowed ones when unknown)."""
    reason = tokenizer_missing(name)
    if reason:
        raise ValueError(reason)
    if name == "words":
        return count_words
    from reference_impls.models.smollm2 import load_smollm2

    tokenizer = load_smollm2().tokenizer
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


class MemoCounter:
    """Counts each distinct text once: full-context hits repeat the same turns for every query."""

    def __init__(self, name: str = "words") -> None:
        self._count = token_counter(name)
        self._seen: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        found = self._seen.get(text)
        if found is None:
            found = self._seen[text] = self._count(text)
        return found
