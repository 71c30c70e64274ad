"""The comparison as one self-contained HTML page that opens from disk: the table, the figure inlined, the
folders the runs came from."""

from __future__ import annotations

import base64
import html

from runner.report.table import METRICS, Metric, Row, right_aligned

REPORT_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
img { max-width: 100%; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def render_html(
    headers: list[str],
    table: list[list[str]],
    rows: list[Row],
    png: bytes,
    command: str,
    grouped: bool,
    metrics: list[Metric] = METRICS,
) -> str:
    """One page that opens from disk: the table, the figure inlined as base64, the folders it came from."""
    escape = html.escape
    right = right_aligned(headers, metrics)
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "\n".join(
        "<tr>"
        + "".join(
            f'<td class="number">{escape(cell)}</td>' if is_right else f"<td>{escape(cell)}</td>"
            for cell, is_right in zip(cells, right, strict=True)
        )
        + "</tr>"
        for cells in table
    )
    notes = "".join(f"<li>{escape(row.label)}: {escape(row.note)}</li>" for row in rows if row.note)
    folders = "".join(
        f"<li><code>{escape(member.label)}</code>: {escape(str(member.folder))}</li>"
        for row in rows
        for member in row.members
    )
    image = base64.b64encode(png).decode("ascii")
    caption = "mean ± sample standard deviation over seeds" if grouped else "one row per run"
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>runner: comparison</title><style>{REPORT_STYLE}</style></head>
<body>
<h1>Comparison of {sum(len(row.members) for row in rows)} runs</h1>
<p><code>{escape(command)}</code></p>
<p>Accuracies in percent; {caption}; only the settings that differ between runs are shown.</p>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Learning curves</h2>
<img alt="test accuracy and train loss against epoch" src="data:image/png;base64,{image}">
<h2>Run folders</h2>
<ul>{folders}</ul>
</body>
</html>
"""
