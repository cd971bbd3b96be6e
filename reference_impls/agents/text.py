"""Text helpers shared by the stores: one tokenizer, a stopword list, sentence splitting, hit formatting.

WHY here: every store must see the same words, so a keyword, a BM25 term and a hashed feature agree.
"""

from __future__ import annotations

import re

from reference_impls.agents.types import Turn

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

# A short English stopword list (function words and chat fillers); content words are everything else.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i i'm i've if in into is it it's its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves yeah oh wow hey hi
really so okay ok also too that's there's what's let's it'll you're we're they're don't didn't can't won't
""".split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, keeping one apostrophe suffix such as "i'm")."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """words() without stopwords, in order."""
    return [w for w in words(text) if w not in STOPWORDS]


def sentences(text: str) -> list[str]:
    """Sentences split after . ! or ? followed by whitespace; empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def indexed_text(turn: Turn) -> str:
    """What a store indexes for a turn: speaker and words (the date is context, not a search term)."""
    return f"{turn.speaker}: {turn.text}"


def hit_text(turn: Turn) -> str:
    """What a hit puts in front of the model: the date when known, the speaker, the words."""
    return f"[{turn.time}] {turn.speaker}: {turn.text}" if turn.time else f"{turn.speaker}: {turn.text}"


def text_bytes(*texts: str) -> int:
    """UTF-8 bytes of the given strings (how every store counts the text it holds)."""
    return sum(len(t.encode("utf-8")) for t in texts)


def turn_bytes(turn: Turn) -> int:
    return text_bytes(turn.dia_id, turn.speaker, turn.text, turn.time)
