"""python -m runner.diagnose: the lectures' activation-statistics experiments with numeric bounds (vanishing,
saturating and holding signals), the figure and files it writes, and the first-iteration checks."""

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from runner.diagnose import diagnose, unregularized
from tests.conftest import CONF, SMALL_MODEL, compose_config, run_entrypoint

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


@pytest.mark.slow
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
