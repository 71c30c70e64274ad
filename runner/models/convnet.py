"""A small VGG-style network: stages of 3x3 convolutions, each stage ending in 2x2 max pooling."""

from torch import nn

from runner.models.layers import conv_norm_activation


class ConvNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        input_shape,
        activation,
        norm,
        widths=(64, 128, 256),
        convs_per_stage: int = 1,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = input_shape[0]
        for width in widths:
            for _ in range(convs_per_stage):
                layers += conv_norm_activation(channels, width, activation, norm)
                channels = width
            layers.append(nn.MaxPool2d(2))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
