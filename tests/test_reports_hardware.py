"""The report's hardware-model parts: % of roofline, predictions, residuals, roofline charts."""

from __future__ import annotations

import html as html_lib
import math
import re
from pathlib import Path

import pytest
from report_site import (
    BUILD_TIME,
    CPU_MODEL,
    GPU,
    METRIC_SPECS,
    RUN,
    WORKLOAD,
    WORKLOAD_INFO,
    cell_of,
    figure_data,
    make_manifests,
    make_records,
    parse,
    table_id,
)

from reports import build_site
from reports.format import format_quantity


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
