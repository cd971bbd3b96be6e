"""full_context: keep every turn and put all of them in front of the model, in conversation order (the baseline).

search ignores the query and k: it returns every held turn, oldest first, each with score 1.0 — the one store
whose result is not cut at k, because the baseline's cost is exactly the whole history.
"""

from __future__ import annotations

from dataclasses import replace

from reference_impls.agents.store import MemoryStore, UnknownItemError, check_k, check_turn
from reference_impls.agents.text import hit_text, turn_bytes
from reference_impls.agents.types import Hit, StoreStats, Turn


class FullContextStore(MemoryStore):
    """Bytes in memory: UTF-8 bytes of every held turn's id, speaker, text and time."""

    name = "full_context"

    def __init__(self) -> None:
        self._turns: dict[str, Turn] = {}
        self._bytes = 0
        self._hits: list[Hit] | None = None  # the answer to every search, rebuilt after a write


    def add(self, turn: Turn) -> list[str]:
        check_turn(turn, self._turns)
        self._turns[turn.dia_id] = turn
        self._bytes += turn_bytes(turn)
        if self._hits is not None:
            self._hits.append(Hit(turn.dia_id, hit_text(turn), (turn.dia_id,), 1.0))
        return [turn.dia_id]

    def search(self, query: str, k: int) -> list[Hit]:
        check_k(k)
        if self._hits is None:
            self._hits = [Hit(t.dia_id, hit_text(t), (t.dia_id,), 1.0) for t in self._turns.values()]
        return list(self._hits)

    def update(self, item_id: str, text: str) -> None:
        old = self._get(item_id)
        self._turns[item_id] = replace(old, text=text)
        self._bytes += turn_bytes(self._turns[item_id]) - turn_bytes(old)
        self._hits = None

    def delete(self, item_id: str) -> None:
        self._bytes -= turn_bytes(self._get(item_id))
        del self._turns[item_id]
        self._hits = None

    def stats(self) -> StoreStats:
        return StoreStats(len(self._turns), self._bytes, 0)

    def _get(self, item_id: str) -> Turn:
        if item_id not in self._turns:
            raise UnknownItemError(f"full_context holds no item {item_id!r}")
        return self._turns[item_id]
