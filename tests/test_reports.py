"""Tests for the static report: ranking, provenance, offline assets, determinism, lazy plotly."""

from __future__ import annotations

import html as html_lib
import json
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from reports import build_site
from reports.format import format_quantity

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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    index = build_site(make_records(), make_manifests(), out, METRIC_SPECS, WORKLOAD_INFO, BUILD_TIME,
                       devices=DEVICES)
    assert index == out / "index.html"
    return out


def test_pages_and_assets_exist(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / f"run-{RUN}.html").is_file()
    assert (site / "assets" / "style.css").is_file()
    assert [p.name for p in site.rglob("plotly*.js")] == ["plotly.min.js"]
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "<title>membench report</title>" in index
    assert BUILD_TIME in index
    assert f'href="run-{RUN}.html"' in index
    assert "Test CPU 9000" in index and "0123456789 (dirty)" in index


def test_all_references_are_relative(site: Path) -> None:
    for page in site.glob("*.html"):
        p = parse(page)
        assert p.srcs, page
        for ref in p.srcs:
            assert "http" not in ref and not ref.startswith("//"), (page.name, ref)
    run_html = (site / f"run-{RUN}.html").read_text(encoding="utf-8")
    assert '<script src="assets/plotly.min.js"></script>' in run_html


def test_ranking_follows_primary_metric(site: Path) -> None:
    rows = table_for(parse(site / f"run-{RUN}.html"), "seq=2048 ")
    assert [r["impl"] for r in rows] == ["flash", "chunked", "naive"]  # 2 ms, 3 ms, 4 ms
    assert [r["cells"][0]["text"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["cells"][-1]["text"] == "1.00×"
    assert rows[2]["cells"][-1]["text"] == "2.00×"


def test_higher_is_better_ranks_largest_first(site: Path) -> None:
    p = parse(site / f"run-{RUN}.html")
    decode = [rows for tid, rows in p.tables.items() if "decode" in tid]
    assert len(decode) == 1
    assert [r["impl"] for r in decode[0]] == ["fast", "medium", "slow"]


def test_failed_impl_is_listed_unranked_with_error(site: Path) -> None:
    rows = table_for(parse(site / f"run-{RUN}.html"), "seq=4096 ")
    assert [r["impl"] for r in rows] == ["flash", "chunked", "naive"]
    failed = rows[-1]
    assert "unranked" in failed["class"].split()
    assert failed["cells"][0]["text"] == "—"
    status = next(c for c in failed["cells"] if "status" in (c["attrs"].get("class") or ""))
    assert "failed" in status["text"] and FAIL_ERROR in status["text"]


def test_invalid_row_has_badge_and_is_not_ranked(site: Path) -> None:
    rows = table_for(parse(site / f"run-{RUN}.html"), "seq=1024 ")
    assert [r["impl"] for r in rows] == ["naive", "flash", "chunked"]
    invalid = rows[-1]
    assert "invalid" in invalid["class"].split()
    status = next(c for c in invalid["cells"] if "status" in (c["attrs"].get("class") or ""))
    assert "invalid" in status["text"] and "tolerance" in status["text"]


def test_missing_metric_shows_dash_and_reason(site: Path) -> None:
    rows = table_for(parse(site / f"run-{RUN}.html"), "seq=2048 ")
    energy = [c for c in rows[0]["cells"] if ENERGY_REASON in (c["attrs"].get("title") or "")]
    assert len(energy) == 1
    assert energy[0]["text"].strip() == "—"
    assert energy[0]["attrs"]["data-value"] == ""  # sorts last, never as 0
    assert energy[0]["footnote"]  # the reason is also listed as a footnote under the table


def test_number_cells_carry_provenance(site: Path) -> None:
    rows = table_for(parse(site / f"run-{RUN}.html"), "seq=2048 ")
    latency = rows[0]["cells"][2]
    assert latency["attrs"]["data-value"] == repr(2e-3)
    assert latency["text"].startswith("2.00 ms")
    assert "source: perf_counter_ns" in latency["attrs"]["title"] and "n=37" in latency["attrs"]["title"]
    assert "± 100 µs" in latency["text"]
    assert latency["footnote"] == "1"


def test_chart_div_present(site: Path) -> None:
    p = parse(site / f"run-{RUN}.html")
    assert p.chart_divs[0] == f"chart-{RUN}-{WORKLOAD}-1"
    html = (site / f"run-{RUN}.html").read_text(encoding="utf-8")
    assert "Only one seq value (128)" in html  # decode has a single sweep value: said, not drawn


def test_builds_are_byte_identical(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        build_site(make_records(), make_manifests(), tmp_path / name, METRIC_SPECS, WORKLOAD_INFO, BUILD_TIME,
                   devices=DEVICES)
        outs.append({p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*")
                     if p.is_file()})
    assert outs[0].keys() == outs[1].keys()
    assert outs[0] == outs[1]


def test_import_does_not_load_plotly() -> None:
    code = "import sys, reports; assert 'plotly' not in sys.modules, 'plotly imported'; print('ok')"
    root = Path(__file__).parents[1]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@pytest.mark.parametrize(("value", "unit", "text"), [
    (2.5e-7, "s", "250 ns"), (1.234e-3, "s", "1.23 ms"), (0.99996e-3, "s", "1.00 ms"), (12.0, "s", "12.0 s"),
    (512, "B", "512 B"), (3 * 2**20, "B", "3.00 MiB"), (1.5 * 2**30, "B", "1.50 GiB"),
    (0.0042, "J", "4.20 mJ"), (3.2e-7, "1", "3.20e-07"), (math.nan, "s", "—"), (None, "B", "—"),
])
def test_format_quantity(value: float | None, unit: str, text: str) -> None:
    assert format_quantity(value, unit) == text


# --- hardware model: leaderboard columns, roofline per device, residuals, modeled energy -------------------


def run_html(site: Path) -> str:
    return (site / f"run-{RUN}.html").read_text(encoding="utf-8")


def run_text(site: Path) -> str:
    """The run page with HTML entities decoded (autoescape writes ' as &#39;)."""
    return html_lib.unescape(run_html(site))


def test_roofline_fraction_cell(site: Path) -> None:
    cell = cell_of(parse(site / f"run-{RUN}.html"), "seq=2048 ", "flash", "model.roofline_fraction")
    assert cell["text"].strip() == "61%"
    assert cell["attrs"]["data-value"] == repr(0.61)
    title = cell["attrs"]["title"]
    assert "floor 1.22 ms" in title and "compute-bound" in title  # 0.61 × 2 ms
    assert "arithmetic intensity 512 FLOP/B" in title and "vs datasheet peaks: 49%" in title


def test_predicted_and_residual_cells(site: Path) -> None:
    p = parse(site / f"run-{RUN}.html")
    predicted = cell_of(p, "seq=2048 ", "naive", "model.predicted_latency_s")
    assert predicted["text"].strip() == format_quantity(4e-3 / 0.7, "s") == "5.71 ms"
    assert "compute-bound" in predicted["attrs"]["title"] and "5 launches" in predicted["attrs"]["title"]
    assert "expected traffic" in predicted["attrs"]["title"]
    assert predicted["footnote"]  # the model is named in a footnote, like any provenance
    assert cell_of(p, "seq=2048 ", "naive", "model.residual")["text"].strip() == "−30%"
    assert cell_of(p, "seq=2048 ", "flash", "model.residual")["text"].strip() == "+15%"


def test_missing_model_shows_dash_and_reason(site: Path) -> None:
    p = parse(site / f"run-{RUN}.html")
    for key in ("model.roofline_fraction", "model.predicted_latency_s", "model.residual"):
        no_calibration = cell_of(p, "seq=4096 ", "chunked", key)
        assert no_calibration["text"].strip() == "—"
        assert no_calibration["attrs"]["title"] == "no calibration in this run"
        assert no_calibration["attrs"]["data-value"] == ""
        failed = cell_of(p, "seq=4096 ", "naive", key)
        assert failed["text"].strip() == "—" and "case failed" in failed["attrs"]["title"]


def test_roofline_chart_per_device(site: Path) -> None:
    html = run_html(site)
    divs = parse(site / f"run-{RUN}.html").chart_divs
    assert f"roofline-{RUN}-{GPU}" in divs and f"roofline-{RUN}-{CPU_MODEL}" in divs
    traces = figure_data(html, f"roofline-{RUN}-{GPU}")
    lines = {t["name"].split(" (")[0]: t for t in traces if t["mode"] == "lines"}
    assert set(lines) == {"calibrated · float32", "datasheet · float32"}  # only dtypes present among the cases
    assert lines["calibrated · float32"]["line"]["dash"] == "solid"
    assert lines["datasheet · float32"]["line"]["dash"] == "dash"
    cal = lines["calibrated · float32"]
    assert all(math.isclose(y, min(51e12, x * 2.9e12)) for x, y in zip(cal["x"], cal["y"], strict=True))
    assert 51e12 / 2.9e12 in cal["x"]  # the ridge is a corner of the line
    points = [t for t in traces if t["mode"] == "markers"]
    assert sorted(t["name"] for t in points) == ["chunked", "flash", "naive"]
    xs = sorted(x for t in points for x in t["x"])
    assert xs == [256.0] * 3 + [512.0] * 3 + [1024.0]  # arithmetic intensity = seq / 4 here
    flash = next(t for t in points if t["name"] == "flash")
    assert any("61%" in c[2] and "attention_prefill/flash" in c[0] for c in flash["customdata"])
    assert "Points near the lines run at the machine's ceiling" in run_text(site)
    cpu = [t for t in figure_data(html, f"roofline-{RUN}-{CPU_MODEL}") if t["mode"] == "lines"]
    assert [t["name"].split(" (")[0] for t in cpu] == ["calibrated · float32"]  # no datasheet: no dashed line


def residual_rows(site: Path) -> dict[str, list[str]]:
    html = run_html(site)
    body = html[html.index(f'id="residuals-{RUN}"'):]
    body = body[:body.index("</table>")]
    rows = {}
    for tr in re.findall(r"<tr class=\"(?:overall|impl)\".*?</tr>", body, flags=re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?</td>", tr, flags=re.S)]
        rows[f"{cells[0]}/{cells[1]}"] = cells[2:]
    return rows


def test_residual_table(site: Path) -> None:
    rows = residual_rows(site)
    # hand-computed: |residual| over the 7 ok attention cases is .05 .05 .10 .15 .30 .45 .50
    assert list(rows) == [f"{WORKLOAD}/all implementations", f"{WORKLOAD}/flash", f"{WORKLOAD}/naive",
                          f"{WORKLOAD}/chunked"]  # overall first, then by median |residual|
    assert rows[f"{WORKLOAD}/all implementations"] == ["7", "15%", "+50%", "45%"]
    assert rows[f"{WORKLOAD}/naive"] == ["2", "20%", "−30%", "25%"]
    assert rows[f"{WORKLOAD}/chunked"] == ["2", "25%", "+45%", "43%"]
    assert rows[f"{WORKLOAD}/flash"] == ["3", "15%", "+50%", "61%"]
    html = run_html(site)
    assert "Residual = measured latency ÷ the calibrated roofline" in html
    assert f'id="prediction-{RUN}"' in html  # the measured-vs-predicted scatter
    diagonal = figure_data(html, f"prediction-{RUN}")[0]
    assert diagonal["name"] == "measured = predicted" and diagonal["x"] == diagonal["y"]


def test_modeled_energy_is_marked_and_never_ranked_silently(site: Path) -> None:
    p = parse(site / f"run-{RUN}.html")
    modeled = cell_of(p, "seq=2048 ", "chunked", "energy_j")
    assert modeled["text"].strip() == "≈ 4.20 mJ" and "modeled" in modeled["attrs"]["class"]
    assert "source: modeled" in modeled["attrs"]["title"]
    measured = cell_of(p, "seq=2048 ", "naive", "energy_j")
    assert measured["text"].strip() == "5.00 mJ" and "hardware model predicts 4.00 mJ" in measured["attrs"]["title"]
    html = run_html(site)
    assert "modeled by the hardware model (no counter), not measured" in html  # footnote
    assert "Energy: 1 of 2 values are modeled (≈, hardware model), the rest measured" in html


def test_build_without_devices_still_works(tmp_path: Path) -> None:
    old = make_records()
    old = old.drop(columns=[c for c in old.columns if c.startswith("model.")
                            and c not in ("model.flops", "model.bytes", "model.footprint_bytes")])
    build_site(old, make_manifests(), tmp_path / "old", METRIC_SPECS, WORKLOAD_INFO, BUILD_TIME)
    page = tmp_path / "old" / f"run-{RUN}.html"
    p = parse(page)
    assert "model.roofline_fraction" not in p.keys[table_id(p, "seq=2048 ")]  # no model: no empty columns
    assert "No hardware model for this run (run with calibration)." in page.read_text(encoding="utf-8")
    # model columns but no devices: the roofline still shows the points, and says there are no ceilings
    build_site(make_records(), make_manifests(), tmp_path / "nodev", METRIC_SPECS, WORKLOAD_INFO, BUILD_TIME)
    html = (tmp_path / "nodev" / f"run-{RUN}.html").read_text(encoding="utf-8")
    traces = figure_data(html, f"roofline-{RUN}-{GPU}")
    assert traces and all(t["mode"] == "markers" for t in traces)
    assert "No ceilings known for this device: points only." in html


@pytest.mark.parametrize(("fraction", "text", "signed"), [
    (0.61, "61%", "+61%"), (0.061, "6.1%", "+6.1%"), (0.0045, "0.45%", "+0.45%"), (-0.3, "-30%", "−30%"),
    (0.0, "0%", "+0%"), (math.nan, "—", "—"),
])
def test_format_percent(fraction: float, text: str, signed: str) -> None:
    from reports.format import format_percent, format_signed_percent

    assert format_percent(fraction) == text
    assert format_signed_percent(fraction) == signed
