"""A base for stores that keep one embedded vector per turn behind some vector index (dense, faiss, sqlite_vec).

WHY a base: the three differ only in the index (numpy matrix, faiss, an on-disk sqlite-vec table); turn
bookkeeping, batching of embeddings, update and delete semantics are the same, so their rankings can be compared
for exactness on identical embeddings.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from reference_impls.agents.embedders import Embedder, make_embedder
from reference_impls.agents.store import MemoryStore, UnknownItemError, check_k, check_turn
from reference_impls.agents.text import hit_text, indexed_text, turn_bytes
from reference_impls.agents.types import Hit, StoreStats, Turn


class EmbeddedTurnStore(MemoryStore):
    """One item per turn (item id = dia_id); the indexed text is "speaker: text"; score = cosine similarity."""

    def __init__(self, embedder: str | Embedder | None = None) -> None:
        self.embedder = make_embedder(embedder)
        self._turns: dict[str, Turn] = {}
        self._text_bytes = 0

    # --- the index, one implementation per subclass -------------------------------------------------------
    @abstractmethod
    def _index_add(self, keys: list[str], vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _index_replace(self, key: str, vector: np.ndarray) -> None: ...

    @abstractmethod
    def _index_remove(self, key: str) -> None: ...

    @abstractmethod
    def _index_top(self, query: np.ndarray, k: int) -> list[tuple[str, float]]: ...

    @abstractmethod
    def _index_bytes(self) -> tuple[int, int]:
        """(bytes in memory, bytes on disk) of the index itself."""

    # --- the MemoryStore interface ------------------------------------------------------------------------
    def add(self, turn: Turn) -> list[str]:
        return self.add_many([turn])

    def add_many(self, turns: Iterable[Turn]) -> list[str]:
        batch = list(turns)
        pending: dict[str, Turn] = {}
        for turn in batch:
            check_turn(turn, self._turns)
            check_turn(turn, pending)
            pending[turn.dia_id] = turn
        if not batch:
            return []
        vectors = self.embedder.embed([indexed_text(t) for t in batch])
        self._index_add([t.dia_id for t in batch], vectors)
        for turn in batch:
            self._turns[turn.dia_id] = turn
            self._text_bytes += turn_bytes(turn)
        return [t.dia_id for t in batch]

    def search(self, query: str, k: int) -> list[Hit]:
        check_k(k)
        if not self._turns:
            return []
        top = self._index_top(self.embedder.embed_one(query), min(k, len(self._turns)))
        return [Hit(key, hit_text(self._turns[key]), (key,), score) for key, score in top]

    def update(self, item_id: str, text: str) -> None:
        old = self._get(item_id)
        new = replace(old, text=text)
        self._index_replace(item_id, self.embedder.embed_one(indexed_text(new)))
        self._turns[item_id] = new
        self._text_bytes += turn_bytes(new) - turn_bytes(old)

    def delete(self, item_id: str) -> None:
        old = self._get(item_id)
        self._index_remove(item_id)
        del self._turns[item_id]
        self._text_bytes -= turn_bytes(old)

    def stats(self) -> StoreStats:
        in_memory, on_disk = self._index_bytes()
        return StoreStats(len(self._turns), int(in_memory + self._text_bytes), int(on_disk))

    def _get(self, item_id: str) -> Turn:
        if item_id not in self._turns:
            raise UnknownItemError(f"{self.name} holds no item {item_id!r}")
        return self._turns[item_id]
