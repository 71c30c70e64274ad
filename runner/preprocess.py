"""Preprocessing: the fixed map from stored pixels to the network's input, fitted on the training split.

A preprocessing step is the network's first module, so its statistics travel in the checkpoint and every
consumer of the model (evaluation, test-time augmentation, ensembles, fine-tuning) sees the same input.
It accepts uint8 pixels in [0, 255] or floats in [0, 1] (what photometric augmentations produce).

Statistics are fitted once, on the training split only. The whitening bases (an eigendecomposition of the
3072 x 3072 pixel covariance on CIFAR-10) take seconds to compute, so they are cached under
``data/cache/`` keyed by a hash of the training images' bytes; the per-channel and per-pixel means take one
pass over the data and are simply recomputed.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from runner.files import atomic_write_bytes

log = logging.getLogger("runner")
WHITENING_CACHE_VERSION = 1


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def channel_moments(images: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of images in [0, 1] units. Exact for uint8 images, from each channel's
    histogram of the 256 levels (a fraction of a second for all of CIFAR-10); float images are summed in
    float64 chunks to bound memory."""
    channels = images.shape[1]
    if images.dtype == torch.uint8:
        levels = torch.arange(256, dtype=torch.float64, device=images.device) / 255
        counts = torch.stack(
            [torch.bincount(images[:, channel].reshape(-1), minlength=256) for channel in range(channels)]
        ).double()
        total, squares = counts @ levels, counts @ levels.square()
    else:
        total = torch.zeros(channels, dtype=torch.float64, device=images.device)
        squares = torch.zeros_like(total)
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk].double()
            total += part.sum(dim=(0, 2, 3))
            squares += part.square().sum(dim=(0, 2, 3))
    count = images.numel() / channels
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


class ChannelMean(Preprocess):
    """Subtract each channel's mean over the training split, the "mean RGB" (VGG, Simonyan and Zisserman 2014)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))

    def fit(self, images: torch.Tensor) -> ChannelMean:
        mean, _ = channel_moments(images)
        self.mean = mean.view(1, -1, 1, 1).to(self.mean.device)
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.mean


class MeanImage(Preprocess):
    """Subtract the training split's mean image, one value per channel and pixel (AlexNet, Krizhevsky et al.
    2012)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))

    def fit(self, images: torch.Tensor, chunk: int = 4096) -> MeanImage:
        total = torch.zeros(images.shape[1:], dtype=torch.float64, device=images.device)
        for start in range(0, len(images), chunk):
            total += to_unit_range(images[start : start + chunk]).double().sum(dim=0)
        self.mean = (total / len(images)).float().unsqueeze(0).to(self.mean.device)
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.mean


def images_key(images: torch.Tensor) -> str:
    """A fingerprint of the images' shape and bytes: the cache is reused only for the very same training set."""
    array = np.ascontiguousarray(images.detach().cpu().numpy())
    digest = hashlib.sha256(f"{WHITENING_CACHE_VERSION}:{array.dtype}:{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:24]


def pixel_covariance(images: torch.Tensor, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the flattened images in [0, 1] units, accumulated in float64 on their device."""
    dimension = images[0].numel()
    total = torch.zeros(dimension, dtype=torch.float64, device=images.device)
    products = torch.zeros(dimension, dimension, dtype=torch.float64, device=images.device)
    for start in range(0, len(images), chunk):
        part = to_unit_range(images[start : start + chunk]).double().flatten(1)
        total += part.sum(dim=0)
        products += part.T @ part
    mean = total / len(images)
    return mean, products / len(images) - torch.outer(mean, mean)


def covariance_eigenbasis(images: torch.Tensor, cache_dir: str | None) -> tuple[torch.Tensor, ...]:
    """(mean, eigenvalues in decreasing order, eigenvectors as columns) of the pixel covariance, cached."""
    path = Path(cache_dir) / f"whitening-{images_key(images)}.pt" if cache_dir else None
    if path is not None and path.exists():
        try:
            cached = torch.load(path, map_location=images.device, weights_only=True)
            return cached["mean"], cached["eigenvalues"], cached["eigenvectors"]
        except (OSError, RuntimeError, KeyError) as error:
            # A cache is a convenience: a damaged one is recomputed, never trusted.
            log.warning("Ignoring the damaged whitening cache %s (%s).", path, error)
    mean, covariance = pixel_covariance(images)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0), eigenvectors.flip(1).float()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        basis = {"mean": mean, "eigenvalues": eigenvalues, "eigenvectors": eigenvectors}
        atomic_write_bytes(path, lambda handle: torch.save(basis, handle))
    return mean, eigenvalues, eigenvectors


class Whitening(Preprocess):
    """Decorrelate the pixels: x -> W (x - mean) with W Cov W^T = I (up to ``epsilon``), fitted on the
    training split. ``epsilon`` is added to every eigenvalue, so directions with less variance than it
    (mostly noise) are not blown up. Subclasses choose W."""

    def __init__(self, epsilon: float = 1e-2, cache_dir: str | None = None):
        super().__init__()
        if epsilon < 0:
            raise ValueError(f"preprocess.epsilon={epsilon} must be >= 0")
        self.epsilon = epsilon
        self.cache_dir = cache_dir
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("matrix", torch.zeros(0, 0))

    def whitening_matrix(self, eigenvalues: torch.Tensor, eigenvectors: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, images: torch.Tensor) -> Whitening:
        mean, eigenvalues, eigenvectors = covariance_eigenbasis(images, self.cache_dir)
        scale = (eigenvalues + self.epsilon).rsqrt()
        if not torch.isfinite(scale).all():
            raise ValueError("preprocess.epsilon=0 with a singular pixel covariance: set preprocess.epsilon > 0")
        self.mean = mean.float().to(self.matrix.device)
        self.matrix = self.whitening_matrix(scale.float(), eigenvectors.float()).to(self.matrix.device)
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        # bfloat16 would round away most of what whitening computes: this product stays in float32.
        with torch.autocast(x.device.type, enabled=False):
            flat = x.float().flatten(1) - self.mean
            return (flat @ self.matrix.T).reshape(x.shape)


class PCAWhitening(Whitening):
    """PCA whitening (cs231n; Bishop 2006, 12.1.3): project onto the covariance's eigenvectors, largest
    first, and divide each coordinate by sqrt(eigenvalue + epsilon). The output keeps the image's shape,
    but its positions hold principal components, not pixels."""

    def whitening_matrix(self, scale: torch.Tensor, eigenvectors: torch.Tensor) -> torch.Tensor:
        return scale[:, None] * eigenvectors.T


class ZCAWhitening(Whitening):
    """ZCA whitening (Bell and Sejnowski 1997; Krizhevsky 2009): PCA whitening rotated back to pixel space,
    W = U diag(1 / sqrt(eigenvalue + epsilon)) U^T, the symmetric whitening closest to the identity, so the
    output still looks like an image (with its edges emphasised)."""

    def whitening_matrix(self, scale: torch.Tensor, eigenvectors: torch.Tensor) -> torch.Tensor:
        return (eigenvectors * scale) @ eigenvectors.T
