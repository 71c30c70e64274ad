"""Compare runs: one table from many output folders, their learning curves, and an HTML report.

    python -m runner.compare outputs/multirun/2025-01-31/12-00-00-000000
    python -m runner.compare outputs/runs/... outputs/multirun/... --group-seeds --sort val_acc
    python -m runner.compare outputs/multirun/... --plot curves.png --report outputs/report

Each PATH is a run folder or any folder above run folders (a sweep, a day, all of ``outputs/``). The table
shows only the settings that differ between the runs, then how each run went. It reads only the plain files
a run leaves (``summary.json`` and ``metrics.jsonl``), never a pickle and never a config's interpolations, so
folders from older code or other machines open safely, and it does not import torch, so it starts at once.
A half-written or garbled folder is listed with its status (``partial``, ``unreadable``), never a crash.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import math
import os
import re
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RUN_FILES = ("summary.json", "metrics.jsonl")
# A setting a run did not override shows this, so "lr=0.05" stands next to "lr=default" rather than a blank.
DEFAULT = "default"
UNKNOWN = "?"


@dataclass(frozen=True)
class Metric:
    key: str  # the name in summary.json
    header: str  # the name in the printed table
    kind: str  # percent | count | seconds | rate
    descending: bool  # the better value sorts first


METRICS = [
    Metric("test_acc", "test acc %", "percent", True),
    Metric("best_test_acc", "best test %", "percent", True),
    Metric("val_acc", "val acc %", "percent", True),
    Metric("epochs_completed", "epochs", "count", True),
    Metric("train_time_s", "train s", "seconds", False),
    Metric("images_per_s", "images/s", "rate", True),
    Metric("warnings", "warnings", "count", False),
]
# Other summary numbers that --sort accepts, though the table does not show them.
EXTRA_SORT_KEYS = {
    "test_loss": False,
    "train_loss": False,
    "val_loss": False,
    "train_acc": True,
    "wall_time_s": False,
    "params": False,
}


def extra_metric(key: str) -> Metric:
    """A further summary number shown as a column (``--metrics``): accuracies (higher is better) and gaps
    between them (lower is better) in percent, times in seconds, anything else to four digits."""
    if key.endswith("_acc"):
        return Metric(key, key.replace("_", " ") + " %", "percent", True)
    if key.endswith("_gap"):
        return Metric(key, key.replace("_", " ") + " %", "percent", False)
    return Metric(key, key.replace("_", " "), "seconds" if key.endswith("_s") else "number", False)


class CompareError(Exception):
    """A problem with the command line or the paths; printed without a traceback, exit code 2."""


@dataclass
class RunRecord:
    """What one folder tells about its run, however far it got."""

    folder: Path
    status: str
    metrics: dict[str, float | None]
    settings: dict[str, str] | None  # None: the folder does not say how the run was configured
    history: list[dict] = field(default_factory=list)
    note: str = ""
    label: str = ""


# --- Reading folders -----------------------------------------------------------------------------------


def natural_key(text: str) -> list:
    """Sort "job 2" before "job 10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def find_run_folders(paths: list[Path]) -> list[Path]:
    """Every folder at or below the given paths that holds a run's files (or a ``.hydra`` folder)."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise CompareError(f"{path}: no such file or folder.")
        if path.is_file():
            path = path.parent
        for folder, subfolders, files in os.walk(path):
            subfolders[:] = sorted((name for name in subfolders if not name.startswith(".")), key=natural_key)
            here = Path(folder)
            if any(name in files for name in RUN_FILES) or (here / ".hydra").is_dir():
                found.setdefault(here.resolve())
    return list(found)


def read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSON-lines file; a torn last line from a killed writer is skipped.

    The same rule as ``runner.record.read_jsonl``, kept here so that comparing runs does not import torch."""
    rows = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def number(value) -> float | None:
    """A finite number, or None for anything else an untrusted file may hold (null, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def history_metrics(history: list[dict]) -> dict[str, float | None]:
    """The summary's numbers as far as ``metrics.jsonl`` tells them, for a run that wrote no summary."""
    if not history:
        return {}
    tested = [number(row.get("test_acc")) for row in history]
    tested = [value for value in tested if value is not None]
    times = [number(row.get("epoch_time_s")) for row in history]
    rates = [number(row.get("images_per_s")) for row in history]
    timed = [(time, rate) for time, rate in zip(times, rates, strict=True) if time and rate is not None]
    total_time = sum(time for time in times if time is not None)
    last = history[-1]
    return {
        "test_acc": number(last.get("test_acc")),
        "best_test_acc": max(tested) if tested else None,
        "val_acc": number(last.get("val_acc")),
        "epochs_completed": number(last.get("epoch")) or float(len(history)),
        "train_time_s": total_time or None,
        "images_per_s": sum(time * rate for time, rate in timed) / sum(time for time, _ in timed) if timed else None,
        "test_loss": number(last.get("test_loss")),
        "train_loss": number(last.get("train_loss")),
        "train_acc": number(last.get("train_acc")),
        "val_loss": number(last.get("val_loss")),
    }


def override_key(text: str) -> str:
    """``+trainer.x@pkg=1`` -> ``trainer.x``: the config key a command-line override sets."""
    return text.split("=", 1)[0].lstrip("+~").split("@", 1)[0].strip()


def run_settings(summary: dict) -> dict[str, str] | None:
    """The option chosen in each config group, every other command-line override, and the seed."""
    choices = summary.get("choices")
    overrides = summary.get("overrides")
    if not isinstance(choices, dict) and not isinstance(overrides, list):
        return None
    choices = choices if isinstance(choices, dict) else {}
    settings: dict[str, str] = {}
    for text in overrides if isinstance(overrides, list) else []:
        if not isinstance(text, str) or "=" not in text:
            continue
        key = override_key(text)
        # Group selections are shown through their resolved choice; Hydra's own settings are not the run's.
        if key in choices or key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        settings[key] = text.split("=", 1)[1]
    for group, option in choices.items():
        settings[str(group)] = "none" if option is None else str(option)
    if summary.get("seed") is not None:
        settings["seed"] = str(summary["seed"])
    return settings


def load_run(folder: Path, extra: tuple[str, ...] = ()) -> RunRecord:
    """Read one run folder, whatever state it is in; ``extra``: further summary keys to read (from the last
    epoch's row of metrics.jsonl when the summary lacks them)."""
    history = read_jsonl(folder / "metrics.jsonl")
    summary: dict = {}
    note = ""
    summary_path = folder / "summary.json"
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
            if not isinstance(summary, dict):
                raise ValueError("not a JSON object")
            status = str(summary.get("status") or "unknown")
        except (OSError, UnicodeDecodeError, ValueError) as error:
            summary, status = {}, "unreadable"
            note = f"summary.json cannot be read ({error})"
    else:
        status = "partial"
        note = "no summary.json" + (f"; {len(history)} epochs in metrics.jsonl" if history else "")
    if status == "failed" and isinstance(summary.get("error"), str):
        lines = [line for line in summary["error"].strip().splitlines() if line.strip()]
        note = lines[-1].strip() if lines else ""

    from_history = history_metrics(history)
    metrics: dict[str, float | None] = {}
    for key in [metric.key for metric in METRICS] + list(EXTRA_SORT_KEYS):
        value = number(summary.get(key))
        metrics[key] = value if value is not None else from_history.get(key)
    for key in extra:
        value = number(summary.get(key))
        metrics[key] = value if value is not None or not history else number(history[-1].get(key))
    warnings = summary.get("warnings")
    metrics["warnings"] = float(len(warnings)) if isinstance(warnings, list) else (0.0 if summary else None)
    return RunRecord(folder, status, metrics, run_settings(summary), history, note)


def load_runs(paths: list[Path], extra: tuple[str, ...] = ()) -> list[RunRecord]:
    folders = find_run_folders(paths)
    if not folders:
        raise CompareError(f"No run folders (with summary.json or metrics.jsonl) under {', '.join(map(str, paths))}.")
    records = [load_run(folder, extra) for folder in folders]
    root = Path(os.path.commonpath(folders))
    for record in records:
        relative = record.folder.relative_to(root).as_posix()
        record.label = record.folder.name if relative == "." else relative
    return records


# --- Building the table --------------------------------------------------------------------------------


def differing_settings(settings: list[dict[str, str] | None]) -> list[str]:
    """The settings whose values are not the same in every run that records its settings.

    Group choices come first, then other overrides, then the seed, each in the order first seen."""
    known = [entry for entry in settings if entry is not None]
    keys: dict[str, None] = {}
    for entry in known:
        keys.update(dict.fromkeys(entry))
    differing = [key for key in keys if len({entry.get(key, DEFAULT) for entry in known}) > 1]
    return sorted(differing, key=lambda key: (key == "seed", "." in key))


def display_setting(record: RunRecord, key: str) -> str:
    return UNKNOWN if record.settings is None else record.settings.get(key, DEFAULT)


@dataclass
class Row:
    """One line of the table: a run, or with --group-seeds the runs that differ only by seed."""

    label: str
    settings: dict[str, str]
    status: str
    mean: dict[str, float | None]
    std: dict[str, float | None]
    members: list[RunRecord]
    note: str = ""


def single_rows(records: list[RunRecord], columns: list[str]) -> list[Row]:
    return [
        Row(
            label=record.label,
            settings={key: display_setting(record, key) for key in columns},
            status=record.status,
            mean=dict(record.metrics),
            std={},
            members=[record],
            note=record.note,
        )
        for record in records
    ]


def seed_groups(records: list[RunRecord], columns: list[str]) -> list[Row]:
    """Collapse runs whose settings match except for the seed: mean and sample standard deviation."""
    keyed: dict[tuple, list[RunRecord]] = {}
    shown = [key for key in columns if key != "seed"]
    for record in records:
        if record.settings is None:  # a folder that does not say how it was configured stays on its own
            key = ("folder", str(record.folder))
        else:
            key = tuple(display_setting(record, column) for column in shown)
        keyed.setdefault(key, []).append(record)
    rows = []
    for members in keyed.values():
        counts = Counter(member.status for member in members)
        status = members[0].status if len(counts) == 1 else ", ".join(f"{n} {name}" for name, n in counts.items())
        mean, std = {}, {}
        for key in members[0].metrics:
            values = [member.metrics[key] for member in members if member.metrics.get(key) is not None]
            mean[key] = statistics.fmean(values) if values else None
            std[key] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(
            Row(
                label=members[0].label if len(members) == 1 else f"{len(members)} runs",
                settings={key: display_setting(members[0], key) for key in shown},
                status=status,
                mean=mean,
                std=std,
                members=members,
                note=members[0].note
                if len(members) == 1
                else "; ".join(f"{member.label}: {member.note}" for member in members if member.note),
            )
        )
    return rows


def sort_rows(rows: list[Row], key: str, metrics: list[Metric] = METRICS) -> list[Row]:
    """Best first for a metric (highest accuracy, lowest loss or time); rows missing it go last."""
    if key == "run":
        return sorted(rows, key=lambda row: natural_key(row.label))
    if key in {metric.key for metric in metrics} | set(EXTRA_SORT_KEYS):
        descending = next((metric.descending for metric in metrics if metric.key == key), EXTRA_SORT_KEYS.get(key))
        present = [row for row in rows if row.mean.get(key) is not None]
        missing = [row for row in rows if row.mean.get(key) is None]
        return sorted(present, key=lambda row: row.mean[key], reverse=descending) + missing
    return sorted(rows, key=lambda row: natural_key(row.settings.get(key, "")))


def sort_choices(records: list[RunRecord], metrics: list[Metric] = METRICS) -> set[str]:
    keys = {"run"} | {metric.key for metric in metrics} | set(EXTRA_SORT_KEYS)
    for record in records:
        keys.update(record.settings or {})
    return keys


# --- Output formats ------------------------------------------------------------------------------------


def format_value(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "percent":
        return f"{100 * value:.2f}"
    if kind == "seconds":
        return f"{value:.1f}"
    if kind == "rate":
        return f"{value:.0f}"
    if kind == "number":
        return f"{value:.4g}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def short_setting(value: str) -> str:
    """A long decimal (a sampled learning rate) to four significant digits; anything else as it is."""
    if len(value) > 8 and re.fullmatch(r"-?\d*\.\d+(e-?\d+)?|-?\d+e-?\d+", value):
        return f"{float(value):.4g}"
    return value


def display_cells(
    rows: list[Row], columns: list[str], grouped: bool, metrics: list[Metric] = METRICS
) -> tuple[list[str], list[list[str]]]:
    """Headers and text cells as a person reads them: accuracies in percent, mean ± std when grouped."""
    headers = ["runs" if grouped else "run", *columns, "status", *(metric.header for metric in metrics)]
    table = []
    for row in rows:
        settings = [short_setting(row.settings[key]) for key in columns]
        cells = [str(len(row.members)) if grouped else row.label, *settings, row.status]
        for metric in metrics:
            text = format_value(row.mean.get(metric.key), metric.kind)
            spread = row.std.get(metric.key)
            if spread is not None and metric.kind != "count":
                text += " ± " + format_value(spread, metric.kind)
            cells.append(text)
        table.append(cells)
    return headers, table


def right_aligned(headers: list[str], metrics: list[Metric] = METRICS) -> list[bool]:
    """Numbers (the metrics' columns) right-aligned so their digits line up; names and settings left-aligned."""
    numeric = {metric.header for metric in metrics} | {"runs"}
    return [header in numeric for header in headers]


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


def raw_rows(rows: list[Row], columns: list[str], grouped: bool, metrics: list[Metric] = METRICS) -> list[dict]:
    """Machine-readable rows for csv and json: accuracies stay fractions in [0, 1], as in the run files."""
    result = []
    for row in rows:
        entry: dict = {"run": row.label} if not grouped else {"runs": len(row.members)}
        entry.update({key: row.settings[key] for key in columns})
        entry["status"] = row.status
        for metric in metrics:
            entry[metric.key] = row.mean.get(metric.key)
            if grouped:
                entry[f"{metric.key}_std"] = row.std.get(metric.key)
        entry["folders"] = [str(member.folder) for member in row.members] if grouped else str(row.members[0].folder)
        entry["note"] = row.note
        result.append(entry)
    return result


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


# --- Figures and the report ----------------------------------------------------------------------------


def curve_label(row: Row, columns: list[str]) -> str:
    shown = [f"{key}={row.settings[key]}" for key in columns if key in row.settings]
    label = ", ".join(shown) or row.label
    if len(row.members) > 1:
        label += f" (mean of {len(row.members)})"
    return label if row.status == "completed" else f"{label} ({row.status})"


def mean_curve(members: list[RunRecord], key: str) -> tuple[list[float], list[float], list[float]]:
    """Per epoch, the mean and sample standard deviation over the members that reached that epoch."""
    by_epoch: dict[float, list[float]] = {}
    for member in members:
        for position, entry in enumerate(member.history):
            epoch = number(entry.get("epoch")) or float(position + 1)
            value = number(entry.get(key))
            if value is not None:
                by_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(by_epoch)
    means = [statistics.fmean(by_epoch[epoch]) for epoch in epochs]
    spreads = [statistics.stdev(by_epoch[epoch]) if len(by_epoch[epoch]) > 1 else 0.0 for epoch in epochs]
    return epochs, means, spreads


def figure_png(rows: list[Row], columns: list[str]) -> bytes:
    """Test accuracy and train loss against epoch, one line per row (mean and ± std band for seed groups)."""
    from matplotlib.figure import Figure  # the object interface: no pyplot state, no display backend needed
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    accuracy_axis, loss_axis = figure.subplots(1, 2)
    plotted = 0
    for row in rows:
        style = "-" if row.status == "completed" else "--"
        color = None
        for axis, key, scale in ((accuracy_axis, "test_acc", 100.0), (loss_axis, "train_loss", 1.0)):
            epochs, means, spreads = mean_curve(row.members, key)
            if not epochs:
                continue
            (line,) = axis.plot(
                epochs,
                [scale * value for value in means],
                style,
                marker="o" if len(epochs) < 15 else None,
                markersize=3,
                color=color,
                label=curve_label(row, columns) if axis is accuracy_axis else None,
            )
            color = line.get_color()
            if any(spreads):
                low = [scale * (mean - spread) for mean, spread in zip(means, spreads, strict=True)]
                high = [scale * (mean + spread) for mean, spread in zip(means, spreads, strict=True)]
                axis.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
            plotted += 1
    accuracy_axis.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    loss_axis.set(xlabel="epoch", ylabel="train loss", title="Train loss")
    for axis in (accuracy_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if plotted:
        handles, labels = accuracy_axis.get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside right upper", fontsize="small", frameon=False)
    else:
        figure.suptitle("No run has a metrics.jsonl with any epoch yet.")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


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


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --- Command line --------------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runner.compare",
        description="Compare runs: a table of the settings that differ and how each run went.",
        epilog="Accuracies print in percent in table and markdown, and stay fractions in [0, 1] in csv and json.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="run folders or folders above them")
    parser.add_argument(
        "--sort",
        default="best_test_acc",
        metavar="KEY",
        help="a metric (best_test_acc, test_acc, val_acc, test_loss, train_time_s, images_per_s, ...; best first), "
        "a setting (activation, optimizer.lr, ...) or 'run' (default: best_test_acc)",
    )
    parser.add_argument(
        "--metrics",
        default="",
        metavar="KEY,...",
        help="further summary numbers to show as columns, comma-separated (train_acc, ema_test_acc, "
        "snapshot_ensemble_acc, train_test_gap, train_loss, wall_time_s, ...)",
    )
    parser.add_argument("--group-seeds", action="store_true", help="one row of mean ± std per setting, over seeds")
    parser.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="save the learning curves overlaid")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write DIR/index.html with the table and figures")
    return parser.parse_args(argv)


def compare(arguments: argparse.Namespace) -> str:
    """Everything ``main`` does, returning the text to print."""
    extra = tuple(key for key in arguments.metrics.replace(" ", "").split(",") if key)
    metrics = METRICS + [extra_metric(key) for key in extra if key not in {metric.key for metric in METRICS}]
    records = load_runs(arguments.paths, extra)
    if arguments.sort not in sort_choices(records, metrics):
        raise CompareError(
            f"--sort {arguments.sort}: not a metric or setting of these runs. "
            f"Try one of: {', '.join(sorted(sort_choices(records, metrics)))}."
        )
    columns = differing_settings([record.settings for record in records])
    if arguments.group_seeds:
        columns_shown = [key for key in columns if key != "seed"]
        rows = seed_groups(records, columns)
    else:
        columns_shown = columns
        rows = single_rows(records, columns)
    rows = sort_rows(sort_rows(rows, "run"), arguments.sort, metrics)  # ties keep folder order
    # For people, a column no run has a value for (val acc without a validation split) says nothing; csv and
    # json keep every column so that scripts see the same fields whatever the runs.
    filled = [metric for metric in metrics if any(row.mean.get(metric.key) is not None for row in rows)]
    headers, table = display_cells(rows, columns_shown, arguments.group_seeds, filled)

    png = figure_png(rows, columns_shown) if arguments.plot or arguments.report else b""
    if arguments.plot:
        write_bytes(arguments.plot, png)
    if arguments.report:
        command = "python -m runner.compare " + " ".join(sys.argv[1:] if sys.argv[1:] else map(str, arguments.paths))
        page = render_html(headers, table, rows, png, command, arguments.group_seeds, filled)
        write_bytes(arguments.report / "curves.png", png)
        write_bytes(arguments.report / "index.html", page.encode("utf-8"))

    if arguments.format == "json":
        return json.dumps(raw_rows(rows, columns_shown, arguments.group_seeds, metrics), indent=2)
    if arguments.format == "csv":
        return render_csv(raw_rows(rows, columns_shown, arguments.group_seeds, metrics)).rstrip("\n")
    if arguments.format == "markdown":
        return render_markdown(headers, table, filled)
    caption = "mean ± sample std over seeds; " if arguments.group_seeds else ""
    text = f"{len(records)} runs; {caption}accuracies in percent\n\n" + render_table(headers, table, filled)
    notes = notes_text(rows)
    return text + ("\n\n" + notes if notes else "")


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        output = compare(arguments)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(output)
    if arguments.plot:
        print(f"Learning curves: {arguments.plot}", file=sys.stderr)
    if arguments.report:
        print(f"Report: {arguments.report / 'index.html'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
