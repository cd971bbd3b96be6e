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


def _kivi2_bits(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "kv_compression", policy="kivi", kivi_bits=2)
    rows = rows[rows["impl"].astype(str).str.contains("compact|pack", regex=True)] if len(rows) else rows
    if not len(rows) or "kv_allocated_bits_per_element" not in rows:
        return None
    best = rows.sort_values("kv_allocated_bits_per_element").iloc[0]
    group, window, tokens = (int(best[f"param.{name}"]) for name in ("kivi_group", "kivi_residual", "kv_len"))
    return Measurement(float(best["kv_allocated_bits_per_element"]),
                       f"packed 2-bit codes + fp16 scale and zero point per group of {group} + {window} "
                       f"full-precision recent tokens over {tokens} tokens ({best['impl']})",
                       device=str(best["device"]))


def _duo_ratio(retrieval_fraction: float, config_name: str, context: int) -> Measurement:
    """Modeled whole-model decode memory (weights + KV) with full attention over DuoAttention's, both bf16."""
    from reference_impls.hardware.transformer import Precision, kv_bytes_per_token, load_config, weight_bytes
    from reference_impls.kernels.kv_compression import duo_attention_memory_ratio

    config, precision = load_config(config_name), Precision()
    weights, kv_full = weight_bytes(config, precision)["total"], kv_bytes_per_token(config, precision) * context
    kv_ratio = duo_attention_memory_ratio(retrieval_fraction, context, sink=128, window=256)
    whole = (weights + kv_full) / (weights + kv_full / kv_ratio)
    return Measurement(whole, f"{config_name} shape at {context} tokens, {retrieval_fraction:.0%} retrieval heads, "
                       f"128 sinks + 256 recent: weights {weights / 1e9:.1f} GB, KV {kv_full / 1e9:.1f} GB -> "
                       f"{kv_full / kv_ratio / 1e9:.1f} GB (KV alone {kv_ratio:.2f}x)", device="model")


def _paged_waste(impl: str, **params: object):
    def measure(records: pd.DataFrame) -> Measurement | None:
        rows = ok_rows(records, "kv_allocation", **params)
        value = _median_of(rows, impl, "kv_alloc.waste_pct") if len(rows) else None
        if value is None:
            return None
        first = rows[rows["impl"] == impl].iloc[0]
        return Measurement(value, f"{impl}: time-averaged KV waste (internal fragmentation + reserved-unused) on "
                           f"{int(first['param.requests'])} {first['param.trace']}-like requests in "
                           f"{first['param.memory_gib']} GiB", device=str(first["device"]))

    return measure


def _softmax_two_vs_three(records: pd.DataFrame) -> Measurement | None:
    """three-pass ÷ two-pass time at the largest vector measured (out of cache when the suite says so)."""
    rows = ok_rows(records, "softmax_passes")
    if not len(rows):
        return None
    largest = rows["param.n"].max()
    found = _ratio(rows[rows["param.n"] == largest], "latency_s", "three_pass", "two_pass")
    if not found:
        return None
    ratio, three, two = found
    return Measurement(ratio, f"n = {int(largest)} float32 ({largest * 4 / 2**20:.0f} MiB): three-pass "
                       f"{three * 1e3:.2f} ms, two-pass {two * 1e3:.2f} ms (chunked torch ops, not the paper's fused "
                       "AVX loops)",
                       device=str(rows["device"].iloc[0]))


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
    4.0, "FLOP/B", "within", "arithmetic intensity from the transformer cost model (membench model) for group 4, "
    "which the claim puts at 4", _duplex_gqa_intensity, tolerance=0.05))

register_claim(Claim(
    "KIVI-2-bits", "KIVI (Liu et al. 2024)", "KIVI-2 stores the KV cache in 2 bits per element",
    2.0, "bit", "within", "bits actually held per cached element by the packed kv_compression/kivi case "
    "(codes, scales, zero points and the full-precision window)", _kivi2_bits, tolerance=0.1))

register_claim(Claim(
    "P039-gqa", "DuoAttention (P039)", "decoding memory cut 1.67x on a GQA model (Llama-3-8B, 1M context)",
    1.67, "x", ">=", "modeled: weights + KV with full attention over DuoAttention's at its head ratio (50% "
    "retrieval heads), Llama-3.1-8B shape at 1,048,576 tokens", lambda df: _duo_ratio(0.5, "llama-3.1-8b", 1 << 20)))

register_claim(Claim(
    "P091-paged", "PagedAttention / vLLM (P091)", "paged KV allocation wastes under 4% of KV memory",
    4.0, "%", "<=", "kv_allocation paged (16-token blocks): time-averaged waste on a ShareGPT-like trace",
    _paged_waste("paged", block_size=16)))

register_claim(Claim(
    "P091-static", "PagedAttention / vLLM (P091)", "static max-length reservation wastes 60-80% of KV memory",
    60.0, "%", ">=", "kv_allocation static reservation on the same trace", _paged_waste("static")))

register_claim(Claim(
    "P178-two-pass", "Dukhan & Ablavatski (P178)", "two-pass softmax beats three-pass by up to 28% (AVX512) / "
    "18% (AVX2) on out-of-cache inputs", 1.0, "x", ">=", "softmax_passes: three-pass ÷ two-pass latency at the "
    "largest (out-of-cache) size; > 1 means two-pass is faster", _softmax_two_vs_three))
