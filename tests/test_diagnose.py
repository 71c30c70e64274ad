"""Babysitting (runner.diagnose): the statistics' math, the lectures' activation-statistics experiments with
numeric bounds, the first-iteration checks, and the in-run diagnostics (files, warnings, diagnostics=off)."""

import json
import math
import time

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from runner.activations import Maxout
from runner.diagnose import (
    Diagnostics,
    activation_layers,
    activation_warnings,
    diagnose,
    identical_weights,
    layer_statistics,
    loss_trend,
    probe,
    unregularized,
)
from runner.record import read_jsonl
from runner.train import build
from tests.conftest import CONF, SMALL_MODEL, SMOKE, compose_config, run_entrypoint, train_in_process

OPTIONS_TESTED = {"diagnostics": {"on", "off"}}

# The lectures' experiment: 10 hidden layers of 500 units, no normalization, a unit-Gaussian batch.
LECTURE_MLP = ["model=mlp", "model.depth=10", "model.width=500", "norm=none"]
SYNTHETIC = ["data=synthetic", "data.train_size=200", "data.test_size=100", "trainer.device=cpu"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def compose_diagnose(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("diagnose", overrides=list(overrides))


def lecture_statistics(tmp_path, *overrides) -> list[dict]:
    config = compose_diagnose([*SYNTHETIC, *LECTURE_MLP, "diagnose.figure=false", *overrides])
    diagnose(config, tmp_path)
    rows = json.loads((tmp_path / "activations.json").read_text())
    assert [row["layer"] for row in rows] == list(range(1, 11))
    return rows


# --- The statistics themselves ---------------------------------------------------------------------------


def test_layer_statistics_count_zeros_dead_units_and_saturation():
    # 4 examples x 3 units; unit 2 is zero on every example (dead), unit 0 is zero once.
    y = torch.tensor([[0.0, 1.0, 0.0], [2.0, 3.0, 0.0], [4.0, 5.0, 0.0], [6.0, 7.0, 0.0]])
    mean, std, zeros, dead, saturated, identical = layer_statistics(y, nn.ReLU()).tolist()
    assert mean == pytest.approx(y.mean().item()) and std == pytest.approx(y.std().item())
    assert zeros == pytest.approx(5 / 12) and dead == pytest.approx(1 / 3)
    assert math.isnan(saturated) and identical == 0  # ReLU does not saturate

    # Convolution outputs: a unit is a channel, dead only when zero at every example and position.
    feature_maps = torch.ones(2, 4, 3, 3)
    feature_maps[:, 1] = 0
    feature_maps[0, 2, 0, 0] = 0
    assert layer_statistics(feature_maps, nn.ReLU())[3].item() == pytest.approx(1 / 4)

    tanh_outputs = torch.tensor([[0.995, -0.999, 0.5, 0.0]])
    assert layer_statistics(tanh_outputs, nn.Tanh())[4].item() == pytest.approx(2 / 4)
    sigmoid_outputs = torch.tensor([[0.005, 0.995, 0.5, 0.98]])
    assert layer_statistics(sigmoid_outputs, nn.Sigmoid())[4].item() == pytest.approx(2 / 4)

    same = torch.randn(5, 1).expand(5, 8)
    assert layer_statistics(same, nn.Tanh())[5].item() == 1
    assert layer_statistics(torch.randn(5, 8), nn.Tanh())[5].item() == 0
    assert layer_statistics(torch.zeros(5, 8), nn.ReLU())[5].item() == 0  # dead, not symmetric


def test_activation_layers_are_the_activation_modules_in_depth_order():
    model = nn.Sequential(
        nn.Linear(4, 4),
        nn.ReLU(),
        nn.Linear(4, 8),
        Maxout(pieces=2, units=4),
        nn.Sequential(nn.Tanh(), nn.Linear(4, 4)),
        nn.Softmax(dim=1),  # lives in torch.nn.modules.activation, but is not a layer's nonlinearity
    )
    assert [type(module) for _, module in activation_layers(model)] == [nn.ReLU, Maxout, nn.Tanh]

    class Swish(nn.SiLU):  # a subclass defined elsewhere still counts, and its inner parts count once
        def __init__(self):
            super().__init__()
            self.inner = nn.Sigmoid()

    assert [name for name, _ in activation_layers(nn.Sequential(Swish()))] == ["0"]


def test_probe_changes_nothing_in_the_model_or_the_random_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3)).eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    inputs = torch.randn(16, 6) * 3 + 1
    state = torch.get_rng_state()
    logits, rows, _ = probe(model, inputs)
    assert logits.shape == (16, 3) and len(rows) == 1 and not model.training
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), state)
    # Training mode: the batch-norm output is normalized by the batch's own statistics.
    assert rows[0]["mean"] == pytest.approx(math.sqrt(1 / (2 * math.pi)), abs=0.15)


def test_warnings_speak_plain_words():
    rows = [
        {
            "layer": 3,
            "name": "a",
            "std": 0.5,
            "dead_fraction": 0.2,
            "saturated_fraction": None,
            "identical_units": False,
        },
        {
            "layer": 7,
            "name": "b",
            "std": 0.3,
            "dead_fraction": 0.93,
            "saturated_fraction": None,
            "identical_units": False,
        },
        {
            "layer": 10,
            "name": "c",
            "std": 2e-6,
            "dead_fraction": 0.0,
            "saturated_fraction": 0.9,
            "identical_units": False,
        },
    ]
    found = activation_warnings(rows, "at epoch 3")
    assert found["dead"].startswith("layer 7 (b): 93% of units dead at epoch 3")
    assert found["collapse"].startswith("activations collapse: std 2e-06 at layer 10 (c) at epoch 3")
    assert found["saturated"].startswith("layer 10 (c): 90% of outputs saturated at epoch 3")
    assert "identical" not in found


def test_identical_weights_finds_units_that_share_their_weights_and_their_gradients():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.fill_(0.25)
    # Read by random weights, the four units get different gradients: the first step breaks the symmetry.
    assert identical_weights(model) == []
    inputs, targets = torch.randn(8, 3), torch.tensor([0, 1] * 4)
    nn.functional.cross_entropy(model(inputs), targets).backward()
    gradient = model[0].weight.grad
    assert (gradient - gradient[:1]).abs().amax() > 0
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0], [-1.0]]).expand(2, 4))  # reads its four inputs alike
    assert identical_weights(model) == ["0.weight"]
    model.zero_grad()
    nn.functional.cross_entropy(model(inputs), targets).backward()
    gradient = model[0].weight.grad
    assert (gradient - gradient[:1]).abs().amax() == 0


# --- The lectures' activation-statistics experiments (python -m runner.diagnose) -----------------------------


def test_small_init_activations_vanish_with_depth(tmp_path):
    # Each tanh layer (near its linear part) multiplies the std by 0.01 * sqrt(500) = 0.22; the first one sees
    # 3072 inputs (std 0.01 * sqrt(3072) = 0.55 before tanh): 0.45 * 0.22^9 ~ 6e-7 at layer 10.
    stds = [row["std"] for row in lecture_statistics(tmp_path, "activation=tanh", "init=small")]
    assert stds[0] > 0.3
    assert all(deeper < 0.4 * shallower for shallower, deeper in zip(stds, stds[1:], strict=False))
    assert stds[-1] < 1e-5


def test_large_init_saturates_tanh(tmp_path):
    # std 0.05: the first layer's pre-activations have std 0.05 * sqrt(3072) = 2.8, a third of its tanh outputs
    # beyond +-0.99. (In 500-wide layers 0.05 * sqrt(500) = 1.1 keeps deeper layers out of saturation; the
    # lectures' "all saturate" at 0.05 is for 4096-wide layers.) std 1.0 saturates every layer.
    rows = lecture_statistics(tmp_path, "activation=tanh", "init=large")
    assert rows[0]["saturated_fraction"] > 0.25
    assert min(row["std"] for row in rows) > 0.2  # no collapse
    rows = lecture_statistics(tmp_path, "activation=tanh", "init=large", "init.std=1.0")
    assert all(row["saturated_fraction"] > 0.8 for row in rows)
    assert all(row["std"] > 0.95 for row in rows)  # outputs piled up at -1 and +1


def test_xavier_keeps_tanh_activations_of_the_same_order(tmp_path):
    rows = lecture_statistics(tmp_path, "activation=tanh", "init=xavier")
    stds = [row["std"] for row in rows]
    assert all(0.15 < std < 0.8 for std in stds)
    assert stds[-1] > 0.25 * stds[0]
    assert all(row["saturated_fraction"] < 0.05 for row in rows)


def test_relu_collapses_with_xavier_and_holds_with_kaiming(tmp_path):
    # ReLU halves the second moment; Xavier does not make up for it, so the std falls ~sqrt(2) per layer.
    xavier = [row["std"] for row in lecture_statistics(tmp_path, "activation=relu", "init=xavier")]
    assert xavier[-1] < 0.1 * xavier[0]
    kaiming = lecture_statistics(tmp_path, "activation=relu", "init=kaiming")
    stds = [row["std"] for row in kaiming]
    assert 0.5 < stds[-1] / stds[0] < 2
    assert all(0.4 < row["zero_fraction"] < 0.6 for row in kaiming)  # half of each ReLU layer is off


def test_diagnose_entrypoint_writes_statistics_figure_and_overfits(tmp_path):
    # Through `python -m runner.diagnose`, as a user runs it: the small convnet overfits 50 synthetic images.
    result = run_entrypoint(
        [*SYNTHETIC, *SMALL_MODEL, "diagnose.overfit=50", "diagnose.batch_size=100", "optimizer.lr=0.05"],
        tmp_path,
        module="runner.diagnose",
    )
    assert result.returncode == 0, result.stderr
    [folder] = (tmp_path / "diagnose").glob("*/*")
    rows = json.loads((folder / "activations.json").read_text())
    assert len(rows) == 2 and {"layer", "mean", "std", "zero_fraction", "saturated_fraction"} <= rows[0].keys()
    assert (folder / "activations.png").stat().st_size > 10_000
    report = json.loads((folder / "diagnose.json").read_text())
    assert report["overfit"]["reached"] and report["overfit"]["train_acc"] == 1.0
    assert report["overfit"]["steps"] < 500
    assert report["expected_initial_loss"] == pytest.approx(math.log(10))
    assert "reached 100% training accuracy" in result.stdout and "std" in result.stdout


def test_overfit_runs_without_regularization_or_augmentation():
    bare = unregularized(compose_config(["regularizer=[l2,dropout]", "augmentation=[flip_crop]"]))
    assert not bare.regularizer and not bare.augmentation and bare.diagnostics is None


# --- In every run ---------------------------------------------------------------------------------------


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

    for row in read_jsonl(tmp_path / "metrics.jsonl"):
        assert row["train_test_gap"] == pytest.approx(row["train_acc"] - row["test_acc"])
    train_in_process([*SMALL_MODEL, "data.val_size=50"], tmp_path / "validation")
    row = read_jsonl(tmp_path / "validation" / "metrics.jsonl")[0]
    assert row["train_val_gap"] == pytest.approx(row["train_acc"] - row["val_acc"]) and "train_test_gap" not in row


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
    started = time.perf_counter()
    summary = train_in_process([*SMALL_MODEL, "diagnostics=off"], tmp_path)
    assert time.perf_counter() - started < 60
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
