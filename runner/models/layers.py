"""Building blocks shared by the models."""

import torch
import torch.nn.functional as F
from torch import nn

from runner.norms import has_norm


def conv_norm_activation(
    in_channels: int, out_channels: int, activation, norm, kernel_size: int = 3, stride: int = 1
) -> list[nn.Module]:
    """Convolution, normalisation, activation; the convolution's bias is redundant before a norm."""
    convolution = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=not has_norm(norm),
    )
    return [convolution, norm(out_channels), activation()]


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
