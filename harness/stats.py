"""Statistics derived on demand from raw samples: median, spread, bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np


def summarize(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "iqr": float(q3 - q1), "min": float(values.min()),
            "mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0}


def bootstrap_median_ci(samples: list[float], confidence: float = 0.95, resamples: int = 2000,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the median; seeded so a report is reproducible."""
    values = np.asarray(samples, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(resamples, values.size), replace=True), axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(medians, [alpha, 1.0 - alpha])
    return float(low), float(high)


def relative_iqr(samples: list[float]) -> float:
    stats = summarize(samples)
    return stats["iqr"] / stats["median"] if stats["median"] > 0 else float("inf")
