"""Build the static HTML report site from records and manifests.

The site must open from a file:// URL on a machine with no network, so every asset (CSS, sort script,
plotly.js) is written next to the pages and referenced by relative path; output is byte-deterministic
for a fixed `build_time` so reports can be diffed and cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from reports.board_html import board_rows_html
from reports.cells import cell_html
from reports.charts import plotly_js
from reports.pages import Page, plan_pages

ASSET_DIR = "assets"
STATIC_FILES = ("style.css", "sort.js")


def make_env() -> jinja2.Environment:
    """Jinja environment over the package's templates, autoescaping everything, failing on typos."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["cell"] = cell_html
    env.globals["board_rows"] = board_rows_html
    return env


def root_prefix(page_path: str) -> str:
    """Relative path from a page back to the site root ('' at top level, '../' one folder down)."""
    return "../" * page_path.count("/")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def write_assets(out_dir: Path) -> None:
    """Copy the package's static files and plotly.js into `assets/`, once per site."""
    assets = out_dir / ASSET_DIR
    static = resources.files("reports") / "static"
    for name in STATIC_FILES:
        _write(assets / name, (static / name).read_text(encoding="utf-8"))
    js = plotly_js()
    if js is not None:
        _write(assets / "plotly.min.js", js)


def render_pages(pages: list[Page], out_dir: Path, build_time: str) -> None:
    """Render every page with the shared context (nav, build time, root prefix)."""
    env = make_env()
    nav = [{"path": p.path, "title": p.title} for p in pages if p.in_nav]
    has_plotly = (out_dir / ASSET_DIR / "plotly.min.js").exists()
    for page in pages:
        context: dict[str, Any] = {
            "page_path": page.path,
            "page_title": page.title,
            "root": root_prefix(page.path),
            "nav": nav,
            "build_time": build_time,
            "has_plotly": has_plotly,
            **page.context,
        }
        _write(out_dir / page.path, env.get_template(page.template).render(context))


def build_site(
    records: pd.DataFrame,
    manifests: dict[str, dict],
    out_dir: Path,
    metric_specs: dict[str, dict],
    workload_info: dict[str, dict],
    build_time: str | None = None,
    *,
    devices: dict[str, dict] | None = None,
    claims: list[dict] | None = None,
) -> Path:
    """Write the pages (index, runs, claims, workloads, runs) and the assets into `out_dir`; return the index.

    `devices` maps a device model name (the records' `model.device`) to its label and its datasheet and
    calibrated ceilings; it draws the roofline lines. Without it the hardware section shows points only.
    `claims` are the rows `harness.claims.Claim.evaluate` returns; they fill the claims page.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_time or datetime.now(timezone.utc).isoformat(timespec="seconds")
    pages = plan_pages(_plain_strings(records), _as_dict(manifests), _as_dict(metric_specs), _as_dict(workload_info),
                       _as_dict(devices), list(claims or []))
    write_assets(out_dir)
    render_pages(pages, out_dir, stamp)
    return out_dir / "index.html"


def _plain_strings(records: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed string columns as Python objects: the pages turn frames into row dicts many times, and
    iterating Arrow strings is the slow part of that."""
    strings = [c for c, dtype in records.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    return records.astype({c: object for c in strings}) if strings else records


def _as_dict(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """Inputs may be None or any mapping; keys are normalised to str for stable sorting."""
    return {str(k): v for k, v in (mapping or {}).items()}
