"""Repairing LoCoMo evidence ids: the published file holds a few malformed ones, and a loader must not crash.

Kinds seen in locomo10.json and its forks, and what is done with each (deterministic, never guessing):
- joined:          several ids in one string ("D8:6; D9:17", "D8:6 D9:17") -> split, each part handled alone
- noncanonical:    spacing, case, leading zeros or a stray colon ("D 8:6", "d8:06", "D:8:6") -> rewritten "D8:6"
- empty_turn:      a session with no turn ("D10:", "D10") -> dropped (which turn is unknowable)
- missing_session: a turn with no session ("D:1") -> dropped
- dangling:        well formed but naming no turn of the conversation ("D99:1") -> dropped
- not_a_string / unparseable: anything else -> dropped
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

ISSUE_KINDS = ("joined", "noncanonical", "empty_turn", "missing_session", "dangling", "not_a_string", "unparseable")

_CANONICAL = re.compile(r"D([1-9]\d*):([1-9]\d*)")
_LENIENT = re.compile(r"[Dd]\s*:?\s*(\d+)\s*[:.]\s*(\d+)")
_EMPTY_TURN = re.compile(r"[Dd]\s*(\d+)\s*:?")
_MISSING_SESSION = re.compile(r"[Dd]?\s*:\s*(\d+)")
_SEPARATORS = re.compile(r"\s*[;,]+\s*|\s+(?=[Dd]\s*\d)")


@dataclass
class EvidenceTally:
    """Running counts: raw entries seen, issues by kind, ids recovered (fixed or split out) and ids dropped."""

    seen: int = 0
    issues: Counter = field(default_factory=Counter)
    recovered: int = 0
    dropped: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, raw: object) -> None:
        self.issues[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < 3:
            kept.append(repr(raw))


def _resolve_piece(piece: str, valid_ids: set[str], tally: EvidenceTally) -> str | None:
    """One id-shaped string -> a valid canonical dia_id, or None (counted)."""
    if _CANONICAL.fullmatch(piece):
        if piece in valid_ids:
            return piece
        tally.note("dangling", piece)
        tally.dropped += 1
        return None
    lenient = _LENIENT.fullmatch(piece)
    if lenient:
        canonical = f"D{int(lenient.group(1))}:{int(lenient.group(2))}"
        if canonical in valid_ids:
            tally.note("noncanonical", piece)
            tally.recovered += 1
            return canonical
        tally.note("dangling", piece)
        tally.dropped += 1
        return None
    if _EMPTY_TURN.fullmatch(piece):
        tally.note("empty_turn", piece)
    elif _MISSING_SESSION.fullmatch(piece):
        tally.note("missing_session", piece)
    else:
        tally.note("unparseable", piece)
    tally.dropped += 1
    return None


def resolve_evidence(raw_ids: Iterable[object], valid_ids: set[str], tally: EvidenceTally) -> tuple[str, ...]:
    """Raw evidence entries -> valid dia_ids in first-seen order without repeats; every issue counted."""
    resolved: list[str] = []
    for raw in raw_ids:
        tally.seen += 1
        if not isinstance(raw, str):
            tally.note("not_a_string", raw)
            tally.dropped += 1
            continue
        pieces = [piece for piece in _SEPARATORS.split(raw.strip()) if piece]
        if len(pieces) > 1:
            tally.note("joined", raw)
        if not pieces:
            tally.note("unparseable", raw)
            tally.dropped += 1
        for piece in pieces:
            dia_id = _resolve_piece(piece, valid_ids, tally)
            if dia_id is None:
                continue
            if len(pieces) > 1 and piece == dia_id:
                tally.recovered += 1  # a clean id freed from a joined string
            if dia_id not in resolved:
                resolved.append(dia_id)
    return tuple(resolved)
