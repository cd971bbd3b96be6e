"""The seed papers' headline numbers (../shared/CLAIMS.md), each with how membench measures it.

`membench claims RUN...` holds every claim against the records of the given runs. A measure returns None
when those runs hold nothing that measures it; the verdict is then "not measurable here", never a guess.
"""

from __future__ import annotations

import pandas as pd

from harness.claims import Claim, Measurement, ok_rows
from harness.registry import register_claim


def _median_of(rows: pd.DataFrame, impl: str, metric: str) -> float | None:
    values = rows.loc[rows["impl"] == impl, metric].dropna() if metric in rows else pd.Series(dtype=float)
    return float(values.median()) if len(values) else None


def _ratio(rows: pd.DataFrame, metric: str, numerator: str, denominator: str) -> tuple[float, float, float] | None:
    top, bottom = _median_of(rows, numerator, metric), _median_of(rows, denominator, metric)
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom, top, bottom


def _rabe_staats_memory(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "attention_prefill", seq=16384, causal=False)
    for device in sorted(set(rows.get("device", []))):
        on = rows[rows["device"] == device]
        found = _ratio(on, "peak_memory_overhead_bytes", "naive", "chunked")
        if found:
            ratio, naive, chunked = found
            return Measurement(ratio, f"peak memory over inputs at seq 16384: naive {naive / 2**20:.1f} MiB, "
                               f"chunked {chunked / 2**20:.1f} MiB", device=device)
    return None


def _rabe_staats_time(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "attention_prefill", seq=16384, causal=False)
    for device in sorted(set(rows.get("device", []))):
        found = _ratio(rows[rows["device"] == device], "latency_s", "chunked", "naive")
        if found:
            ratio, chunked, naive = found
            return Measurement(ratio, f"latency at seq 16384: chunked {chunked * 1e3:.1f} ms, naive "
                               f"{naive * 1e3:.1f} ms", device=device)
    return None


def _duplex_gqa_intensity(records: pd.DataFrame) -> Measurement:
    """Modeled, not measured: decode attention FLOPs per KV byte of Llama-3.1-8B (GQA group 4) in bf16."""
    from reference_impls.hardware.transformer import Precision, attention_decode_intensity, load_config

    intensity = attention_decode_intensity(load_config("llama-3.1-8b"), Precision(), 8192)
    return Measurement(intensity, "hardware model: Llama-3.1-8B (32 query heads over 8 KV heads) decode "
                       "attention at 8K context, bf16", device="model")


register_claim(Claim(
    "P056-memory", "Rabe & Staats 2021, Self-attention does not need O(n^2) memory",
    "attention's memory overhead cut 59x (inference) at sequence length 16384",
    59.0, "x", ">=", "peak memory over inputs, naive ÷ chunked attention_prefill at seq 16384, same device "
    "(suite: claims)", _rabe_staats_memory))

register_claim(Claim(
    "P056-time", "Rabe & Staats 2021",
    "the memory-efficient algorithm runs within a few percent of the standard one",
    1.05, "x", "<=", "latency chunked ÷ naive at seq 16384, same device (suite: claims)", _rabe_staats_time))

register_claim(Claim(
    "P009-gqa", "Duplex (P009)", "decode attention Op/B of GQA (group 4-8) is 4-8 FLOP/byte in bf16",
    4.0, "FLOP/B", ">=", "arithmetic intensity from the transformer cost model (membench model)",
    _duplex_gqa_intensity))
