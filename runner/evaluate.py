"""Evaluation: loss, accuracy and logits of a whole split, and what a prediction averages over.

A prediction is ``model(images)``, unless the run averages several: the fixed test-time views of each image
(the ``tta`` group: ``FlipViews``, ``MultiCropViews``) and several forward passes of a random network (a
regularizer's ``test_samples``, fractional max-pooling). ``Predictor`` averages their probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from runner.augment import translate
from runner.device import autocast


class FlipViews:
    """Each test image and its mirror image."""

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [images, images.flip(3)]


class MultiCropViews:
    """The lectures' ten crops (Krizhevsky et al. 2012) adapted to padded-crop training: the centre and four
    corner crops of the image padded by ``shift`` pixels (translations by +-shift in both directions), each
    with its mirror. ``padding`` fills the uncovered border as training's crops did: ``constant`` (zeros) or
    ``reflect``; a border the network never saw in training costs accuracy."""

    def __init__(self, shift: int = 2, padding: str = "constant"):
        self.shift = shift
        self.padding = padding

    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        views = []
        for rows, columns in ((0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)):
            shifts = torch.full((2, len(images)), self.shift, device=images.device)
            moved = translate(images, rows * shifts[0], columns * shifts[1], self.shift, self.padding)
            views += [moved, moved.flip(3)]
        return views


class Predictor:
    """Average the predicted probabilities over the test-time views (none: the image itself) and over ``draws``
    forward passes of a random network; returns their log, which serves as logits."""

    def __init__(self, model: nn.Module, views=None, draws: int = 1):
        self.model = model
        self.views = views
        self.draws = draws

    def using(self, model: nn.Module) -> Predictor:
        """The same averaging around another network (an average of the weights)."""
        return Predictor(model, self.views, self.draws)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        total = None
        count = 0
        for view in self.views.views(images) if self.views is not None else [images]:
            for _ in range(self.draws):
                probabilities = self.model(view).float().softmax(1)
                total = probabilities if total is None else total + probabilities
                count += 1
        return (total / count).log()


def predictor(model: nn.Module, views, regularizers: list) -> Predictor | None:
    """The run's averaging of predictions, or None when a prediction is the model's output alone."""
    draws = max((getattr(regularizer, "test_samples", 1) for regularizer in regularizers), default=1)
    return Predictor(model, views, draws) if views is not None or draws > 1 else None


@torch.no_grad()
def evaluate(run, images: torch.Tensor, labels: torch.Tensor, model: nn.Module | None = None) -> dict:
    """Loss, accuracy and logits of the whole split, with the network in eval mode, in batches of the run's
    evaluation batch size (large on a GPU, cache-sized on a CPU). ``model``: another network to score the
    same way, through the run's test-time views (an average of the weights)."""
    network = run.model if model is None else model
    network.eval()
    predict = network if run.predict is None else run.predict.using(network)
    batch_size = run.eval_batch_size
    parts = []
    # Shown only when it lasts (delay): a full test set on a CPU takes seconds to minutes.
    batches = range(0, len(images), batch_size)
    starts = tqdm(batches, desc="evaluating", unit="batch", leave=False, delay=2, disable=not run.progress)
    with autocast(run.device, run.autocast_dtype):
        for start in starts:
            parts.append(predict(images[start : start + batch_size]).float())
    logits = torch.cat(parts)
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "acc": (logits.argmax(1) == labels).float().mean().item(),
        "logits": logits,
    }
