"""A small fast network in the airbench family (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds").

A 2x2 stem convolution without padding (whose weights ``init=whitening`` can set from training-set
patches), then three blocks of conv -> max-pool -> norm -> activation -> conv -> norm -> activation, global
max pooling and a bias-free linear head whose output is scaled down (airbench's 1/9), which keeps early
logits small so that the initial loss is near ln(classes). ``residual`` makes each block's second half a
residual unit of two convolutions (conv -> norm -> activation -> conv -> norm, plus its input, then the
activation), as airbench96 does (Jordan 2024).
"""

import torch
from torch import nn

from runner.activations import build as build_activation
from runner.activations import pieces
from runner.models.layers import Residual, conv_norm, standalone_activation
from runner.norms import has_norm


class FastNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        input_shape,
        activation,
        norm,
        widths=(64, 256, 256),
        stem_width: int = 24,
        stem_kernel: int = 2,
        head_scale: float = 1 / 9,
        residual: bool = False,
    ):
        super().__init__()
        bias = not has_norm(norm)
        k = pieces(activation)  # maxout needs k outputs per unit before each activation
        layers: list[nn.Module] = [
            nn.Conv2d(input_shape[0], stem_width * k, stem_kernel),
            build_activation(activation, stem_width),
        ]
        channels = stem_width
        for width in widths:
            layers += [
                nn.Conv2d(channels, width * k, 3, padding=1, bias=bias),
                nn.MaxPool2d(2),
                norm(width * k),
                build_activation(activation, width),
            ]
            if residual:
                # The sum needs the block's own width, so the second convolution makes no maxout pieces; the
                # activation after the sum makes them itself.
                branch = [
                    *conv_norm(width, width * k, norm),
                    build_activation(activation, width),
                    *conv_norm(width, width, norm),
                ]
                layers.append(Residual(nn.Sequential(*branch), after=standalone_activation(activation, width)))
            else:
                layers += [*conv_norm(width, width * k, norm), build_activation(activation, width)]
            channels = width
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes, bias=False)
        self.head_scale = head_scale

    @property
    def stem(self) -> nn.Conv2d:
        return self.body[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)) * self.head_scale
