"""The edge seed claims (../shared/CLAIMS.md: P006, P027, P130), held against flash_offload, patch_inference and
fits_on_device records. A measure returns None when the given runs hold nothing that measures it."""

from __future__ import annotations

import pandas as pd

from harness.claims import Claim, Measurement, ok_rows
from harness.registry import register_claim

PI_BOARDS = ("raspberry-pi-5-4gb", "raspberry-pi-5-8gb")


def _median(rows: pd.DataFrame, impl: str, metric: str) -> float | None:
    values = rows.loc[rows["impl"] == impl, metric].dropna() if metric in rows else pd.Series(dtype=float)
    return float(values.median()) if len(values) else None


def _flash_groups(records: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    """flash_offload records grouped by their params (every policy at the same shape, trace and budget)."""
    rows = ok_rows(records, "flash_offload")
    # other workloads' params are columns too (NaN here): group by this workload's own
    keys = [c for c in rows.columns if c.startswith("param.") and rows[c].notna().all()] if len(rows) else []
    if not keys:
        return []
    return [(dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True)), group)
            for values, group in rows.groupby(keys)]


def _flash_dram(records: pd.DataFrame) -> Measurement | None:
    best = None
    for params, group in _flash_groups(records):
        both = group[group["impl"] == "both"]
        if not len(both) or "flash.model_over_dram" not in both:
            continue
        ratio = float(both["flash.model_over_dram"].max())
        if best is None or ratio > best[0]:
            resident = float(both["flash.dram_resident_bytes"].max())
            best = (ratio, params, resident, float(both["flash.model_bytes"].iloc[0]), str(both["device"].iloc[0]))
    if best is None:
        return None
    ratio, params, resident, model, device = best
    return Measurement(ratio, f"FFN file {model / 1e6:.0f} MB served under a DRAM buffer of {model / ratio / 1e6:.0f} "
                       f"MB (peak resident {resident / 1e6:.1f} MB), outputs equal to the dense FFN; sparsity "
                       f"{params.get('param.sparsity')}, window {int(params.get('param.window', 0))}", device=device)


def _flash_speedup(records: pd.DataFrame) -> Measurement | None:
    best = None
    for params, group in _flash_groups(records):
        naive, both = _median(group, "naive", "latency_s"), _median(group, "both", "latency_s")
        if naive is None or both is None or both <= 0:
            continue
        if best is None or params.get("param.d_ff", 0) > best[1].get("param.d_ff", 0):
            best = (naive / both, params, naive, both, group)
    if best is None:
        return None
    ratio, params, naive, both, group = best
    tokens, shape = params.get("param.tokens", 1), f"{int(params['param.d_model'])}x{int(params['param.d_ff'])}"
    return Measurement(ratio, f"naive {naive / tokens * 1e3:.1f} ms/token vs windowing+bundling "
                       f"{both / tokens * 1e3:.1f} ms/token; {shape} FFN, sparsity {params.get('param.sparsity')}, "
                       f"correlation {params.get('param.correlation')}, "
                       f"page cache: {params.get('param.cache_mode')} (2 shared cores: noisy)",
                       device=str(group["device"].iloc[0]))


def _patch_peak(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "patch_inference")
    metric = "edge_patch.peak_activation_bytes_int8"
    if not len(rows) or metric not in rows:
        return None
    found = []
    for (resolution, blocks), group in rows.groupby(["param.resolution", "param.blocks"]):
        layers = _median(group, "layers", metric)
        patched = group[group["impl"] == "patches"]
        if layers is None or not len(patched):
            continue
        best = patched.sort_values(metric).iloc[0]
        found.append((layers / float(best[metric]), resolution, blocks, layers, best))
    if not found:
        return None
    ratio, resolution, blocks, layers, best = max(found, key=lambda f: (f[1], f[0]))
    return Measurement(ratio, f"{int(resolution)}x{int(resolution)} input, stem + {int(blocks)} blocks: layer by "
                       f"layer {layers / 1024:.0f} kB vs {int(best['param.patches'])}x{int(best['param.patches'])} "
                       f"patches {best[metric] / 1024:.0f} kB (int8, tracked = analytic; MCUNet's convention gives "
                       f"{best['edge_patch.mcunet_peak_bytes_int8'] / 1024:.0f} kB layer by layer); FLOPs x"
                       f"{best['edge_patch.flops_ratio']:.2f} for the halo", device=str(best["device"]))


def _pi_fit(records: pd.DataFrame) -> Measurement | None:
    rows = ok_rows(records, "fits_on_device")
    if not len(rows) or "edge_fit.fits" not in rows:
        return None
    rows = rows[rows["param.device"].isin(PI_BOARDS)]
    by_format = {}
    for fmt, group in rows.groupby("param.format"):
        fitting = group[group["edge_fit.fits"] == 1]
        if set(group["param.device"]) != set(PI_BOARDS):
            continue
        on_both = [p for p, g in fitting.groupby("edge_fit.parameters") if set(g["param.device"]) == set(PI_BOARDS)]
        by_format[fmt] = max(on_both, default=0.0) / 1e9
    if not by_format:
        return None
    value = by_format.get("bf16", min(by_format.values()))
    detail = ", ".join(f"{fmt}: {b:.2f}B" for fmt, b in sorted(by_format.items()))
    models = ", ".join(sorted(set(rows["param.model"].astype(str))))
    return Measurement(value, f"largest model of {models} that the fit planner places on both the Pi 5 4 GB and 8 GB "
                       f"(usable = capacity - 0.5 GB OS, 200 MB runtime) — {detail}; the claim is read at bf16, "
                       "where the weights are largest", device="model")


register_claim(Claim(
    "P006-dram", "LLM in a flash (P006)", "runs models up to 2x the size of the DRAM budget", 2.0, "x", ">=",
    "flash_offload: FFN file size / DRAM slot buffer of a run whose output equals the dense FFN (windowing + "
    "bundling; the buffer is budget_fraction of the file)", _flash_dram))

register_claim(Claim(
    "P006-speedup", "LLM in a flash (P006)", "4-5x faster than naive loading on CPU", 4.0, "x", ">=",
    "flash_offload on this machine: latency of naive / windowing+bundling at the same shape and trace, reads with "
    "O_DIRECT (page cache bypassed)", _flash_speedup))

register_claim(Claim(
    "P027-peak", "MCUNetV2 (P027)", "patch-based inference cuts peak activation memory 4-8x", 4.0, "x", ">=",
    "patch_inference: tracked peak live activation bytes (int8), layer by layer / patch by patch, at the largest "
    "resolution measured", _patch_peak))

register_claim(Claim(
    "P130-fit", "Single-board computer study (P130)", "single-board computers run models up to 1.5B parameters", 1.5,
    "B params", ">=", "fits_on_device (modeled): the largest built-in model that fits on both Raspberry Pi 5 "
    "boards (4 GB and 8 GB) in bf16", _pi_fit))
