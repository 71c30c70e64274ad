"""DenseNet (Huang et al. 2017, "Densely Connected Convolutional Networks"), CIFAR variant.

Three dense blocks; every layer sees the concatenation of all earlier outputs in its block and adds
``growth`` channels. A layer is norm-activation-3x3 convolution, or with ``bottleneck`` (DenseNet-B)
norm-activation-1x1 convolution to 4 x growth channels first. Transitions between blocks are
norm-activation-1x1 convolution (shrinking the channels by ``compression``; DenseNet-C uses 0.5) and 2x2
average pooling. DenseNet-40 (growth 12) has the paper's 1.0M parameters, DenseNet-BC-100 (growth 12) 0.8M.
"""

import torch
from torch import nn

from runner.models.layers import conv_norm_activation, norm_activation
from runner.norms import has_norm


class DenseLayer(nn.Module):
    """Norm, activation, convolution (after a 1x1 bottleneck with ``bottleneck``); returns [x, new features]."""

    def __init__(self, channels: int, growth: int, activation, norm, bottleneck: bool):
        super().__init__()
        bias = not has_norm(norm)
        layers = norm_activation(channels, activation, norm)
        if bottleneck:
            layers += conv_norm_activation(channels, 4 * growth, activation, norm, kernel_size=1)
            channels = 4 * growth
        layers.append(nn.Conv2d(channels, growth, 3, padding=1, bias=bias))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


class DenseNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        input_shape,
        activation,
        norm,
        depth: int = 40,
        growth: int = 12,
        bottleneck: bool = False,
        compression: float = 1.0,
    ):
        super().__init__()
        convolutions_per_layer = 2 if bottleneck else 1
        if (depth - 4) % (3 * convolutions_per_layer) or depth < 4 + 3 * convolutions_per_layer:
            raise ValueError(
                f"model.depth={depth} must be 3 * {convolutions_per_layer} * n + 4 with n >= 1 "
                f"({'100, 250' if bottleneck else '40, 100'}, ...)"
            )
        if not 0 < compression <= 1:
            raise ValueError(f"model.compression={compression} must be in (0, 1]")
        layers_per_block = (depth - 4) // (3 * convolutions_per_layer)
        bias = not has_norm(norm)
        channels = 2 * growth if bottleneck or compression < 1 else 16
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], channels, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(layers_per_block):
                layers.append(DenseLayer(channels, growth, activation, norm, bottleneck))
                channels += growth
            if block < 2:
                shrunk = int(channels * compression)
                layers += [
                    *norm_activation(channels, activation, norm),
                    nn.Conv2d(channels, shrunk, 1, bias=bias),
                    nn.AvgPool2d(2),
                ]
                channels = shrunk
        layers += [*norm_activation(channels, activation, norm), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
