"""Plain value types shared by the memory stores and the memory-agent data (LoCoMo format).

Frozen dataclasses with validation only: a turn of a conversation, a search hit, a store's size.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Turn:
    """One utterance of a conversation, as LoCoMo stores it.

    dia_id is "D<session>:<turn>" (e.g. "D3:14"), unique within a conversation; session is 1-based;
    time is the session's date-time string as given (may be "").
    """

    dia_id: str
    session: int
    speaker: str
    text: str
    time: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.dia_id, str) or not self.dia_id:
            raise ValueError(f"Turn.dia_id must be a non-empty string, got {self.dia_id!r}")
        if not isinstance(self.session, int) or isinstance(self.session, bool) or self.session < 1:
            raise ValueError(f"Turn.session must be an int >= 1 (1-based), got {self.session!r}")
        for field_name in ("speaker", "text", "time"):
            if not isinstance(getattr(self, field_name), str):
                raise ValueError(f"Turn.{field_name} must be a string, got {getattr(self, field_name)!r}")


@dataclass(frozen=True)
class Hit:
    """One retrieved memory item: what would be put in front of the model, and where it came from."""

    item_id: str
    text: str
    source_turn_ids: tuple[str, ...]
    score: float

    def __post_init__(self) -> None:
        if not isinstance(self.source_turn_ids, tuple):
            raise ValueError(f"Hit.source_turn_ids must be a tuple of dia_ids, got {type(self.source_turn_ids)}")


@dataclass(frozen=True)
class StoreStats:
    """A store's size: items held, bytes held in process memory, bytes on disk (0 for in-memory stores)."""

    items: int
    bytes_in_memory: int
    bytes_on_disk: int

    def __post_init__(self) -> None:
        for field_name in ("items", "bytes_in_memory", "bytes_on_disk"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"StoreStats.{field_name} must be an int >= 0, got {value!r}")
