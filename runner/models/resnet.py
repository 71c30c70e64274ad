"""The CIFAR ResNet of He et al. 2016 (Deep Residual Learning, section 4.2): depth 6n + 2.

Three stages of n basic blocks at 16, 32 and 64 channels (times ``width / 16``), strided convolutions
between stages, and the parameter-free option-A shortcut, so ResNet-20/32/56/110 have the paper's
0.27M/0.46M/0.85M/1.7M parameters.
"""

from torch import nn

from runner.models.layers import PadShortcut, Residual, conv_norm, conv_norm_activation, standalone_activation


class ResNet(nn.Module):
    def __init__(self, num_classes: int, input_shape, activation, norm, depth: int = 20, width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"model.depth={depth} must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110)")
        blocks_per_stage = (depth - 2) // 6
        layers: list[nn.Module] = conv_norm_activation(input_shape[0], width, activation, norm)
        channels = width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                branch = nn.Sequential(
                    *conv_norm_activation(channels, stage_width, activation, norm, stride=stride),
                    *conv_norm(stage_width, stage_width, norm),
                )
                shortcut = PadShortcut(channels, stage_width, stride) if stride > 1 else None
                layers.append(Residual(branch, shortcut, after=standalone_activation(activation, stage_width)))
                channels = stage_width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
