"""Synthetic records, manifests and an HTML table parser shared by the report tests."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

BUILD_TIME = "2025-01-01T00:00:00+00:00"
RUN = "run-a"
WORKLOAD = "attention_prefill"
PARAMS = ("seq", "heads", "head_dim", "dtype", "causal", "batch")
FIXED = {"heads": 4, "head_dim": 64, "dtype": "float32", "causal": False, "batch": 1}
# latency per (impl, seq); naive fails at 4096, chunked@1024 is invalid.
LATENCY = {"naive": (1e-3, 4e-3, None), "chunked": (2e-3, 3e-3, 6e-3), "flash": (1.5e-3, 2e-3, 3e-3)}
SEQS = (1024, 2048, 4096)
ENERGY_REASON = "NVML energy counter unavailable on CPU-only host"
FAIL_ERROR = "RuntimeError: not enough memory: you tried to allocate 68719476736 bytes"
# Hardware model per (impl, seq): residual (measured ÷ predicted − 1) and calibrated % of roofline.
# chunked@4096 has no model (as if its run had no calibration); naive@4096 failed.
RESIDUAL = {("naive", 1024): 0.10, ("naive", 2048): -0.30, ("chunked", 1024): 0.05, ("chunked", 2048): 0.45,
            ("flash", 1024): -0.05, ("flash", 2048): 0.15, ("flash", 4096): 0.50}
FRACTION = {("naive", 1024): 0.30, ("naive", 2048): 0.20, ("chunked", 1024): 0.41, ("chunked", 2048): 0.45,
            ("flash", 1024): 0.50, ("flash", 2048): 0.61, ("flash", 4096): 0.70}
LAUNCHES = {"naive": 5, "chunked": 8, "flash": 1}
GPU, CPU_MODEL = "h100-sxm-80gb", "this-machine"
DEVICES = {
    GPU: {"label": "NVIDIA H100 SXM 80GB",
          "datasheet": {"peak_flops": {"float32": 67e12, "bfloat16": 989e12}, "bandwidth_bytes_per_s": 3.35e12,
                        "source": "NVIDIA H100 datasheet"},
          "calibrated": {"peak_flops": {"float32": 51e12, "bfloat16": 740e12}, "bandwidth_bytes_per_s": 2.9e12,
                         "measured_at": "2025-01-01T00:00:00Z"}},
    CPU_MODEL: {"label": "this machine (Test CPU 9000)", "datasheet": None,
                "calibrated": {"peak_flops": {"float32": 1.2e12}, "bandwidth_bytes_per_s": 80e9,
                               "measured_at": "2025-01-01T00:00:00Z"}},
}

METRIC_SPECS = {
    "latency_s": {"unit": "s", "direction": "lower", "label": "Latency"},
    "peak_memory_bytes": {"unit": "B", "direction": "lower", "label": "Peak memory"},
    "peak_memory_overhead_bytes": {"unit": "B", "direction": "lower", "label": "Peak memory overhead"},
    "energy_j": {"unit": "J", "direction": "lower", "label": "Energy"},
    "quality.rel_l2_error": {"unit": "1", "direction": "lower", "label": "Rel. L2 error"},
    "tokens_per_s": {"unit": "tok/s", "direction": "higher", "label": "Throughput"},
}
WORKLOAD_INFO = {
    WORKLOAD: {"family": "long_context", "sweep_param": "seq", "primary_metric": "latency_s",
               "params": list(PARAMS), "description": "Causal-free attention prefill over a long sequence."},
    "decode": {"family": "long_context", "sweep_param": "seq", "primary_metric": "tokens_per_s",
               "params": ["seq"], "description": "Token decode throughput."},
}


def _metric(name: str, value: float | None, unit: str, source: str, n: float, iqr: float,
            note: str | None = None, missing: str | None = None) -> dict:
    return {name: math.nan if value is None else value, f"{name}__source": source, f"{name}__unit": unit,
            f"{name}__iqr": iqr, f"{name}__n": n, f"{name}__note": note, f"{name}__missing": missing}


def _model(impl: str, seq: int, latency: float | None, flops: float, min_bytes: float) -> dict:
    """The hardware-model columns of one attention case; NaN/None where the case has no model."""
    residual = RESIDUAL.get((impl, seq))
    if residual is None or latency is None:
        return {"model.device": None, "model.dtype": None, "model.bound": None,
                **{f"model.{k}": math.nan for k in ("launches", "achieved_flops_per_s", "achieved_bytes_per_s",
                                                    "predicted_latency_s", "floor_latency_s", "roofline_fraction",
                                                    "datasheet_roofline_fraction", "arithmetic_intensity",
                                                    "residual", "predicted_energy_j", "traffic_bytes")}}
    fraction = FRACTION[(impl, seq)]
    return {
        "model.device": GPU, "model.dtype": "float32", "model.launches": float(LAUNCHES[impl]),
        "model.achieved_flops_per_s": flops / latency, "model.achieved_bytes_per_s": min_bytes / latency,
        "model.predicted_latency_s": latency / (1 + residual), "model.floor_latency_s": fraction * latency,
        "model.roofline_fraction": fraction, "model.datasheet_roofline_fraction": 0.8 * fraction,
        "model.bound": "compute", "model.arithmetic_intensity": flops / min_bytes, "model.residual": residual,
        "model.predicted_energy_j": 0.004, "model.traffic_bytes": 2 * min_bytes,
    }


def _row(impl: str, seq: int, latency: float | None, *, status: str = "ok", error: str | None = None,
         valid: bool = True, reasons: list[str] | None = None) -> dict:
    params = {"seq": seq, **FIXED}
    pstr = ",".join(f"{k}={v}" for k, v in params.items())
    ok = status == "ok"
    row = {
        "run": RUN, "case": f"long_context/{WORKLOAD}/{impl}[{pstr}]@cpu", "family": "long_context",
        "workload": WORKLOAD, "impl": impl, "device": "cpu", "seed": 0, "status": status, "error": error,
        "workload_version": "1", "params": params, "valid": valid, "validity_reasons": reasons or [],
        **{f"param.{k}": v for k, v in params.items()},
        "model.flops": 4.0 * seq * seq * 64 * 4, "model.bytes": 4.0 * seq * 64 * 4 * 4,
        "model.footprint_bytes": 4.0 * seq * 64 * 4 * 3,
    }
    mem = {"naive": 4.0 * seq * seq * 4, "chunked": 4.0 * seq * 512 * 4, "flash": 4.0 * seq * 64 * 4}[impl]
    row |= _metric("latency_s", latency if ok else None, "s", "perf_counter_ns", 37, (latency or 0) * 0.05,
                   note="median of timed repeats after warmup")
    row |= _metric("peak_memory_bytes", mem + 2**20 if ok else None, "B", "isolated_rss", 1, math.nan)
    row |= _metric("peak_memory_overhead_bytes", mem if ok else None, "B", "isolated_rss", 1, math.nan)
    if ok and (impl, seq) == ("chunked", 2048):  # no counter: the hardware model fills energy in
        row |= _metric("energy_j", 0.0042, "J", "modeled", 1, math.nan, note="datasheet power × modeled time")
    elif ok and (impl, seq) == ("naive", 2048):
        row |= _metric("energy_j", 0.005, "J", "nvml_total_energy", 37, math.nan)
    else:
        row |= _metric("energy_j", None, "J", "nvml_total_energy", math.nan, math.nan,
                       missing=ENERGY_REASON if ok else None)
    row |= _metric("quality.rel_l2_error", 1e-6 if ok else None, "1", "check", 1, math.nan)
    return row | _model(impl, seq, latency if ok else None, row["model.flops"], row["model.bytes"])


def make_records() -> pd.DataFrame:
    """3 impls × 3 seq values; naive fails at 4096, chunked@1024 is invalid, energy is never measured."""
    rows = []
    for impl, lats in LATENCY.items():
        for seq, lat in zip(SEQS, lats, strict=True):
            if lat is None:
                rows.append(_row(impl, seq, None, status="failed", error=FAIL_ERROR))
            elif impl == "chunked" and seq == 1024:
                rows.append(_row(impl, seq, lat, valid=False, reasons=["rel_l2_error 3e-2 > tolerance 1e-3"]))
            else:
                rows.append(_row(impl, seq, lat))
    for impl, tps in (("slow", 100.0), ("fast", 900.0), ("medium", 400.0)):
        rows.append({"run": RUN, "case": f"long_context/decode/{impl}[seq=128]@cpu", "family": "long_context",
                     "workload": "decode", "impl": impl, "device": "cpu", "seed": 0, "status": "ok",
                     "error": None, "workload_version": "1", "params": {"seq": 128}, "valid": True,
                     "validity_reasons": [], "param.seq": 128, "model.flops": 1.0, "model.bytes": 1.0,
                     "model.footprint_bytes": math.nan, "model.device": CPU_MODEL, "model.dtype": "float32",
                     "model.arithmetic_intensity": 1.0, "model.achieved_flops_per_s": tps * 1e6,
                     "model.roofline_fraction": tps / 1000,
                     **_metric("tokens_per_s", tps, "tok/s", "perf_counter_ns", 20, 5.0)})
    return pd.DataFrame(rows)


def make_manifests() -> dict[str, dict]:
    return {RUN: {
        "run": RUN, "suite": {"name": "long_context-smoke", "description": "Smoke sweep."},
        "started_at": "2025-01-01T00:00:00Z", "finished_at": None,
        "environment": {"git": {"commit": "0123456789abcdef", "dirty": True}, "python": "3.11.9",
                        "platform": "Linux-6.1-x86_64", "cpu": {"model": "Test CPU 9000", "cores": 16},
                        "memory_total_bytes": 64 * 2**30, "packages": {"torch": "2.4.0", "numpy": "2.0.0"},
                        "gpu": None},
        "counts": {"ok": 10, "failed": 1},
    }}


class TableParser(HTMLParser):
    """Collects leaderboard tables: per table id, its rows as lists of (attrs, text) cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.headings: dict[str, str] = {}
        self.board: str | None = None
        self.row: dict | None = None
        self.cell: dict | None = None
        self.in_h4 = False
        self.in_sup = False
        self.srcs: list[str] = []
        self.chart_divs: list[str] = []
        self.keys: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) is not None and tag in ("script", "link", "a", "img"):
                self.srcs.append(a[key] or "")
        if tag == "div" and "board" in (a.get("class") or "").split():
            self.board = a["id"]
            self.tables[self.board] = []
        elif tag == "div" and "plotly-graph-div" in (a.get("class") or ""):
            self.chart_divs.append(a["id"] or "")
        elif tag == "th" and self.board and "data-key" in a:
            self.keys.setdefault(self.board, []).append(a["data-key"] or "")
        elif tag == "h4" and self.board:
            self.in_h4 = True
        elif tag == "tr" and self.board and "data-impl" in a:
            self.row = {"impl": a["data-impl"], "class": a.get("class") or "", "cells": []}
        elif tag == "td" and self.row is not None:
            self.cell = {"attrs": a, "text": "", "footnote": ""}
        elif tag == "sup":
            self.in_sup = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None and self.row is not None:
            self.row["cells"].append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row is not None and self.board:
            self.tables[self.board].append(self.row)
            self.row = None
        elif tag == "h4":
            self.in_h4 = False
        elif tag == "sup":
            self.in_sup = False
        elif tag == "table":
            self.board = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell["footnote" if self.in_sup else "text"] += data
        if self.in_h4 and self.board:
            self.headings[self.board] = self.headings.get(self.board, "") + data


def parse(path: Path) -> TableParser:
    p = TableParser()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def table_id(p: TableParser, heading_part: str) -> str:
    matches = [tid for tid, h in p.headings.items() if heading_part in h]
    assert len(matches) == 1, (heading_part, p.headings)
    return matches[0]


def table_for(p: TableParser, heading_part: str) -> list[dict]:
    return p.tables[table_id(p, heading_part)]


def cell_of(p: TableParser, heading_part: str, impl: str, key: str) -> dict:
    """The cell of column `key` (its th data-key) in the row of `impl` of one leaderboard."""
    tid = table_id(p, heading_part)
    row = next(r for r in p.tables[tid] if r["impl"] == impl)
    return row["cells"][p.keys[tid].index(key)]


def figure_data(html: str, div_id: str) -> list[dict]:
    """The trace list plotly embeds for one chart div: the JSON array after Plotly.newPlot("<id>", ..."""
    match = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', html)
    assert match, div_id
    data, _ = json.JSONDecoder().raw_decode(html, match.end())
    return data
