"""Data augmentation on whole batches, on the training device: no per-image Python, no PIL.

Each augmentation is called as ``augmentation(images, targets, generator)`` and returns the pair, so that
those that mix examples (mixup, cutmix) can return soft targets. Geometric ones work on uint8 or float
batches alike. All randomness comes from the run's device generator, so a seeded run repeats exactly.
"""

from __future__ import annotations

import torch


class RandomFlip:
    """Mirror each image left-right with probability ``probability``."""

    def __init__(self, probability: float = 0.5):
        self.probability = probability

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        flip = torch.rand(len(images), device=images.device, generator=generator) < self.probability
        return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images), targets


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


class RandomCrop:
    """Pad by ``padding`` pixels and crop back to the original size at a random offset: a random translation.

    Done as one gather with per-image row and column indices into the unpadded batch; ``constant`` padding
    fills with zeros (torchvision's default), ``reflect`` mirrors the border (airbench).
    """

    def __init__(self, padding: int = 4, padding_mode: str = "constant"):
        if padding_mode not in ("constant", "reflect"):
            raise ValueError(f"padding_mode must be 'constant' or 'reflect', not {padding_mode!r}")
        self.padding = padding
        self.padding_mode = padding_mode

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        count, _, height, width = images.shape
        device = images.device
        shifts = torch.randint(-self.padding, self.padding + 1, (2, count), device=device, generator=generator)
        rows = shifts[0, :, None] + torch.arange(height, device=device)
        columns = shifts[1, :, None] + torch.arange(width, device=device)
        if self.padding_mode == "reflect":
            rows, columns = _reflect(rows, height), _reflect(columns, width)
        inside = None
        if self.padding_mode == "constant":
            inside = ((rows >= 0) & (rows < height))[:, :, None] & ((columns >= 0) & (columns < width))[:, None]
            rows, columns = rows.clamp(0, height - 1), columns.clamp(0, width - 1)
        batch = torch.arange(count, device=device)[:, None, None]
        # Advanced indexing around the channel slice yields (count, height, width, channels).
        out = images[batch, :, rows[:, :, None], columns[:, None, :]]
        if inside is not None:
            out = out * inside[..., None].to(out.dtype)
        return out.permute(0, 3, 1, 2).contiguous(), targets


class Compose:
    """Apply augmentations in the order the config lists them."""

    def __init__(self, augmentations):
        self.augmentations = list(augmentations)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        for augmentation in self.augmentations:
            images, targets = augmentation(images, targets, generator)
        return images, targets
