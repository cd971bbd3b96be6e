"""The body rows of a leaderboard table, written in Python rather than in a Jinja loop.

A 10,000-record report renders over 100,000 cells twice (run pages and workload pages); a template loop
with a macro call per cell took most of the build. The markup is the same as the template's would be,
every string escaped.
"""

from __future__ import annotations

from markupsafe import Markup

from reports.cells import cell_html, escape
from reports.leaderboard import Row, Table


def badge_html(status: str, title: str = "") -> str:
    attr = f' title="{escape(title)}"' if title else ""
    return f'<span class="badge badge-{escape(status)}"{attr}>{escape(status)}</span>'


def status_cell_html(row: Row) -> str:
    """Status badge (its error on hover), an invalid badge with the reasons, and both spelled out below."""
    reasons = "; ".join(row.reasons)
    value = escape(row.cells["status"].value)
    out = [f'<td class="status" data-value="{value}">', badge_html(row.status, row.error or "")]
    if not row.valid:
        out.append(" " + badge_html("invalid", reasons))
    if row.error:
        out.append(f'<div class="error">{escape(row.error)}</div>')
    if not row.valid and row.reasons:
        out.append(f'<div class="reasons">{escape(reasons)}</div>')
    out.append("</td>")
    return "".join(out)


def board_rows_html(table: Table, board_id: str) -> Markup:
    """Every `<tr>` of one leaderboard's body."""
    lines = []
    for row in table.rows:
        css = f"status-{row.status}" + (" ranked" if row.rank is not None else " unranked")
        css += "" if row.valid else " invalid"
        lines.append(f'<tr class="{escape(css)}" data-impl="{escape(row.impl)}">')
        for col in table.columns:
            if col.key == "status":
                lines.append(status_cell_html(row))
            else:
                lines.append(cell_html(row.cells[col.key], board_id, col.numeric))
        lines.append("</tr>")
    return Markup("\n".join(lines) + "\n")
