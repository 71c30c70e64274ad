"""Wide residual networks (Zagoruyko and Komodakis 2016): WRN-depth-k, depth 6n + 4.

A 3x3 stem convolution to 16 channels, three stages of n pre-activation basic blocks at 16k, 32k and 64k
channels (strides 1, 2, 2; a 1x1 convolution shortcut where the shape changes), then norm, activation,
global average pooling and the classifier. WRN-16-4 has the paper's 2.7M parameters, WRN-28-10 36.5M.
"""

from torch import nn

from runner.models.layers import preact_body


class WideResNet(nn.Module):
    def __init__(self, num_classes: int, input_shape, activation, norm, depth: int = 16, widen_factor: int = 4):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"model.depth={depth} must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40)")
        blocks_per_stage = (depth - 4) // 6
        stages = [(base * widen_factor, blocks_per_stage) for base in (16, 32, 64)]
        self.body, channels = preact_body(input_shape[0], 16, stages, activation, norm)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
