"""dense: exact cosine search over one embedding per turn, a numpy matrix grown by doubling (see VectorTable).

Bytes in memory: the matrix's allocated bytes (capacity rows x dim x 4, dead rows of deleted items included),
the live mask, the id strings, and the UTF-8 bytes of the held turns. Search is one matrix-vector product.
"""

from __future__ import annotations

import numpy as np

from reference_impls.agents.embedded_turns import EmbeddedTurnStore
from reference_impls.agents.embedders import Embedder
from reference_impls.agents.vector_table import VectorTable


class DenseStore(EmbeddedTurnStore):
    name = "dense"

    def __init__(self, *, embedder: str | Embedder | None = None) -> None:
        super().__init__(embedder)
        self._table = VectorTable(self.embedder.dim)

    def _index_add(self, keys: list[str], vectors: np.ndarray) -> None:
        for key, vector in zip(keys, vectors, strict=True):
            self._table.add(key, vector)

    def _index_replace(self, key: str, vector: np.ndarray) -> None:
        self._table.set(key, vector)

    def _index_remove(self, key: str) -> None:
        self._table.remove(key)

    def _index_top(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        return self._table.top(query, k)

    def _index_bytes(self) -> tuple[int, int]:
        return self._table.nbytes, 0
