"""faiss: the same exact inner-product search as `dense`, done by faiss-cpu (IndexIDMap over IndexFlatIP).

Optional extra (`faiss-cpu`). Ids are sequential int64 labels; delete is `remove_ids`, update is remove + re-add
under the same label. Bytes in memory: ntotal x (dim x 4 bytes of codes + 8 bytes of id map), the label maps'
id strings, and the UTF-8 bytes of the held turns.
"""

from __future__ import annotations

import numpy as np

from reference_impls.agents.embedded_turns import EmbeddedTurnStore
from reference_impls.agents.embedders import Embedder


class FaissStore(EmbeddedTurnStore):
    name = "faiss"

    def __init__(self, *, embedder: str | Embedder | None = None) -> None:
        super().__init__(embedder)
        try:
            import faiss
        except ImportError as exc:
            raise RuntimeError("the faiss store needs faiss-cpu: pip install 'faiss-cpu>=1.8'") from exc
        self._faiss = faiss
        self._index = faiss.IndexIDMap(faiss.IndexFlatIP(self.embedder.dim))
        self._label_of: dict[str, int] = {}
        self._key_of: dict[int, str] = {}
        self._next_label = 0

    def _index_add(self, keys: list[str], vectors: np.ndarray) -> None:
        labels = np.arange(self._next_label, self._next_label + len(keys), dtype=np.int64)
        self._next_label += len(keys)
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), labels)
        for key, label in zip(keys, labels.tolist(), strict=True):
            self._label_of[key] = label
            self._key_of[label] = key

    def _index_replace(self, key: str, vector: np.ndarray) -> None:
        label = self._label_of[key]
        self._index.remove_ids(np.array([label], dtype=np.int64))
        self._index.add_with_ids(np.ascontiguousarray(vector[None, :], dtype=np.float32),
                                 np.array([label], dtype=np.int64))

    def _index_remove(self, key: str) -> None:
        label = self._label_of.pop(key)
        del self._key_of[label]
        self._index.remove_ids(np.array([label], dtype=np.int64))

    def _index_top(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        scores, labels = self._index.search(np.ascontiguousarray(query[None, :], dtype=np.float32), k)
        return [(self._key_of[int(label)], float(score)) for score, label in zip(scores[0], labels[0], strict=True)
                if label >= 0]

    def _index_bytes(self) -> tuple[int, int]:
        codes = self._index.ntotal * (self.embedder.dim * 4 + 8)
        return codes + sum(len(k.encode("utf-8")) + 8 for k in self._label_of), 0
