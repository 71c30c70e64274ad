"""The pieces behind compare (runner.report): records read from folders in any state, seed groups' mean and
sample standard deviation, sorting with missing values last, the text renderings and the figure."""

import json
import statistics
from pathlib import Path

import pytest

from runner.report.figures import figure_png, mean_curve
from runner.report.render import render_markdown, render_table
from runner.report.runs import history_metrics, load_run, run_settings
from runner.report.table import METRICS, Metric, display_cells, format_value, seed_groups, short_setting, sort_rows


def folder_with(tmp_path: Path, name: str, summary: dict | None, history: list[dict]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    return folder


def test_a_run_without_a_summary_is_told_by_its_metrics(tmp_path):
    history = [
        {"epoch": 1, "test_acc": 0.4, "train_loss": 2.0, "epoch_time_s": 1.0, "images_per_s": 100.0},
        {"epoch": 2, "test_acc": 0.3, "train_loss": 1.5, "epoch_time_s": 3.0, "images_per_s": 200.0},
    ]
    record = load_run(folder_with(tmp_path, "partial", None, history))
    assert record.status == "partial" and "2 epochs" in record.note
    assert record.metrics["test_acc"] == 0.3 and record.metrics["best_test_acc"] == 0.4
    # Images per second over the whole run: weighted by each epoch's time.
    assert record.metrics["images_per_s"] == pytest.approx((1.0 * 100 + 3.0 * 200) / 4.0)
    assert history_metrics([]) == {}


def test_a_summary_of_the_wrong_shape_is_unreadable_not_a_crash(tmp_path):
    record = load_run(folder_with(tmp_path, "list", None, []))
    (record.folder / "summary.json").write_text("[1, 2]")
    record = load_run(record.folder)
    assert record.status == "unreadable" and "not a JSON object" in record.note and record.settings is None


def test_settings_are_the_choices_the_overrides_and_the_seed():
    summary = {
        "choices": {"activation": "gelu", "regularizer": "l2+dropout"},
        "overrides": ["activation=gelu", "+trainer.extra=1", "optimizer.lr=0.05", "hydra.job.num=3", "seed=4"],
        "seed": 4,
    }
    assert run_settings(summary) == {
        "trainer.extra": "1",
        "optimizer.lr": "0.05",
        "activation": "gelu",
        "regularizer": "l2+dropout",
        "seed": "4",
    }
    assert run_settings({"status": "failed"}) is None


def test_seed_groups_average_over_seeds_and_keep_other_settings_apart(tmp_path):
    values = {("relu", 0): 0.5, ("relu", 1): 0.7, ("gelu", 0): 0.4}
    records = []
    for (activation, seed), value in values.items():
        summary = {"status": "completed", "test_acc": value, "choices": {"activation": activation}, "seed": seed}
        records.append(load_run(folder_with(tmp_path, f"{activation}{seed}", summary, [])))
    rows = seed_groups(records, ["activation", "seed"])
    assert [(row.settings["activation"], len(row.members)) for row in rows] == [("relu", 2), ("gelu", 1)]
    assert rows[0].mean["test_acc"] == pytest.approx(0.6)
    assert rows[0].std["test_acc"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert rows[1].std["test_acc"] is None  # one run has no spread
    # Best first; a row without the metric goes last whatever the direction.
    rows[1].mean["test_acc"] = None
    assert sort_rows(rows, "test_acc")[-1] is rows[1]


def test_text_renderings_align_numbers_and_escape_markdown():
    assert format_value(0.12345, "percent") == "12.35" and format_value(None, "percent") == "-"
    assert short_setting("0.06431172050131989") == "0.06431" and short_setting("relu") == "relu"
    metrics = [Metric("test_acc", "test acc %", "percent", True)]
    headers, table = ["run", "activation", "status", "test acc %"], [["0", "a|b", "completed", "60.00"]]
    assert render_markdown(headers, table, metrics).splitlines()[2] == "| 0 | a\\|b | completed | 60.00 |"
    lines = render_table(headers, [*table, ["10", "relu", "failed", "5.00"]], metrics).splitlines()
    assert lines[2].endswith("60.00") and lines[3].endswith(" 5.00")  # right-aligned digits
    assert display_cells([], [], False, METRICS)[0][0] == "run"


def test_mean_curve_and_figure(tmp_path):
    records = []
    for seed, accuracies in enumerate([(0.2, 0.4), (0.4, 0.6, 0.8)]):
        history = [{"epoch": epoch, "test_acc": value} for epoch, value in enumerate(accuracies, start=1)]
        summary = {"status": "completed", "choices": {"activation": "relu"}, "seed": seed}
        records.append(load_run(folder_with(tmp_path, str(seed), summary, history)))
    epochs, means, spreads = mean_curve(records, "test_acc")
    assert epochs == [1.0, 2.0, 3.0] and means == pytest.approx([0.3, 0.5, 0.8])
    assert spreads[0] == pytest.approx(statistics.stdev([0.2, 0.4])) and spreads[2] == 0.0  # one run at epoch 3
    png = figure_png(seed_groups(records, ["activation"]), ["activation"])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
