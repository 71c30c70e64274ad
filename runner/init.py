"""Weight initialization, applied to the built network before training.

An initializer is called as ``initializer(model, activation=..., sample=...)``: the activation factory
the model was built with (for the gain) and a batch of real training inputs (for data-dependent schemes).
"""

from __future__ import annotations

from torch import nn


def default(model: nn.Module, activation=None, sample=None) -> nn.Module:
    """PyTorch's own initialization, as each layer set it when it was built (Kaiming-uniform, a = sqrt(5))."""
    return model
