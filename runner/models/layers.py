"""Building blocks shared by the models.

Models build their layers through these helpers rather than calling ``activation()`` themselves, so that
maxout (``runner.activations``) can widen the layer before it k-fold: a helper that ends in an activation
asks ``pieces(activation)`` and gives the layer and its norm k outputs per unit.
"""

import torch
import torch.nn.functional as F
from torch import nn

from runner.activations import build as build_activation
from runner.activations import pieces
from runner.norms import has_norm


def conv_norm(
    in_channels: int, out_channels: int, norm, kernel_size: int = 3, stride: int = 1, bias: bool | None = None
) -> list[nn.Module]:
    """Convolution then normalisation; the convolution's bias is redundant before a norm."""
    convolution = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=not has_norm(norm) if bias is None else bias,
    )
    return [convolution, norm(out_channels)]


def conv_norm_activation(
    in_channels: int, out_channels: int, activation, norm, kernel_size: int = 3, stride: int = 1
) -> list[nn.Module]:
    """Convolution, normalisation, activation, with ``pieces(activation)`` outputs per unit before it."""
    widened = out_channels * pieces(activation)
    return [*conv_norm(in_channels, widened, norm, kernel_size, stride), build_activation(activation, out_channels)]


def linear_norm_activation(in_features: int, out_features: int, activation, norm) -> list[nn.Module]:
    """Linear layer, normalisation, activation, with ``pieces(activation)`` outputs per unit before it."""
    widened = out_features * pieces(activation)
    return [
        nn.Linear(in_features, widened, bias=not has_norm(norm)),
        norm(widened),
        build_activation(activation, out_features),
    ]


def standalone_activation(activation, channels: int, spatial: bool = True) -> nn.Module:
    """An activation that follows no layer of its own (a residual sum, a pre-activation block's norm).

    Maxout then gets its own 1x1 convolution (``spatial``) or linear map making its k pieces per channel;
    every other activation is just ``activation()``.
    """
    count = pieces(activation)
    if count == 1:
        return activation()
    widen = nn.Conv2d(channels, channels * count, 1) if spatial else nn.Linear(channels, channels * count)
    return nn.Sequential(widen, build_activation(activation, channels))


def norm_activation(channels: int, activation, norm) -> list[nn.Module]:
    """Normalisation then activation, the opening of a pre-activation unit (He et al. 2016, Identity Mappings)."""
    return [norm(channels), standalone_activation(activation, channels)]


class Residual(nn.Module):
    """``after(branch(x) + shortcut(x))``.

    The branch is kept as one module named ``branch`` so that regularizers (stochastic depth) and
    initializers (Fixup, zero-init of the last layer) can find every residual branch in any model.
    """

    def __init__(self, branch: nn.Module, shortcut: nn.Module | None = None, after: nn.Module | None = None):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.after = after if after is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.branch(x) + self.shortcut(x))


class PadShortcut(nn.Module):
    """He et al. 2016's option A shortcut: subsample, then zero-pad the new channels; no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class ProjectionShortcut(nn.Conv2d):
    """He et al. 2016's option B shortcut: a 1x1 convolution with stride, written as subsampling then a
    stride-1 1x1 convolution (the same map), which sidesteps a PyTorch CPU crash in the backward pass of
    strided 1x1 convolutions on channels-last inputs with fewer than 8 channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bias: bool):
        super().__init__(in_channels, out_channels, 1, bias=bias)
        self.subsample = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[:, :, :: self.subsample, :: self.subsample])


def preact_block(in_channels: int, out_channels: int, stride: int, activation, norm) -> Residual:
    """A pre-activation basic block, norm-act-conv-norm-act-conv (He et al. 2016, "Identity Mappings").

    The shortcut is the identity, or a 1x1 convolution where the shape changes (as in wide ResNets).
    """
    branch = nn.Sequential(
        *norm_activation(in_channels, activation, norm),
        *conv_norm_activation(in_channels, out_channels, activation, norm, stride=stride),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=not has_norm(norm)),
    )
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = ProjectionShortcut(in_channels, out_channels, stride, bias=not has_norm(norm))
    return Residual(branch, shortcut)


def preact_body(in_channels: int, stem_width: int, stages, activation, norm) -> tuple[nn.Sequential, int]:
    """A 3x3 stem, then pre-activation residual stages given as (width, blocks) pairs (the first block of every
    stage but the first halves the resolution), then norm, activation and global average pooling.
    Returns the body and its output width."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False)]
    channels = stem_width
    for stage, (stage_width, count) in enumerate(stages):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            layers.append(preact_block(channels, stage_width, stride, activation, norm))
            channels = stage_width
    layers += [*norm_activation(channels, activation, norm), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), channels
