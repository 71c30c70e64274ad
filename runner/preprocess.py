"""Preprocessing: the fixed map from stored pixels to the network's input, fitted on the training split.

A preprocessing step is the network's first module, so its statistics travel in the checkpoint and every
consumer of the model (evaluation, test-time augmentation, ensembles, fine-tuning) sees the same input.
It accepts uint8 pixels in [0, 255] or floats in [0, 1] (what photometric augmentations produce).
"""

from __future__ import annotations

import torch
from torch import nn


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def channel_moments(images: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images in [0, 1] units, in float64 chunks to bound memory."""
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].double().div_(255)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return mean.float(), std.float()


class Preprocess(nn.Module):
    """Base: pixels to [0, 1]; subclasses fit statistics and transform further."""

    def fit(self, images: torch.Tensor) -> Preprocess:
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.transform(to_unit_range(images))


class UnitRange(Preprocess):
    """No preprocessing beyond scaling pixels to [0, 1]."""


class Standardize(Preprocess):
    """Subtract each channel's mean and divide by its std over the training split (ResNet, He et al. 2016)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("std", torch.ones(1, 3, 1, 1))

    def fit(self, images: torch.Tensor) -> Standardize:
        mean, std = channel_moments(images)
        self.mean = mean.view(1, -1, 1, 1).to(self.mean.device)
        self.std = std.clamp_min(1e-8).view(1, -1, 1, 1).to(self.std.device)
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
