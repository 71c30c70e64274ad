"""The comparison table: which settings differ between the runs, one row per run or per seed group, the
metrics each row shows, and their order."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass

from runner.files import natural_key
from runner.report.runs import RunRecord

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
        for metric in dict.fromkeys(name for member in members for name in member.metrics):
            values = [member.metrics[metric] for member in members if member.metrics.get(metric) is not None]
            mean[metric] = statistics.fmean(values) if values else None
            std[metric] = statistics.stdev(values) if len(values) > 1 else None
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
