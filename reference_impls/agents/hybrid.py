"""hybrid: BM25 and dense cosine over the same turns, fused by reciprocal rank fusion (RRF).

WHY: the two fail on different questions. BM25 misses paraphrases ("crossed the water by boat" for "took a
ferry trip"); an embedder misses rare exact tokens (a company name, a place) that BM25 weights highly. RRF
(Cormack et al., 2009) needs no score calibration between the two: each index ranks its `candidates` best turns
and a turn scores sum(1 / (rrf_k + rank)) over the indexes that ranked it.
Item id = dia_id in both indexes. Bytes in memory: both indexes, with the held turns' text counted once.
"""

from __future__ import annotations

from dataclasses import replace

from reference_impls.agents.bm25_store import BM25Store
from reference_impls.agents.dense import DenseStore
from reference_impls.agents.embedders import Embedder
from reference_impls.agents.store import MemoryStore, UnknownItemError, check_k, check_turn, positive_int
from reference_impls.agents.text import hit_text, turn_bytes
from reference_impls.agents.types import Hit, StoreStats, Turn


class HybridStore(MemoryStore):
    name = "hybrid"

    def __init__(self, *, embedder: str | Embedder | None = None, candidates: int = 50, rrf_k: int = 60) -> None:
        self.candidates = positive_int("candidates", candidates)
        self.rrf_k = positive_int("rrf_k", rrf_k)
        self._lexical = BM25Store()
        self._dense = DenseStore(embedder=embedder)
        self._turns: dict[str, Turn] = {}

    def add(self, turn: Turn) -> list[str]:
        check_turn(turn, self._turns)
        self._lexical.add(turn)
        self._dense.add(turn)
        self._turns[turn.dia_id] = turn
        return [turn.dia_id]

    def search(self, query: str, k: int) -> list[Hit]:
        check_k(k)
        depth = max(k, self.candidates)
        fused: dict[str, float] = {}
        for index in (self._lexical, self._dense):
            for rank, hit in enumerate(index.search(query, depth), 1):
                fused[hit.item_id] = fused.get(hit.item_id, 0.0) + 1.0 / (self.rrf_k + rank)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [Hit(key, hit_text(self._turns[key]), (key,), score) for key, score in best]

    def update(self, item_id: str, text: str) -> None:
        old = self._get(item_id)
        self._lexical.update(item_id, text)
        self._dense.update(item_id, text)
        self._turns[item_id] = replace(old, text=text)

    def delete(self, item_id: str) -> None:
        self._get(item_id)
        self._lexical.delete(item_id)
        self._dense.delete(item_id)
        del self._turns[item_id]

    def stats(self) -> StoreStats:
        lexical, dense = self._lexical.stats(), self._dense.stats()
        text = sum(turn_bytes(t) for t in self._turns.values())  # held by both; counted once
        return StoreStats(len(self._turns), lexical.bytes_in_memory + dense.bytes_in_memory - text,
                          lexical.bytes_on_disk + dense.bytes_on_disk)

    def _get(self, item_id: str) -> Turn:
        if item_id not in self._turns:
            raise UnknownItemError(f"hybrid holds no item {item_id!r}")
        return self._turns[item_id]
