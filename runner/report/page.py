"""The comparison as one self-contained HTML page that opens from disk (no network at view time): the shared
settings listed once, the tables, the figures inlined, links to each run's folder.

``compare`` fills a ``Page``; ``render_page`` turns it into HTML, escaping every value a run folder gave.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field


@dataclass
class Cell:
    text: str  # as shown
    sort: float | str | None = None  # the value a click on the header sorts by; None sorts last
    href: str | None = None  # a link, relative to the page (a run's folder or file)


@dataclass
class Table:
    caption: str
    headers: list[str]
    numeric: list[bool]  # per column: right-aligned, and sorted as numbers
    rows: list[list[Cell]]


@dataclass
class Figure:
    caption: str
    png: bytes


@dataclass
class Page:
    title: str
    command: str
    shared: list[tuple[str, str]] = field(default_factory=list)  # settings every run has alike, listed once
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
img { max-width: 100%; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def render_cell(cell: Cell, numeric: bool) -> str:
    text = html.escape(cell.text)
    if cell.href:
        text = f'<a href="{html.escape(cell.href, quote=True)}">{text}</a>'
    return f'<td class="number">{text}</td>' if numeric else f"<td>{text}</td>"


def render_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for header in table.headers)
    body = "\n".join(
        "<tr>" + "".join(render_cell(cell, numeric) for cell, numeric in zip(row, table.numeric, strict=True)) + "</tr>"
        for row in table.rows
    )
    caption = html.escape(table.caption)
    return f"<h2>{caption}</h2>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def render_page(page: Page) -> str:
    escape = html.escape
    shared = "".join(f"<li><code>{escape(key)}={escape(value)}</code></li>" for key, value in page.shared)
    notes = "".join(f"<li>{escape(note)}</li>" for note in page.notes)
    figures = "".join(
        f'<h2>{escape(figure.caption)}</h2>\n<img alt="{escape(figure.caption, quote=True)}" '
        f'src="data:image/png;base64,{base64.b64encode(figure.png).decode("ascii")}">\n'
        for figure in page.figures
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{escape(page.title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(page.title)}</h1>
<p><code>{escape(page.command)}</code></p>
{f"<h2>Shared settings</h2><ul>{shared}</ul>" if shared else ""}
{"".join(render_table(table) for table in page.tables)}
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
{figures}
</body>
</html>
"""
