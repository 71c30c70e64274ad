"""python -m runner.compare on run folders written here by hand (config.json, summary.json, metrics.jsonl and
.hydra/ as runner.train leaves them): every status a folder can be in, the columns that differ, --where and
--all, seed groups with their intervals and a baseline, the test-images note, each output format, the figures
and the HTML report; and one real sweep through the entrypoint."""

import copy
import csv
import io
import json
import math
import re
import statistics
import warnings
from pathlib import Path

import pytest

from runner import compare
from runner.report.runs import load_runs
from runner.report.table import differing_settings
from tests.conftest import SMOKE, run_entrypoint

OPTIONS_TESTED: dict[str, set[str]] = {}  # compare is a command, not a config group

CHOICES = {"model": "convnet", "activation": "relu", "init": "default", "optimizer": "nesterov", "data": "synthetic"}
# The option files' contents, as a resolved config holds them (conf/activation/*.yaml, conf/init/*.yaml).
ACTIVATIONS = {
    "relu": {"_target_": "torch.nn.ReLU", "_partial_": True},
    "gelu": {"_target_": "torch.nn.GELU", "_partial_": True, "approximate": "none"},
    "silu": {"_target_": "torch.nn.SiLU", "_partial_": True},
    "tanh": {"_target_": "torch.nn.Tanh", "_partial_": True},
    "selu": {"_target_": "torch.nn.SELU", "_partial_": True},
}
INITS = {
    "default": {"_target_": "runner.init.default", "_partial_": True, "bias": None, "zero_residual": False},
    "kaiming": {
        "_target_": "runner.init.kaiming",
        "_partial_": True,
        "gain": None,
        "mode": "fan_in",
        "distribution": "normal",
        "bias": 0.0,
        "zero_residual": False,
    },
    "xavier": {
        "_target_": "runner.init.xavier",
        "_partial_": True,
        "gain": 1.0,
        "mode": "fan_in",
        "distribution": "normal",
        "bias": 0.0,
        "zero_residual": False,
    },
}
CONFIG = {
    "seed": 0,
    "resume": None,
    "optimized_metric": "test_acc",
    "trainer": {"epochs": 3, "device": "cpu", "precision": "auto", "channels_last": True, "progress": False},
    "finetune": {"checkpoint": None, "freeze": "none", "new_head": "auto", "head_lr_multiplier": 1.0},
    "data": {
        "source": "synthetic",
        "name": "synthetic",
        "train_size": 200,
        "test_size": 100,
        "batch_size": 50,
        "subset": None,
        "test_subset": None,
        "val_size": 0,
        "classes": None,
    },
    "model": {"_target_": "runner.models.convnet.ConvNet", "widths": [8, 16], "convs_per_stage": 1},
    "activation": ACTIVATIONS["relu"],
    "init": INITS["default"],
    "norm": {"_target_": "runner.norms.BatchNorm", "_partial_": True, "momentum": 0.1, "eps": 1e-05},
    "preprocess": {"_target_": "runner.preprocess.Standardize", "cache_dir": "/project/data/cache"},
    "regularizer": {"l2": {"_target_": "runner.regularize.WeightDecay", "weight_decay": 0.0005}},
    "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9, "nesterov": True},
    "schedule": {"_target_": "runner.schedules.cosine", "_partial_": True, "warmup_epochs": 0, "final": 0.0},
    "averaging": {},
    "tta": {},
    "logger": {},
}


def run_config(choices: dict, seed: int, **values) -> dict:
    """A resolved config as runner.resume writes it: the chosen options' contents, then ``values``
    (``optimizer__lr=0.1`` sets optimizer.lr), whatever set them."""
    config = copy.deepcopy(CONFIG)
    config["seed"] = seed
    config["activation"] = copy.deepcopy(ACTIVATIONS.get(choices["activation"], ACTIVATIONS["relu"]))
    config["init"] = copy.deepcopy(INITS.get(choices["init"], INITS["default"]))
    for name, value in values.items():
        *path, last = name.split("__")
        node = config
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return config


def write_run(
    folder: Path,
    status: str = "completed",
    accuracies=(0.3, 0.5, 0.4),
    choices: dict | None = None,
    overrides=("data=synthetic",),
    seed: int = 0,
    config: dict | None = None,
    **extra,
) -> Path:
    """A run folder as runner.train and runner.loop leave it: config.json, one metrics.jsonl line per epoch, a
    summary.json, .hydra/. ``config``: the values the resolved config holds beyond the chosen options'."""
    chosen = {**CHOICES, **(choices or {})}
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / "config.json").write_text(json.dumps(run_config(chosen, seed, **(config or {})), indent=2))
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
        "output_dir": str(folder),
        "choices": chosen,
        "overrides": [*overrides, f"seed={seed}"],
        "seed": seed,
        **extra,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_refused(folder: Path, overrides=("optimizer.lr=-1",), seed: int = 0) -> Path:
    """A start refused in a new sweep job folder: runner.train writes error.txt and a failed, refused summary,
    and no config.json (the config was refused before it was written)."""
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    message = "optimizer.lr=-1 is not allowed: it must be a learning rate > 0."
    (folder / "error.txt").write_text(message + "\n")
    summary = {
        "status": "failed",
        "refused": True,
        "error": message,
        "choices": CHOICES,
        "overrides": [*overrides, f"seed={seed}"],
        "seed": seed,
        "started": 0.0,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_diagnose(folder: Path) -> Path:
    """A python -m runner.diagnose folder: diagnose.json and activations.json, and Hydra's .hydra/."""
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / "diagnose.json").write_text(json.dumps({"initial_loss": 2.3, "warnings": []}))
    (folder / "activations.json").write_text(json.dumps([{"layer": "0", "mean": 0.0, "std": 1.0}]))
    return folder


def run_compare(capsys, *arguments) -> tuple[int, str, str]:
    code = compare.main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(capsys, *arguments) -> list[dict]:
    code, out, err = run_compare(capsys, *arguments, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def table_lines(out: str) -> list[str]:
    """The aligned table of the text output: from its header to the blank line before the notes."""
    return out.split("\n\n")[1].splitlines()


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A sweep with one completed run, one diverged, one killed while writing summary.json, one killed after
    its config.json and first epoch's metrics line (and a torn second line)."""
    root = tmp_path / "multirun" / "2025-01-01" / "12-00-00"
    write_run(root / "0", accuracies=(0.3, 0.6), choices={"activation": "relu"}, warnings=["a", "b"])
    write_run(root / "1", status="diverged", accuracies=(0.1,), choices={"activation": "gelu"})
    torn = write_run(root / "2", accuracies=(0.2, 0.3), choices={"activation": "selu"})
    text = (torn / "summary.json").read_text()
    (torn / "summary.json").write_text(text[: len(text) // 2])
    partial = root / "10"
    (partial / ".hydra").mkdir(parents=True)
    (partial / "config.json").write_text(json.dumps(run_config({**CHOICES, "activation": "tanh"}, 0)))
    (partial / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": 0.25, "train_loss": 2.1}) + '\n{"epo')
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_sweep_lists_every_run_with_its_status_with_all(sweep, capsys):
    rows = {row["run"]: row for row in as_json(capsys, sweep, "--sort", "run", "--all")}
    assert list(rows) == ["0", "1", "2", "10"]  # natural order of job numbers
    assert {name: row["status"] for name, row in rows.items()} == {
        "0": "completed",
        "1": "diverged",
        "2": "unreadable",
        "10": "partial",
    }
    assert rows["0"]["best_test_acc"] == 0.6 and rows["0"]["warnings"] == 2
    # A garbled summary.json still shows what metrics.jsonl recorded, and says why the summary is missing; the
    # settings still come from config.json, the choice it cannot tell is unknown.
    assert rows["2"]["test_acc"] == 0.3 and rows["2"]["activation"] == "?"
    assert "summary.json cannot be read" in rows["2"]["note"]
    # Only the complete line of a torn metrics.jsonl counts.
    assert rows["10"]["epochs_completed"] == 1 and rows["10"]["test_acc"] == 0.25

    code, out, _ = run_compare(capsys, sweep, "--all")
    assert code == 0 and out.startswith("4 runs; ")
    for status in ("completed", "diverged", "unreadable", "partial"):
        assert status in out


def test_by_default_only_completed_runs_and_one_line_says_what_was_left_out(tmp_path, capsys):
    root = tmp_path / "sweep"
    for job in range(12):
        write_run(root / str(job), choices={"activation": "relu" if job % 2 else "gelu"}, seed=job)
    write_run(root / "12", status="failed", error="Traceback ...\nRuntimeError: boom")
    write_run(root / "13", status="failed", error="Traceback ...\nRuntimeError: boom")
    write_refused(root / "14")
    for name in ("15", "16", "17"):
        write_diagnose(tmp_path / "diagnose" / name)
    code, out, err = run_compare(capsys, tmp_path)
    assert code == 0, err
    assert out.splitlines()[0] == (
        "12 runs (3 not training runs skipped, 2 failed and 1 refused left out: --all shows them); "
        "accuracies in percent"
    )
    assert len(table_lines(out)) == 2 + 12 and "status" not in table_lines(out)[0]  # all completed: no column
    # --all shows every record, a refused start among them with the value that was refused.
    rows = {row["run"]: row for row in as_json(capsys, tmp_path, "--all")}
    assert len(rows) == 15 and rows["14"]["status"] == "failed"
    assert rows["14"]["optimizer.lr"] == "-1" and "not allowed" in rows["14"]["note"]
    assert not any(name.startswith("diagnose") for name in rows)
    # csv and json keep stdout for data; the line goes to stderr.
    code, _, err = run_compare(capsys, tmp_path, "--format", "csv")
    assert err.splitlines()[0].startswith("12 runs (3 not training runs skipped")


def test_nothing_to_show_is_a_clear_error(tmp_path, capsys):
    write_refused(tmp_path / "sweep" / "0")
    write_diagnose(tmp_path / "diagnose")
    code, _, err = run_compare(capsys, tmp_path)
    assert code == 2 and "No runs to compare: 0 runs (1 not training run skipped, 1 refused left out" in err
    code, _, err = run_compare(capsys, tmp_path / "diagnose")
    assert code == 2 and "No run folders" in err and "1 folders there are not training runs" in err


def test_default_sort_is_best_accuracy_first_with_missing_last(tmp_path, capsys):
    write_run(tmp_path / "low", accuracies=(0.2,), choices={"activation": "tanh"}, train_time_s=9.0)
    write_run(tmp_path / "high", accuracies=(0.9, 0.1), choices={"activation": "gelu"}, train_time_s=5.0)
    write_run(tmp_path / "none", status="diverged", accuracies=(), choices={"activation": "silu"}, train_time_s=None)
    assert [row["run"] for row in as_json(capsys, tmp_path, "--all")] == ["high", "low", "none"]
    assert [row["run"] for row in as_json(capsys, tmp_path, "--all", "--sort", "test_acc")] == ["low", "high", "none"]
    assert [row["run"] for row in as_json(capsys, tmp_path, "--all", "--sort", "train_time_s")] == [
        "high",
        "low",
        "none",
    ]
    code, _, err = run_compare(capsys, tmp_path, "--sort", "nonsense")
    assert code == 2 and "best_test_acc" in err


def test_settings_come_from_the_resolved_config_whatever_set_them(tmp_path, capsys):
    """optimizer.lr=0.1 from the command line, 0.02 from an experiment file (the command line only says
    experiment=slow), 0.05 left at the option's value: every value shows, none as "default"."""
    write_run(tmp_path / "a", overrides=("optimizer.lr=0.1",), config={"optimizer__lr": 0.1})
    write_run(
        tmp_path / "b",
        choices={"experiment": "slow"},
        overrides=("experiment=slow",),
        config={"optimizer__lr": 0.02, "trainer__epochs": 6},
    )
    write_run(tmp_path / "c", choices={"experiment": "none"})
    records = load_runs([tmp_path]).records
    assert differing_settings(records) == ["optimizer.lr", "experiment", "trainer.epochs"]
    rows = {row["run"]: row for row in as_json(capsys, tmp_path)}
    assert {name: row["optimizer.lr"] for name, row in rows.items()} == {"a": "0.1", "b": "0.02", "c": "0.05"}
    assert rows["b"]["trainer.epochs"] == "6" and rows["a"]["trainer.epochs"] == "3"
    assert rows["a"]["experiment"] == "-"  # the group did not exist in that run's choices
    assert not any("default" in str(value) for row in rows.values() for value in row.values())
    # Build keys, folders and shared settings are not columns.
    assert not any(key.endswith(("_target_", "_partial_", "cache_dir")) for row in rows.values() for key in row)
    assert "model" not in rows["a"] and "seed" not in rows["a"] and "resume" not in rows["a"]


def test_choice_columns_and_what_an_option_file_sets(tmp_path, capsys):
    """init=kaiming and init=xavier differ in init.gain and init.bias: the init column says it, those keys are
    not columns of their own. optimizer.lr varying within one init is."""
    for index, (init, lr) in enumerate([("kaiming", 0.1), ("xavier", 0.1), ("kaiming", 0.01), ("default", 0.1)]):
        write_run(tmp_path / str(index), choices={"init": init}, config={"optimizer__lr": lr})
    code, out, _ = run_compare(capsys, tmp_path, "--sort", "run")
    header = table_lines(out)[0].split()
    assert code == 0 and header[:3] == ["run", "init", "optimizer.lr"]
    assert "init.gain" not in out and "init.bias" not in out


def test_columns_follow_the_command_line_and_the_seed_goes_last(tmp_path, capsys):
    for seed in (0, 1):
        for activation in ("relu", "gelu"):
            for init in ("kaiming", "xavier"):
                write_run(
                    tmp_path / f"{activation}-{init}-{seed}",
                    choices={"activation": activation, "init": init},
                    overrides=(f"activation={activation}", f"init={init}"),
                    seed=seed,
                )
    code, out, _ = run_compare(capsys, tmp_path)
    assert table_lines(out)[0].split()[:4] == ["run", "activation", "init", "seed"]


def test_where_selects_by_setting_choice_and_summary_field(tmp_path, capsys):
    write_run(tmp_path / "a", choices={"activation": "gelu"}, config={"optimizer__lr": 0.1}, device="cpu")
    write_run(tmp_path / "b", choices={"activation": "relu"}, config={"optimizer__lr": 0.1}, device="cuda")
    write_run(tmp_path / "c", choices={"activation": "gelu"}, config={"optimizer__lr": 0.01}, device="cpu")
    write_run(tmp_path / "d", status="diverged", choices={"activation": "gelu"}, config={"optimizer__lr": 0.1})

    def runs(*conditions) -> list[str]:
        arguments = [part for condition in conditions for part in ("--where", condition)]
        return sorted(row["run"] for row in as_json(capsys, tmp_path, *arguments))

    assert runs("activation=gelu") == ["a", "c"]
    assert runs("optimizer.lr=1e-1") == ["a", "b"]  # numbers compare as numbers
    assert runs("optimizer.lr=0.10", "activation=gelu") == ["a"]  # repeated: all must hold
    assert runs("device=cuda") == ["b"]  # a summary field
    assert runs("model.widths=[8,16]", "optimizer.nesterov=True") == ["a", "b", "c"]  # lists, booleans as typed
    assert runs("status=diverged") == ["d"]  # a condition on the status replaces the default one
    code, out, err = run_compare(capsys, tmp_path, "--where", "activation=gelu")
    assert out.startswith("2 runs (1 not matching --where activation=gelu, 1 diverged left out: --all shows them)")
    code, _, err = run_compare(capsys, tmp_path, "--where", "optimiser.lr=0.1")
    assert code == 2 and "optimiser.lr" in err and "Did you mean optimizer.lr" in err
    code, _, err = run_compare(capsys, tmp_path, "--where", "activation")
    assert code == 2 and "KEY=VALUE" in err


def test_all_shows_every_status_and_the_default_completed_ones(tmp_path, capsys):
    statuses = ["completed", "diverged", "interrupted", "failed", "running"]
    for index, status in enumerate(statuses):
        write_run(tmp_path / str(index), status=status, seed=index)
    write_refused(tmp_path / "5")
    assert [row["status"] for row in as_json(capsys, tmp_path)] == ["completed"]
    assert sorted(row["status"] for row in as_json(capsys, tmp_path, "--all")) == sorted([*statuses, "failed"])
    code, out, _ = run_compare(capsys, tmp_path)
    assert "1 diverged, 1 interrupted, 1 failed, 1 running and 1 refused left out" in out.splitlines()[0]


def write_36_runs(root: Path, epochs: int = 4) -> dict:
    """3 seeds x 4 activations x 3 inits, as `-m activation=relu,gelu,silu,tanh init=default,kaiming,xavier
    seed=0,1,2` writes them, plus a refused job; returns each setting's test accuracies by seed."""
    accuracies = {}
    job = 0
    for activation_index, activation in enumerate(["relu", "gelu", "silu", "tanh"]):
        for init_index, init in enumerate(["default", "kaiming", "xavier"]):
            for seed in range(3):
                final = 0.5 + 0.03 * activation_index + 0.01 * init_index + 0.004 * seed * (1 + activation_index)
                curve = tuple(final * (epoch / epochs) ** 0.5 for epoch in range(1, epochs + 1))
                accuracies.setdefault((activation, init), []).append(curve[-1])
                write_run(
                    root / str(job),
                    accuracies=curve,
                    choices={"activation": activation, "init": init},
                    overrides=("data=synthetic", f"activation={activation}", f"init={init}"),
                    seed=seed,
                    test_images=100,
                )
                job += 1
    write_refused(root / str(job), overrides=("data=synthetic", "activation=relu", "init=default", "optimizer.lr=-1"))
    return accuracies


def test_36_run_sweep_grouped_by_seed_gives_12_rows_with_intervals(tmp_path, capsys):
    accuracies = write_36_runs(tmp_path / "sweep")
    write_diagnose(tmp_path / "diagnose")
    code, out, err = run_compare(capsys, tmp_path, "--group-seeds", "--sort", "test_acc")
    assert code == 0, err
    assert out.splitlines()[0].startswith("36 runs (1 not training run skipped, 1 refused left out")
    lines = table_lines(out)
    header, body = lines[0], lines[2:]
    assert header.split()[:3] == ["n", "activation", "init"] and "95% CI" in header
    assert len(body) == 12 and all(line.split()[0] == "3" for line in body)

    rows = as_json(capsys, tmp_path, "--group-seeds", "--sort", "test_acc")
    assert len(rows) == 12 and {row["n"] for row in rows} == {3}
    best = rows[0]
    assert (best["activation"], best["init"]) == ("tanh", "xavier")
    values = accuracies[("tanh", "xavier")]
    # By hand: mean ± t(0.975, 2) s / sqrt(3), t(0.975, 2) = 4.3027.
    half = 4.302653 * statistics.stdev(values) / math.sqrt(3)
    assert best["test_acc_mean"] == pytest.approx(statistics.mean(values))
    assert best["test_acc_std"] == pytest.approx(statistics.stdev(values))
    assert best["test_acc_ci_low"] == pytest.approx(statistics.mean(values) - half, rel=1e-6)
    assert best["test_acc_ci_high"] == pytest.approx(statistics.mean(values) + half, rel=1e-6)
    assert "seed" not in best and best["status"] == "completed" and len(best["folders"]) == 3
    # The text shows the same numbers: mean ± std, then the interval, in percent.
    first = body[0]
    mean, std = 100 * statistics.mean(values), 100 * statistics.stdev(values)
    assert f"{mean:.2f} ± {std:.2f}" in first
    assert f"[{mean - 100 * half:.2f}, {mean + 100 * half:.2f}]" in first


def test_baseline_gives_each_group_its_difference_with_a_welch_interval(tmp_path, capsys):
    relu, gelu = [0.50, 0.52, 0.55], [0.56, 0.60, 0.61, 0.63]
    for seed, value in enumerate(relu):
        write_run(tmp_path / f"relu{seed}", accuracies=(value,), choices={"activation": "relu"}, seed=seed)
    for seed, value in enumerate(gelu):
        write_run(tmp_path / f"gelu{seed}", accuracies=(value,), choices={"activation": "gelu"}, seed=seed)
    rows = {row["activation"]: row for row in as_json(capsys, tmp_path, "--baseline", "activation=relu")}
    # Welch by hand: se² = s1²/n1 + s2²/n2, df = se⁴ / ((s1²/n1)²/(n1-1) + (s2²/n2)²/(n2-1)).
    first, second = statistics.variance(gelu) / 4, statistics.variance(relu) / 3
    degrees = (first + second) ** 2 / (first**2 / 3 + second**2 / 2)
    assert degrees == pytest.approx(4.8242, abs=1e-4)  # s1²/n1 = 2.1667e-4, s2²/n2 = 2.1111e-4
    # t(0.975, 4.8242) = 2.5990; the tables' 2.776 (4 df) and 2.571 (5 df), interpolated in 1/df, give 2.601.
    quantile = 2.5990
    difference = statistics.mean(gelu) - statistics.mean(relu)
    half = quantile * math.sqrt(first + second)
    assert rows["gelu"]["test_acc_difference"] == pytest.approx(difference)
    assert rows["gelu"]["test_acc_difference_ci_low"] == pytest.approx(difference - half, abs=1e-5)
    assert rows["gelu"]["test_acc_difference_ci_high"] == pytest.approx(difference + half, abs=1e-5)
    assert rows["relu"]["baseline"] is True and rows["relu"]["test_acc_difference"] == 0.0
    assert rows["gelu"]["n"] == 4 and rows["relu"]["n"] == 3

    code, out, _ = run_compare(capsys, tmp_path, "--baseline", "activation=relu", "--sort", "test_acc")
    assert "Δ vs activation=relu" in out and "Welch" in out
    gelu_line = next(line for line in table_lines(out) if " gelu " in line)
    assert f"+{100 * difference:.2f} [" in gelu_line
    assert "baseline" in next(line for line in table_lines(out) if " relu " in line)
    code, _, err = run_compare(capsys, tmp_path, "--baseline", "activation=mish")
    assert code == 2 and "no group has activation=mish" in err and "gelu, relu" in err
    code, _, err = run_compare(capsys, tmp_path, "--baseline", "optimizer.lr=0.1")
    assert code == 2 and "not a setting that differs" in err


def test_baseline_pairs_each_group_with_the_one_alike_in_other_settings(tmp_path, capsys):
    for activation, offset in (("relu", 0.0), ("gelu", 0.1)):
        for init, base in (("kaiming", 0.5), ("xavier", 0.3)):
            for seed in range(2):
                value = base + offset + 0.01 * seed
                write_run(
                    tmp_path / f"{activation}-{init}-{seed}",
                    accuracies=(value,),
                    choices={"activation": activation, "init": init},
                    seed=seed,
                )
    rows = as_json(capsys, tmp_path, "--baseline", "activation=relu")
    differences = {(row["activation"], row["init"]): row["test_acc_difference"] for row in rows}
    assert differences[("gelu", "kaiming")] == pytest.approx(0.1)  # against relu with kaiming, not xavier
    assert differences[("gelu", "xavier")] == pytest.approx(0.1)


def test_a_note_and_a_column_when_runs_were_tested_on_different_numbers_of_images(tmp_path, capsys):
    write_run(tmp_path / "a", choices={"activation": "relu"}, test_images=1000, config={"data__test_subset": 1000})
    write_run(tmp_path / "b", choices={"activation": "gelu"}, test_images=10000)
    write_run(tmp_path / "c", choices={"activation": "silu"})  # from before test_images: unknown
    code, out, _ = run_compare(capsys, tmp_path)
    assert "test images" in table_lines(out)[0]
    assert "different numbers of test images (1,000, 10,000" in out.split("Notes:")[1]
    rows = {row["run"]: row for row in as_json(capsys, tmp_path)}
    assert rows["a"]["test_images"] == 1000 and rows["c"]["test_images"] is None

    # Alike, or known for one run only: nothing to say.
    (tmp_path / "b" / "summary.json").unlink()
    (tmp_path / "a" / "summary.json").unlink()
    write_run(tmp_path / "d", choices={"activation": "tanh"}, test_images=10000)
    code, out, _ = run_compare(capsys, tmp_path)
    assert "test images" not in out


def test_every_format_parses(sweep, capsys):
    code, out, _ = run_compare(capsys, sweep, "--format", "csv", "--all")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 4
    assert {row["status"] for row in rows} == {"completed", "diverged", "unreadable", "partial"}
    assert float(next(row for row in rows if row["run"] == "0")["test_acc"]) == 0.6

    code, out, _ = run_compare(capsys, sweep, "--format", "markdown", "--all")
    lines = out.splitlines()
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert len({line.count("|") for line in lines}) == 1 and set(lines[1]) <= set("|-:")
    assert len(lines) == 2 + 4

    code, out, _ = run_compare(capsys, sweep, "--format", "table", "--all")
    table = table_lines(out)
    header, rule = table[0], table[1]
    assert "best test %" in header and set(rule) <= {"-", " "}
    # Aligned: every column of the rule lines up with the header's words.
    starts = [index for index, char in enumerate(rule) if char == "-" and (index == 0 or rule[index - 1] == " ")]
    assert all(header[start] != " " for start in starts)
    assert "60.00" in out  # accuracies in percent, as the caption says
    assert "accuracies in percent" in out


def test_grouped_csv_has_the_interval_fields(tmp_path, capsys):
    for seed, value in enumerate([0.55, 0.56]):
        write_run(tmp_path / str(seed), accuracies=(value,), seed=seed)
    code, out, _ = run_compare(capsys, tmp_path, "--group-seeds", "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["n"] == "2"
    half = 12.706205 * statistics.stdev([0.55, 0.56]) / math.sqrt(2)  # t(0.975, 1): [0.49, 0.62]
    assert float(row["test_acc_ci_low"]) == pytest.approx(0.555 - half, rel=1e-6)
    assert float(row["test_acc_ci_high"]) == pytest.approx(0.555 + half, rel=1e-6)


def test_seed_groups_count_mixed_statuses(tmp_path, capsys):
    write_run(tmp_path / "s0", accuracies=(0.5,), seed=0)
    write_run(tmp_path / "s1", status="diverged", accuracies=(0.1,), seed=1)
    (row,) = as_json(capsys, tmp_path, "--group-seeds", "--all")
    assert row["n"] == 2 and row["status"] == "1 completed, 1 diverged"


def test_plot_of_the_36_runs_is_readable_without_warnings(tmp_path, capsys):
    write_36_runs(tmp_path / "sweep")
    figure = tmp_path / "figures" / "curves.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_compare(capsys, tmp_path / "sweep", "--plot", figure)
    assert code == 0 and not [str(warning.message) for warning in caught]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"Learning curves: {figure}" in err
    assert not (tmp_path / "figures" / "curves-search.png").exists()  # a grid from the command line: no search


def test_plot_and_report(sweep, tmp_path, capsys):
    figure = tmp_path / "figures" / "curves.png"
    report = tmp_path / "report"
    code, _, err = run_compare(capsys, sweep, "--all", "--plot", figure, "--report", report)
    assert code == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (report / "index.html").read_text()
    assert "<table aria-labelledby=" in page and "diverged" in page and "unreadable" in page and "60.00" in page
    assert "data:image/png;base64," in page  # the figure travels inside the page
    assert (report / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert f"Report: {report / 'index.html'}" in err


def test_report_fills_the_page_with_links_sort_values_and_groups(tmp_path, capsys, monkeypatch):
    pages = []
    monkeypatch.setattr(compare, "render_page", lambda page: pages.append(page) or "<html></html>")
    sweep = tmp_path / "multirun" / "sweep"
    for seed, (relu, gelu) in enumerate([(0.5, 0.6), (0.52, 0.58)]):
        write_run(sweep / f"r{seed}", accuracies=(relu,), choices={"activation": "relu"}, seed=seed)
        write_run(sweep / f"g{seed}", accuracies=(gelu,), choices={"activation": "gelu"}, seed=seed)
    report = tmp_path / "report"
    code, _, _ = run_compare(capsys, sweep, "--group-seeds", "--baseline", "activation=relu", "--report", report)
    assert code == 0
    (page,) = pages
    assert page.title == "Comparison of 4 runs" and "--baseline activation=relu" in page.command
    shared = dict(page.shared)
    assert shared["model"] == "convnet" and shared["optimizer.lr"] == "0.05" and "activation" not in shared
    assert not any(key.endswith("_target_") for key in shared)
    groups, runs = page.tables  # the seed groups first
    assert len(runs.rows) == 4 and len(groups.rows) == 2
    label = runs.rows[0][0]
    assert label.href == "../multirun/sweep/g0/" and label.text == "g0"  # relative to the report folder
    summary, metrics = runs.rows[0][-2:]
    assert (summary.href, metrics.href) == ("../multirun/sweep/g0/summary.json", "../multirun/sweep/g0/metrics.jsonl")
    column = runs.headers.index("test acc %")
    assert runs.numeric[column] and runs.rows[0][column].sort == 0.6 and runs.rows[0][column].text == "60.00"
    assert runs.rows[0][runs.headers.index("activation")].sort == "gelu"  # text sorts by text
    assert "Δ vs activation=relu" in groups.headers and "95% CI" in groups.headers
    assert groups.rows[0][groups.headers.index("test acc %")].sort == pytest.approx(0.59)
    assert [figure.caption.split(":")[0] for figure in page.figures] == ["Learning curves"]
    assert page.notes[0] == "4 runs"


def write_search(root: Path, trials: int = 12) -> None:
    """An Optuna search as runner.train leaves it: the jobs' .hydra/hydra.yaml hold hydra.sweeper.params (the
    Optuna sweeper writes no multirun.yaml), the configs optimized_metric=val_acc."""
    for trial in range(trials):
        lr = 10 ** (-3 + 3 * trial / trials)
        decay = 10 ** (-5 + 3 * ((trial * 7) % trials) / trials)
        folder = write_run(
            root / str(trial),
            accuracies=(0.2, 0.3 + 0.02 * trial),
            overrides=(f"optimizer.lr={lr}", f"regularizer.l2.weight_decay={decay}", "hparams_search=lr_wd"),
            config={
                "optimizer__lr": lr,
                "regularizer__l2__weight_decay": decay,
                "optimized_metric": "val_acc",
                "data__val_size": 100,
            },
        )
        summary = json.loads((folder / "summary.json").read_text())
        summary["val_acc"] = 0.4 - abs(trial - 8) * 0.02
        (folder / "summary.json").write_text(json.dumps(summary))
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        for row in history:
            row["val_acc"] = summary["val_acc"] * row["epoch"] / 2
        (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
        (folder / ".hydra" / "hydra.yaml").write_text(
            "hydra:\n  sweeper:\n    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper\n"
            "    direction: maximize\n    params:\n      optimizer.lr: tag(log, interval(1e-3, 1))\n"
            "      regularizer.l2.weight_decay: tag(log, interval(1e-5, 1e-2))\n"
            "  runtime:\n    choices:\n      activation: relu\n"
        )


def test_a_search_sorts_and_plots_the_metric_it_optimised(tmp_path, capsys):
    write_search(tmp_path / "search")
    rows = as_json(capsys, tmp_path / "search")
    assert [row["run"] for row in rows][0] == "8"  # best validation accuracy first, not best test
    figure = tmp_path / "curves.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run_compare(capsys, tmp_path / "search", "--plot", figure, "--report", tmp_path / "report")
    assert code == 0 and not [str(warning.message) for warning in caught]
    search = tmp_path / "curves-search.png"
    assert search.read_bytes()[:4] == b"\x89PNG" and f"Score against each searched parameter: {search}" in err
    assert (tmp_path / "report" / "search.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "val acc % against each searched parameter" in page
    assert re.search(r"optimizer\.lr\s+regularizer\.l2\.weight_decay", out)


def test_report_escapes_what_run_folders_say(tmp_path, capsys):
    write_run(tmp_path / "a", choices={"activation": "<script>alert(1)</script>"})
    write_run(tmp_path / "b", choices={"activation": "relu"})
    code, _, _ = run_compare(capsys, tmp_path, "--report", tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert code == 0 and "<script>alert(1)" not in page and "&lt;script&gt;" in page


HOSTILE = {
    "activation": '=HYPERLINK("http://x","y")',
    "optimizer": "+1",
    "model": "@SUM(A1)",
    "data": "<script>alert(1)</script>",
    "=cmd|' /C calc'!A0": "R&D",  # a group's name is a column header
}


def write_hostile_runs(tmp_path: Path) -> Path:
    """Two runs, one whose summary's choices and config hold what a spreadsheet or a Markdown viewer would
    run; a negative metric (train_test_gap) besides."""
    write_run(
        tmp_path / "a",
        choices={**HOSTILE, "activation": "relu"},
        config={"trainer__tag": "\t=1+1", "trainer__note": "-2+3"},
        train_test_gap=-0.05,
    )
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    summary["choices"]["activation"] = HOSTILE["activation"]
    (tmp_path / "a" / "summary.json").write_text(json.dumps(summary))
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
    (folder / "config.json").write_text("[1, 2]")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "summary.json").write_text("[1, 2]")
    rows = {row["run"]: row for row in as_json(capsys, tmp_path, "--all")}
    assert rows["odd"]["test_acc"] is None and rows["list"]["status"] == "unreadable"


def test_metrics_option_adds_summary_numbers_as_columns(tmp_path, capsys):
    write_run(tmp_path / "0", choices={"activation": "relu"}, train_acc=0.9, ema_test_acc=0.45)
    write_run(tmp_path / "1", choices={"activation": "gelu"}, train_acc=0.8)
    code, out, _ = run_compare(capsys, tmp_path, "--metrics", "train_acc,ema_test_acc", "--sort", "ema_test_acc")
    assert code == 0
    header, _, first, second = table_lines(out)
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
    write_run(tmp_path / "0", config={"optimizer__lr": 0.044303752452182654})
    write_run(tmp_path / "1", config={"optimizer__lr": 0.1})
    code, out, _ = run_compare(capsys, tmp_path, "--format", "markdown", "--sort", "run")
    assert code == 0
    assert "| 0.0443 |" in out and "| 0.1 |" in out and "0.04430375" not in out
    assert as_json(capsys, tmp_path, "--sort", "run")[0]["optimizer.lr"] == "0.044303752452182654"  # json keeps all


@pytest.mark.slow
def test_a_real_sweep_with_experiment_files(tmp_path, capsys):
    """2 experiment files x 2 seeds through python -m runner.train -m: what the files set differently
    (cpu_fast: augmentation.flip.alternate=true, trainer.eval_every=1000, averaging=lookahead) are columns, though
    no command line says them; a diagnose folder and a refused job in the sweep folder are not rows."""
    arguments = [
        "-m",
        *SMOKE,
        "model=fastnet",  # the experiments' own network (cpu_fast sets its stem), small
        "model.widths=[8,16,16]",
        "init=default",
        "diagnostics=off",
        "experiment=cpu_quick,cpu_fast",
        "trainer.time_budget=null",  # cpu_fast's 5 minutes: SMOKE's one epoch instead
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    result = run_entrypoint(arguments, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    write_diagnose(tmp_path / "sweep" / "diagnose")
    write_refused(tmp_path / "sweep" / "9")

    rows = as_json(capsys, tmp_path / "sweep", "--group-seeds", "--sort", "experiment")
    assert [(row["experiment"], row["augmentation.flip.alternate"], row["n"]) for row in rows] == [
        ("cpu_fast", "true", 2),
        ("cpu_quick", "false", 2),
    ]
    assert [row["averaging"] for row in rows] == ["lookahead", "none"] and "seed" not in rows[0]
    assert all(row["test_acc_ci_low"] <= row["test_acc_mean"] <= row["test_acc_ci_high"] for row in rows)
    code, out, _ = run_compare(capsys, tmp_path / "sweep", "--group-seeds")
    assert out.startswith("4 runs (1 not training run skipped, 1 refused left out: --all shows them)")
    assert len(table_lines(out)) == 2 + 2
    # Values the experiment set for both, and the command line's, are listed once in the report.
    report = tmp_path / "report"
    assert compare.main([str(tmp_path / "sweep"), "--report", str(report)]) == 0
    page = (report / "index.html").read_text()
    assert "optimizer.lr" in page and "0.1875" in page  # cpu_quick's learning rate, shared by both


def test_curve_picks_the_accuracy_the_figure_draws_and_refuses_one_no_epoch_holds(tmp_path, capsys, monkeypatch):
    drawn = []
    monkeypatch.setattr(compare, "figure_png", lambda rows, columns, accuracy: drawn.append(accuracy) or b"PNG")
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", choices={"activation": "relu"})
    write_run(sweep / "1", choices={"activation": "gelu"})
    with (sweep / "1" / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"epoch": 4, "train_acc": 0.6, "test_acc": 0.45}) + "\n")
    figure = tmp_path / "curves.png"
    assert run_compare(capsys, sweep, "--plot", figure)[0] == 0
    assert run_compare(capsys, sweep, "--plot", figure, "--curve", "train_acc")[0] == 0
    assert drawn == ["test_acc", "train_acc"]
    code, _, err = run_compare(capsys, sweep, "--plot", figure, "--curve", "val_acc")
    assert code == 2 and "--curve val_acc: no epoch of these runs' metrics.jsonl holds it." in err
    code, _, err = run_compare(capsys, sweep, "--plot", figure, "--curve", "train_loss")
    assert code == 2 and "--curve train_loss: not an accuracy" in err
