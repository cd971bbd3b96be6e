"""Passkey retrieval prompts: a five-digit key hidden at a chosen depth in seeded filler, built to an exact
token length with the model's own tokenizer, and the scoring of an answer.

WHY: the passkey test is the smallest task that fails when a KV-compression policy drops the one token span
that matters. The prompt is assembled from token ids (prefix, filler, needle, filler, question) so its length
is exact and the needle's token span is known, which lets a test check where it landed.

Plain text is the default, not the chat template: with the full cache, SmolLM2-135M-Instruct answers the
plain prompt at 2K, 4K and 8K tokens, but inside a chat turn it answers with a story from 1K tokens on (measured
on this prompt, depths 0.1/0.5/0.9), which would leave nothing for a compression policy to lose.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

# The classic passkey filler (Mohtashami & Jaggi, 2023), drawn in seeded order. Richer filler (varied
# sentences) makes a 135M model answer with a story instead of the key even with the whole cache.
FILLER_SENTENCES = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
                    "There and back again.")
INTRO = ("Somewhere in the long text below there is one important fact among many sentences that do not matter. "
         "Find the fact and remember it, because I will ask you about it at the end.")
NEEDLE = "The pass key is {passkey}. Remember it. {passkey} is the pass key."
QUESTION = "What is the pass key?"
ANSWER_PREFIX = "The pass key is"  # primes the assistant turn so a small model answers with the digits
_MARKER = "\x00FILLER\x00"


@dataclass(frozen=True)
class PasskeyPrompt:
    """Token ids of one passkey prompt and where its needle sits."""

    token_ids: tuple[int, ...]
    passkey: str
    needle_start: int  # index of the needle's first token in token_ids
    needle_end: int  # one past its last token
    filler_tokens: int  # filler around the needle, both sides together
    depth: float  # achieved: filler tokens before the needle / all filler tokens


def draw_passkey(seed: int) -> str:
    """The five-digit key for a seed (no leading zero, so it reads as a number)."""
    return str(random.Random(seed).randint(10_000, 99_999))


def prompt_frame(tokenizer: Any, use_chat_template: bool = False) -> tuple[list[int], list[int]]:
    """Token ids before and after the filler: the instructions, then the question and the primed start of the
    answer ("The pass key is"). With `use_chat_template` the text sits in the tokenizer's user turn and the
    primer starts the assistant turn."""
    content = f"{INTRO}\n\n{_MARKER} {QUESTION}"
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                             tokenize=False)
        text += ANSWER_PREFIX
    else:
        text = f"{content} {ANSWER_PREFIX}"
    before, after = text.split(_MARKER)
    return _ids(tokenizer, before), _ids(tokenizer, after)


def make_passkey_prompt(tokenizer: Any, target_tokens: int, depth: float, seed: int,
                        use_chat_template: bool = False) -> PasskeyPrompt:
    """A prompt of exactly `target_tokens` tokens with the needle at about `depth` of the filler.

    The needle goes in at the sentence boundary nearest to depth × filler length; the filler is whole seeded
    sentences, the last one cut at the token where the length is reached.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1] (fraction of the filler before the needle), got {depth!r}")
    rng = random.Random(seed)
    passkey = draw_passkey(seed)
    before, after = prompt_frame(tokenizer, use_chat_template)
    needle = _ids(tokenizer, " " + NEEDLE.format(passkey=passkey))
    filler_budget = target_tokens - len(before) - len(after) - len(needle)
    if filler_budget < 1:
        minimum = len(before) + len(after) + len(needle) + 1
        raise ValueError(f"target_tokens={target_tokens} is too short for a passkey prompt; minimum is {minimum}")
    filler, boundaries = _filler(tokenizer, rng, filler_budget)
    cut = min(boundaries, key=lambda b: abs(b - depth * filler_budget))
    ids = [*before, *filler[:cut], *needle, *filler[cut:], *after]
    start = len(before) + cut
    return PasskeyPrompt(tuple(ids), passkey, start, start + len(needle), filler_budget, cut / filler_budget)


def _filler(tokenizer: Any, rng: random.Random, tokens: int) -> tuple[list[int], list[int]]:
    """`tokens` filler ids from seeded sentences, and the sentence boundaries (0 and the end included)."""
    pieces = {s: _ids(tokenizer, " " + s) for s in FILLER_SENTENCES}
    ids: list[int] = []
    boundaries = [0]
    while len(ids) < tokens:
        ids.extend(pieces[rng.choice(FILLER_SENTENCES)])
        boundaries.append(min(len(ids), tokens))
    return ids[:tokens], boundaries


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def extract_passkey(answer: str) -> str | None:
    """The first run of digits in an answer, or None when it has none."""
    found = re.search(r"\d+", answer)
    return found.group(0) if found else None


def passkey_correct(answer: str, passkey: str) -> bool:
    """Exact match: the first number the model wrote is the key, digit for digit (a longer run is wrong)."""
    return extract_passkey(answer) == passkey
