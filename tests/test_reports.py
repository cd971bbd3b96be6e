"""The static report: ranking, provenance, offline assets, determinism, lazy plotly."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from report_site import (
    BUILD_TIME,
    DEVICES,
    ENERGY_REASON,
    FAIL_ERROR,
    METRIC_SPECS,
    RUN,
    WORKLOAD,
    WORKLOAD_INFO,
    make_manifests,
    make_records,
    parse,
    table_for,
)

from reports import build_site
from reports.format import format_quantity


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
