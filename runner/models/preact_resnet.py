"""Pre-activation ResNet-18 (He et al. 2016, "Identity Mappings in Deep Residual Networks"), CIFAR variant.

A 3x3 stem convolution (no max pooling, as CIFAR images are small), four stages of two pre-activation basic
blocks at 64, 128, 256 and 512 channels (times ``width / 64``; strides 1, 2, 2, 2), then norm, activation,
global average pooling and the classifier: 11.2M parameters.
"""

from torch import nn

from runner.models.layers import norm_activation, preact_block


class PreActResNet18(nn.Module):
    def __init__(self, num_classes: int, input_shape, activation, norm, width: int = 64, blocks=(2, 2, 2, 2)):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False)]
        channels = width
        for stage, count in enumerate(blocks):
            stage_width = width * 2**stage
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(preact_block(channels, stage_width, stride, activation, norm))
                channels = stage_width
        layers += [*norm_activation(channels, activation, norm), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
