"""The site's pages beyond one run: claims, per-workload (cross-device) leaderboards, runs, escaping, markdown."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from report_site import (
    BUILD_TIME,
    DEVICES,
    FAIL_ERROR,
    METRIC_SPECS,
    RUN,
    WORKLOAD,
    WORKLOAD_INFO,
    figure_data,
    make_manifests,
    make_records,
    parse,
    table_for,
)

from reports import build_site, render_markdown
from reports.pareto import pareto_front, pick_axes

GPU_RUN = "run-gpu"
GPU_NAME = "NVIDIA H100 80GB HBM3"
CLAIMS = [
    {"id": "C-memory", "paper": "Rabe & Staats 2021", "statement": "naive attention_prefill needs 59x the memory",
     "expected": 59.0, "comparison": ">=", "tolerance": 0.0, "unit": "x", "how": "peak memory ratio",
     "verdict": "not reproduced", "measured": 33.94, "spread": 0.031, "device": "cuda", "detail": "at seq 16384",
     "cases": [f"long_context/{WORKLOAD}/flash[seq=1024,heads=4,head_dim=64,dtype=float32,causal=False,batch=1]@cpu"]},
    {"id": "C-model", "paper": "Duplex", "statement": "GQA decode is 4 FLOP/B", "expected": 4.0,
     "comparison": "within", "tolerance": 0.05, "unit": "FLOP/B", "how": "cost model", "verdict": "reproduced",
     "measured": 3.998, "spread": None, "device": "model", "detail": "modeled"},
    {"id": "C-none", "paper": "KIVI", "statement": "2 bits per element", "expected": 2.0, "comparison": "within",
     "tolerance": 0.1, "unit": "bit", "how": "kv_compression/kivi", "verdict": "not measurable here",
     "detail": "no record in these runs measures it"},
]


def gpu_copy(records: pd.DataFrame) -> pd.DataFrame:
    """The same attention cases measured again by a second run on a GPU machine, 20x faster."""
    gpu = records[records["workload"] == WORKLOAD].copy()
    gpu["run"], gpu["device"] = GPU_RUN, "cuda"
    gpu["case"] = gpu["case"].str.replace("@cpu", "@cuda", regex=False)
    gpu["latency_s"] = gpu["latency_s"] / 20
    return gpu


def manifests_with_gpu() -> dict[str, dict]:
    manifests = make_manifests()
    gpu = dict(manifests[RUN], run=GPU_RUN, started_at="2025-01-02T00:00:00Z")
    gpu["environment"] = dict(gpu["environment"], gpu={"name": GPU_NAME, "driver": "580", "max_sm_clock_mhz": 1980})
    gpu["calibration"] = {"cuda": {"mode": "full", "copy_bytes_per_s": 2.99e12, "measured_at": "2025-01-02T00:00Z",
                                   "matmul_flops_per_s": {"bfloat16": 7.8e14}}}
    return {**manifests, GPU_RUN: gpu}


@pytest.fixture(scope="module")
def multi_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi")
    records = pd.concat([make_records(), gpu_copy(make_records())], ignore_index=True)
    build_site(records, manifests_with_gpu(), out, METRIC_SPECS, WORKLOAD_INFO, BUILD_TIME, devices=DEVICES,
               claims=CLAIMS)
    return out


def test_site_has_every_page(multi_site: Path) -> None:
    names = {p.name for p in multi_site.glob("*.html")}
    assert names == {"index.html", "runs.html", "claims.html", f"workload-{WORKLOAD}.html", "workload-decode.html",
                     f"run-{RUN}.html", f"run-{GPU_RUN}.html"}
    assert [p.name for p in multi_site.rglob("plotly*.js")] == ["plotly.min.js"]  # written once, offline


def test_claims_page_lists_every_claim_with_verdict_and_links(multi_site: Path) -> None:
    html = (multi_site / "claims.html").read_text(encoding="utf-8")
    rows = dict(re.findall(r'<tr id="claim-([^"]+)">(.*?)</tr>', html, flags=re.S))
    assert list(rows) == ["C-memory", "C-model", "C-none"]
    assert "verdict-not-reproduced" in rows["C-memory"] and "33.94 x" in rows["C-memory"]
    assert "± 3.1%" in rows["C-memory"] and "&gt;= 59 x" in rows["C-memory"]
    assert "4 FLOP/B ± 5%" in rows["C-model"] and "verdict-reproduced" in rows["C-model"]
    assert "verdict-unmeasurable" in rows["C-none"] and "no record in these runs measures it" in rows["C-none"]
    # linked to the workload page it names and to its exact case's leaderboard
    assert f'href="workload-{WORKLOAD}.html"' in rows["C-memory"]
    target = re.search(rf'href="(workload-{WORKLOAD}\.html#[^"]+)"', rows["C-memory"].split("</a>", 1)[1])
    assert target is not None
    anchor = target.group(1).split("#")[1]
    assert f'id="{anchor}"' in (multi_site / f"workload-{WORKLOAD}.html").read_text(encoding="utf-8")
    index = (multi_site / "index.html").read_text(encoding="utf-8")
    assert "reproduced</span>&nbsp;1" in index and "C-none" not in index.split("Leaderboards by family")[0]


def test_workload_page_has_cross_device_table_and_per_machine_boards(multi_site: Path) -> None:
    path = multi_site / f"workload-{WORKLOAD}.html"
    html = path.read_text(encoding="utf-8")
    assert "Across machines" in html
    assert "cpu · Test CPU 9000</th>" in html and f"cuda · {GPU_NAME}</th>" in html
    p = parse(path)
    cpu = table_for(p, "seq=2048 · heads=4 · head_dim=64 · dtype=float32 · causal=False · batch=1 @ cpu")
    gpu = table_for(p, f"seq=2048 · heads=4 · head_dim=64 · dtype=float32 · causal=False · batch=1 @ cuda · {GPU_NAME}")
    assert [r["impl"] for r in cpu] == [r["impl"] for r in gpu] == ["flash", "chunked", "naive"]
    assert gpu[0]["cells"][2]["text"].startswith("100 µs")  # 2 ms / 20, with its provenance beside it
    assert "source: perf_counter_ns" in gpu[0]["cells"][2]["attrs"]["title"]
    cross = re.search(r'<div class="board cross" id="cross-attention_prefill-2">(.*?)</table>', html, re.S)
    assert cross and "seq=2048" in cross.group(1)
    flash = re.search(r'<tr data-impl="flash">(.*?)</tr>', cross.group(1), re.S).group(1)
    assert re.findall(r'data-value="([^"]*)"', flash)[1:] == [repr(2e-3), repr(1e-4)]


def test_newest_run_wins_for_a_case_measured_twice(tmp_path: Path) -> None:
    older = make_records()
    newer = make_records()
    newer["run"] = "run-b"
    newer["latency_s"] = newer["latency_s"] * 2
    manifests = make_manifests()
    manifests["run-b"] = dict(manifests[RUN], run="run-b", started_at="2025-02-01T00:00:00Z")
    build_site(pd.concat([older, newer], ignore_index=True), manifests, tmp_path, METRIC_SPECS, WORKLOAD_INFO,
               BUILD_TIME)
    path = tmp_path / f"workload-{WORKLOAD}.html"
    rows = table_for(parse(path), "seq=2048")
    assert [r["impl"] for r in rows] == ["flash", "chunked", "naive"]  # one row each, not two
    assert rows[0]["cells"][2]["text"].startswith("4.00 ms")  # the newer run's doubled latency
    assert "9 older records" in path.read_text(encoding="utf-8")


def test_runs_page_puts_manifests_side_by_side(multi_site: Path) -> None:
    html = (multi_site / "runs.html").read_text(encoding="utf-8")
    header = re.search(r"<thead>(.*?)</thead>", html, re.S).group(1)
    assert header.index(GPU_RUN) < header.index(RUN + "<")  # newest first
    assert re.search(r"<tr class=\"same\"><th>python</th><td>3.11.9</td><td>3.11.9</td></tr>", html)
    assert "calibration cuda</th><td>full · copy 2.99 TB/s · bfloat16 780 TFLOP/s" in html
    assert "GPU max_sm_clock_mhz</th>" in html and "package torch</th>" in html


HOSTILE = "<script>alert(1)</script>"


def test_every_string_is_escaped(tmp_path: Path) -> None:
    records = make_records()
    records.loc[0, "impl"] = HOSTILE
    records.loc[0, "case"] = f"long_context/{WORKLOAD}/{HOSTILE}"
    records.loc[4, "error"] = HOSTILE  # a failed case's error text
    records.loc[1, "latency_s__note"] = HOSTILE
    manifests = make_manifests()
    manifests[RUN]["suite"] = {"name": HOSTILE, "description": HOSTILE}
    manifests[RUN]["environment"]["packages"][HOSTILE] = HOSTILE
    info = {**WORKLOAD_INFO, WORKLOAD: dict(WORKLOAD_INFO[WORKLOAD], description=HOSTILE)}
    claims = [dict(CLAIMS[0], statement=HOSTILE, paper=HOSTILE, detail=HOSTILE)]
    build_site(records, manifests, tmp_path, METRIC_SPECS, info, BUILD_TIME, devices=DEVICES, claims=claims)
    pages = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.html")}
    for name, html in pages.items():
        assert "<script>alert" not in html, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[f"workload-{WORKLOAD}.html"]
    assert "&lt;script&gt;alert(1)" in pages["claims.html"] and "&lt;script&gt;alert(1)" in pages["runs.html"]
    # inside the chart JSON the name is escaped for plotly and '<' can never close the script
    traces = figure_data(pages[f"workload-{WORKLOAD}.html"], f"chart-all-{WORKLOAD}-1")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in {t["name"] for t in traces}
    assert "\\u003cb\\u003e" in pages[f"workload-{WORKLOAD}.html"]


def test_byte_identical_builds_and_fixable_timestamp(tmp_path: Path) -> None:
    records = pd.concat([make_records(), gpu_copy(make_records())], ignore_index=True)

    def build(name: str, stamp: str) -> dict[Path, bytes]:
        out = tmp_path / name
        build_site(records, manifests_with_gpu(), out, METRIC_SPECS, WORKLOAD_INFO, stamp, devices=DEVICES,
                   claims=CLAIMS)
        return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    a, b, c = build("a", BUILD_TIME), build("b", BUILD_TIME), build("c", "2030-05-05T05:05:05+00:00")
    assert a == b
    assert a.keys() == c.keys()
    for path in a:
        assert a[path].replace(BUILD_TIME.encode(), b"T") == c[path].replace(b"2030-05-05T05:05:05+00:00", b"T")


def test_markdown_summary_tops_each_board_and_lists_failures() -> None:
    records = pd.concat([make_records(), gpu_copy(make_records())], ignore_index=True)
    records.loc[records["impl"] == "fast", "impl"] = "pipe|<b>"  # decode's winner
    text = render_markdown(records, manifests_with_gpu(), METRIC_SPECS, WORKLOAD_INFO, CLAIMS)
    assert text.startswith("# membench summary\n") and text.endswith("\n")
    assert "## long_context" in text and f"### {WORKLOAD}" in text
    line = next(s for s in text.splitlines() if s.startswith("| seq=2048 @ cuda"))
    assert line.split(" | ")[1].startswith("**flash** 100 µs")
    assert "| **naive** |" not in text  # impls are bold inside places, statuses listed below
    failed = next(s for s in text.splitlines() if "**failed**" in s)
    assert "naive" in failed and FAIL_ERROR.split(":")[0] in failed
    invalid = next(s for s in text.splitlines() if "**invalid**" in s)
    assert "chunked" in invalid and "seq=1024" in invalid
    assert "| **pipe\\|&lt;b&gt;** 900 tok/s" in text and "<b>" not in text
    assert "| C-memory: naive attention_prefill needs 59x the memory | &gt;= 59 x | 33.94 x ± 3.1% |" in text


def test_pareto_front_and_axes() -> None:
    points = [(4.0, 0.10), (8.0, 0.02), (8.0, 0.05), (16.0, 0.03), (3.0, 0.4), (16.0, 0.001)]
    assert pareto_front(points, higher_is_better=False) == [(3.0, 0.4), (4.0, 0.10), (8.0, 0.02), (16.0, 0.001)]
    assert pareto_front([(1.0, 0.5), (2.0, 0.4), (3.0, 0.9)], higher_is_better=True) == [(1.0, 0.5), (3.0, 0.9)]
    df = pd.DataFrame({"quant.effective_bits": [4.1, 8.0], "quant.effective_bits__unit": ["bit", "bit"],
                       "quality.rel_l2_error": [0.1, 0.01], "quality.rel_l2_error__unit": ["1", "1"],
                       "quality.weight_rel_fro_error": [0.2, 0.02], "quality.weight_rel_fro_error__unit": ["1", "1"]})
    assert pick_axes(df) == ("quant.effective_bits", "quality.weight_rel_fro_error")
    assert pick_axes(df[["quality.rel_l2_error", "quality.rel_l2_error__unit"]]) is None


def test_pareto_chart_on_a_quality_size_workload(tmp_path: Path) -> None:
    rows = []
    for impl, bits in (("int8", 8.0), ("int4", 4.125), ("int3", 3.125), ("fp16", 16.0)):
        for layer in ("q", "k"):
            error = 2.0 ** -bits * (1.5 if layer == "k" else 1.0)
            rows.append({"run": RUN, "case": f"quantization/quant_error/{impl}[layer={layer}]@cpu",
                         "family": "quantization", "workload": "quant_error", "impl": impl, "device": "cpu",
                         "status": "ok", "error": None, "valid": True, "validity_reasons": [], "param.layer": layer,
                         "latency_s": 1e-3, "latency_s__unit": "s", "latency_s__source": "perf_counter_ns",
                         "quant.effective_bits": bits, "quant.effective_bits__unit": "bit",
                         "quant.effective_bits__source": "counted", "quality.weight_rel_fro_error": error,
                         "quality.weight_rel_fro_error__unit": "1", "quality.weight_rel_fro_error__source": "check"})
    info = {"quant_error": {"family": "quantization", "sweep_param": "layer", "primary_metric": "latency_s",
                            "params": ["layer"]}}
    build_site(pd.DataFrame(rows), make_manifests(), tmp_path, METRIC_SPECS, info, BUILD_TIME)
    html = (tmp_path / "workload-quant_error.html").read_text(encoding="utf-8")
    traces = figure_data(html, "pareto-all-quant_error")
    front = next(t for t in traces if t["name"] == "Pareto front")
    assert front["x"] == [3.125, 4.125, 8.0, 16.0]
    assert all(math.isclose(y, 2.0 ** -b) for y, b in zip(front["y"], front["x"], strict=True))
    assert "quality vs size" in html and "Pareto front (no other case has both less" in html
