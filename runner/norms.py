"""Normalisation layers, one constructor signature for all: ``norm(channels)``.

Models call ``norm(channels)`` for convolutional and fully connected layers alike, so the classes here
accept both (N, C) and (N, C, H, W) inputs. ``norm=none`` is ``torch.nn.Identity``, which ignores the
argument.
"""

import torch
from torch import nn


class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation (Ioffe and Szegedy 2015) over dimension 1 of a 2-D or 4-D input.

    Training normalises with the batch's statistics, evaluation with the running ones, as
    ``torch.nn.BatchNorm1d``/``2d`` do; one class serves both so a model need not know its input's rank.

    airbench's two changes (Jordan 2024), both off by default: ``learn_scale=false`` keeps the scale gamma at 1
    (a following ReLU-like unit only needs the shift), and ``lr_multiplier`` trains the layer's parameters at
    that multiple of the learning rate (airbench: 64), which ``runner.optim`` reads.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        learn_scale: bool = True,
        lr_multiplier: float = 1.0,
    ):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.weight.requires_grad_(learn_scale)
        self.lr_multiplier = lr_multiplier

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 4):
            raise ValueError(f"BatchNorm expects a 2-D or 4-D input, got {input.dim()}-D")


class GroupNorm(nn.GroupNorm):
    """Group normalisation (Wu and He 2018); the group count shrinks to divide narrow layers."""

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-5, affine: bool = True):
        groups = max(group for group in range(1, min(groups, channels) + 1) if channels % group == 0)
        super().__init__(groups, channels, eps=eps, affine=affine)


class LayerNorm(nn.GroupNorm):
    """Layer normalisation (Ba et al. 2016): statistics over all of a sample's channels and positions."""

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__(1, channels, eps=eps, affine=affine)


def has_norm(norm) -> bool:
    """Whether ``norm`` builds a real normalisation, in which case the layer before it needs no bias."""
    return not isinstance(norm(1), nn.Identity)
