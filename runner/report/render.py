"""The table as text: aligned for a terminal, Markdown, CSV, and the notes under it."""

from __future__ import annotations

import csv
import html
import io

from runner.report.table import METRICS, Metric, Row, right_aligned


def render_table(headers: list[str], table: list[list[str]], metrics: list[Metric] = METRICS) -> str:
    """An aligned plain-text table: numbers right-aligned, words left-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *table, strict=True)]
    right = right_aligned(headers, metrics)

    def line(cells: list[str]) -> str:
        aligned = zip(cells, widths, right, strict=True)
        return "  ".join(cell.rjust(width) if number else cell.ljust(width) for cell, width, number in aligned).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in table)])


def markdown_cell(cell: str) -> str:
    """A cell as Markdown text: HTML in it (a setting from someone else's run folder) shows as text rather than
    running in a viewer, a ``|`` stays inside the cell and a line break does not end the row."""
    text = html.escape(cell, quote=False).replace("|", "\\|")
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def render_markdown(headers: list[str], table: list[list[str]], metrics: list[Metric] = METRICS) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(markdown_cell(cell) for cell in cells) + " |"

    right = right_aligned(headers, metrics)
    separator = "|" + "|".join("---:" if is_right else "---" for is_right in right) + "|"
    return "\n".join([line(headers), separator, *(line(row) for row in table)])


# What makes a spreadsheet read a cell as a formula, or strip its way to one (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A value as a CSV cell. Text that a spreadsheet would run as a formula gets a leading ``'``, which makes
    it text. Only text: numbers (a negative gap, say) reach here as ``int`` or ``float`` and stay numbers."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = " ".join(str(item) for item in value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def render_csv(entries: list[dict]) -> str:
    buffer = io.StringIO()
    if entries:
        # The header too: a column is named after a setting, and a setting's name comes from a run folder.
        columns = list(entries[0])
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([csv_cell(column) for column in columns])
        for entry in entries:
            writer.writerow([csv_cell(entry.get(column)) for column in columns])
    return buffer.getvalue()


def notes_text(rows: list[Row]) -> str:
    lines = [f"  {row.label}: {row.note}" for row in rows if row.note and len(row.members) == 1]
    lines += [f"  {row.note}" for row in rows if row.note and len(row.members) > 1]
    return "Notes:\n" + "\n".join(lines) if lines else ""
