"""Two-sample statistics for comparing runs: ratio of medians, its bootstrap CI, the Mann-Whitney U p-value.

Each side's raw samples are resampled on their own (the two runs are independent); the bootstrap is seeded
from the case and metric names, so a comparison prints the same interval every time it is rendered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

EXACT_MAX_SAMPLES = 100  # both sides together: beyond, Mann-Whitney's p comes from the normal approximation
ROWS_PER_CHUNK_ELEMENTS = 2_000_000  # bootstrap in chunks so 10^4-sample sides do not allocate gigabytes


def stable_seed(*parts: str) -> int:
    """A seed that depends on the names only (not on Python's per-process string hashing)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def ratio_of_medians(base: Sequence[float], cand: Sequence[float]) -> float:
    """median(cand) / median(base); inf when the base median is 0 and the candidate's is not."""
    b, c = float(np.median(base)), float(np.median(cand))
    if b == 0.0:
        return 1.0 if c == 0.0 else float("inf")
    return c / b


def _bootstrap_medians(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    rows = max(1, ROWS_PER_CHUNK_ELEMENTS // max(values.size, 1))
    out = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        picks = rng.integers(0, values.size, size=(stop - start, values.size))
        out[start:stop] = np.median(values[picks], axis=1)
    return out


def bootstrap_ratio_ci(base: Sequence[float], cand: Sequence[float], confidence: float = 0.95,
                       resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of median(cand)/median(base), resampling each side independently."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    b, c = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    if b.size == 0 or c.size == 0:
        raise ValueError("both sides need at least one sample")
    rng = np.random.default_rng(seed)
    base_medians = _bootstrap_medians(b, resamples, rng)
    cand_medians = _bootstrap_medians(c, resamples, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(base_medians == 0.0, np.where(cand_medians == 0.0, 1.0, np.inf),
                          cand_medians / np.where(base_medians == 0.0, 1.0, base_medians))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return float(low), float(high)


def mann_whitney_p(base: Sequence[float], cand: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (scipy); 1.0 when every sample on both sides is the same number."""
    from scipy.stats import mannwhitneyu

    b, c = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    if b.size == 0 or c.size == 0:
        raise ValueError("both sides need at least one sample")
    if np.all(b == b[0]) and np.all(c == b[0]):
        return 1.0
    # scipy's exact distribution costs seconds at thousands of samples; the normal approximation is exact enough
    method = "asymptotic" if b.size + c.size > EXACT_MAX_SAMPLES else "auto"
    return float(mannwhitneyu(c, b, alternative="two-sided", method=method).pvalue)
