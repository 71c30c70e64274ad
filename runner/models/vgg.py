"""VGG (Simonyan and Zisserman 2014): stages of 3x3 convolutions, each ending in 2x2 max pooling, then fully
connected layers.

The defaults are configuration A (VGG-11) with CIFAR-sized fully connected layers (512 units, not 4096);
``convs_per_stage`` [2, 2, 2, 2, 2] gives VGG-13, [2, 2, 3, 3, 3] VGG-16, [2, 2, 4, 4, 4] VGG-19.

The fully connected part is ``classifier``, an ``nn.Sequential`` of (Linear, norm, activation) per hidden
layer and the output Linear last: that is where dropout lives (the paper drops out the two hidden fully
connected layers' outputs), so a dropout regularizer inserts ``torch.nn.Dropout`` before its Linear layers.
"""

from torch import nn

from runner.models.layers import conv_norm_activation, linear_norm_activation


class VGG(nn.Module):
    def __init__(
        self,
        num_classes: int,
        input_shape,
        activation,
        norm,
        widths=(64, 128, 256, 512, 512),
        convs_per_stage=(1, 1, 2, 2, 2),
        hidden: int = 512,
        hidden_layers: int = 2,
    ):
        super().__init__()
        if isinstance(convs_per_stage, int):
            convs_per_stage = [convs_per_stage] * len(widths)
        if len(convs_per_stage) != len(widths):
            raise ValueError(f"model.convs_per_stage={list(convs_per_stage)} needs one entry per width {list(widths)}")
        layers: list[nn.Module] = []
        channels, height, width_pixels = input_shape
        for width, count in zip(widths, convs_per_stage, strict=True):
            for _ in range(count):
                layers += conv_norm_activation(channels, width, activation, norm)
                channels = width
            if min(height, width_pixels) >= 2:  # small inputs keep their last pixels rather than pooling them away
                layers.append(nn.MaxPool2d(2))
                height, width_pixels = height // 2, width_pixels // 2
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        classifier: list[nn.Module] = []
        features = channels * height * width_pixels
        for _ in range(hidden_layers):
            classifier += linear_norm_activation(features, hidden, activation, norm)
            features = hidden
        classifier.append(nn.Linear(features, num_classes))
        self.classifier = nn.Sequential(*classifier)

    def forward(self, x):
        return self.classifier(self.features(x))
