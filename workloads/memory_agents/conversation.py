"""The in-memory shape of a LoCoMo-format conversation: sessions of turns, and QA items with gold evidence.

Shared by the loader (`locomo.py`) and the generator (`synthetic_history.py`). LoCoMo's integer QA
categories are NOT in the order the paper lists them; see `CATEGORY_NAMES` and the note in `locomo.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_impls.agents.types import Turn

MULTI_HOP, TEMPORAL, OPEN_DOMAIN, SINGLE_HOP, ADVERSARIAL = 1, 2, 3, 4, 5
CATEGORY_NAMES: dict[int, str] = {
    MULTI_HOP: "multi-hop",
    TEMPORAL: "temporal",
    OPEN_DOMAIN: "open-domain",
    SINGLE_HOP: "single-hop",
    ADVERSARIAL: "adversarial",
}
# LoCoMo's own evaluation scores a category-5 answer as right when it says the thing was never mentioned.
ADVERSARIAL_RESPONSE = "not mentioned"


@dataclass(frozen=True)
class Session:
    """One dated session: its 1-based index, its date-time string as given, its turns in order."""

    index: int
    time: str
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class QAItem:
    """One question with its gold evidence.

    answer: the answer; for category 5 (adversarial) LoCoMo's `adversarial_answer` — the misleading answer a
    model would give by confusing people — while the right response is `ADVERSARIAL_RESPONSE`.
    evidence: valid dia_ids only (malformed ids are counted in the dataset statistics, recoverable ones fixed).
    stale_evidence: turns that stated an older, superseded value of the asked fact (membench's extension,
    key "stale_evidence" in the JSON; other LoCoMo tools ignore it). A store should rank the evidence first.
    """

    question: str
    answer: str
    evidence: tuple[str, ...]
    category: int
    stale_evidence: tuple[str, ...] = field(default=())

    @property
    def category_name(self) -> str:
        return CATEGORY_NAMES[self.category]


@dataclass(frozen=True)
class Conversation:
    """A LoCoMo sample: two speakers, dated sessions, QA items."""

    sample_id: str
    speakers: tuple[str, str]
    sessions: tuple[Session, ...]
    qa: tuple[QAItem, ...]

    def turns(self) -> list[Turn]:
        """Every turn in conversation order."""
        return [turn for session in self.sessions for turn in session.turns]

    def turn_by_id(self) -> dict[str, Turn]:
        return {turn.dia_id: turn for session in self.sessions for turn in session.turns}
