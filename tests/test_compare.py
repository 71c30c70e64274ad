"""python -m runner.compare on run folders written here by hand: every status a folder can be in, the columns that
differ, seed groups, each output format, the figure and the HTML report."""

import csv
import io
import json
import re
import statistics
from pathlib import Path

import pytest

from runner import compare
from runner.report.runs import load_runs
from runner.report.table import differing_settings

OPTIONS_TESTED: dict[str, set[str]] = {}  # compare is a command, not a config group

CHOICES = {"model": "convnet", "activation": "relu", "optimizer": "nesterov", "data": "synthetic"}


def write_run(
    folder: Path,
    status: str = "completed",
    accuracies=(0.3, 0.5, 0.4),
    choices: dict | None = None,
    overrides=("data=synthetic",),
    seed: int = 0,
    **extra,
) -> Path:
    """A run folder as runner.loop leaves it: one metrics.jsonl line per epoch and a summary.json."""
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    history = [
        {"epoch": epoch, "train_loss": 2.0 / epoch, "test_acc": value, "epoch_time_s": 2.0, "images_per_s": 100.0}
        for epoch, value in enumerate(accuracies, start=1)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    summary = {
        "status": status,
        "test_acc": accuracies[-1] if accuracies else None,
        "best_test_acc": max(accuracies) if accuracies else None,
        "val_acc": None,
        "epochs_completed": len(accuracies),
        "train_time_s": 2.0 * len(accuracies),
        "images_per_s": 100.0,
        "choices": {**CHOICES, **(choices or {})},
        "overrides": [*overrides, f"seed={seed}"],
        "seed": seed,
        **extra,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def run_compare(capsys, *arguments) -> tuple[int, str, str]:
    code = compare.main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(capsys, *arguments) -> list[dict]:
    code, out, _ = run_compare(capsys, *arguments, "--format", "json")
    assert code == 0
    return json.loads(out)


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A sweep with one completed run, one diverged, one killed while writing summary.json, one that only got
    as far as its first epoch's metrics line (and a torn second line)."""
    root = tmp_path / "multirun" / "2025-01-01" / "12-00-00"
    write_run(root / "0", accuracies=(0.3, 0.6), choices={"activation": "relu"}, warnings=["a", "b"])
    write_run(root / "1", status="diverged", accuracies=(0.1,), choices={"activation": "gelu"})
    torn = write_run(root / "2", accuracies=(0.2, 0.3), choices={"activation": "selu"})
    text = (torn / "summary.json").read_text()
    (torn / "summary.json").write_text(text[: len(text) // 2])
    partial = root / "10"
    (partial / ".hydra").mkdir(parents=True)
    (partial / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": 0.25, "train_loss": 2.1}) + '\n{"epo')
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_sweep_lists_every_run_with_its_status(sweep, capsys):
    rows = {row["run"]: row for row in as_json(capsys, sweep, "--sort", "run")}
    assert list(rows) == ["0", "1", "2", "10"]  # natural order of job numbers
    assert {name: row["status"] for name, row in rows.items()} == {
        "0": "completed",
        "1": "diverged",
        "2": "unreadable",
        "10": "partial",
    }
    assert rows["0"]["best_test_acc"] == 0.6 and rows["0"]["warnings"] == 2
    # A garbled summary.json still shows what metrics.jsonl recorded, and says why the summary is missing.
    assert rows["2"]["test_acc"] == 0.3 and rows["2"]["activation"] == "?"
    assert "summary.json cannot be read" in rows["2"]["note"]
    # Only the complete line of a torn metrics.jsonl counts.
    assert rows["10"]["epochs_completed"] == 1 and rows["10"]["test_acc"] == 0.25

    code, out, _ = run_compare(capsys, sweep)
    assert code == 0
    for status in ("completed", "diverged", "unreadable", "partial"):
        assert status in out


def test_default_sort_is_best_accuracy_first_with_missing_last(tmp_path, capsys):
    write_run(tmp_path / "low", accuracies=(0.2,), choices={"activation": "a"}, train_time_s=9.0)
    write_run(tmp_path / "high", accuracies=(0.9, 0.1), choices={"activation": "b"}, train_time_s=5.0)
    write_run(tmp_path / "none", status="diverged", accuracies=(), choices={"activation": "c"}, train_time_s=None)
    assert [row["run"] for row in as_json(capsys, tmp_path)] == ["high", "low", "none"]
    assert [row["run"] for row in as_json(capsys, tmp_path, "--sort", "test_acc")] == ["low", "high", "none"]
    assert [row["run"] for row in as_json(capsys, tmp_path, "--sort", "train_time_s")] == ["high", "low", "none"]
    code, _, err = run_compare(capsys, tmp_path, "--sort", "nonsense")
    assert code == 2 and "best_test_acc" in err


def test_only_the_settings_that_differ_become_columns(tmp_path, capsys):
    base = ("data=synthetic", "trainer.epochs=3")
    write_run(tmp_path / "a", choices={"activation": "relu"}, overrides=(*base, "activation=relu"))
    write_run(tmp_path / "b", choices={"activation": "gelu"}, overrides=(*base, "optimizer.lr=0.05"), seed=0)
    records = load_runs([tmp_path])
    # Group choices first, then other overrides; the shared ones (data, model, trainer.epochs, seed) are left out.
    assert differing_settings([record.settings for record in records]) == ["activation", "optimizer.lr"]
    rows = {row["run"]: row for row in as_json(capsys, tmp_path)}
    assert rows["a"]["optimizer.lr"] == "default" and rows["b"]["optimizer.lr"] == "0.05"
    assert "model" not in rows["a"] and "trainer.epochs" not in rows["a"] and "seed" not in rows["a"]

    code, out, _ = run_compare(capsys, tmp_path)
    header = out.splitlines()[2].split()
    assert header[:4] == ["run", "activation", "optimizer.lr", "status"]


def test_group_seeds_gives_mean_and_sample_std(tmp_path, capsys):
    relu = [0.50, 0.60, 0.70]
    for seed, value in enumerate(relu):
        write_run(tmp_path / f"relu{seed}", accuracies=(value,), choices={"activation": "relu"}, seed=seed)
    for seed, value in enumerate([0.40, 0.45]):
        write_run(tmp_path / f"gelu{seed}", accuracies=(value,), choices={"activation": "gelu"}, seed=seed)
    rows = as_json(capsys, tmp_path, "--group-seeds")
    assert [(row["activation"], row["runs"]) for row in rows] == [("relu", 3), ("gelu", 2)]
    assert "seed" not in rows[0]
    assert rows[0]["test_acc"] == pytest.approx(statistics.mean(relu))
    assert rows[0]["test_acc_std"] == pytest.approx(0.1)  # sample std of 0.5, 0.6, 0.7
    assert rows[1]["test_acc_std"] == pytest.approx(statistics.stdev([0.40, 0.45]))

    code, out, _ = run_compare(capsys, tmp_path, "--group-seeds")
    assert "60.00 ± 10.00" in out and "42.50 ± 3.54" in out


def test_seed_groups_count_mixed_statuses(tmp_path, capsys):
    write_run(tmp_path / "s0", accuracies=(0.5,), seed=0)
    write_run(tmp_path / "s1", status="diverged", accuracies=(0.1,), seed=1)
    (row,) = as_json(capsys, tmp_path, "--group-seeds")
    assert row["runs"] == 2 and row["status"] == "1 completed, 1 diverged"


def test_every_format_parses(sweep, capsys):
    code, out, _ = run_compare(capsys, sweep, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 4
    assert {row["status"] for row in rows} == {"completed", "diverged", "unreadable", "partial"}
    assert float(next(row for row in rows if row["run"] == "0")["test_acc"]) == 0.6

    code, out, _ = run_compare(capsys, sweep, "--format", "markdown")
    lines = out.splitlines()
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert len({line.count("|") for line in lines}) == 1 and set(lines[1]) <= set("|-:")
    assert len(lines) == 2 + 4

    code, out, _ = run_compare(capsys, sweep, "--format", "table")
    table = out.split("\n\n")[1].splitlines()
    header, rule = table[0], table[1]
    assert "best test %" in header and set(rule) <= {"-", " "}
    # Aligned: every column of the rule lines up with the header's words.
    starts = [index for index, char in enumerate(rule) if char == "-" and (index == 0 or rule[index - 1] == " ")]
    assert all(header[start] != " " for start in starts)
    assert "60.00" in out  # accuracies in percent, as the caption says
    assert "accuracies in percent" in out


def test_plot_and_report(sweep, tmp_path, capsys):
    figure = tmp_path / "figures" / "curves.png"
    report = tmp_path / "report"
    code, _, _ = run_compare(capsys, sweep, "--plot", figure, "--report", report)
    assert code == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (report / "index.html").read_text()
    assert "<table>" in page and "diverged" in page and "unreadable" in page and "60.00" in page
    assert "data:image/png;base64," in page  # the figure travels inside the page
    assert (report / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_report_escapes_what_run_folders_say(tmp_path, capsys):
    write_run(tmp_path / "a", choices={"activation": "<script>alert(1)</script>"})
    write_run(tmp_path / "b", choices={"activation": "relu"})
    code, _, _ = run_compare(capsys, tmp_path, "--report", tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert code == 0 and "<script>" not in page and "&lt;script&gt;" in page


HOSTILE = {
    "activation": '=HYPERLINK("http://x","y")',
    "optimizer": "+1",
    "model": "@SUM(A1)",
    "data": "<script>alert(1)</script>",
    "=cmd|' /C calc'!A0": "R&D",  # a group's name is a column header
}


def write_hostile_runs(tmp_path: Path) -> Path:
    """Two runs, one whose summary's choices and overrides hold what a spreadsheet or a Markdown viewer would
    run; a negative metric (train_test_gap) besides."""
    write_run(
        tmp_path / "a",
        choices=HOSTILE,
        overrides=("trainer.tag=\t=1+1", "trainer.note=-2+3"),
        train_test_gap=-0.05,
    )
    write_run(tmp_path / "b", train_test_gap=0.25)
    return tmp_path


def test_csv_cells_that_a_spreadsheet_would_run_are_written_as_text(tmp_path, capsys):
    code, out, _ = run_compare(
        capsys, write_hostile_runs(tmp_path), "--format", "csv", "--sort", "run", "--metrics", "train_test_gap"
    )
    assert code == 0
    header, first, second = list(csv.reader(io.StringIO(out)))
    row = dict(zip(header, first, strict=True))
    assert row["activation"] == '\'=HYPERLINK("http://x","y")'
    assert row["optimizer"] == "'+1" and row["model"] == "'@SUM(A1)"
    assert row["trainer.tag"] == "'\t=1+1" and row["trainer.note"] == "'-2+3"
    assert row["'=cmd|' /C calc'!A0"] == "R&D"
    assert row["data"] == "<script>alert(1)</script>"  # not a formula: CSV is plain text, left as it is
    # Numbers stay numbers, a negative one too; only text is quoted.
    assert float(row["train_test_gap"]) == -0.05
    assert float(dict(zip(header, second, strict=True))["train_test_gap"]) == 0.25
    text = header + [
        cell for cells in (first, second) for key, cell in zip(header, cells, strict=True) if key != "train_test_gap"
    ]
    assert not [cell for cell in text if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]


def test_markdown_escapes_html_from_run_folders(tmp_path, capsys):
    code, out, _ = run_compare(capsys, write_hostile_runs(tmp_path), "--format", "markdown", "--sort", "run")
    assert code == 0
    assert "<script>" not in out and "| &lt;script&gt;alert(1)&lt;/script&gt; |" in out
    assert "| R&amp;D |" in out and "=cmd\\|' /C calc'!A0" in out
    # Every line has as many cell borders as the separator: an escaped "\\|" is not one.
    lines = out.splitlines()
    assert len(lines) == 4 and len({len(re.findall(r"(?<!\\)\|", line)) for line in lines}) == 1


def test_missing_path_and_empty_folder_are_clear_errors(tmp_path, capsys):
    code, _, err = run_compare(capsys, tmp_path / "nowhere")
    assert code == 2 and "no such file or folder" in err
    code, _, err = run_compare(capsys, tmp_path)
    assert code == 2 and "No run folders" in err


def test_values_of_the_wrong_type_do_not_crash(tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "test_acc": "high", "choices": [1]}))
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "summary.json").write_text("[1, 2]")
    rows = {row["run"]: row for row in as_json(capsys, tmp_path)}
    assert rows["odd"]["test_acc"] is None and rows["list"]["status"] == "unreadable"


def test_metrics_option_adds_summary_numbers_as_columns(tmp_path, capsys):
    write_run(tmp_path / "0", choices={"activation": "relu"}, train_acc=0.9, ema_test_acc=0.45)
    write_run(tmp_path / "1", choices={"activation": "gelu"}, train_acc=0.8)
    code, out, _ = run_compare(capsys, tmp_path, "--metrics", "train_acc,ema_test_acc", "--sort", "ema_test_acc")
    assert code == 0
    header, _, first, second = out.splitlines()[2:6]
    assert header.rstrip().endswith("train acc %  ema test acc %")
    assert "val acc" not in header  # no run has a validation split: the column would be empty
    assert first.split()[0] == "0" and first.split()[-2:] == ["90.00", "45.00"]
    assert second.split()[0] == "1" and second.split()[-2:] == ["80.00", "-"]  # missing values sort last
    rows = as_json(capsys, tmp_path, "--metrics", "train_acc")
    assert {row["run"]: row["train_acc"] for row in rows} == {"0": 0.9, "1": 0.8}
    code, out, _ = run_compare(capsys, tmp_path, "--metrics", "train_loss,wall_time_s", "--format", "markdown")
    header, separator, first = out.splitlines()[:3]
    assert header.endswith("| train loss |")  # no run has wall_time_s: the column is left out
    assert first.endswith("| 0.6667 |")  # the last epoch's row of metrics.jsonl, to four digits
    assert separator.endswith("|---:|")  # numbers right-aligned like the other metrics


def test_long_sampled_values_print_to_four_significant_digits(tmp_path, capsys):
    write_run(tmp_path / "0", overrides=("optimizer.lr=0.044303752452182654",))
    write_run(tmp_path / "1", overrides=("optimizer.lr=0.1",))
    code, out, _ = run_compare(capsys, tmp_path, "--format", "markdown", "--sort", "run")
    assert code == 0
    assert "| 0.0443 |" in out and "| 0.1 |" in out and "0.04430375" not in out
    assert as_json(capsys, tmp_path, "--sort", "run")[0]["optimizer.lr"] == "0.044303752452182654"  # json keeps all
