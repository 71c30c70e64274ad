"""The pieces behind compare (runner.report): the Student t quantile and Welch's interval written without SciPy,
records read from folders in any state, settings flattened from the resolved config, run discovery, seed
groups, sorting with missing values last, the text renderings and the figures (readable, without warnings)."""

import json
import math
import statistics
import warnings
from pathlib import Path

import pytest

from runner.report.figures import SearchParameter, curve_figure, curve_styles, mean_curves, search_figure, value_label
from runner.report.render import render_markdown, render_table
from runner.report.runs import (
    find_runs,
    flatten,
    history_metrics,
    is_log_sampled,
    load_run,
    same_value,
    search_space,
    setting_text,
)
from runner.report.statistics import (
    mean_interval,
    regularized_incomplete_beta,
    student_t_cdf,
    student_t_quantile,
    welch_difference,
)
from runner.report.table import Layout, Metric, display_cells, format_value, seed_groups, short_setting, sort_rows


def folder_with(
    tmp_path: Path, name: str, summary: dict | None, history: list[dict], config: dict | None = None
) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    return folder


# Statistics.


@pytest.mark.parametrize(
    ("degrees", "expected"),
    [
        (1, 12.706),
        (2, 4.303),
        (3, 3.182),
        (5, 2.571),
        (10, 2.228),
        (30, 2.042),
        (120, 1.980),
        (1e6, 1.960),
        (1e9, 1.960),
    ],
)
def test_student_t_quantile_matches_the_tables(degrees, expected):
    assert student_t_quantile(0.975, degrees) == pytest.approx(expected, abs=5e-4)
    assert student_t_quantile(0.025, degrees) == pytest.approx(-expected, abs=5e-4)  # symmetric
    assert student_t_cdf(student_t_quantile(0.975, degrees), degrees) == pytest.approx(0.975, abs=1e-10)


def test_student_t_other_levels_and_the_beta_function():
    assert student_t_quantile(0.995, 2) == pytest.approx(9.925, abs=5e-4)
    assert student_t_quantile(0.95, 4) == pytest.approx(2.132, abs=5e-4)
    assert student_t_quantile(0.5, 7) == 0.0
    # t with 1 degree of freedom is the Cauchy distribution: P(T <= t) = 1/2 + atan(t)/pi.
    assert student_t_cdf(3.0, 1) == pytest.approx(0.5 + math.atan(3.0) / math.pi, abs=1e-12)
    # I_x(1, 1) = x; I_x(a, b) = 1 - I_{1-x}(b, a); I_x(2, 3) = 6x^2 (1/2 - 2x/3 + x^2/4) by integrating.
    assert regularized_incomplete_beta(0.3, 1, 1) == pytest.approx(0.3)
    assert regularized_incomplete_beta(0.2, 2.5, 4) == pytest.approx(1 - regularized_incomplete_beta(0.8, 4, 2.5))
    x = 0.4
    assert regularized_incomplete_beta(x, 2, 3) == pytest.approx(12 * (x**2 / 2 - 2 * x**3 / 3 + x**4 / 4))
    with pytest.raises(ValueError):
        student_t_quantile(1.0, 3)


def test_student_t_quantile_agrees_with_scipy_where_it_is_installed():
    stats = pytest.importorskip("scipy.stats")
    for degrees in (1, 1.5, 2, 2.7, 4, 4.82, 9, 17.3, 50, 400):
        for probability in (0.6, 0.9, 0.975, 0.995):
            assert student_t_quantile(probability, degrees) == pytest.approx(
                stats.t.ppf(probability, degrees), rel=1e-9
            )


def test_mean_interval_and_welch_difference_by_hand():
    values = [0.70, 0.72, 0.77]
    estimate = mean_interval(values)
    mean, std = statistics.mean(values), statistics.stdev(values)
    assert (estimate.n, estimate.mean, estimate.std) == (3, pytest.approx(mean), pytest.approx(std))
    assert estimate.low == pytest.approx(mean - 4.302653 * std / math.sqrt(3))
    assert mean_interval([0.5]).low is None and mean_interval([0.5]).std is None
    # Bounds cut the interval, not the mean or the spread: three seeds of a spread-out accuracy.
    spread = mean_interval([0.66, 0.93, 0.99], bounds=(0.0, 1.0))
    unbounded = mean_interval([0.66, 0.93, 0.99])
    assert unbounded.high > 1.0 and spread.high == 1.0 and spread.low == pytest.approx(unbounded.low)
    assert (spread.mean, spread.std) == (unbounded.mean, unbounded.std)

    # Two groups of 3 and 5: s1² = 0.0001, s2² = 0.0004 (by construction), so se² = 0.0001/3 + 0.0004/5 =
    # 1.13333e-4 and df = se⁴ / ((0.0001/3)²/2 + (0.0004/5)²/4) = 1.28444e-8 / (5.5556e-10 + 1.6e-9) = 5.9598.
    first = [0.80, 0.81, 0.82]  # mean 0.81, variance 0.0001
    second = [0.75, 0.77, 0.79, 0.75 + 0.02 * (1 + math.sqrt(3)) / 2, 0.75 + 0.02 * (3 - math.sqrt(3)) / 2]
    assert statistics.variance(first) == pytest.approx(1e-4)
    difference = welch_difference(first, second)
    degrees = (1e-4 / 3 + statistics.variance(second) / 5) ** 2 / (
        (1e-4 / 3) ** 2 / 2 + (statistics.variance(second) / 5) ** 2 / 4
    )
    assert difference.degrees_of_freedom == pytest.approx(degrees)
    half = student_t_quantile(0.975, degrees) * math.sqrt(1e-4 / 3 + statistics.variance(second) / 5)
    assert difference.value == pytest.approx(0.81 - statistics.mean(second))
    assert (difference.low, difference.high) == (
        pytest.approx(difference.value - half),
        pytest.approx(difference.value + half),
    )
    assert welch_difference([0.5], second) is None  # one run has no spread to compare with
    same = welch_difference([0.5, 0.5], [0.4, 0.4])
    assert same.low == same.high == pytest.approx(0.1) and same.degrees_of_freedom is None


# Records.


def test_a_run_without_a_summary_is_told_by_its_metrics(tmp_path):
    history = [
        {"epoch": 1, "test_acc": 0.4, "train_loss": 2.0, "epoch_time_s": 1.0, "images_per_s": 100.0},
        {"epoch": 2, "test_acc": 0.3, "train_loss": 1.5, "epoch_time_s": 3.0, "images_per_s": 200.0},
    ]
    record = load_run(folder_with(tmp_path, "partial", None, history, config={"seed": 0}))
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


def test_settings_are_the_choices_and_the_flattened_resolved_config(tmp_path):
    summary = {
        "status": "completed",
        "choices": {"activation": "gelu", "regularizer": "l2+dropout", "hparams_search": None},
        "overrides": ["activation=gelu", "optimizer.lr=0.05", "seed=4"],
        "seed": 4,
    }
    config = {
        "seed": 4,
        "resume": None,
        "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "nesterov": True},
        "model": {"widths": [8, 16]},
        "preprocess": {"cache_dir": "/data/cache"},
        "averaging": {},
    }
    record = load_run(folder_with(tmp_path, "run", summary, [], config))
    assert record.settings == {
        "activation": "gelu",
        "regularizer": "l2+dropout",
        "hparams_search": "none",
        "seed": "4",
        "optimizer.lr": "0.1",  # the resolved value: the config wins over the command line's text
        "optimizer.nesterov": "true",
        "model.widths": "[8,16]",
    }
    assert record.setting("optimizer.momentum", False) == "-" and record.setting("activation", True) == "gelu"
    assert record.lookup("status") == "completed" and record.lookup("nowhere") is None
    # Without a config (a refused start), the command line's values, and "?" for what it does not say.
    (record.folder / "config.json").unlink()
    record = load_run(record.folder)
    assert record.settings["optimizer.lr"] == "0.05" and record.setting("optimizer.momentum", False) == "?"
    assert load_run(folder_with(tmp_path, "bare", {"status": "failed"}, [])).settings is None


def test_hostile_records_are_data_not_a_crash(tmp_path):
    """A config.json and a metrics.jsonl line nested far too deep, a hydra.yaml whose search space is an alias
    bomb: each is read as damaged or left out, never a RecursionError or an exponential string."""
    deep = "[" * 100_000 + "]" * 100_000
    folder = folder_with(tmp_path, "deep", {"status": "completed", "choices": {"activation": "relu"}}, [])
    (folder / "config.json").write_text('{"a": ' + deep + "}")
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": 0.5}) + "\n" + deep + "\n")
    (folder / ".hydra").mkdir()
    bomb = "".join(
        f"      - &{name} [*{previous}, *{previous}, *{previous}, *{previous}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    (folder / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      lr: tag(log, interval(1e-3, 1))\n      bomb:\n"
        "      - &a [x, x, x, x]\n" + bomb
    )
    record = load_run(folder)
    assert record.config is None and record.settings == {"activation": "relu"}
    assert record.history == [{"epoch": 1, "test_acc": 0.5}]
    assert search_space([record]) == {"lr": "tag(log, interval(1e-3, 1))"}
    (folder / "summary.json").write_text('{"status": ' + deep + "}")
    assert load_run(folder).status == "unreadable"


def test_setting_text_and_values_compared_as_typed():
    assert [setting_text(value) for value in (None, True, 0.1, 3, [8, 16], "relu")] == [
        "null",
        "true",
        "0.1",
        "3",
        "[8,16]",
        "relu",
    ]
    assert flatten({"a": {"b": 1, "_target_": "x", "out_dir": "/tmp"}, "resume": "/run"}) == {"a.b": "1"}
    assert same_value("0.1", "1e-1") and same_value("100", "100.0") and not same_value("0.1", "0.10001")
    assert same_value("true", "True") and same_value("relu", "relu") and not same_value("relu", "ReLU")


def test_discovery_skips_and_counts_folders_that_are_not_runs(tmp_path):
    folder_with(tmp_path, "sweep/0", {"status": "completed"}, [])
    folder_with(tmp_path, "sweep/1", None, [], config={"seed": 1})  # started, killed before its summary
    diagnose = tmp_path / "diagnose" / "2025-01-01" / "10-00-00"
    (diagnose / ".hydra").mkdir(parents=True)
    (diagnose / "diagnose.json").write_text("{}")
    (tmp_path / "sweep" / "multirun.yaml").write_text("hydra: {}\n")
    (tmp_path / "sweep" / "0" / ".hydra").mkdir()
    found = find_runs([tmp_path])
    assert [folder.name for folder in found.runs] == ["0", "1"] and found.others == [diagnose.resolve()]


def test_search_space_from_multirun_yaml_or_a_jobs_hydra_yaml(tmp_path):
    basic = folder_with(tmp_path, "grid/0", {"status": "completed"}, [])
    (tmp_path / "grid" / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      activation: relu,gelu\n"
        "      optimizer.lr: tag(log, interval(1e-3, 1))\n"
    )
    optuna = folder_with(tmp_path, "optuna/3", {"status": "completed"}, [])
    (optuna / ".hydra").mkdir()
    (optuna / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      regularizer.l2.weight_decay: tag(log, interval(1e-5, 1e-2))\n"
        "  run:\n    dir: ${run_dir:${resume}}\n"  # interpolations are text to a YAML reader
    )
    records = [load_run(basic), load_run(optuna)]
    assert search_space(records) == {
        "activation": "relu,gelu",
        "optimizer.lr": "tag(log, interval(1e-3, 1))",
        "regularizer.l2.weight_decay": "tag(log, interval(1e-5, 1e-2))",
    }
    assert is_log_sampled("tag(log, interval(1e-3, 1))") and is_log_sampled("tag(int, log, range(1, 64))")
    assert not is_log_sampled("interval(0, 1)") and not is_log_sampled("relu,gelu")


# Table.


def grouped_records(tmp_path: Path, values: dict) -> list:
    records = []
    for (activation, seed), value in values.items():
        summary = {"status": "completed", "test_acc": value, "choices": {"activation": activation}, "seed": seed}
        config = {"seed": seed}
        records.append(load_run(folder_with(tmp_path, f"{activation}{seed}", summary, [], config)))
    return records


def test_seed_groups_average_over_seeds_and_keep_other_settings_apart(tmp_path):
    records = grouped_records(tmp_path, {("relu", 0): 0.5, ("relu", 1): 0.7, ("gelu", 0): 0.4})
    metrics = [Metric("test_acc", "test acc %", "percent", True)]
    rows = seed_groups(records, ["activation", "seed"], metrics)
    assert [(row.settings["activation"], len(row.members)) for row in rows] == [("relu", 2), ("gelu", 1)]
    assert rows[0].mean["test_acc"] == pytest.approx(0.6)
    assert rows[0].std["test_acc"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    # 0.6 ± 12.71 x 0.141 / sqrt(2) = [-0.67, 1.87]: an accuracy's interval stops at 0% and 100%.
    assert (rows[0].estimates["test_acc"].low, rows[0].estimates["test_acc"].high) == (0.0, 1.0)
    assert rows[1].std["test_acc"] is None and rows[1].estimates["test_acc"].low is None  # one run: no spread
    # Best first; a row without the metric goes last whatever the direction.
    rows[1].mean["test_acc"] = None
    assert sort_rows(rows, "test_acc")[-1] is rows[1]
    cells = display_cells(rows, Layout(["activation"], metrics, True, metrics[0]))
    assert cells[0] == ["2", "relu", "completed", "60.00 ± 14.14", "[0.00, 100.00]"]


def test_text_renderings_align_numbers_and_escape_markdown():
    assert format_value(0.12345, "percent") == "12.35" and format_value(None, "percent") == "-"
    assert short_setting("0.06431172050131989") == "0.06431" and short_setting("relu") == "relu"
    headers, table = ["run", "activation", "status", "test acc %"], [["0", "a|b", "completed", "60.00"]]
    numeric = [False, False, False, True]
    assert render_markdown(headers, table, numeric).splitlines()[2] == "| 0 | a\\|b | completed | 60.00 |"
    lines = render_table(headers, [*table, ["10", "relu", "failed", "5.00"]], numeric).splitlines()
    assert lines[2].endswith("60.00") and lines[3].endswith(" 5.00")  # right-aligned digits


# Figures.


def curve_records(
    tmp_path: Path, settings: list[dict], epochs: int = 3, seeds: int = 1, configs: list[dict] | None = None
) -> list:
    """Runs with the given choices (and resolved config values), each with ``seeds`` seeds and a curve of
    ``epochs`` epochs."""
    records = []
    for index, choices in enumerate(settings):
        config = (configs or [{}] * len(settings))[index]
        for seed in range(seeds):
            history = [
                {"epoch": epoch, "test_acc": 0.1 + 0.02 * index + 0.05 * epoch + 0.01 * seed, "train_loss": 2.0 / epoch}
                for epoch in range(1, epochs + 1)
            ]
            summary = {"status": "completed", "choices": choices, "seed": seed, "test_acc": history[-1]["test_acc"]}
            folder = folder_with(tmp_path, f"{index}-{seed}", summary, history, config={**config, "seed": seed})
            records.append(load_run(folder))
    return records


def drawn(figure) -> tuple[list, object]:
    """The figure drawn (so that layout and ticks are final): its axes and its legend (or None). Whatever it
    draws (labels, legend, colour bar, annotations) lies inside the figure: the margins are fixed, not fitted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    box, (width, height) = figure.get_tightbbox(canvas.get_renderer()), figure.get_size_inches()
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (box, width, height)
    return [axis for axis in figure.axes if axis.get_label() != "<colorbar>"], (figure.legends or [None])[0]


def curves_drawn(axis) -> int:
    """Lines drawn one by one, and those drawn together as one collection (long runs without markers)."""
    from matplotlib.collections import LineCollection

    together = [collection for collection in axis.collections if isinstance(collection, LineCollection)]
    return len(axis.lines) + sum(len(collection.get_segments()) for collection in together)


def overlaps(first, second) -> bool:
    return first.x0 < second.x1 and second.x0 < first.x1 and first.y0 < second.y1 and second.y0 < first.y1


def test_mean_curve_and_a_band_over_seeds(tmp_path):
    records = []
    for seed, accuracies in enumerate([(0.2, 0.4), (0.4, 0.6, 0.8)]):
        history = [{"epoch": epoch, "test_acc": value} for epoch, value in enumerate(accuracies, start=1)]
        summary = {"status": "completed", "choices": {"activation": "relu"}, "seed": seed}
        records.append(load_run(folder_with(tmp_path, str(seed), summary, history)))
    epochs, means, spreads = mean_curves(records, ["test_acc"])["test_acc"]
    assert epochs == [1.0, 2.0, 3.0] and means == pytest.approx([0.3, 0.5, 0.8])
    assert spreads[0] == pytest.approx(statistics.stdev([0.2, 0.4])) and spreads[2] == 0.0  # one run at epoch 3
    figure = curve_figure(seed_groups(records, ["activation"], []), ["activation"])
    axes, _ = drawn(figure)
    assert len(axes[0].collections) == 1 and "2 seeds" in axes[0].get_title()  # the ± std band


def test_36_runs_colour_by_the_first_setting_style_by_the_second_legend_outside(tmp_path):
    settings = [
        {"activation": a, "init": i} for a in ("relu", "gelu", "silu", "tanh") for i in ("default", "kaiming", "xavier")
    ]
    records = curve_records(tmp_path, settings, epochs=4, seeds=3)
    rows = seed_groups(records, ["activation", "init", "seed"], [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = curve_figure(rows, ["activation", "init", "seed"])
        axes, legend = drawn(figure)
    assert not [str(warning.message) for warning in caught]
    assert len(rows) == 12 and curves_drawn(axes[0]) == 12
    # One legend entry per activation and per init, not per combination; each value once.
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == [f"activation={a}" for a in ("gelu", "relu", "silu", "tanh")] + [
        f"init={i}" for i in ("default", "kaiming", "xavier")
    ]
    colours = {line.get_color() for line in axes[0].lines}
    styles = {line.get_linestyle() for line in axes[0].lines}
    assert len(colours) == 4 and len(styles) == 3
    renderer = figure.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    assert not any(overlaps(box, axis.get_window_extent(renderer)) for axis in axes)  # never over the axes
    assert all(label.get_text().isdigit() for label in axes[0].get_xticklabels() if label.get_text())


def test_one_epoch_runs_get_epoch_one_and_values_print_to_three_digits(tmp_path):
    settings = [{"activation": "relu"}, {"activation": "gelu"}]
    configs = [{"optimizer": {"lr": 0.06431172050131989}}, {"optimizer": {"lr": 0.1}}]
    records = curve_records(tmp_path, settings, epochs=1, configs=configs)
    rows = seed_groups(records, ["optimizer.lr"], [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        axes, legend = drawn(curve_figure(rows, ["optimizer.lr"]))
    assert not caught
    low, high = axes[0].get_xlim()
    assert [tick for tick in axes[0].get_xticks() if low <= tick <= high] == [1.0]
    assert [text.get_text() for text in legend.get_texts()] == ["optimizer.lr=0.0643", "optimizer.lr=0.1"]
    assert value_label("0.06431172050131989") == "0.0643" and value_label("gelu") == "gelu"
    assert value_label("2048") == "2048" and value_label("1e-05") == "1e-05"  # a batch size stays whole


@pytest.mark.parametrize("columns", [1, 3])
def test_fifty_runs_stay_readable(tmp_path, columns):
    """50 distinct settings: one numeric setting gets a colour bar; three settings a colour per row, unlabelled
    (the table tells them apart), still without warnings."""
    settings = [{"activation": f"a{index % 5}", "init": f"i{index % 2}"} for index in range(50)]
    configs = [{"optimizer": {"lr": 10 ** (-3 + 3 * index / 50)}} for index in range(50)]
    records = curve_records(tmp_path, settings, epochs=30, configs=configs)
    keys = ["optimizer.lr"] if columns == 1 else ["activation", "init", "optimizer.lr"]
    rows = seed_groups(records, keys, [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = curve_figure(rows, keys)
        axes, legend = drawn(figure)
    assert not [str(warning.message) for warning in caught]
    if columns == 1:
        colourbars = [axis for axis in figure.axes if axis.get_label() == "<colorbar>"]
        assert len(colourbars) == 1 and colourbars[0].get_yscale() == "log" and legend is None
    else:
        assert legend is None and "too many to label" in figure.get_suptitle()
    assert curves_drawn(axes[0]) == curves_drawn(axes[1]) == 50


def test_styles_for_a_random_search_label_each_curve(tmp_path):
    settings = [{"activation": "relu"} for _ in range(4)]
    configs = [{"optimizer": {"lr": 0.01 * (index + 1)}, "weight_decay": 0.001 * (index + 1)} for index in range(4)]
    records = curve_records(tmp_path, settings, configs=configs)
    rows = seed_groups(records, ["optimizer.lr", "weight_decay"], [])
    styles, legend = curve_styles(rows, ["optimizer.lr", "weight_decay"])
    assert (
        len({str(style.color) for style in styles}) == 4 and legend.labels[0] == "optimizer.lr=0.01, weight_decay=0.001"
    )


def test_search_figure_has_a_panel_per_parameter_with_log_axes(tmp_path):
    configs = [{"optimizer": {"lr": 10 ** (-3 + index / 3), "momentum": 0.8 + 0.02 * index}} for index in range(8)]
    records = curve_records(tmp_path, [{"activation": "relu"}] * 6 + [{"activation": "gelu"}] * 2, configs=configs)
    for index, record in enumerate(records):
        record.metrics["val_acc"] = 0.3 + 0.01 * index
    parameters = [
        SearchParameter("optimizer.lr", True),
        SearchParameter("optimizer.momentum", False),
        SearchParameter("activation", False),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = search_figure(records, parameters, "val_acc", "val acc %", 100.0)
        axes, _ = drawn(figure)
    assert not caught
    visible = [axis for axis in axes if axis.get_visible()]
    assert [axis.get_xscale() for axis in visible] == ["log", "linear", "linear"]
    assert [label.get_text() for label in visible[2].get_xticklabels()] == ["gelu", "relu"]  # a choice: side by side
    assert visible[0].collections[0].get_offsets().shape == (8, 2)  # every run a point
    best = max(records, key=lambda record: record.metrics["val_acc"])
    assert visible[0].collections[1].get_offsets()[0][1] == pytest.approx(100 * best.metrics["val_acc"])
    renderer = figure.canvas.get_renderer()
    for axis in visible:  # the best run's label on the side with room, inside its panel
        area = axis.get_window_extent(renderer)
        for text in axis.texts:
            label = text.get_window_extent(renderer)
            assert area.x0 <= label.x0 and label.x1 <= area.x1, text.get_text()
