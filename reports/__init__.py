"""Static HTML report for membench results: leaderboards with provenance, scaling charts, run metadata.

Import-light on purpose: nothing here imports plotly at import time, so the package loads on the GPU box.
"""

from reports.markdown import render_markdown
from reports.site import build_site

__all__ = ["build_site", "render_markdown"]
