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
import json
import sys
from pathlib import Path

from runner.errors import USER_ERROR_EXIT, RecordError
from runner.report.figures import figure_png
from runner.report.page import Cell, Figure, Page, Table, render_page
from runner.report.render import notes_text, render_csv, render_markdown, render_table
from runner.report.runs import load_runs
from runner.report.table import (
    METRICS,
    differing_settings,
    display_cells,
    extra_metric,
    raw_rows,
    right_aligned,
    seed_groups,
    single_rows,
    sort_choices,
    sort_rows,
)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


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
        raise RecordError(
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
        numeric = right_aligned(headers, filled)
        caption = "Mean ± sample standard deviation over seeds" if arguments.group_seeds else "One row per run"
        cells = [[Cell(text) for text in line] for line in table]
        page = Page(
            title=f"Comparison of {len(records)} runs",
            command=command,
            tables=[Table(caption, headers, numeric, cells)],
            figures=[Figure("Learning curves", png)],
            notes=[f"{row.label}: {row.note}" for row in rows if row.note],
        )
        page = render_page(page)
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
    except RecordError as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT
    print(output)
    if arguments.plot:
        print(f"Learning curves: {arguments.plot}", file=sys.stderr)
    if arguments.report:
        print(f"Report: {arguments.report / 'index.html'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
