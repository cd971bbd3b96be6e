"""The quantization seed claims (../shared/CLAIMS.md), each held against quant_error, quant_fidelity and
quant_matmul records. A measure returns None when the given runs hold nothing that measures it."""

from __future__ import annotations

import pandas as pd

from harness.claims import Claim, Measurement, ok_rows
from harness.registry import register_claim

BF16_BITS = 16.0
KNEE_FRACTION = 0.9  # "held": the speedup stays within 10% of its batch-1 value


def _median(rows: pd.DataFrame, metric: str, **match: object) -> float | None:
    for name, value in match.items():
        rows = rows[rows[name] == value] if name in rows else rows.iloc[0:0]
    values = rows[metric].dropna() if metric in rows else pd.Series(dtype=float)
    return float(values.median()) if len(values) else None


def _device(rows: pd.DataFrame) -> str:
    return str(rows["device"].iloc[0]) if len(rows) and "device" in rows else ""


def _int4_memory(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "quant_error", format="int4-g128-sym")
    bits = _median(rows, "quant.effective_bits")
    if bits is None:
        return None
    return Measurement(BF16_BITS / bits, f"bf16 bits / stored bits of int4-g128-sym ({bits:.4f} bits per weight: "
                       "4-bit codes + a float16 scale per 128)", device=_device(rows))


def _int4_speedups(records: pd.DataFrame) -> pd.DataFrame:
    """Per (N, K, M): bf16 latency / triton_int4 latency on CUDA at group 128, 4 bits, bf16 activations."""
    rows = ok_rows(records, "quant_matmul", bits=4, group=128, dtype="bfloat16")
    rows = rows[rows["device"].astype(str).str.startswith("cuda")] if len(rows) else rows
    if not len(rows) or "latency_s" not in rows:
        return pd.DataFrame()
    keys = ["param.N", "param.K", "param.M"]
    table = rows.pivot_table(index=keys, columns="impl", values="latency_s", aggfunc="median")
    if not {"bf16", "triton_int4"} <= set(table.columns):
        return pd.DataFrame()
    speedup = (table["bf16"] / table["triton_int4"]).dropna().rename("speedup").reset_index()
    speedup["device"] = _device(rows)
    return speedup


def _largest_shape(speedups: pd.DataFrame) -> pd.DataFrame:
    sizes = speedups["param.N"] * speedups["param.K"]
    shapes = speedups[sizes == sizes.max()]
    # of equal-size shapes, the one whose batch-1 speedup is best (the weight-streaming case Marlin's bound is for)
    best_k = shapes.sort_values(["param.M", "speedup"], ascending=[True, False]).iloc[0]["param.K"]
    return shapes[shapes["param.K"] == best_k].sort_values("param.M")


def _marlin_batch1(records: pd.DataFrame) -> Measurement | None:
    speedups = _int4_speedups(records)
    if not len(speedups):
        return None
    shape = _largest_shape(speedups)
    first = shape.iloc[0]
    if int(first["param.M"]) != 1:
        return None
    return Measurement(float(first["speedup"]), f"triton_int4 (RTN int4 g128 sym, 4.125 bits) vs the dense bf16 "
                       f"matmul at M = 1, N x K = {int(first['param.N'])} x {int(first['param.K'])}",
                       device=str(first["device"]))


def _marlin_knee(records: pd.DataFrame) -> Measurement | None:
    speedups = _int4_speedups(records)
    if not len(speedups):
        return None
    shape = _largest_shape(speedups)
    if int(shape.iloc[0]["param.M"]) != 1:
        return None
    at_one = float(shape.iloc[0]["speedup"])
    held = shape[shape["speedup"] >= KNEE_FRACTION * at_one]
    # the last batch before the speedup first drops below the fraction
    below = shape[shape["speedup"] < KNEE_FRACTION * at_one]
    last = int(held[held["param.M"] < below["param.M"].min()]["param.M"].max()) if len(below) else int(
        held["param.M"].max())
    return Measurement(float(last), f"largest batch whose int4 speedup stays >= {KNEE_FRACTION:.0%} of its batch-1 "
                       f"{at_one:.2f}x, N x K = {int(shape.iloc[0]['param.N'])} x {int(shape.iloc[0]['param.K'])}: "
                       + ", ".join(f"M={int(r['param.M'])} {r['speedup']:.2f}x" for _, r in shape.iterrows()),
                       device=str(shape.iloc[0]["device"]))


def _lut_vs_dequant(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "quant_matmul", bits=4)
    rows = rows[rows["impl"].isin(["lut_gemv", "dequant_matmul"]) & (rows["device"] == "cpu")] if len(rows) else rows
    if not len(rows):
        return None
    smallest = rows[rows["param.M"] == rows["param.M"].min()]
    lut, dequant = _median(smallest, "latency_s", impl="lut_gemv"), _median(smallest, "latency_s",
                                                                            impl="dequant_matmul")
    if lut is None or dequant is None:
        return None
    first = smallest.iloc[0]
    return Measurement(dequant / lut, f"4-bit g{int(first['param.group'])}, M = {int(first['param.M'])}, N x K = "
                       f"{int(first['param.N'])} x {int(first['param.K'])}: dequantize-then-matmul "
                       f"{dequant * 1e3:.2f} ms, LUT GEMV {lut * 1e3:.2f} ms (a CPU LUT kernel, not FLUTE's GPU one)",
                       device=_device(smallest))


def _bits_of(fmt: str, what: str):
    def measure(records: pd.DataFrame) -> Measurement | None:
        rows = ok_rows(records, "quant_error", format=fmt)
        bits = _median(rows, "quant.effective_bits")
        if bits is None:
            return None
        shapes = sorted(set(rows["param.layer"].astype(str))) if "param.layer" in rows else []
        return Measurement(bits, f"{what}; median over {len(rows)} matrices ({', '.join(shapes[:3])})",
                           device=_device(rows))

    return measure


def _dfloat11_ratio(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "quant_error", format="dfloat11")
    rows = rows[rows["param.source"] != "synthetic"] if len(rows) else rows
    bits = _median(rows, "quant.effective_bits")
    if bits is None:
        return None
    exact = "quality.weight_max_abs_error" in rows and float(rows["quality.weight_max_abs_error"].max()) == 0.0
    sources = ", ".join(sorted(set(rows["param.source"].astype(str))))
    return Measurement(bits / BF16_BITS, f"stored bits / 16 on real bf16 weights ({sources}); round trip "
                       f"{'bit-exact' if exact else 'NOT bit-exact'}", device=_device(rows))


def _bitmod_sqnr_gain(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "quant_error", source="minilm")
    gains = []
    for layer, on in rows.groupby("param.layer") if len(rows) else []:
        bitmod = _median(on, "quality.weight_sqnr_db", **{"param.format": "bitmod-g128"})
        plain = _median(on, "quality.weight_sqnr_db", **{"param.format": "int4-g128-asym"})
        if bitmod is not None and plain is not None:
            gains.append((layer, bitmod - plain))
    if not gains:
        return None
    gain = float(pd.Series([g for _, g in gains]).median())
    return Measurement(gain, "weight SQNR of bitmod-g128 (4.17 bits) minus int4-g128-asym (4.16 bits) on MiniLM "
                       "layers: " + ", ".join(f"{layer} {g:+.2f} dB" for layer, g in gains), device=_device(rows))


def _bits_cliff(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "quant_fidelity", model="smollm2")
    rows = rows[rows["impl"] == "fake_quant"] if len(rows) else rows  # the fp32 baseline carries a format too
    int4 = _median(rows, "quality.perplexity_delta", **{"param.format": "int4-g128"})
    int3 = _median(rows, "quality.perplexity_delta", **{"param.format": "int3-g128"})
    base = _median(rows, "quality.perplexity_fp32")  # each quantized case records its as-loaded perplexity
    if int4 is None or int3 is None or base is None or int4 <= 0:
        return None
    return Measurement(int3 / int4, f"SmolLM2-135M perplexity {base:.2f} as loaded: int4-g128 +{int4:.2f} "
                       f"({int4 / base:.1%}), int3-g128 +{int3:.2f} ({int3 / base:.1%})", device=_device(rows))


register_claim(Claim(
    "P099-int4", "EfficientLLM (P099)", "int4 cuts weight memory up to 3.9x", 3.9, "x", "within",
    "16 / effective bits of int4-g128-sym measured from the packed payload (codes + scales) by quant_error",
    _int4_memory, tolerance=0.05))

register_claim(Claim(
    "Marlin-batch1", "Marlin (Frantar et al. 2024)", "ideal W4A16 speedup 16/4.125 = 3.87x at group 128", 3.87, "x",
    "within", "quant_matmul on CUDA: dense bf16 latency / triton_int4 latency at M = 1, largest shape (suite: "
    "quant_matmul)", _marlin_batch1, tolerance=0.1))

register_claim(Claim(
    "Marlin-knee", "Marlin (Frantar et al. 2024)", "the near-ideal W4A16 speedup holds to batch 16-32", 16.0,
    "batch", ">=", f"largest M at which triton_int4's speedup over bf16 stays >= {KNEE_FRACTION:.0%} of its M = 1 "
    "speedup (suite: quant_matmul)", _marlin_knee))

register_claim(Claim(
    "P097-lut", "FLUTE (P097)", "LUT-quantized GEMM is 2-4x faster than dequantize-then-matmul at batch < 32, "
    "3/4-bit", 2.0, "x", ">=", "quant_matmul on CPU: dequant_matmul latency / lut_gemv latency at 4 bits, the "
    "smallest M measured", _lut_vs_dequant))

register_claim(Claim(
    "P163-sherry", "Sherry (P163)", "1.25 bits per weight (3:4 sparse ternary, 4 weights in 5 bits)", 1.25, "bit",
    "within", "effective bits of the packed sherry payload, per-row float16 scales included (quant_error)",
    _bits_of("sherry", "4 weights in 5 bits + a float16 scale per row"), tolerance=0.05))

register_claim(Claim(
    "P040-dfloat11", "DFloat11 (P040)", "lossless bf16 compression to ~70% of the size, bit-exact", 0.70, "x",
    "within", "quant_error dfloat11 on real bf16 weights: stored bits (Huffman exponents + raw sign/mantissa + "
    "codebook + block offsets) / 16; the case fails unless the round trip is bit-exact", _dfloat11_ratio,
    tolerance=0.1))

register_claim(Claim(
    "P043-bitmod", "BitMoD (P043)", "per-group mixed 4-bit datatypes beat plain int4 at equal bits (<0.5% "
    "accuracy loss)", 0.0, "dB", ">=", "weight SQNR gain of bitmod-g128 over int4-g128-asym on real MiniLM layers "
    "(quant_error); fidelity deltas are in quant_fidelity", _bitmod_sqnr_gain))

register_claim(Claim(
    "P150-cliff", "P150", "4-bit is roughly lossless; 3-bit and below drop sharply", 3.0, "x", ">=",
    "quant_fidelity on SmolLM2-135M: perplexity increase of int3-g128 / that of int4-g128 ('sharply' read as at "
    "least 3x the 4-bit damage)", _bits_cliff))

register_claim(Claim(
    "P041-kv-outliers", "Accurate Block Quantization with Outliers (P041)", "reordering outlier channels gives 2x KV "
    "memory savings at no latency cost", 2.0, "x", ">=", "needs KV activations with outlier channels from a real "
    "model; quant_error measures the reordering (int4-g128-outlier) on weights only",
    lambda records: None, unmeasurable_reason="quant_error measures outlier reordering on weights; the KV-cache "
    "version (real keys through the same formats) is not built yet"))
