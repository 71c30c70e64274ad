"""Regularizers, and the objective that combines them with the data loss.

A regularizer is any object with some of these methods; the objective and the optimizer builder ask for
them, so the training loop never needs to know which regularizers are on:

- ``attach(model) -> model``: change the network (dropout layers, stochastic depth, ...);
- ``penalty(model) -> Tensor``: a term added to the loss (L1, ...);
- ``targets(targets, num_classes) -> Tensor``: soft targets (label smoothing);
- ``parameter_options(name, parameter) -> dict``: per-parameter optimizer settings (weight decay).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def is_decayed(name: str, parameter: nn.Parameter) -> bool:
    """Weights of convolutions and linear layers; biases and norm scales (1-D tensors) are left alone."""
    return parameter.ndim > 1


class WeightDecay:
    """L2 regularization as weight decay: each step shrinks decayed weights by lr * weight_decay * w.

    With SGD this is the gradient of (weight_decay / 2) * ||w||^2. ``decay_all=true`` also decays biases
    and norm parameters.
    """

    def __init__(self, weight_decay: float = 5e-4, decay_all: bool = False):
        self.weight_decay = weight_decay
        self.decay_all = decay_all

    def parameter_options(self, name: str, parameter: nn.Parameter) -> dict:
        if self.decay_all or is_decayed(name, parameter):
            return {"weight_decay": self.weight_decay}
        return {"weight_decay": 0.0}


def parameter_groups(model: nn.Module, regularizers: list) -> list[dict]:
    """Group parameters by the optimizer options the regularizers ask for, in a stable order."""
    groups: dict[tuple, list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        options: dict = {}
        for regularizer in regularizers:
            if hasattr(regularizer, "parameter_options"):
                options.update(regularizer.parameter_options(name, parameter))
        groups.setdefault(tuple(sorted(options.items())), []).append(parameter)
    return [{"params": params, **dict(options)} for options, params in groups.items()]


class Objective:
    """Cross-entropy on the (possibly soft) targets plus every regularizer's penalty."""

    def __init__(self, regularizers: list, num_classes: int):
        self.num_classes = num_classes
        self.target_transforms = [r for r in regularizers if hasattr(r, "targets")]
        self.penalties = [r for r in regularizers if hasattr(r, "penalty")]

    def data_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        for regularizer in self.target_transforms:
            targets = regularizer.targets(targets, self.num_classes)
        return F.cross_entropy(logits.float(), targets)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, model: nn.Module) -> torch.Tensor:
        loss = self.data_loss(logits, targets)
        for regularizer in self.penalties:
            loss = loss + regularizer.penalty(model)
        return loss
