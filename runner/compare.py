"""Compare runs: one table from many output folders, their learning curves, and an HTML report.

    python -m runner.compare outputs/multirun/2025-01-31/12-00-00-000000
    python -m runner.compare outputs/multirun/... --group-seeds --baseline activation=relu
    python -m runner.compare outputs/runs/... outputs/multirun/... --where optimizer.lr=0.1 --sort val_acc
    python -m runner.compare outputs/multirun/... --plot curves.png --report outputs/report

Each PATH is a run folder or any folder above run folders (a sweep, a day, all of ``outputs/``). A run is a
folder ``runner.train`` wrote its ``config.json`` or ``summary.json`` into; other folders (``runner.diagnose``
output) are skipped and counted. The table shows the settings that differ between the runs, read from each
run's resolved config whatever set them (the command line, an ``experiment=`` file, a sweep), then how each run
went: completed runs only, unless ``--all``. It reads only plain files (JSON, and YAML as data), never a pickle
and never a config's interpolations, so folders from older code or other machines open safely, and it does not
import torch, so it starts at once. A half-written or garbled folder is a record with its status (``partial``,
``unreadable``), never a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import USER_ERROR_EXIT, RecordError
from runner.report.figures import SearchParameter, figure_png, search_png
from runner.report.page import Cell, Figure, Page, Table, render_page
from runner.report.render import (
    notes_text,
    render_csv,
    render_markdown,
    render_table,
    row_notes,
    selection_line,
)
from runner.report.runs import RunRecord, is_log_sampled, load_runs, parse_condition, search_space, select_runs
from runner.report.table import (
    METRICS,
    TEST_IMAGES,
    Layout,
    Metric,
    Row,
    add_differences,
    default_sort,
    differing_settings,
    display_cells,
    extra_metric,
    headers_of,
    optimized_metric,
    raw_rows,
    seed_groups,
    shared_settings,
    single_rows,
    sort_choices,
    sort_rows,
    sort_values,
    test_images_differ,
)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runner.compare",
        description="Compare runs: a table of the settings that differ and how each run went.",
        epilog="Accuracies print in percent in table and markdown, and stay fractions in [0, 1] in csv and json. "
        "A line on stderr (csv, json) or above the table says how many runs are shown and which were left out.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="run folders or folders above them")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only the runs with this setting (optimizer.lr=0.1), choice (activation=gelu) or summary field "
        "(status=diverged); repeat to require all; numbers compare as numbers",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="every run whatever its status (failed, refused, diverged, interrupted, running, partial); by "
        "default only completed runs",
    )
    parser.add_argument(
        "--sort",
        default=None,
        metavar="KEY",
        help="a metric (best_test_acc, test_acc, val_acc, test_loss, train_time_s, images_per_s, ...; best first), "
        "a setting (activation, optimizer.lr, ...) or 'run' (default: the metric a search optimised, e.g. "
        "val_acc, else best_test_acc)",
    )
    parser.add_argument(
        "--metrics",
        default="",
        metavar="KEY,...",
        help="further summary numbers to show as columns, comma-separated (train_acc, ema_test_acc, "
        "snapshot_ensemble_acc, train_test_gap, train_loss, wall_time_s, ...)",
    )
    parser.add_argument(
        "--group-seeds",
        action="store_true",
        help="one row per setting over its seeds: n, mean ± std and the 95%% interval of the mean (Student t)",
    )
    parser.add_argument(
        "--baseline",
        metavar="KEY=VALUE",
        help="with seed groups (implied): each group's difference from the KEY=VALUE group with the same other "
        "settings, with its 95%% interval (Welch)",
    )
    parser.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="save the learning curves (and, for a search, score against each parameter as FILE-search.png)",
    )
    parser.add_argument("--report", type=Path, metavar="DIR", help="write DIR/index.html with the tables and figures")
    parser.add_argument(
        "--curve",
        metavar="KEY",
        help="the accuracy the figure's first panel draws against epoch (train_acc, val_acc, test_acc; default: "
        "the one a search optimised, else test_acc)",
    )
    arguments = parser.parse_args(argv)
    arguments.command = "python -m runner.compare " + shlex.join(sys.argv[1:] if argv is None else argv)
    return arguments


@dataclass
class Comparison:
    """What ``main`` prints: the output on stdout, and lines for stderr (where the figures went)."""

    output: str
    messages: list[str] = field(default_factory=list)


def chosen_metrics(arguments: argparse.Namespace) -> tuple[list[Metric], tuple[str, ...]]:
    extra = tuple(key for key in arguments.metrics.replace(" ", "").split(",") if key)
    known = {metric.key for metric in METRICS}
    return METRICS + [extra_metric(key) for key in extra if key not in known], extra


def test_images_note(counts: list[int]) -> str:
    listed = ", ".join(f"{count:,}" for count in counts)
    return (
        f"These runs were tested on different numbers of test images ({listed}; column 'test images'): "
        "an accuracy on fewer images is noisier, so compare accuracies between runs tested on the same number."
    )


def search_parameters(records: list[RunRecord]) -> list[SearchParameter]:
    """The searched parameters whose values differ between the runs (the seed is not one to read off)."""
    parameters = []
    for key, spec in search_space(records).items():
        values = {(record.settings or {}).get(key) for record in records} - {None}
        if key != "seed" and len(values) > 1:
            parameters.append(SearchParameter(key, is_log_sampled(spec)))
    return parameters


def recorded(records: list[RunRecord], key: str) -> bool:
    """Whether some epoch of some run's metrics.jsonl holds ``key``."""
    return any(key in entry for record in records for entry in record.history)


def accuracy_curve(records: list[RunRecord], asked: str | None = None) -> str:
    """The accuracy the curves show: the one asked for, else the one a search optimised (val_acc) when the runs
    recorded it."""
    if asked:
        if not asked.endswith("_acc"):
            raise RecordError(
                f"--curve {asked}: not an accuracy (train_acc, val_acc, test_acc, ...); the loss is drawn beside it."
            )
        if not recorded(records, asked):
            raise RecordError(f"--curve {asked}: no epoch of these runs' metrics.jsonl holds it.")
        return asked
    metric = optimized_metric(records)
    if metric and metric.endswith("_acc") and recorded(records, metric):
        return metric
    return "test_acc"


@dataclass
class Figures:
    curves: bytes = b""
    search: bytes = b""
    search_metric: str = ""


def draw_figures(
    records: list[RunRecord], columns: list[str], sort: str, metrics: list[Metric], curve: str | None = None
) -> Figures:
    # Seeds always become a band around their mean: 36 runs of 12 settings draw as 12 curves, not 36.
    rows = sort_rows(sort_rows(seed_groups(records, columns, []), "run"), sort, metrics)
    figures = Figures(curves=figure_png(rows, columns, accuracy_curve(records, curve)))
    parameters = search_parameters(records)
    if parameters:
        metric = optimized_metric(records) or "test_acc"
        shown = next((entry for entry in metrics if entry.key == metric), extra_metric(metric))
        scale = 100.0 if shown.kind == "percent" else 1.0
        figures.search = search_png(records, parameters, metric, shown.header, scale)
        figures.search_metric = shown.header
    return figures


def page_table(caption: str, rows: list[Row], layout: Layout, report: Path) -> Table:
    """A table of the page: numbers sort as numbers; in the runs table each run links to its folder and files."""
    headers, numeric = headers_of(layout)
    texts = display_cells(rows, layout)
    sorts = sort_values(rows, layout)
    cells = [
        [Cell(text, sort if is_number else text) for text, sort, is_number in zip(line, keys, numeric, strict=True)]
        for line, keys in zip(texts, sorts, strict=True)
    ]
    if not layout.grouped:
        headers, numeric = [*headers, "summary", "metrics"], [*numeric, False, False]
        base = report.resolve()
        for line, row in zip(cells, rows, strict=True):
            folder = row.members[0].folder
            line[0].href = Path(os.path.relpath(folder, base)).as_posix() + "/"
            for name in ("summary.json", "metrics.jsonl"):
                link = Path(os.path.relpath(folder / name, base)).as_posix() if (folder / name).exists() else None
                line.append(Cell(name if link else "-", name if link else None, link))
    return Table(caption, headers, numeric, cells)


def write_report(
    arguments: argparse.Namespace,
    records: list[RunRecord],
    single: tuple[list[Row], Layout],
    grouped: tuple[list[Row], Layout] | None,
    figures: Figures,
    notes: list[str],
) -> None:
    tables = [page_table("Runs, one row each", *single, arguments.report)]
    if grouped is not None:  # the seed groups first: they are what --group-seeds asked for
        caption = "Seed groups: n, mean ± sample std, 95% interval of the mean (Student t)"
        if grouped[1].baseline:
            caption += f", difference from {grouped[1].baseline} (Welch 95% interval)"
        tables.insert(0, page_table(caption, *grouped, arguments.report))
    drawn = [Figure("Learning curves: mean over seeds, ± 1 std band", figures.curves)]
    if figures.search:
        drawn.append(Figure(f"Search: {figures.search_metric} against each searched parameter", figures.search))
    page = Page(
        title=f"Comparison of {len(records)} runs",
        command=arguments.command,
        shared=shared_settings(records),
        tables=tables,
        figures=drawn,
        notes=notes,
    )
    write_bytes(arguments.report / "curves.png", figures.curves)
    if figures.search:
        write_bytes(arguments.report / "search.png", figures.search)
    write_bytes(arguments.report / "index.html", render_page(page).encode("utf-8"))


def caption_lines(layout: Layout, selection: str) -> str:
    lines = [f"{selection}; accuracies in percent"]
    if layout.grouped and layout.focus is not None:
        line = f"Seed groups: mean ± sample std; 95% CI: Student t interval of the mean {layout.focus.header}"
        if layout.baseline:
            line += f"; Δ: its difference from {layout.baseline} (same other settings), Welch 95% interval"
        lines.append(line)
    return "\n".join(lines)


def compare(arguments: argparse.Namespace) -> Comparison:
    """Everything ``main`` does, returning what to print."""
    metrics, extra = chosen_metrics(arguments)
    loaded = load_runs(arguments.paths, extra)
    conditions = [parse_condition(text) for text in arguments.where]
    selection = select_runs(loaded.records, conditions, arguments.all)
    summary_line = selection_line(selection, loaded.others, arguments.where)
    records = selection.records
    if not records:
        raise RecordError(f"No runs to compare: {summary_line}.")
    sort = arguments.sort or default_sort(records, metrics)
    if sort not in sort_choices(records, metrics):
        raise RecordError(
            f"--sort {sort}: not a metric or setting of these runs. "
            f"Try one of: {', '.join(sorted(sort_choices(records, metrics)))}."
        )
    columns = differing_settings(records)
    notes = []
    counts = test_images_differ(records)
    if counts:
        metrics = [*metrics, TEST_IMAGES]
        notes.append(test_images_note(counts))

    single = sort_rows(sort_rows(single_rows(records, columns), "run"), sort, metrics)  # ties keep folder order
    grouping = arguments.group_seeds or arguments.baseline is not None
    rows = single
    shown = columns
    if grouping:
        shown = [key for key in columns if key != "seed"]
        rows = seed_groups(records, columns, metrics)
        if arguments.baseline:
            add_differences(rows, *parse_condition(arguments.baseline), shown, metrics)
        rows = sort_rows(sort_rows(rows, "run"), sort, metrics)
    notes += row_notes(rows)

    # For people, a column no run has a value for (val acc without a validation split) says nothing; csv and
    # json keep every column so that scripts see the same fields whatever the runs.
    filled = [metric for metric in metrics if any(row.mean.get(metric.key) is not None for row in rows)]
    focus = next((metric for metric in filled if metric.key == sort), None)
    focus = focus or next((metric for metric in filled if metric.kind == "percent"), None)
    status_column = any(record.status != "completed" for record in records)
    layout = Layout(shown, filled, grouping, focus, arguments.baseline, status_column)

    comparison = Comparison("")
    if arguments.plot or arguments.report:
        figures = draw_figures(records, columns, sort, metrics, arguments.curve)
        if arguments.plot:
            write_bytes(arguments.plot, figures.curves)
            comparison.messages.append(f"Learning curves: {arguments.plot}")
            if figures.search:
                search = arguments.plot.with_name(f"{arguments.plot.stem}-search{arguments.plot.suffix or '.png'}")
                write_bytes(search, figures.search)
                comparison.messages.append(f"Score against each searched parameter: {search}")
        if arguments.report:
            single_layout = Layout(columns, filled, False, focus, None, status_column)
            grouped = (rows, layout) if grouping else None
            write_report(arguments, records, (single, single_layout), grouped, figures, [summary_line, *notes])
            comparison.messages.append(f"Report: {arguments.report / 'index.html'}")

    tested = [TEST_IMAGES] if TEST_IMAGES not in metrics and any("test_images" in r.metrics for r in records) else []
    machine = Layout(shown, [*metrics, *tested], grouping, focus, arguments.baseline, True)
    if arguments.format in ("json", "csv"):
        comparison.messages.insert(0, summary_line)
        entries = raw_rows(rows, machine)
        comparison.output = (
            json.dumps(entries, indent=2) if arguments.format == "json" else render_csv(entries).rstrip("\n")
        )
        return comparison
    headers, numeric = headers_of(layout)
    table = display_cells(rows, layout)
    if arguments.format == "markdown":
        comparison.messages.insert(0, summary_line)
        comparison.output = render_markdown(headers, table, numeric)
        return comparison
    text = caption_lines(layout, summary_line) + "\n\n" + render_table(headers, table, numeric)
    comparison.output = text + ("\n\n" + notes_text(notes) if notes else "")
    return comparison


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        comparison = compare(arguments)
    except RecordError as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT
    print(comparison.output)
    for message in comparison.messages:
        print(message, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
