"""Activation functions: what ``torch.nn`` lacks (maxout), and what initializers need to know about each.

Most options in ``conf/activation/`` name a ``torch.nn`` class directly (``_target_: torch.nn.SELU`` with
``_partial_: true``); a model calls the factory with no arguments wherever it needs a nonlinearity.

Maxout (Goodfellow et al. 2013) is the exception: a maxout unit is the maximum of k linear pieces, so the
layer before it must produce k outputs per unit. The design here keeps that true to the paper:

- ``Maxout`` declares ``pieces``; ``pieces(activation)`` reads it (1 for every other activation).
- The model helpers in ``runner.models.layers`` (``conv_norm_activation``, ``linear_norm_activation``)
  widen the convolution or linear layer (and its norm) k-fold, then the Maxout module takes the maximum
  over each unit's k consecutive channels: h_j = max_i (w_ij . x + b_ij).
- Where a nonlinearity follows no layer of its own (after a residual sum, or the norm that opens a
  pre-activation block), ``runner.models.layers.standalone_activation`` gives maxout its own 1x1
  convolution (or linear map) producing the k pieces.
- ``Maxout(units=C)`` checks that its input has k * C channels, so a model that calls the factory without
  widening the layer before it fails loudly instead of silently halving its width.

``gain(activation)`` is the factor He-style initializers multiply 1/sqrt(fan) by to keep the forward
signal's second moment constant through the layer and its nonlinearity.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Maxout(nn.Module):
    """The maximum over ``pieces`` linear pieces per unit (Goodfellow et al. 2013, "Maxout Networks").

    Input channels (dimension 1) come in groups of ``pieces`` consecutive channels, one group per unit:
    (N, units * pieces, ...) -> (N, units, ...). Works for linear (N, C) and convolutional (N, C, H, W)
    outputs alike.
    """

    def __init__(self, pieces: int = 2, units: int | None = None):
        super().__init__()
        self.pieces = pieces
        self.units = units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if self.units is None or channels != self.units * self.pieces:
            raise ValueError(
                f"maxout with {self.pieces} pieces per unit got {channels} channels for "
                f"{self.units} units: the layer before it must produce {self.pieces} outputs per unit. "
                "Build the model's layers with runner.models.layers (conv_norm_activation, "
                "linear_norm_activation, standalone_activation), which widen it."
            )
        return x.unflatten(1, (self.units, self.pieces)).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}, units={self.units}"


def pieces(activation) -> int:
    """How many outputs per unit the layer before ``activation`` must produce: k for maxout, else 1."""
    return getattr(activation(), "pieces", 1)


def build(activation, units: int) -> nn.Module:
    """One activation module for a layer of ``units`` units (maxout needs the count to check its input)."""
    target = getattr(activation, "func", activation)
    is_maxout = isinstance(target, type) and issubclass(target, Maxout)
    return activation(units=units) if is_maxout else activation()


# Units whose positive half passes the signal like ReLU's take ReLU's gain: sqrt(2) (He et al. 2015).
RELU_LIKE = (nn.ReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.CELU)


def gain(activation) -> float:
    """The initialization gain for ``activation`` (a factory as the configs build it, or a module).

    ReLU and its smooth relatives sqrt(2) (He et al. 2015); leaky ReLU and PReLU sqrt(2 / (1 + a^2)) with
    their (initial) slope a; SELU 1, i.e. LeCun normal, std = 1/sqrt(fan_in) (Klambauer et al. 2017); tanh
    5/3 and sigmoid 1 (PyTorch's ``calculate_gain``); maxout 1, since the larger of two independent unit
    Gaussians has second moment 1; identity 1.
    """
    module = activation if isinstance(activation, nn.Module) else activation()
    if isinstance(module, nn.LeakyReLU):
        return math.sqrt(2.0 / (1.0 + module.negative_slope**2))
    if isinstance(module, nn.PReLU):
        slope = float(module.weight.detach().mean())
        return math.sqrt(2.0 / (1.0 + slope**2))
    if isinstance(module, RELU_LIKE):
        return math.sqrt(2.0)
    if isinstance(module, nn.Tanh):
        return 5.0 / 3.0
    if isinstance(module, (nn.SELU, nn.Sigmoid, Maxout, nn.Identity)):
        return 1.0
    raise ValueError(f"no initialization gain is known for {type(module).__name__}: add it to runner.activations.gain")
