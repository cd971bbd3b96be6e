"""Is a finished measurement trustworthy? Reasons make it invalid; warnings only say how sure it is."""

from __future__ import annotations

from harness.case import Record
from harness.stats import relative_iqr

MIN_RESOLVABLE_S = {"perf_counter_ns": 1e-6, "cuda_event": 2e-6}  # below this, timer overhead dominates
NOISY_RELATIVE_IQR = 0.10


def validity(record: Record, samples: list[float]) -> dict:
    reasons: list[str] = []
    warnings: list[str] = []
    latency = record.metrics.get("latency_s")
    if latency and latency.get("calls_per_sample", 1) == 1:
        floor = MIN_RESOLVABLE_S.get(latency["source"], 0.0)
        if latency["value"] < floor:
            reasons.append(f"median {latency['value']:.2e} s is below what {latency['source']} resolves "
                           f"({floor:.0e} s): time a larger size or use CUDA graphs")
    spread = relative_iqr(samples) if len(samples) > 1 else 0.0
    if spread > NOISY_RELATIVE_IQR:
        warnings.append(f"noisy: IQR is {spread:.0%} of the median")
    return {"ok": not reasons, "reasons": reasons, "warnings": warnings}
