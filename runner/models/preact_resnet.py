"""Pre-activation ResNet-18 (He et al. 2016, "Identity Mappings in Deep Residual Networks"), CIFAR variant.

A 3x3 stem convolution (no max pooling, as CIFAR images are small), four stages of two pre-activation basic
blocks at 64, 128, 256 and 512 channels (times ``width / 64``; strides 1, 2, 2, 2), then norm, activation,
global average pooling and the classifier: 11.2M parameters.
"""

from torch import nn

from runner.models.layers import preact_body


class PreActResNet18(nn.Module):
    def __init__(self, num_classes: int, input_shape, activation, norm, width: int = 64, blocks=(2, 2, 2, 2)):
        super().__init__()
        stages = [(width * 2**stage, count) for stage, count in enumerate(blocks)]
        self.body, channels = preact_body(input_shape[0], width, stages, activation, norm)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
