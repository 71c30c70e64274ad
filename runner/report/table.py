"""The comparison table: which settings differ between the runs, one row per run or per seed group (with its
confidence intervals and its difference from a baseline group), the metrics each row shows, and their order."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field

from runner.errors import RecordError
from runner.files import natural_key
from runner.report.runs import ABSENT, UNKNOWN, RunRecord, override_key, same_value
from runner.report.statistics import Difference, Estimate, mean_interval, sample_std, welch_difference


@dataclass(frozen=True)
class Metric:
    key: str  # the name in summary.json
    header: str  # the name in the printed table
    kind: str  # percent | count | seconds | rate | number
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
# Shown when the runs were not all tested on the same number of images (data.test_subset).
TEST_IMAGES = Metric("test_images", "test images", "count", True)
# Other summary numbers that --sort accepts, though the table does not show them.
EXTRA_SORT_KEYS = {
    "test_loss": False,
    "train_loss": False,
    "val_loss": False,
    "train_acc": True,
    "wall_time_s": False,
    "params": False,
}
DEFAULT_SORT = "best_test_acc"


def extra_metric(key: str) -> Metric:
    """A further summary number shown as a column (``--metrics``): accuracies (higher is better) and gaps
    between them (lower is better) in percent, times in seconds, anything else to four digits."""
    if key.endswith("_acc"):
        return Metric(key, key.replace("_", " ") + " %", "percent", True)
    if key.endswith("_gap"):
        return Metric(key, key.replace("_", " ") + " %", "percent", False)
    return Metric(key, key.replace("_", " "), "seconds" if key.endswith("_s") else "number", False)


# Which settings differ.


def choice_keys(records: list[RunRecord]) -> set[str]:
    return {key for record in records for key in record.choices or {}}


def known_values(records: list[RunRecord], key: str, is_choice: bool) -> set[str]:
    return {record.setting(key, is_choice) for record in records if record.settings is not None} - {UNKNOWN}


def command_order(records: list[RunRecord]) -> dict[str, int]:
    """Each key's position on the command lines, so columns read in the order the sweep was written."""
    order: dict[str, int] = {}
    for record in records:
        overrides = record.summary.get("overrides")
        for text in overrides if isinstance(overrides, list) else []:
            if isinstance(text, str) and "=" in text:
                order.setdefault(override_key(text), len(order))
    return order


def varies_within_choices(records: list[RunRecord], key: str, group: str) -> bool:
    """Whether ``key`` (under config group ``group``) takes more than one value among runs of the same option."""
    by_option: dict[str, set[str]] = {}
    for record in records:
        if record.settings is not None:
            by_option.setdefault(record.setting(group, True), set()).add(record.setting(key, False))
    return any(len(values - {UNKNOWN}) > 1 for values in by_option.values())


def differing_settings(records: list[RunRecord]) -> list[str]:
    """The choices and flattened config keys whose values are not the same in every run that tells them.

    Under a group whose choice differs, a key shows only when it varies between runs of the same option: what
    the option file sets (``init.gain`` of ``init=kaiming`` against ``init=xavier``, the ``regularizer.dropout.p``
    that ``l2`` lacks) the choice column already says; ``optimizer.lr=0.01,0.1`` on top of it is a setting of
    its own. Columns follow the command line's order, then choices, then the config's order; the seed goes last."""
    choices = choice_keys(records)
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record.settings or {}))
    differing_choices = {key for key in keys if key in choices and len(known_values(records, key, True)) > 1}
    differing = []
    for key in keys:
        if key in choices:
            if key in differing_choices:
                differing.append(key)
            continue
        group = key.split(".", 1)[0]
        if group in differing_choices:
            if varies_within_choices(records, key, group):
                differing.append(key)
        elif len(known_values(records, key, False)) > 1:
            differing.append(key)
    order = command_order(records)
    position = {key: index for index, key in enumerate(differing)}
    return sorted(
        differing, key=lambda key: (key == "seed", order.get(key, math.inf), key not in choices, position[key])
    )


def shared_settings(records: list[RunRecord]) -> list[tuple[str, str]]:
    """The settings every run has alike (choices first), for listing once above the table."""
    choices = choice_keys(records)
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record.settings or {}))
    shared = []
    for key in sorted(keys, key=lambda key: key not in choices):
        values = known_values(records, key, key in choices)
        if len(values) == 1 and ABSENT not in values:
            shared.append((key, next(iter(values))))
    return shared


# Rows.


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
    estimates: dict[str, Estimate] = field(default_factory=dict)  # grouped: n, mean, std and 95% interval
    differences: dict[str, Difference | None] = field(default_factory=dict)  # from the baseline group
    is_baseline: bool = False
    has_baseline: bool = False  # a baseline group was found for this row

    def member_values(self, key: str) -> list[float]:
        return [member.metrics[key] for member in self.members if member.metrics.get(key) is not None]


def single_rows(records: list[RunRecord], columns: list[str]) -> list[Row]:
    choices = choice_keys(records)
    return [
        Row(
            label=record.label,
            settings={key: record.setting(key, key in choices) for key in columns},
            status=record.status,
            mean=dict(record.metrics),
            std={},
            members=[record],
            note=record.note,
        )
        for record in records
    ]


def group_status(members: list[RunRecord]) -> str:
    counts: dict[str, int] = {}
    for member in members:
        counts[member.status] = counts.get(member.status, 0) + 1
    return members[0].status if len(counts) == 1 else ", ".join(f"{n} {name}" for name, n in counts.items())


def seed_groups(records: list[RunRecord], columns: list[str], metrics: list[Metric] = METRICS) -> list[Row]:
    """Collapse runs whose settings match except for the seed: mean and sample standard deviation of every
    number, and for ``metrics`` the Student t 95% interval of the mean too."""
    choices = choice_keys(records)
    shown = [key for key in columns if key != "seed"]
    keyed: dict[tuple, list[RunRecord]] = {}
    for record in records:
        if record.settings is None:  # a folder that does not say how it was configured stays on its own
            key: tuple = ("folder", str(record.folder))
        else:
            key = tuple(record.setting(column, column in choices) for column in shown)
        keyed.setdefault(key, []).append(record)
    rows = []
    for members in keyed.values():
        row = Row(
            label=members[0].label if len(members) == 1 else f"{len(members)} runs",
            settings={key: members[0].setting(key, key in choices) for key in shown},
            status=group_status(members),
            mean={},
            std={},
            members=members,
            note=members[0].note
            if len(members) == 1
            else "; ".join(f"{member.label}: {member.note}" for member in members if member.note),
        )
        for name in dict.fromkeys(name for member in members for name in member.metrics):
            values = row.member_values(name)
            row.mean[name] = statistics.fmean(values) if values else None
            row.std[name] = sample_std(values) if len(values) > 1 else None
        for metric in metrics:
            values = row.member_values(metric.key)
            if values:
                row.estimates[metric.key] = mean_interval(
                    values, bounds=(0.0, 1.0) if metric.kind == "percent" else None
                )
        rows.append(row)
    return rows


def add_differences(rows: list[Row], key: str, value: str, columns: list[str], metrics: list[Metric]) -> None:
    """Each group's difference from its baseline group, with Welch's 95% interval: the group with
    ``key=value`` and every other shown setting alike (``activation=relu`` beside each ``init``), or the one
    baseline group when there is only one."""
    if key not in columns:
        raise RecordError(
            f"--baseline {key}={value}: {key} is not a setting that differs between these groups. "
            f"Try one of: {', '.join(column for column in columns if column != 'seed') or '(none differ)'}."
        )
    baselines = [row for row in rows if same_value(row.settings.get(key, ""), value)]
    if not baselines:
        found = sorted({row.settings.get(key, "") for row in rows}, key=natural_key)
        raise RecordError(f"--baseline {key}={value}: no group has {key}={value}; there are {', '.join(found)}.")
    others = [column for column in columns if column not in (key, "seed")]
    for row in rows:
        alike = [base for base in baselines if all(base.settings[column] == row.settings[column] for column in others)]
        baseline = alike[0] if alike else (baselines[0] if len(baselines) == 1 else None)
        if baseline is None:
            continue
        row.has_baseline, row.is_baseline = True, baseline is row
        for metric in metrics:
            row.differences[metric.key] = welch_difference(
                row.member_values(metric.key), baseline.member_values(metric.key)
            )


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


def optimized_metric(records: list[RunRecord]) -> str | None:
    """The metric the runs' sweep optimised (``optimized_metric`` of their configs), when they agree on one."""
    found = set()
    for record in records:
        metric = (record.config or {}).get("optimized_metric") or record.summary.get("optimized_metric")
        if isinstance(metric, str):
            found.add(metric)
    return next(iter(found)) if len(found) == 1 else None


def default_sort(records: list[RunRecord], metrics: list[Metric]) -> str:
    """The metric a search optimised (``val_acc``) when it is not the plain test accuracy, else best test."""
    metric = optimized_metric(records)
    if metric and metric != "test_acc" and metric in {entry.key for entry in metrics}:
        return metric
    return DEFAULT_SORT


def test_images_differ(records: list[RunRecord]) -> list[int]:
    """The different numbers of test images the runs were evaluated on; empty when they agree or do not say."""
    counts = {int(record.metrics["test_images"]) for record in records if record.metrics.get("test_images")}
    return sorted(counts) if len(counts) > 1 else []


# Cells.


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


def signed(value: float, kind: str) -> str:
    text = format_value(value, kind)
    return text if text.startswith("-") else "+" + text


def short_setting(value: str) -> str:
    """A long decimal (a sampled learning rate) to four significant digits; anything else as it is."""
    if len(value) > 8 and re.fullmatch(r"-?\d*\.\d+(e-?\d+)?|-?\d+e-?\d+", value):
        return f"{float(value):.4g}"
    return value


@dataclass
class Layout:
    """What the table shows: the setting columns, the metrics, and with seed groups the metric whose interval
    and difference from the baseline get columns of their own."""

    columns: list[str]
    metrics: list[Metric]
    grouped: bool = False
    focus: Metric | None = None
    baseline: str | None = None  # "activation=relu"
    status: bool = True  # a status column (not when every row is completed)


def headers_of(layout: Layout) -> tuple[list[str], list[bool]]:
    """The headers, and per column whether it holds numbers (right-aligned)."""
    headers: list[tuple[str, bool]] = [("n" if layout.grouped else "run", layout.grouped)]
    headers += [(column, False) for column in layout.columns]
    headers += [("status", False)] if layout.status else []
    for metric in layout.metrics:
        headers.append((metric.header, True))
        if layout.grouped and metric is layout.focus:
            headers.append(("95% CI", True))
            if layout.baseline:
                headers.append((f"Δ vs {layout.baseline}", True))
    return [header for header, _ in headers], [numeric for _, numeric in headers]


def interval_text(low: float | None, high: float | None, kind: str) -> str:
    return "-" if low is None or high is None else f"[{format_value(low, kind)}, {format_value(high, kind)}]"


def difference_text(row: Row, metric: Metric) -> str:
    if row.is_baseline:
        return "baseline"
    difference = row.differences.get(metric.key)
    if difference is None:
        return "-"
    value, low, high = (signed(number, metric.kind) for number in (difference.value, difference.low, difference.high))
    return f"{value} [{low}, {high}]"


def metric_text(row: Row, metric: Metric, grouped: bool) -> str:
    text = format_value(row.mean.get(metric.key), metric.kind)
    spread = row.std.get(metric.key) if grouped else None
    if spread is not None and metric.kind not in ("count", "rate"):
        text += " ± " + format_value(spread, metric.kind)
    return text


def display_cells(rows: list[Row], layout: Layout) -> list[list[str]]:
    """Text cells as a person reads them: accuracies in percent, mean ± std when grouped, the focus metric's
    interval and difference from the baseline group in columns of their own."""
    table = []
    for row in rows:
        cells = [str(len(row.members)) if layout.grouped else row.label]
        cells += [short_setting(row.settings[key]) for key in layout.columns]
        cells += [row.status] if layout.status else []
        for metric in layout.metrics:
            cells.append(metric_text(row, metric, layout.grouped))
            if layout.grouped and metric is layout.focus:
                estimate = row.estimates.get(metric.key)
                cells.append(interval_text(estimate and estimate.low, estimate and estimate.high, metric.kind))
                if layout.baseline:
                    cells.append(difference_text(row, metric))
        table.append(cells)
    return table


def sort_values(rows: list[Row], layout: Layout) -> list[list[float | str | None]]:
    """What each cell sorts by on the HTML page: the number behind it (the mean, the interval's centre, the
    difference), the text of a setting."""
    values = []
    for row in rows:
        line: list[float | str | None] = [len(row.members) if layout.grouped else row.label]
        line += [row.settings[key] for key in layout.columns]
        line += [row.status] if layout.status else []
        for metric in layout.metrics:
            line.append(row.mean.get(metric.key))
            if layout.grouped and metric is layout.focus:
                estimate = row.estimates.get(metric.key)
                line.append(estimate.low if estimate and estimate.low is not None else None)
                if layout.baseline:
                    difference = row.differences.get(metric.key)
                    line.append(0.0 if row.is_baseline else (difference.value if difference else None))
        values.append(line)
    return values


def raw_rows(rows: list[Row], layout: Layout) -> list[dict]:
    """Machine-readable rows for csv and json: accuracies stay fractions in [0, 1], as in the run files. Seed
    groups carry ``n`` and per metric ``_mean``, ``_std``, ``_ci_low``, ``_ci_high``; with a baseline also
    ``_difference``, ``_difference_ci_low``, ``_difference_ci_high``."""
    result = []
    for row in rows:
        entry: dict = {"n": len(row.members)} if layout.grouped else {"run": row.label}
        entry.update({key: row.settings[key] for key in layout.columns})
        entry["status"] = row.status
        for metric in layout.metrics:
            if not layout.grouped:
                entry[metric.key] = row.mean.get(metric.key)
                continue
            estimate = row.estimates.get(metric.key)
            entry[f"{metric.key}_mean"] = estimate.mean if estimate else None
            entry[f"{metric.key}_std"] = estimate.std if estimate else None
            entry[f"{metric.key}_ci_low"] = estimate.low if estimate else None
            entry[f"{metric.key}_ci_high"] = estimate.high if estimate else None
            if layout.baseline:
                difference = row.differences.get(metric.key)
                entry[f"{metric.key}_difference"] = difference.value if difference else None
                entry[f"{metric.key}_difference_ci_low"] = difference.low if difference else None
                entry[f"{metric.key}_difference_ci_high"] = difference.high if difference else None
        if layout.grouped and layout.baseline:
            entry["baseline"] = row.is_baseline
        entry["folders" if layout.grouped else "folder"] = (
            [str(member.folder) for member in row.members] if layout.grouped else str(row.members[0].folder)
        )
        entry["note"] = row.note
        result.append(entry)
    return result
