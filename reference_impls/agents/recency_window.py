"""recency_window: keep only the last N turns (older ones are evicted on write) and return the newest first.

WHY: the simplest bounded memory (a chat window). Its footprint is capped at N turns; its recall on anything
older than N turns is zero by construction. Score of a hit = 1 / (1 + age), age 0 for the newest turn.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from reference_impls.agents.store import MemoryStore, UnknownItemError, check_k, check_turn, positive_int
from reference_impls.agents.text import hit_text, turn_bytes
from reference_impls.agents.types import Hit, StoreStats, Turn


class RecencyWindowStore(MemoryStore):
    """Bytes in memory: UTF-8 bytes of the held turns (at most `window` of them)."""

    name = "recency_window"

    def __init__(self, *, window: int = 50) -> None:
        self.window = positive_int("window", window)
        self._turns: OrderedDict[str, Turn] = OrderedDict()
        self._seen: set[str] = set()  # every dia_id ever added, so a re-add after eviction is still refused
        self._bytes = 0

    def add(self, turn: Turn) -> list[str]:
        check_turn(turn, self._seen)
        self._seen.add(turn.dia_id)
        self._turns[turn.dia_id] = turn
        self._bytes += turn_bytes(turn)
        while len(self._turns) > self.window:
            _, evicted = self._turns.popitem(last=False)
            self._bytes -= turn_bytes(evicted)
        return [turn.dia_id]

    def search(self, query: str, k: int) -> list[Hit]:
        check_k(k)
        newest_first = list(reversed(self._turns.values()))[:k]
        return [Hit(t.dia_id, hit_text(t), (t.dia_id,), 1.0 / (1 + age)) for age, t in enumerate(newest_first)]

    def update(self, item_id: str, text: str) -> None:
        old = self._get(item_id)
        self._turns[item_id] = replace(old, text=text)  # keeps its place in the window
        self._bytes += turn_bytes(self._turns[item_id]) - turn_bytes(old)

    def delete(self, item_id: str) -> None:
        self._bytes -= turn_bytes(self._get(item_id))
        del self._turns[item_id]

    def stats(self) -> StoreStats:
        return StoreStats(len(self._turns), self._bytes, 0)

    def _get(self, item_id: str) -> Turn:
        if item_id not in self._turns:
            raise UnknownItemError(f"recency_window holds no item {item_id!r} (never added, deleted or evicted)")
        return self._turns[item_id]
