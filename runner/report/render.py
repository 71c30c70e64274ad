"""The table as text: aligned for a terminal, Markdown, CSV, the line that says which runs are shown, and the
notes under the table."""

from __future__ import annotations

import csv
import html
import io

from runner.report.runs import Selection
from runner.report.table import Row


def render_table(headers: list[str], table: list[list[str]], numeric: list[bool]) -> str:
    """An aligned plain-text table: numbers right-aligned, words left-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *table, strict=True)]

    def line(cells: list[str]) -> str:
        aligned = zip(cells, widths, numeric, strict=True)
        return "  ".join(cell.rjust(width) if number else cell.ljust(width) for cell, width, number in aligned).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in table)])


def markdown_cell(cell: str) -> str:
    """A cell as Markdown text: HTML in it (a setting from someone else's run folder) shows as text rather than
    running in a viewer, a ``|`` stays inside the cell and a line break does not end the row."""
    text = html.escape(cell, quote=False).replace("|", "\\|")
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def render_markdown(headers: list[str], table: list[list[str]], numeric: list[bool]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(markdown_cell(cell) for cell in cells) + " |"

    separator = "|" + "|".join("---:" if is_right else "---" for is_right in numeric) + "|"
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


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def listing(parts: list[str]) -> str:
    """["2 failed", "1 refused", "1 partial"] -> "2 failed, 1 refused and 1 partial"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def selection_line(selection: Selection, others: int, conditions: list[str]) -> str:
    """ "12 runs (3 not training runs skipped, 2 failed and 1 refused left out: --all shows them)"."""
    parts = []
    if others:
        parts.append(f"{others} not training run{'' if others == 1 else 's'} skipped")
    if selection.unmatched:
        parts.append(f"{selection.unmatched} not matching --where {' '.join(conditions)}")
    if selection.left_out:
        counts = [f"{count} {status}" for status, count in selection.left_out.most_common()]
        parts.append(f"{listing(counts)} left out: --all shows them")
    shown = plural(len(selection.records), "run")
    return f"{shown} ({', '.join(parts)})" if parts else shown


def row_notes(rows: list[Row]) -> list[str]:
    lines = [f"{row.label}: {row.note}" for row in rows if row.note and len(row.members) == 1]
    return lines + [row.note for row in rows if row.note and len(row.members) > 1]


def notes_text(notes: list[str]) -> str:
    return "Notes:\n" + "\n".join(f"  {note}" for note in notes) if notes else ""
