"""A minimal plotly figure as plain JSON: the few calls the report's charts use, without plotly.py.

plotly.graph_objects validates every property through deep copies; a report with hundreds of charts spent
most of its build time there (10,000 records took 25 s). The charts need only scatter traces, log axes, one
or two subplots and annotations, so this module builds the same figure dicts directly and emits one
`Plotly.newPlot` call per chart against the plotly.js file written once into the site's assets.
"""

from __future__ import annotations

import html
import importlib.util
import json
import math
from typing import Any

# plotly.py's "plotly_white" template, reduced to what the charts show.
AXIS_STYLE = {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "automargin": True,
              "ticks": ""}
LAYOUT_STYLE = {"paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
                "font": {"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 12,
                         "color": "#2a3f5f"},
                "hoverlabel": {"align": "left"}}
DEFAULT_CONFIG = {"displaylogo": False, "responsive": True}


def available() -> bool:
    """True when plotly (which ships plotly.min.js) is installed, without importing it."""
    return importlib.util.find_spec("plotly") is not None


class Trace(dict):
    """A trace dict whose keys read as attributes (`trace.x`), like plotly's objects; absent keys are None."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


def Scatter(**props: Any) -> Trace:  # noqa: N802 - mirrors plotly.graph_objects.Scatter
    return Trace(type="scatter", **props)


def _magic(props: dict[str, Any]) -> dict[str, Any]:
    """plotly's `title_text=...` shorthand to `title={"text": ...}`."""
    out = dict(props)
    if "title_text" in out:
        out["title"] = {"text": out.pop("title_text")}
    return out


class Figure:
    """Traces and a layout; `cols` > 1 lays out side-by-side subplots sharing one row."""

    def __init__(self, cols: int = 1, horizontal_spacing: float = 0.1) -> None:
        self.data: list[Trace] = []
        self.layout: dict[str, Any] = dict(LAYOUT_STYLE)
        width = (1.0 - horizontal_spacing * (cols - 1)) / cols
        for i in range(1, cols + 1):
            suffix = "" if i == 1 else str(i)
            start = (i - 1) * (width + horizontal_spacing)
            self.layout[f"xaxis{suffix}"] = {**AXIS_STYLE, "anchor": f"y{suffix}",
                                             "domain": [round(start, 6), round(min(start + width, 1.0), 6)]}
            self.layout[f"yaxis{suffix}"] = {**AXIS_STYLE, "anchor": f"x{suffix}"}
        self.cols = cols

    def _axes(self, letter: str, col: int | None) -> list[str]:
        if col is not None:
            return [f"{letter}axis{'' if col == 1 else col}"]
        return [k for k in self.layout if k.startswith(f"{letter}axis")]

    def add_trace(self, trace: Trace, row: int | None = None, col: int | None = None) -> None:
        suffix = "" if not col or col == 1 else str(col)
        trace.setdefault("xaxis", f"x{suffix}")
        trace.setdefault("yaxis", f"y{suffix}")
        self.data.append(trace)

    def update_xaxes(self, row: int | None = None, col: int | None = None, **props: Any) -> None:
        for axis in self._axes("x", col):
            self.layout[axis].update(_magic(props))

    def update_yaxes(self, row: int | None = None, col: int | None = None, **props: Any) -> None:
        for axis in self._axes("y", col):
            self.layout[axis].update(_magic(props))

    def update_layout(self, **props: Any) -> None:
        props.pop("template", None)  # the style above stands in for plotly.py's templates
        if isinstance(props.get("legend"), dict):
            props["legend"] = _magic(props["legend"])
        self.layout.update(props)

    def add_annotation(self, **props: Any) -> None:
        self.layout.setdefault("annotations", []).append(props)

    def to_html(self, div_id: str, config: dict[str, Any] | None = None) -> str:
        """A sized div and the script that draws into it; `<` is escaped so no string can end the script."""
        height = int(self.layout.get("height") or 450)
        data = [_escaped_trace(t) for t in self.data]
        layout = dict(self.layout)
        if isinstance(layout.get("title"), dict):
            layout["title"] = {**layout["title"], "text": text(str(layout["title"].get("text", "")))}
        payload = ", ".join(_js(v) for v in (div_id, data, layout, config or DEFAULT_CONFIG))
        return (f'<div id="{div_id}" class="plotly-graph-div" style="height:{height}px; width:100%;"></div>\n'
                f"<script>Plotly.newPlot({payload});</script>")


def text(value: str) -> str:
    """A record's string as plotly text: plotly reads a few HTML tags in labels, so '<' and '&' are escaped."""
    return html.escape(value, quote=False)


def _escaped_trace(trace: Trace) -> dict[str, Any]:
    """Names, hover data and labels come from records: escape them; hovertemplates are the report's markup."""
    out = dict(trace)
    if isinstance(out.get("name"), str):
        out["name"] = text(out["name"])
    for key in ("customdata", "text"):
        if isinstance(out.get(key), list):
            out[key] = [[text(v) if isinstance(v, str) else v for v in item] if isinstance(item, list)
                        else text(item) if isinstance(item, str) else item for item in out[key]]
    return out


def _js(value: Any) -> str:
    """JSON safe inside an HTML <script>: no '<', '>' or '&' survive as themselves."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_plain)
    except ValueError:  # a NaN or infinity: plotly reads null as a gap
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"), default=_plain)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """numpy scalars and similar: their Python value."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON-serialisable in a chart: {type(value).__name__}")
