"""A fully connected network: the lectures' activation-statistics experiments use 6 x 4096 and 10 x 500
(``model.depth=6 model.width=4096``)."""

import math

from torch import nn

from runner.models.layers import linear_norm_activation


class MLP(nn.Module):
    def __init__(self, num_classes: int, input_shape, activation, norm, depth: int = 3, width: int = 512):
        super().__init__()
        if depth < 0 or width < 1:
            raise ValueError(f"model.depth={depth} must be >= 0 and model.width={width} >= 1")
        layers: list[nn.Module] = [nn.Flatten()]
        features = math.prod(input_shape)
        for _ in range(depth):
            layers += linear_norm_activation(features, width, activation, norm)
            features = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
