"""An exact in-memory vector table: float32 rows grown by doubling, keyed by item id, brute-force inner product.

WHY doubling: appending one row at a time to a numpy array copies everything each time (quadratic writes);
doubling the capacity makes writes amortized O(dim). Deleted rows stay in place as dead slots (masked out of
search) so row numbers never shift; their bytes still count because they are still allocated.
"""

from __future__ import annotations

import numpy as np


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest finite scores, best first, ties broken by the lower index (deterministic)."""
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        return finite
    values = scores[finite]
    if finite.size > k:
        threshold = np.partition(values, finite.size - k)[finite.size - k]
        keep = values >= threshold  # every row tied with the k-th stays a candidate; the sort below decides
        finite, values = finite[keep], values[keep]
    order = np.lexsort((finite, -values))
    return finite[order[:k]]


class VectorTable:
    """Rows of unit vectors keyed by string ids; scores are inner products (= cosine for unit rows)."""

    def __init__(self, dim: int, initial_capacity: int = 64) -> None:
        self.dim = dim
        self._matrix = np.zeros((initial_capacity, dim), dtype=np.float32)
        self._live = np.zeros(initial_capacity, dtype=bool)
        self._keys: list[str] = []
        self._row_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, key: str) -> bool:
        return key in self._row_of

    @property
    def rows_used(self) -> int:
        return len(self._keys)

    def row_of(self, key: str) -> int:
        return self._row_of[key]

    def key_of(self, row: int) -> str:
        return self._keys[row]

    def vector(self, key: str) -> np.ndarray:
        return self._matrix[self._row_of[key]]

    def add(self, key: str, vector: np.ndarray) -> int:
        if key in self._row_of:
            raise ValueError(f"vector table already holds {key!r}")
        row = len(self._keys)
        if row == self._matrix.shape[0]:
            grown = np.zeros((2 * row, self.dim), dtype=np.float32)
            grown[:row] = self._matrix
            self._matrix = grown
            live = np.zeros(2 * row, dtype=bool)
            live[:row] = self._live
            self._live = live
        self._matrix[row] = vector
        self._live[row] = True
        self._keys.append(key)
        self._row_of[key] = row
        return row

    def set(self, key: str, vector: np.ndarray) -> None:
        self._matrix[self._row_of[key]] = vector

    def add_or_replace(self, key: str, vector: np.ndarray) -> None:
        """Set the key's row, or add a row for it (a removed key comes back at a new row)."""
        if key in self._row_of:
            self.set(key, vector)
        else:
            self.add(key, vector)

    def remove(self, key: str) -> None:
        row = self._row_of.pop(key)
        self._live[row] = False
        self._matrix[row] = 0.0

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Inner product with every used row; dead rows score -inf."""
        used = len(self._keys)
        scores = self._matrix[:used] @ query
        scores[~self._live[:used]] = -np.inf
        return scores

    def scores_of_rows(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        scores = self._matrix[rows] @ query
        scores[~self._live[rows]] = -np.inf
        return scores

    def top(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k best live rows as (key, score), best first."""
        scores = self.scores(query)
        return [(self._keys[i], float(scores[i])) for i in top_k_indices(scores, k)]

    @property
    def nbytes(self) -> int:
        """Allocated array bytes (capacity, dead slots included) plus the UTF-8 bytes of the keys."""
        return int(self._matrix.nbytes + self._live.nbytes + sum(len(k.encode("utf-8")) for k in self._keys))
