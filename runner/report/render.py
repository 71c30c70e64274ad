"""The table as text: aligned for a terminal, Markdown, CSV, and the notes under it."""

from __future__ import annotations

import csv
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


def render_markdown(headers: list[str], table: list[list[str]], metrics: list[Metric] = METRICS) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    right = right_aligned(headers, metrics)
    separator = "|" + "|".join("---:" if is_right else "---" for is_right in right) + "|"
    return "\n".join([line(headers), separator, *(line(row) for row in table)])


def render_csv(entries: list[dict]) -> str:
    buffer = io.StringIO()
    if entries:
        writer = csv.DictWriter(buffer, fieldnames=list(entries[0]), lineterminator="\n")
        writer.writeheader()
        for entry in entries:
            writer.writerow(
                {
                    key: " ".join(value) if isinstance(value, list) else ("" if value is None else value)
                    for key, value in entry.items()
                }
            )
    return buffer.getvalue()


def notes_text(rows: list[Row]) -> str:
    lines = [f"  {row.label}: {row.note}" for row in rows if row.note and len(row.members) == 1]
    lines += [f"  {row.note}" for row in rows if row.note and len(row.members) > 1]
    return "Notes:\n" + "\n".join(lines) if lines else ""
