"""Babysitting every run (runner.callbacks.diagnostics, diagnostics=on): the initial-loss check with and without
regularization, the files it writes, its warnings on runs built to trigger them, and diagnostics=off."""

import math

import pytest
import torch
import torch.nn.functional as F

from runner.callbacks.diagnostics import Diagnostics, loss_trend, plateau_then_drop
from runner.files import read_jsonl
from runner.run import build
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, train_in_process

OPTIONS_TESTED = {"diagnostics": {"on", "off"}}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_initial_loss_check_with_and_without_regularization(tmp_path):
    config = compose_config([*SMOKE, *SMALL_MODEL, "regularizer=[l2]", "regularizer.l2.weight_decay=0.01"])
    run = build(config, tmp_path)
    diagnostics = Diagnostics(batch_size=64)
    weights = [p.detach().clone() for p in run.model.parameters() if p.ndim > 1]
    diagnostics.on_train_start(run, {"epoch": 0, "step": 0, "first_loss": None})
    with torch.no_grad():
        run.model.train()
        expected = F.cross_entropy(run.model(run.splits.train_images[:64]), run.splits.train_labels[:64]).item()
    losses = diagnostics.losses
    assert losses["initial_loss"] == pytest.approx(expected, rel=1e-4)
    assert losses["expected_initial_loss"] == pytest.approx(math.log(10))
    # L2 as weight decay 0.01 is the gradient of 0.01 / 2 * ||w||^2, over weights only.
    penalty = 0.01 / 2 * sum(w.square().sum().item() for w in weights)
    assert losses["initial_loss_regularized"] - losses["initial_loss"] == pytest.approx(penalty, rel=1e-3)


def test_run_records_activations_updates_and_gap(tmp_path):
    summary = train_in_process(
        [*SMALL_MODEL, "trainer.epochs=3", "diagnostics.every=5", "diagnostics.first_steps=2", "optimizer=sgd"],
        tmp_path,
    )
    assert summary["status"] == "completed" and summary["warnings"] == []
    assert abs(summary["initial_loss"] - summary["expected_initial_loss"]) < 0.5

    snapshots = read_jsonl(tmp_path / "activations.jsonl")
    assert [row["epoch"] for row in snapshots] == [0, 1, 2, 3]  # init, then after each epoch
    assert all(len(row["layers"]) == 2 for row in snapshots)

    updates = read_jsonl(tmp_path / "updates.jsonl")
    assert [row["step"] for row in updates] == [0, 1, 5, 10]  # 4 steps per epoch: the first 2, then every 5th
    assert all(layer["update_ratio"] > 0 and layer["gradient_norm"] > 0 for row in updates for layer in row["layers"])

    # The gap compares eval-mode accuracies: a fixed sample of training images, then the test (or validation) set.
    for row in read_jsonl(tmp_path / "metrics.jsonl"):
        assert row["train_test_gap"] == pytest.approx(row["train_eval_acc"] - row["test_acc"])
    summary = train_in_process([*SMALL_MODEL, "data.val_size=50", "diagnostics.gap_images=40"], tmp_path / "val")
    row = read_jsonl(tmp_path / "val" / "metrics.jsonl")[0]
    assert row["train_val_gap"] == pytest.approx(row["train_eval_acc"] - row["val_acc"]) and "train_test_gap" not in row
    # The train_eval_acc is the model in eval mode on the first 40 training images, as evaluate() scores them.
    assert 0 <= row["train_eval_acc"] <= 1 and (row["train_eval_acc"] * 40) == pytest.approx(
        round(row["train_eval_acc"] * 40)
    )


def test_update_ratio_is_the_actual_change_of_the_weights(tmp_path):
    # Plain SGD without momentum or decay: the change is lr * g exactly, so ratio = lr ||g|| / ||w||.
    train_in_process([*SMALL_MODEL, "optimizer=sgd", "optimizer.lr=0.01", "regularizer=none"], tmp_path)
    for row in read_jsonl(tmp_path / "updates.jsonl"):
        for layer in row["layers"]:
            expected = row["lr"] * layer["gradient_norm"] / layer["weight_norm"]
            assert layer["update_ratio"] == pytest.approx(expected, rel=1e-3)


def test_too_high_learning_rate_diverges_with_an_update_ratio_warning(tmp_path):
    summary = train_in_process([*SMALL_MODEL, "optimizer.lr=10"], tmp_path)
    assert summary["status"] == "diverged"
    assert any("update/weight ratio" in w and "learning rate likely too high" in w for w in summary["warnings"])


def test_too_low_learning_rate_is_flagged(tmp_path):
    summary = train_in_process([*SMALL_MODEL, "optimizer.lr=1e-7", "trainer.epochs=2"], tmp_path)
    assert any(w.startswith("loss flat for 2 epochs") for w in summary["warnings"])
    assert any("learning rate likely too low" in w and "update/weight" in w for w in summary["warnings"])


def test_zero_init_warns_that_units_are_identical(tmp_path):
    summary = train_in_process([*SMALL_MODEL, "init=zeros"], tmp_path)
    assert any(w.startswith("units identical") for w in summary["warnings"])
    # Sigmoid(0) = 0.5 in every unit: the outputs show the symmetry too.
    summary = train_in_process(
        ["model=mlp", "model.depth=2", "model.width=16", "activation=sigmoid", "init=zeros"], tmp_path / "sigmoid"
    )
    assert any(w.startswith("units identical: every unit of layer 1") for w in summary["warnings"])


def test_collapse_and_dead_units_are_reported_in_a_run(tmp_path):
    summary = train_in_process(
        ["model=mlp", "model.depth=6", "model.width=64", "norm=none", "activation=tanh", "init=small"], tmp_path
    )
    assert any(w.startswith("activations collapse") and "at init" in w for w in summary["warnings"])


def test_diagnostics_off_records_nothing(tmp_path):
    summary = train_in_process([*SMALL_MODEL, "diagnostics=off"], tmp_path)
    assert summary["status"] == "completed"
    assert not (tmp_path / "activations.jsonl").exists() and not (tmp_path / "updates.jsonl").exists()
    assert "warnings" not in summary and "initial_loss" not in summary
    assert "train_test_gap" not in read_jsonl(tmp_path / "metrics.jsonl")[0]


def test_loss_trend_tells_a_rising_loss_from_a_flat_one():
    assert loss_trend([2.31, 2.30], 2.3, epochs=2, tolerance=0.05) == "flat"
    assert loss_trend([1.4e4, 3e9], 5.3, epochs=2, tolerance=0.05) == "rising"  # exploded: too high, not too low
    assert loss_trend([1.4e4, 2.0], 5.3, epochs=2, tolerance=0.05) is None  # it came back down
    assert loss_trend([2.31], 2.3, epochs=2, tolerance=0.05) is None  # too early to tell
    assert loss_trend([1.2, 1.1], 2.3, epochs=2, tolerance=0.05) is None  # learning


def test_the_projects_default_recipe_raises_no_update_plateau_or_regularization_warning(tmp_path):
    # ResNet-20, Nesterov SGD at 0.1: its small output layer alone moves fast at the first steps (0.3 of its
    # weights), the network as a whole about 0.03 to 0.08: that is the reading the lectures' rule is about.
    summary = train_in_process(["diagnostics.first_steps=4"], tmp_path)
    assert not [warning for warning in summary["warnings"] if "update/weight" in warning], summary["warnings"]
    # Nor the two rules of the lectures' babysitting that are watched in every run.
    assert not [w for w in summary["warnings"] if "did not rise" in w or "loss flat near" in w], summary["warnings"]
    rows = read_jsonl(tmp_path / "updates.jsonl")
    assert max(layer["update_ratio"] for layer in rows[0]["layers"]) > 0.15  # the head alone would have warned


def test_plateau_then_drop_is_told_from_a_steady_descent():
    flat_then_drop = [(step, 2.30 - 0.0004 * step) for step in range(5, 65, 5)] + [(70, 2.14), (80, 1.79)]
    found = plateau_then_drop(flat_then_drop, 2.303, plateau=3)
    assert found is not None and found[1] == (80, 1.79)
    steady = [(step, 2.3 * 0.97 ** (step / 5)) for step in range(5, 100, 5)]
    assert plateau_then_drop(steady, 2.303, plateau=3) is None
    slow = [(step, 2.30) for step in range(5, 25, 5)] + [(step, 2.2 - 0.001 * step) for step in range(25, 400, 5)]
    assert plateau_then_drop(slow, 2.303, plateau=3) is None  # it left the plateau slowly: not sudden


def test_the_two_babysitting_rules_fire_on_runs_built_for_them(tmp_path):
    # A deep ReLU MLP from too small weights: the loss sits at ln(10), then falls at once (the lectures' picture).
    plateau = [
        "model=mlp", "model.depth=8", "model.width=64", "norm=none", "init=normal", "init.std=0.08",
        "optimizer=momentum", "optimizer.lr=0.05", "regularizer=[none]", "augmentation=[none]",
        "data.train_size=2000", "data.batch_size=100", "diagnostics.every=5", "trainer.epochs=6",
    ]  # fmt: skip
    summary = train_in_process(plateau, tmp_path / "plateau")
    assert any(w.startswith("loss flat near its start") and "bad initialization" in w for w in summary["warnings"])
    # A penalty too weak to raise the loss: the lectures' check that regularization reaches the loss.
    summary = train_in_process([*SMALL_MODEL, "regularizer=[l1]", "regularizer.l1.strength=1e-12"], tmp_path / "l1")
    assert any("did not rise when the regularization was added" in warning for warning in summary["warnings"])
