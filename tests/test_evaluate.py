"""Evaluation and what a prediction averages over: test-time views are exact flips and translations, the
averaged prediction is the mean of the views' probabilities, and the batch size never changes predictions."""

import numpy as np
import pytest
import torch

from runner.evaluate import FlipViews, MultiCropViews, Predictor, predictor
from runner.regularize import FractionalMaxPool
from runner.run import build
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, train_in_process

OPTIONS_TESTED = {"tta": {"none", "flip", "multicrop"}}


def images(count: int = 4, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_flip_views_are_the_image_and_its_mirror():
    batch = images()
    views = FlipViews().views(batch)
    assert len(views) == 2 and torch.equal(views[0], batch) and torch.equal(views[1], batch.flip(3))


def test_multicrop_views_are_the_centre_and_four_corner_shifts_each_mirrored():
    batch = images()
    crops = MultiCropViews(shift=2).views(batch)
    assert len(crops) == 10 and torch.equal(crops[0], batch) and torch.equal(crops[1], batch.flip(3))
    assert torch.equal(crops[2][:, :, 2:, 2:], batch[:, :, :-2, :-2])  # a corner crop: shifted by (2, 2)
    assert (crops[2][:, :, :2] == 0).all()  # its uncovered border is zeros by default
    reflected = MultiCropViews(shift=2, padding="reflect").views(batch)
    assert torch.equal(reflected[2][:, :, 2:, 2:], batch[:, :, :-2, :-2])
    assert torch.equal(reflected[2][:, :, :2, 2:], batch[:, :, [2, 1], :-2])  # mirrored about the first row


def test_the_prediction_is_the_log_of_the_mean_probability_over_views_and_draws():
    torch.manual_seed(0)
    batch = images().float()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(3 * 8 * 8, 5))
    model.eval()
    expected = ((model(batch).softmax(1) + model(batch.flip(3)).softmax(1)) / 2).log()
    assert torch.allclose(Predictor(model, FlipViews())(batch), expected, atol=1e-6)
    # A random network (dropout left on) is averaged over its draws: three draws, three sets of probabilities.
    model.train()
    torch.manual_seed(1)
    draws = [model(batch).softmax(1) for _ in range(3)]
    torch.manual_seed(1)
    assert torch.allclose(Predictor(model, None, draws=3)(batch), (sum(draws) / 3).log(), atol=1e-6)


def test_a_prediction_is_the_model_alone_unless_something_averages():
    model = torch.nn.Linear(2, 2)
    assert predictor(model, None, []) is None
    assert predictor(model, FlipViews(), []).views is not None
    assert predictor(model, None, [FractionalMaxPool(test_samples=4)]).draws == 4


@pytest.mark.parametrize(("option", "views"), [("none", 0), ("flip", 2), ("multicrop", 10)])
def test_the_tta_group_builds_the_views(option, views, tmp_path):
    run = build(compose_config([*SMOKE, *SMALL_MODEL, f"tta={option}"]), tmp_path)
    if views == 0:
        assert run.predict is None
    else:
        assert len(run.predict.views.views(images())) == views


def test_evaluation_gives_the_same_predictions_at_any_batch_size(tmp_path):
    # In eval mode the norms use running statistics, so a batch's size cannot change its predictions.
    def logits(size):
        train_in_process(SMALL_MODEL + ["tta=flip", f"trainer.eval_batch_size={size}"], tmp_path / str(size))
        return np.load(tmp_path / str(size) / "test_logits.npy", allow_pickle=False).astype(np.float32)

    np.testing.assert_allclose(logits(7), logits("auto"), atol=1e-2)
